//! Chat text → [`Parsed`]. A word is a command only with a leading `/`
//! (`/cmd@botname` works; `_` reads as `-`). Plain words such as "task" or
//! "yes" are free text, never commands (a Go runtime defect).

use crate::domain::Role;

/// A command the gateway understands, with its arguments parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/help`: the commands this actor may use.
    Help,
    /// `/whoami`: the sender's identity, role and this chat's context.
    Whoami,
    /// `pair` (private chats only, with or without the slash): start pairing.
    Pair,
    /// `/task <prompt>`: queue a `general` task.
    Task {
        /// What should be done.
        prompt: String,
    },
    /// `/tasks`: this chat's recent tasks.
    Tasks,
    /// `/status`: this chat's workspace, tasks and the runtime's state.
    Status,
    /// `/cancel <task-id>`: cancel a task (id or unique prefix).
    Cancel {
        /// Full id or a prefix of at least four characters.
        id: String,
    },
    /// `/search <query>`: markdown search (not built yet).
    Search {
        /// The query.
        query: String,
    },
    /// `/open <path-or-docid>`: open a markdown file (not built yet).
    Open {
        /// The target.
        target: String,
    },
    /// `/monitor <goal>`: create a scheduled objective.
    Monitor {
        /// What to track.
        goal: String,
    },
    /// `/objectives`: this chat's objectives.
    Objectives,
    /// `/admin-channel enable|disable`.
    AdminChannel {
        /// Enable or disable.
        enable: bool,
    },
    /// `/prompt show|set <text>|clear`.
    Prompt(PromptOp),
    /// `/approve <token> [role]`: approve a pairing.
    Approve {
        /// The pairing token.
        token: String,
        /// The role to grant (default `member`).
        role: Option<Role>,
    },
    /// `/deny <token> [reason]`: deny a pairing.
    Deny {
        /// The pairing token.
        token: String,
        /// Why.
        reason: Option<String>,
    },
    /// `/pending-actions`.
    PendingActions,
    /// `/approve-action <id>|latest`.
    ApproveAction {
        /// Id, unique prefix or `latest`.
        id: String,
    },
    /// `/deny-action <id>|latest [reason]`.
    DenyAction {
        /// Id, unique prefix or `latest`.
        id: String,
        /// Why.
        reason: Option<String>,
    },
    /// `/route <task-id> <class> [p1|p2|p3] [due-window]`.
    Route {
        /// Task id or unique prefix.
        task: String,
        /// Class name as typed.
        class: String,
        /// Priority and/or due window as typed.
        rest: Vec<String>,
    },
    /// `/agent pause [reason]|resume|status`: the kill switch (admins).
    Agent(AgentOp),
}

/// What `/agent` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentOp {
    /// Stop every model call, with an optional reason.
    Pause(Option<String>),
    /// Allow model calls again.
    Resume,
    /// Show the switch and today's spend against the limits.
    Status,
}

/// What `/prompt` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptOp {
    /// Show the override.
    Show,
    /// Set it.
    Set(String),
    /// Clear it.
    Clear,
}

impl Command {
    /// The command's name (as in [`COMMANDS`]).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Help => "help",
            Self::Whoami => "whoami",
            Self::Pair => "pair",
            Self::Task { .. } => "task",
            Self::Tasks => "tasks",
            Self::Status => "status",
            Self::Cancel { .. } => "cancel",
            Self::Search { .. } => "search",
            Self::Open { .. } => "open",
            Self::Monitor { .. } => "monitor",
            Self::Objectives => "objectives",
            Self::AdminChannel { .. } => "admin-channel",
            Self::Prompt(_) => "prompt",
            Self::Approve { .. } => "approve",
            Self::Deny { .. } => "deny",
            Self::PendingActions => "pending-actions",
            Self::ApproveAction { .. } => "approve-action",
            Self::DenyAction { .. } => "deny-action",
            Self::Route { .. } => "route",
            Self::Agent(_) => "agent",
        }
    }
}

