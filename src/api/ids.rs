//! Ids in API paths: a full id or a unique prefix of at least four
//! characters, the rule chat's `/cancel` and `/approve` follow. The shape is
//! checked first: a malformed id is 404 "not a valid ... id", never the
//! "no such endpoint" of a wrong path; an ambiguous prefix is 409 saying
//! how many match.

use super::ApiState;
use super::error::ApiError;
use crate::domain::{ApprovalId, ContextId, ObjectiveId, TaskId, WorkspaceId};
use crate::store::IdTable;
use axum::http::StatusCode;

/// The shortest prefix accepted.
const MIN_PREFIX: usize = 4;
/// How many matches an ambiguous prefix reports exactly.
const COUNT_UP_TO: u32 = 10;

// 404 like an unknown id (every `{id}` route answers an id that names
// nothing the same way), with a message that says why.
fn invalid(kind: &str, raw: &str, shape: &str) -> ApiError {
    ApiError::not_found(format!("not a valid {kind} id: {raw:?} ({shape}, or a unique prefix of at least {MIN_PREFIX} characters)"))
}

fn pick<T>(mut found: Vec<T>, kind: &str, raw: &str) -> Result<T, ApiError> {
    match found.len() {
        0 => Err(ApiError::not_found(format!("no {kind} {raw}"))),
        1 => Ok(found.remove(0)),
        n => {
            let many = if n as u32 > COUNT_UP_TO { format!("more than {COUNT_UP_TO}") } else { n.to_string() };
            Err(ApiError { status: StatusCode::CONFLICT, message: format!("{raw} matches {many} {kind}s; give more of the id") })
        }
    }
}

/// A UUID id (lowercase hex and dashes) of `table` or a unique prefix of one.
async fn uuid(s: &ApiState, raw: &str, kind: &str, table: IdTable) -> Result<String, ApiError> {
    let id = raw.trim().to_ascii_lowercase();
    if !(MIN_PREFIX..=36).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(invalid(kind, raw, "a UUID such as 0193a2b4-..."));
    }
    if id.len() == 36 {
        return Ok(id);
    }
    pick(s.store.ids_by_prefix(table, &id, COUNT_UP_TO + 1).await?, kind, raw)
}

/// A task id (a UUID) or a unique prefix of one.
pub async fn task(s: &ApiState, raw: &str) -> Result<TaskId, ApiError> {
    uuid(s, raw, "task", IdTable::Tasks).await.map(TaskId::from_string)
}

/// A context id (a UUID) or a unique prefix of one.
pub async fn context(s: &ApiState, raw: &str) -> Result<ContextId, ApiError> {
    uuid(s, raw, "context", IdTable::Contexts).await.map(ContextId::from_string)
}

/// A workspace id (a UUID) or a unique prefix of one.
pub async fn workspace(s: &ApiState, raw: &str) -> Result<WorkspaceId, ApiError> {
    uuid(s, raw, "workspace", IdTable::Workspaces).await.map(WorkspaceId::from_string)
}

/// `tag` and 32 hex digits, or a prefix of that (the tag may be left out):
/// the id with its tag, and whether it is whole.
fn tagged(raw: &str, tag: &str, kind: &str) -> Result<(String, bool), ApiError> {
    let lower = raw.trim().to_ascii_lowercase();
    let hex = lower.strip_prefix(tag).unwrap_or(&lower);
    if !(MIN_PREFIX..=32).contains(&hex.len()) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(kind, raw, &format!("{tag} and 32 hex digits")));
    }
    Ok((format!("{tag}{hex}"), hex.len() == 32))
}

/// An objective id (`obj_` and 32 hex digits) or a unique prefix of one
/// (`obj_` may be left out).
pub async fn objective(s: &ApiState, raw: &str) -> Result<ObjectiveId, ApiError> {
    let (id, whole) = tagged(raw, "obj_", "objective")?;
    if whole {
        return Ok(ObjectiveId::from_string(id));
    }
    pick(s.store.ids_by_prefix(IdTable::Objectives, &id, COUNT_UP_TO + 1).await?, "objective", raw).map(ObjectiveId::from_string)
}

/// An approval id (`act_` and 32 hex digits) or a unique prefix of one
/// (`act_` may be left out).
pub async fn approval(s: &ApiState, raw: &str) -> Result<ApprovalId, ApiError> {
    let (id, whole) = tagged(raw, "act_", "approval")?;
    if whole {
        return Ok(ApprovalId::from_string(id));
    }
    let found = s.store.find_approvals_by_prefix(&id, COUNT_UP_TO + 1).await?;
    pick(found.into_iter().map(|a| a.id).collect(), "approval", raw)
}
