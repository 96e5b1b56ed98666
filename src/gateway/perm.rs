//! Who may run which command, from which chat. One table: each command's
//! least role, and whether it needs an admin channel or a private chat.
//! Unlinked senders act with the configured guest role (or none).

use super::command::Command;
use crate::domain::{Actor, ChatKind, Context, Role};

/// What running a command costs, which decides the channel rules and the
/// rate limit it passes (`rules::decide_command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// Reads or answers from what is stored.
    Read,
    /// Changes stored state (counted by the task rate limit).
    Write,
    /// Queues model work that costs money (the channel rules and the task rate limit).
    Llm,
}

/// A command's requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Least role; `None`: anyone, linked or not.
    pub min: Option<Role>,
    /// Only in an admin context.
    pub admin_context: bool,
    /// Only in a private chat.
    pub private_only: bool,
    /// What it costs.
    pub cost: Cost,
}

const ANYONE: Rule = Rule { min: None, admin_context: false, private_only: false, cost: Cost::Read };

const fn role(min: Role) -> Rule {
    Rule { min: Some(min), admin_context: false, private_only: false, cost: Cost::Read }
}

/// The rule for a command name (as in `COMMANDS`).
pub fn rule(name: &str) -> Rule {
    match name {
        "help" | "whoami" => ANYONE,
        "pair" => Rule { private_only: true, ..ANYONE },
        "tasks" | "status" | "search" | "open" | "objectives" => role(Role::Viewer),
        "task" | "monitor" => Rule { cost: Cost::Llm, ..role(Role::Member) },
        "cancel" => Rule { cost: Cost::Write, ..role(Role::Member) },
        "route" => Rule { admin_context: true, cost: Cost::Write, ..role(Role::Admin) },
        "pending-actions" => role(Role::Admin),
        // The kill switch: any admin, from any chat (a spend spike should be stoppable from where it is seen).
        "agent" => Rule { cost: Cost::Write, ..role(Role::Admin) },
        // admin-channel, prompt, approve, deny, approve-action, deny-action
        _ => Rule { cost: Cost::Write, ..role(Role::Admin) },
    }
}

/// Why a command was refused: the reply the sender gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The sender is not linked and guests may not run it.
    Unlinked,
    /// The sender's role is too low.
    Role {
        /// Needed.
        needed: Role,
        /// Held.
        held: Role,
    },
    /// Needs an admin channel.
    AdminContext,
    /// Needs a private chat.
    PrivateOnly,
}

impl Denial {
    /// The reply text.
    pub fn reply(&self) -> String {
        match self {
            Self::Unlinked => "Access denied: link your account first (send `pair` to me in a private chat).".into(),
            Self::Role { needed, held } => format!("Access denied: this needs the {needed} role (yours is {held})."),
            Self::AdminContext => "Access denied: this command only works in an admin channel (`/admin-channel enable`).".into(),
            Self::PrivateOnly => "Send `pair` to me in a private chat, not in a group.".into(),
        }
    }

    /// A short reason for the audit log.
    pub fn reason(&self) -> String {
        match self {
            Self::Unlinked => "unlinked".into(),
            Self::Role { needed, held } => format!("role {held} below {needed}"),
            Self::AdminContext => "not an admin context".into(),
            Self::PrivateOnly => "not a private chat".into(),
        }
    }
}

/// Checks whether `actor` may run `cmd` in `ctx`.
pub fn check(actor: &Actor, ctx: &Context, kind: ChatKind, cmd: &Command) -> Result<(), Denial> {
    allowed(actor, ctx, kind, rule(cmd.name()))
}

/// Checks a rule.
pub fn allowed(actor: &Actor, ctx: &Context, kind: ChatKind, r: Rule) -> Result<(), Denial> {
    if r.private_only && kind != ChatKind::Private {
        return Err(Denial::PrivateOnly);
    }
    if let Some(needed) = r.min {
        match actor.role {
            Some(held) if held >= needed => {}
            Some(held) if actor.user.is_some() => return Err(Denial::Role { needed, held }),
            _ => return Err(Denial::Unlinked),
        }
    }
    if r.admin_context && !ctx.is_admin {
        return Err(Denial::AdminContext);
    }
    Ok(())
}