/// One command's name, usage line and description (for `/help` and menus).
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// Name without the slash.
    pub name: &'static str,
    /// The usage line.
    pub usage: &'static str,
    /// One-line description.
    pub about: &'static str,
}

/// Every command, in `/help` order.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "help", usage: "/help", about: "show the commands you can use" },
    CommandSpec { name: "whoami", usage: "/whoami", about: "show who you are here and your role" },
    CommandSpec { name: "pair", usage: "pair", about: "link your account (private chat only); an admin approves the token" },
    CommandSpec { name: "task", usage: "/task <what should be done>", about: "queue a task for the agent" },
    CommandSpec { name: "tasks", usage: "/tasks", about: "list this chat's recent tasks" },
    CommandSpec { name: "status", usage: "/status", about: "show this chat's workspace and the runtime's state" },
    CommandSpec { name: "cancel", usage: "/cancel <task-id>", about: "cancel a queued or running task (id or unique prefix)" },
    CommandSpec { name: "search", usage: "/search <query>", about: "search this workspace's markdown" },
    CommandSpec { name: "open", usage: "/open <path-or-docid>", about: "show a markdown file of this workspace" },
    CommandSpec { name: "monitor", usage: "/monitor <what to track>", about: "check something every 6 hours and report changes" },
    CommandSpec { name: "objectives", usage: "/objectives", about: "list this chat's objectives" },
    CommandSpec { name: "admin-channel", usage: "/admin-channel enable|disable", about: "make this chat an admin channel (or not)" },
    CommandSpec { name: "prompt", usage: "/prompt show | /prompt set <text> | /prompt clear", about: "this chat's system prompt override" },
    CommandSpec { name: "approve", usage: "/approve <pairing-token> [role]", about: "approve a pairing (role defaults to member)" },
    CommandSpec { name: "deny", usage: "/deny <pairing-token> [reason]", about: "deny a pairing" },
    CommandSpec { name: "pending-actions", usage: "/pending-actions", about: "list actions waiting for approval" },
    CommandSpec { name: "approve-action", usage: "/approve-action <action-id>|latest", about: "approve and run a pending action" },
    CommandSpec { name: "deny-action", usage: "/deny-action <action-id>|latest [reason]", about: "deny a pending action" },
    CommandSpec {
        name: "route",
        usage: "/route <task-id> <question|issue|task|moderation|noise> [p1|p2|p3] [due-window like 2h or 1d]",
        about: "set a task's class, priority and due time (admin channels)",
    },
    CommandSpec {
        name: "agent",
        usage: "/agent pause [reason] | /agent resume | /agent status",
        about: "stop or restart every model call at once, or show the switch and today's spend",
    },
];

/// The usage line of a command.
pub fn usage(name: &str) -> &'static str {
    COMMANDS.iter().find(|c| c.name == name).map_or("/help", |c| c.usage)
}

/// What a chat message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A complete command.
    Command(Command),
    /// A known command with missing or bad arguments; carries its name.
    Usage(&'static str),
    /// `/something` we do not know.
    Unknown(String),
    /// `/cmd@otherbot`: addressed to another bot; ignore.
    NotForUs,
    /// Free text.
    Text(String),
}

/// Parses chat text. `bot_username` (without `@`) decides whether
/// `/cmd@name` is ours; with `None` every `@name` is accepted.
pub fn parse(text: &str, bot_username: Option<&str>) -> Parsed {
    let text = text.trim();
    let Some(rest) = text.strip_prefix('/') else {
        return Parsed::Text(text.to_string());
    };
    let (head, args) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    let (name, target) = match head.split_once('@') {
        Some((n, t)) => (n, Some(t)),
        None => (head, None),
    };
    if let (Some(target), Some(me)) = (target, bot_username)
        && !target.eq_ignore_ascii_case(me.trim_start_matches('@'))
    {
        return Parsed::NotForUs;
    }
    let name = name.to_ascii_lowercase().replace('_', "-");
    match command(&name, args) {
        Ok(c) => Parsed::Command(c),
        Err("") => Parsed::Unknown(name),
        Err(usage_of) => Parsed::Usage(usage_of),
    }
}

