//! Types shared by every module: ids as newtypes, tasks and their statuses,
//! chats and message envelopes. No I/O happens here.

mod glob;
mod identity;
mod ids;
mod message;
mod schedule;
mod task;

pub use glob::{GLOB_MAX, Glob};
pub use identity::{Actor, ChatKind, Role, User};
pub use ids::{ApprovalId, ContextId, ObjectiveId, OutboxId, PairingId, TaskId, TraceId, UserId, WorkspaceId};
pub use message::{
    Button, ButtonPress, ChatRef, ChatRefError, Context, Inbound, InboundMeta, IncomingFile, MailThread, MessageKind, OutboundMessage,
    OutboundOptions, OutboxStatus, SenderVerdict,
};
pub use schedule::{Schedule, check_timezone};
pub use task::{
    CatchUp, NewTask, NotifyPolicy, RESERVED_RUN_KEY_PREFIXES, RunOutcome, RunTrigger, TASK_TITLE_MAX, Task, TaskEvent, TaskKind,
    TaskStatus, UnknownValue, reserved_run_key_prefix, title_from,
};
