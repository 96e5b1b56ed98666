//! Skills: how-to notes in markdown that the agent reads by name with
//! `read_skill`. The system prompt lists them (name and first line, see
//! [`layer`]); the text is read only when the model asks, so a workspace
//! with many skills costs a few hundred bytes per turn, not their length.
//!
//! Where a skill is looked for, first name wins (most specific first):
//! `<ws>/skills/contexts/<context id>/`, `<ws>/skills/admin/` (admin
//! contexts) or `<ws>/skills/public/` (the others), `<ws>/skills/common/`,
//! then the skills shipped in the binary (the repository's
//! `context/skills/{admin,common}/`). A workspace file of the same name
//! replaces a shipped one.
//!
//! Skills are instructions by nature, so only operators write them: the
//! agent's `write_file` refuses `skills/`, a name is `[A-Za-z0-9_-]` (no
//! path can be formed from it), folders and files are opened without
//! following links, and only regular `.md` files of at most
//! [`MAX_SKILL_BYTES`] are read.

use super::files::{io_error, open_dir, open_regular, open_root};
use super::{Policy, ToolClass, ToolEnv, ToolError, ToolOutput, TypedTool, cap};
use crate::BoxFuture;
use crate::domain::{Context, Role};
use crate::workspace::sanitize_segment;
use rustix::fs::{AtFlags, Dir, FileType};
use schemars::JsonSchema;
use serde::Deserialize;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

/// Most bytes of one skill given to the model (the rest is cut, and the
/// cut is said).
pub const MAX_SKILL_BYTES: usize = 8 * 1024;

/// Most bytes of the skills layer of the system prompt.
pub const LAYER_BYTES: usize = 1_500;

/// Most bytes of a skill's description in that layer.
const DESCRIPTION_BYTES: usize = 120;

/// Bytes read from a skill's start to find its description.
const HEAD_BYTES: usize = 512;

/// Most files looked at in one folder.
const MAX_FILES_PER_FOLDER: usize = 64;

/// Most bytes of a skill name.
const MAX_NAME_BYTES: usize = 64;

/// The skills shipped in the binary: audience folder, name, text.
const BUILTIN: [(&str, &str, &str); 5] = [
    ("common", "approvals", include_str!("../../../context/skills/common/approvals.md")),
    ("common", "scheduling", include_str!("../../../context/skills/common/scheduling.md")),
    ("common", "untrusted-content", include_str!("../../../context/skills/common/untrusted-content.md")),
    ("common", "workspace-notes", include_str!("../../../context/skills/common/workspace-notes.md")),
    ("admin", "operations", include_str!("../../../context/skills/admin/operations.md")),
];

/// One skill as the prompt lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillEntry {
    /// The name `read_skill` takes.
    pub name: String,
    /// Its first line (or front matter `description:`).
    pub description: String,
    /// `built in`, or its workspace path.
    pub origin: String,
}

/// Whether `name` can be a skill's name: 1–64 of `[A-Za-z0-9_-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_BYTES && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The workspace folders of `ctx`'s skills, most specific first.
fn folders(ctx: &Context) -> [Vec<String>; 3] {
    let audience = if ctx.is_admin { "admin" } else { "public" };
    [
        vec!["skills".into(), "contexts".into(), sanitize_segment(ctx.id.as_str())],
        vec!["skills".into(), audience.into()],
        vec!["skills".into(), "common".into()],
    ]
}

