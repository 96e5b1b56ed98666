//! Chat text → [`Parsed`]. A word is a command only with a leading `/`
//! (`/cmd@botname` works; `_` reads as `-`). Plain words such as "task" or
//! "yes" are free text, never commands (a Go runtime defect).

/// A command the gateway understands, with its arguments parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/help`: the commands this chat can use.
    Help,
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
}

impl Command {
    /// The command's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Help => "help",
            Self::Task { .. } => "task",
            Self::Tasks => "tasks",
            Self::Status => "status",
            Self::Cancel { .. } => "cancel",
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
    CommandSpec { name: "task", usage: "/task <what should be done>", about: "queue a task for the agent" },
    CommandSpec { name: "tasks", usage: "/tasks", about: "list this chat's recent tasks" },
    CommandSpec { name: "status", usage: "/status", about: "show this chat's workspace and the runtime's state" },
    CommandSpec { name: "cancel", usage: "/cancel <task-id>", about: "cancel a queued or running task (id or unique prefix)" },
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
    let need_args = |cmd: Command| {
        if args.is_empty() {
            Parsed::Usage(COMMANDS.iter().find(|c| c.name == cmd.name()).map_or("help", |c| c.name))
        } else {
            Parsed::Command(cmd)
        }
    };
    match name.as_str() {
        "help" | "start" => Parsed::Command(Command::Help),
        "task" => need_args(Command::Task { prompt: args.to_string() }),
        "tasks" => Parsed::Command(Command::Tasks),
        "status" => Parsed::Command(Command::Status),
        "cancel" => match args.split_whitespace().collect::<Vec<_>>().as_slice() {
            [id] if id.len() >= 4 => Parsed::Command(Command::Cancel { id: id.trim_matches('`').to_string() }),
            _ => Parsed::Usage("cancel"),
        },
        _ => Parsed::Unknown(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse("/admin_channel enable", None), Parsed::Unknown("admin-channel".into()));
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