/// The text as it may be copied anywhere (event log, chat log, the stored
/// inbox row): a pairing decision (`/approve`, `/deny`, with any `@bot`
/// suffix, underscores or case, well-formed or not, for us or another bot)
/// keeps its command word and loses everything after it. `None`: the text
/// carries no secret.
pub fn redact_secrets(text: &str) -> Option<String> {
    let rest = text.trim().strip_prefix('/')?;
    let head = rest.split(char::is_whitespace).next().unwrap_or(rest);
    let name = head.split_once('@').map_or(head, |(n, _)| n).to_ascii_lowercase().replace('_', "-");
    matches!(name.as_str(), "approve" | "deny").then(|| format!("/{head} <token hidden>"))
}

/// Builds a command from its name and argument text; `Err(name)` means
/// "show this command's usage", `Err("")` an unknown name.
fn command(name: &str, args: &str) -> Result<Command, &'static str> {
    let words: Vec<&str> = args.split_whitespace().collect();
    let text = |n: &'static str| if args.is_empty() { Err(n) } else { Ok(args.to_string()) };
    let rest_after = |n: usize| {
        let r = words.get(n..).map(|w| w.join(" ")).unwrap_or_default();
        (!r.is_empty()).then_some(r)
    };
    Ok(match name {
        "help" | "start" => Command::Help,
        "whoami" => Command::Whoami,
        "pair" => Command::Pair,
        "task" => Command::Task { prompt: text("task")? },
        "tasks" => Command::Tasks,
        "status" => Command::Status,
        "cancel" => match words.as_slice() {
            [id] if id.len() >= 4 => Command::Cancel { id: id.trim_matches('`').to_string() },
            _ => return Err("cancel"),
        },
        "search" => Command::Search { query: text("search")? },
        "open" => Command::Open { target: text("open")? },
        "monitor" => Command::Monitor { goal: text("monitor")? },
        "objectives" => Command::Objectives,
        "admin-channel" => match words.as_slice() {
            [w] if w.eq_ignore_ascii_case("enable") => Command::AdminChannel { enable: true },
            [w] if w.eq_ignore_ascii_case("disable") => Command::AdminChannel { enable: false },
            _ => return Err("admin-channel"),
        },
        "prompt" => match words.first().map(|w| w.to_ascii_lowercase()).as_deref() {
            Some("show") if words.len() == 1 => Command::Prompt(PromptOp::Show),
            Some("clear") if words.len() == 1 => Command::Prompt(PromptOp::Clear),
            Some("set") if words.len() > 1 => Command::Prompt(PromptOp::Set(args[3..].trim().to_string())),
            _ => return Err("prompt"),
        },
        "approve" => match words.as_slice() {
            [token] => Command::Approve { token: token.to_string(), role: None },
            [token, role] => Command::Approve { token: token.to_string(), role: Some(Role::parse(role).ok_or("approve")?) },
            _ => return Err("approve"),
        },
        "deny" => match words.first() {
            Some(token) => Command::Deny { token: token.to_string(), reason: rest_after(1) },
            None => return Err("deny"),
        },
        "pending-actions" => Command::PendingActions,
        "approve-action" => match words.as_slice() {
            [id] => Command::ApproveAction { id: id.trim_matches(['`', '"', '\'']).to_string() },
            _ => return Err("approve-action"),
        },
        "deny-action" => match words.first() {
            Some(id) => Command::DenyAction { id: id.trim_matches(['`', '"', '\'']).to_string(), reason: rest_after(1) },
            None => return Err("deny-action"),
        },
        "route" => match words.as_slice() {
            [task, class, rest @ ..] if rest.len() <= 2 => Command::Route {
                task: task.trim_matches('`').to_string(),
                class: class.to_ascii_lowercase(),
                rest: rest.iter().map(|w| w.to_ascii_lowercase()).collect(),
            },
            _ => return Err("route"),
        },
        "agent" => match words.first().map(|w| w.to_ascii_lowercase()).as_deref() {
            Some("pause") => Command::Agent(AgentOp::Pause(rest_after(1))),
            Some("resume") if words.len() == 1 => Command::Agent(AgentOp::Resume),
            Some("status") if words.len() == 1 => Command::Agent(AgentOp::Status),
            _ => return Err("agent"),
        },
        _ => return Err(""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14, item 6: the chat log hid tokens only for a literal
    /// `/approve` or `/deny`, so `/approve@bot TOKEN` was logged whole.
    #[test]
    fn pairing_decisions_lose_their_token_in_every_form() {
        for t in [
            "/approve ABCD2345",
            "/approve@MyBot ABCD2345 admin",
            "/DENY ABCD2345",
            "/Deny@other ABCD2345 spam",
            " /approve ABCD2345 x y z",
        ] {
            let r = redact_secrets(t).unwrap_or_else(|| panic!("{t} not redacted"));
            assert!(!r.contains("ABCD2345") && r.ends_with("<token hidden>"), "{t} -> {r}");
        }
        for t in ["/approve-action act_1", "/task approve ABCD2345", "approve ABCD2345", "/deny-action latest"] {
            assert_eq!(redact_secrets(t), None, "{t}");
        }
    }

    #[test]
    fn agent_takes_pause_resume_or_status() {
        assert_eq!(parse("/agent pause", None), Parsed::Command(Command::Agent(AgentOp::Pause(None))));
        assert_eq!(parse("/agent PAUSE spend spike", None), Parsed::Command(Command::Agent(AgentOp::Pause(Some("spend spike".into())))));
        assert_eq!(parse("/agent resume", None), Parsed::Command(Command::Agent(AgentOp::Resume)));
        assert_eq!(parse("/agent status", None), Parsed::Command(Command::Agent(AgentOp::Status)));
        assert_eq!(parse("/agent", None), Parsed::Usage("agent"));
        assert_eq!(parse("/agent resume now", None), Parsed::Usage("agent"));
        assert_eq!(parse("agent pause", None), Parsed::Text("agent pause".into()), "no slash, no command");
    }

    #[test]
    fn only_slash_words_are_commands() {
        assert_eq!(parse("task buy milk", None), Parsed::Text("task buy milk".into()));
        assert_eq!(parse("yes", None), Parsed::Text("yes".into()));
        assert_eq!(parse("  /task  buy milk ", None), Parsed::Command(Command::Task { prompt: "buy milk".into() }));
    }

    #[test]
    fn bot_suffix_and_case_and_underscores() {
        assert_eq!(parse("/STATUS@MyBot", Some("mybot")), Parsed::Command(Command::Status));
        assert_eq!(parse("/status@OtherBot", Some("mybot")), Parsed::NotForUs);
        assert_eq!(parse("/status@AnyBot", None), Parsed::Command(Command::Status));
        assert_eq!(parse("/admin_channel enable", None), Parsed::Command(Command::AdminChannel { enable: true }));
        assert_eq!(parse("/frobnicate now", None), Parsed::Unknown("frobnicate".into()));
    }

    #[test]
    fn missing_arguments_get_the_usage_line() {
        assert_eq!(parse("/task", None), Parsed::Usage("task"));
        assert_eq!(parse("/task@bot   ", Some("bot")), Parsed::Usage("task"));
        assert_eq!(parse("/cancel", None), Parsed::Usage("cancel"));
        assert_eq!(parse("/cancel a b", None), Parsed::Usage("cancel"));
        assert_eq!(usage("task"), "/task <what should be done>");
    }

    #[test]
    fn gateway_commands_parse_their_arguments() {
        assert_eq!(
            parse("/approve ABCD2345 operator", None),
            Parsed::Command(Command::Approve { token: "ABCD2345".into(), role: Some(Role::Operator) })
        );
        assert_eq!(parse("/approve ABCD2345 root", None), Parsed::Usage("approve"));
        assert_eq!(parse("/deny T spam bot", None), Parsed::Command(Command::Deny { token: "T".into(), reason: Some("spam bot".into()) }));
        assert_eq!(
            parse("/prompt set Be terse.\nAlways.", None),
            Parsed::Command(Command::Prompt(PromptOp::Set("Be terse.\nAlways.".into())))
        );
        assert_eq!(parse("/prompt set", None), Parsed::Usage("prompt"));
        assert_eq!(parse("/approve-action `act_12`", None), Parsed::Command(Command::ApproveAction { id: "act_12".into() }));
        assert_eq!(
            parse("/deny-action latest not now", None),
            Parsed::Command(Command::DenyAction { id: "latest".into(), reason: Some("not now".into()) })
        );
        assert_eq!(
            parse("/route abcd issue p1 2h", None),
            Parsed::Command(Command::Route { task: "abcd".into(), class: "issue".into(), rest: vec!["p1".into(), "2h".into()] })
        );
        assert_eq!(parse("/route abcd", None), Parsed::Usage("route"));
        assert_eq!(parse("/admin-channel maybe", None), Parsed::Usage("admin-channel"));
        for spec in COMMANDS {
            let p = parse(&format!("/{}", spec.name), None);
            assert!(matches!(p, Parsed::Command(_) | Parsed::Usage(_)), "{} parses: {p:?}", spec.name);
        }
    }

    #[test]
    fn multiline_prompts_keep_their_lines() {
        assert_eq!(parse("/task line one\nline two", None), Parsed::Command(Command::Task { prompt: "line one\nline two".into() }));
    }

    proptest::proptest! {
        #[test]
        fn text_without_a_leading_slash_is_never_a_command(s in "\\PC*") {
            let trimmed = s.trim();
            proptest::prop_assume!(!trimmed.starts_with('/'));
            proptest::prop_assert_eq!(parse(&s, Some("bot")), Parsed::Text(trimmed.to_string()));
        }

        #[test]
        fn task_keeps_its_whole_prompt(prompt in "[^\\s][\\PC\n]{0,200}", bot in proptest::option::of("[a-z_]{1,12}")) {
            let head = match &bot { Some(b) => format!("/task@{b}"), None => "/task".to_string() };
            let parsed = parse(&format!("{head} {prompt}"), bot.as_deref());
            proptest::prop_assert_eq!(parsed, Parsed::Command(Command::Task { prompt: prompt.trim().to_string() }));
        }

        #[test]
        fn a_command_is_always_the_one_the_text_named(name in "[a-zA-Z_-]{0,16}", sep in "[ \t\n]{0,2}", args in "\\PC{0,40}") {
            let text = format!("/{name}{sep}{args}");
            if let Parsed::Command(c) = parse(&text, None) {
                let head = text[1..].split(char::is_whitespace).next().unwrap_or("");
                let named = head.split('@').next().unwrap_or("").to_ascii_lowercase().replace('_', "-");
                let expected = if named == "start" { "help".to_string() } else { named };
                proptest::prop_assert_eq!(c.name(), expected.as_str());
            }
        }

        #[test]
        fn any_input_parses_without_panicking(s in "\\PC*", bot in proptest::option::of("\\PC{0,8}")) {
            let _ = parse(&s, bot.as_deref());
        }
    }

    #[test]
    fn arbitrary_text_never_panics() {
        for s in ["/", "/@", "/@@", "@", "/\u{0}", "/é@ü x", "/task\u{3000}x", "//task"] {
            let _ = parse(s, Some("bot"));
        }
        assert_eq!(parse("/", None), Parsed::Unknown(String::new()));
    }
}