fn builtin(ctx: &Context) -> impl Iterator<Item = (&'static str, &'static str, &'static str)> + '_ {
    BUILTIN.into_iter().filter(|(audience, _, _)| *audience == "common" || (*audience == "admin" && ctx.is_admin))
}

/// A skill's description: front matter `description:`, or else its first
/// line with text (heading marks dropped), capped.
fn description(text: &str) -> String {
    let mut lines = text.lines();
    let mut first = None;
    if text.starts_with("---") {
        lines.next();
        for line in lines.by_ref() {
            if line.trim() == "---" {
                break;
            }
            if let Some(d) = line.trim().strip_prefix("description:") {
                first = Some(d.trim().trim_matches('"').to_string());
            }
        }
    }
    let line = first.or_else(|| lines.map(str::trim).find(|l| !l.is_empty()).map(|l| l.trim_start_matches('#').trim().to_string()));
    let line = line.unwrap_or_default();
    let (short, cut) = cap(&line, DESCRIPTION_BYTES);
    if cut { format!("{short}…") } else { short.to_string() }
}

/// Opens a workspace folder part by part, without following links
/// (`None`: it is not there).
fn open_folder(root: &Path, parts: &[String]) -> Result<Option<OwnedFd>, ToolError> {
    let mut dir = match open_root(root, false) {
        Ok(d) => d,
        Err(_) => return Ok(None),
    };
    for (i, p) in parts.iter().enumerate() {
        let shown = parts[..=i].join("/");
        dir = match open_dir(&dir, p, &shown, false) {
            Ok(d) => d,
            Err(ToolError::Failed(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
    }
    Ok(Some(dir))
}

/// Reads at most `max` bytes of regular file `name` in `dir` without
/// following a link (`None`: it is not there).
fn read_file(dir: &OwnedFd, name: &str, shown: &str, max: usize) -> Result<Option<(Vec<u8>, u64)>, ToolError> {
    let Some((file, size)) = open_regular(dir, name, shown)? else { return Ok(None) };
    let mut buf = Vec::new();
    file.take(max as u64).read_to_end(&mut buf).map_err(|e| io_error(&format!("cannot read {shown}"), e))?;
    if buf.contains(&0) {
        return Err(ToolError::Refused(format!("{shown} is not a text file")));
    }
    Ok(Some((buf, size)))
}

/// The `.md` skills of one folder, by name.
fn list_folder(root: &Path, parts: &[String]) -> Vec<SkillEntry> {
    let Ok(Some(fd)) = open_folder(root, parts) else { return Vec::new() };
    let Ok(dir) = Dir::read_from(&fd) else { return Vec::new() };
    let mut names: Vec<String> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
        .filter_map(|n| n.strip_suffix(".md").filter(|s| valid_name(s)).map(str::to_string))
        .collect();
    names.sort();
    names.truncate(MAX_FILES_PER_FOLDER);
    let folder = parts.join("/");
    names
        .into_iter()
        .filter_map(|name| {
            let file = format!("{name}.md");
            let st = rustix::fs::statat(&fd, file.as_str(), AtFlags::SYMLINK_NOFOLLOW).ok()?;
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                return None;
            }
            let shown = format!("{folder}/{file}");
            let (head, _) = read_file(&fd, &file, &shown, HEAD_BYTES).ok()??;
            Some(SkillEntry { description: description(&String::from_utf8_lossy(&head)), name, origin: shown })
        })
        .collect()
}

/// Every skill `ctx` may read, most specific first, each name once.
pub fn list(root: &Path, ctx: &Context) -> Vec<SkillEntry> {
    let mut out: Vec<SkillEntry> = Vec::new();
    for parts in folders(ctx) {
        for s in list_folder(root, &parts) {
            if !out.iter().any(|o| o.name == s.name) {
                out.push(s);
            }
        }
    }
    for (_, name, text) in builtin(ctx) {
        if !out.iter().any(|o| o.name == name) {
            out.push(SkillEntry { name: name.into(), description: description(text), origin: "built in".into() });
        }
    }
    out
}

/// The skills layer of a system prompt: one line per skill (empty when
/// there are none), at most [`LAYER_BYTES`].
pub fn layer(skills: &[SkillEntry]) -> String {
    if skills.is_empty() {
        return String::new();
    }
    let mut text = "Skills (how-to notes; read one with read_skill when it fits the request):".to_string();
    for (i, s) in skills.iter().enumerate() {
        let line = format!("\n- {}: {}", s.name, s.description);
        if text.len() + line.len() > LAYER_BYTES {
            text.push_str(&format!("\n… and {} more (read_skill with a name lists them all when it is wrong)", skills.len() - i));
            break;
        }
        text.push_str(&line);
    }
    text
}

/// Skill `name` for `ctx`: the most specific file of that name, or the
/// shipped one.
pub fn read(root: &Path, ctx: &Context, name: &str) -> Result<ToolOutput, ToolError> {
    if !valid_name(name) {
        return Err(ToolError::BadArguments {
            tool: ReadSkill::NAME,
            reason: format!("{name:?} is not a skill name (1–{MAX_NAME_BYTES} letters, digits, `-` or `_`)"),
        });
    }
    let file = format!("{name}.md");
    for parts in folders(ctx) {
        let Some(dir) = open_folder(root, &parts)? else { continue };
        let shown = format!("{}/{file}", parts.join("/"));
        if let Some((buf, size)) = read_file(&dir, &file, &shown, MAX_SKILL_BYTES)? {
            let text = String::from_utf8_lossy(&buf).into_owned();
            let note = if size > buf.len() as u64 { format!("\n[cut at {MAX_SKILL_BYTES} of {size} bytes]") } else { String::new() };
            return Ok(ToolOutput::runtime(
                format!("skill {name} (workspace file {shown}, written by its operators)"),
                format!("{text}{note}"),
            ));
        }
    }
    if let Some((_, _, text)) = builtin(ctx).find(|(_, n, _)| *n == name) {
        return Ok(ToolOutput::runtime(format!("skill {name} (built in)"), text));
    }
    let names: Vec<String> = list(root, ctx).into_iter().map(|s| s.name).collect();
    Err(ToolError::Failed(format!("there is no skill named {name}; the skills here are: {}", names.join(", "))))
}

/// Arguments of `read_skill`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadSkillArgs {
    /// The skill's name, as the system prompt lists it.
    pub name: String,
}

/// `read_skill`.
pub struct ReadSkill;

impl TypedTool for ReadSkill {
    type Args = ReadSkillArgs;
    const NAME: &'static str = "read_skill";
    const DESCRIPTION: &'static str = "Read a skill (a how-to note the system prompt lists by name) before doing what it covers.";
    const CLASS: ToolClass = ToolClass::Knowledge;
    const POLICY: Policy = Policy { min_role: Role::Viewer, in_tasks: true, approval: false };

    fn run<'a>(&'a self, env: &'a ToolEnv, args: ReadSkillArgs) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        let (root, ctx) = (env.workspace_dir.clone(), env.context.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || read(&root, &ctx, &args.name))
                .await
                .map_err(|e| ToolError::Failed(format!("the read stopped: {e}")))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ChatRef, ContextId, WorkspaceId};

    fn ctx(admin: bool) -> Context {
        Context {
            id: ContextId::from_string("ctx-1"),
            workspace_id: WorkspaceId::from_string("w1"),
            chat: ChatRef::new("api", "x").expect("chat"),
            display_name: "x".into(),
            system_prompt: String::new(),
            is_admin: admin,
            created_at: 0,
        }
    }

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    #[test]
    fn the_shipped_skills_are_listed_by_audience_and_read_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let public: Vec<String> = list(dir.path(), &ctx(false)).into_iter().map(|s| s.name).collect();
        assert_eq!(public, ["approvals", "scheduling", "untrusted-content", "workspace-notes"]);
        let admin: Vec<String> = list(dir.path(), &ctx(true)).into_iter().map(|s| s.name).collect();
        assert!(admin.contains(&"operations".to_string()), "{admin:?}");
        let s = read(dir.path(), &ctx(false), "approvals").expect("read");
        assert_eq!(s.source, "skill approvals (built in)");
        assert!(s.text.contains("send_email") && !s.untrusted);
        // The admin skill is not there for a public context.
        let e = read(dir.path(), &ctx(false), "operations").expect_err("admin only");
        assert!(matches!(&e, ToolError::Failed(m) if m.contains("no skill named operations") && m.contains("approvals")), "{e}");
        let l = layer(&list(dir.path(), &ctx(false)));
        assert!(l.starts_with("Skills (") && l.contains("\n- scheduling: Queue work for later, or on a schedule"), "{l}");
    }

    #[test]
    fn workspace_skills_come_first_and_replace_shipped_ones_of_the_same_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        put(root, "skills/common/approvals.md", "# Our approvals\nAsk Pat first.");
        put(root, "skills/public/deploy.md", "---\ndescription: \"How we deploy\"\n---\n# Deploy\nsteps");
        put(root, "skills/admin/secret-ops.md", "# Admin only");
        put(root, "skills/contexts/ctx-1/deploy.md", "# Deploy, this chat's way");
        put(root, "skills/common/notes.txt", "not markdown");
        put(root, "skills/common/bad name.md", "not a valid name");
        let entries = list(root, &ctx(false));
        let got: Vec<(&str, &str)> = entries.iter().map(|s| (s.name.as_str(), s.description.as_str())).collect();
        assert_eq!(got[..2], [("deploy", "Deploy, this chat's way"), ("approvals", "Our approvals")]);
        assert!(!got.iter().any(|(n, _)| *n == "secret-ops" || *n == "notes" || n.contains(' ')), "{got:?}");
        assert_eq!(entries.iter().filter(|s| s.name == "approvals").count(), 1, "each name once");
        let s = read(root, &ctx(false), "approvals").expect("read");
        assert_eq!(
            (s.source.as_str(), s.text.as_str()),
            ("skill approvals (workspace file skills/common/approvals.md, written by its operators)", "# Our approvals\nAsk Pat first.")
        );
        assert_eq!(description("---\ndescription: \"How we deploy\"\n---\n# Deploy"), "How we deploy");
        assert!(read(root, &ctx(true), "secret-ops").is_ok(), "an admin context reads admin skills");
        assert!(read(root, &ctx(false), "secret-ops").is_err());
    }

    #[test]
    fn names_that_could_form_a_path_and_links_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("ws");
        let outside = dir.path().join("outside");
        put(&outside, "evil.md", "# steal the keys");
        put(&outside, "common/evil2.md", "# steal more");
        std::fs::create_dir_all(root.join("skills/common")).expect("mkdir");
        std::os::unix::fs::symlink(outside.join("evil.md"), root.join("skills/common/evil.md")).expect("link");
        std::os::unix::fs::symlink(&outside, root.join("skills/public")).expect("link");
        for bad in ["../outside/evil", "a/b", "", ".hidden", "x".repeat(65).as_str(), "evil.md"] {
            let e = read(&root, &ctx(false), bad).expect_err(bad);
            assert!(matches!(e, ToolError::BadArguments { .. }), "{bad:?}: {e}");
        }
        // A linked folder (`skills/public`) is refused, not followed…
        let e = read(&root, &ctx(false), "evil2").expect_err("a linked folder");
        assert_eq!(e, ToolError::Refused("skills/public is not a folder".into()));
        // …and so is a linked file.
        std::fs::remove_file(root.join("skills/public")).expect("unlink");
        let e = read(&root, &ctx(false), "evil").expect_err("a link");
        assert!(matches!(&e, ToolError::Refused(m) if m.contains("symbolic link")), "{e}");
        assert!(read(&root, &ctx(false), "evil2").is_err(), "nothing of the outside folder is reachable");
        std::os::unix::fs::symlink(&outside, root.join("skills/public")).expect("link");
        let names: Vec<String> = list(&root, &ctx(false)).into_iter().map(|s| s.name).collect();
        assert!(!names.iter().any(|n| n.starts_with("evil")), "links are not listed: {names:?}");
        assert!(names.contains(&"approvals".to_string()), "the rest still is: {names:?}");
    }

    #[test]
    fn the_layer_and_a_skill_are_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for i in 0..60 {
            put(root, &format!("skills/common/s{i:02}.md"), &format!("# {}", "word ".repeat(40)));
        }
        put(root, "skills/common/long.md", &"x".repeat(MAX_SKILL_BYTES * 2));
        let l = layer(&list(root, &ctx(false)));
        assert!(l.len() <= LAYER_BYTES + 120 && l.contains("more (read_skill"), "{} bytes", l.len());
        let s = read(root, &ctx(false), "long").expect("read");
        assert!(
            s.text.len() < MAX_SKILL_BYTES + 64
                && s.text.ends_with(&format!("[cut at {MAX_SKILL_BYTES} of {} bytes]", MAX_SKILL_BYTES * 2))
        );
    }
}
