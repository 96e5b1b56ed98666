//! Who is acting: roles in their order of privilege, users, and the actor a
//! message or API call is attributed to.

use super::{ChatRef, UserId};
use serde::Serialize;
use std::fmt;

/// A user's role. The order of the variants is the order of privilege:
/// `Viewer < Member < Operator < Admin < Overlord`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads: `/tasks`, `/status`, `/objectives`.
    Viewer,
    /// Asks for work: `/task`, `/monitor`, cancels their own tasks.
    Member,
    /// Also cancels anyone's tasks in the workspace.
    Operator,
    /// Approves pairings and actions, sets admin channels and prompts.
    Admin,
    /// Everything an admin can, and may grant `overlord`.
    Overlord,
}

impl Role {
    /// Every role, least privileged first.
    pub const ALL: [Role; 5] = [Role::Viewer, Role::Member, Role::Operator, Role::Admin, Role::Overlord];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Member => "member",
            Self::Operator => "operator",
            Self::Admin => "admin",
            Self::Overlord => "overlord",
        }
    }

    /// Parses a role name (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// Admins and overlords.
    pub fn is_admin(self) -> bool {
        self >= Self::Admin
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A linked user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// The user id.
    pub id: UserId,
    /// Display name given at pairing.
    pub display_name: String,
    /// The user's role.
    pub role: Role,
}

/// Who sent a message or made a call, as far as the runtime can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The platform's id of the sender (`api` for the local operator,
    /// `cert:<CN>` for an admin API client).
    pub platform_user_id: String,
    /// Whether the actor is an admin API caller rather than a chat sender
    /// (set only by [`Actor::operator`] and [`Actor::admin_client`], so no
    /// chat sender can pose as one by its platform id).
    pub api: bool,
    /// The linked user, if the sender's identity is verified.
    pub user: Option<User>,
    /// The role the actor acts with: the user's, or the guest role for
    /// unlinked senders (`None`: unlinked senders may only use public commands).
    pub role: Option<Role>,
}

impl Actor {
    /// The local operator: the admin API over plain loopback HTTP (when
    /// enabled) and in-process callers. Acts as overlord.
    pub fn operator() -> Self {
        Self { platform_user_id: "api".into(), api: true, user: None, role: Some(Role::Overlord) }
    }

    /// An admin API client authenticated by its certificate (CN `name`).
    pub fn admin_client(name: &str, role: Role) -> Self {
        Self { platform_user_id: format!("cert:{name}"), api: true, user: None, role: Some(role) }
    }

    /// How the actor is named in the audit log: the user id, or the
    /// platform id of an unlinked sender.
    pub fn audit_name(&self, chat: Option<&ChatRef>) -> String {
        match (&self.user, chat) {
            (Some(u), _) => format!("user:{}", u.id),
            (None, _) if self.api => self.platform_user_id.clone(),
            (None, Some(c)) => format!("unlinked:{}:{}", c.connector, self.platform_user_id),
            (None, None) => format!("unlinked:{}", self.platform_user_id),
        }
    }

    /// Whether the actor's role is at least `min`.
    pub fn has(&self, min: Role) -> bool {
        self.role.is_some_and(|r| r >= min)
    }
}

/// Whether a chat is one person talking to the bot or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatKind {
    /// A direct message.
    Private,
    /// A group, channel or guild text channel.
    Group,
}

impl ChatKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Group => "group",
        }
    }
    /// Parses `private`/`dm` or `group`/`channel`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "private" | "dm" | "direct" => Some(Self::Private),
            "group" | "channel" | "supergroup" => Some(Self::Group),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_privilege() {
        assert!(Role::Viewer < Role::Member && Role::Member < Role::Operator);
        assert!(Role::Operator < Role::Admin && Role::Admin < Role::Overlord);
        assert!(Role::Admin.is_admin() && !Role::Operator.is_admin());
        for r in Role::ALL {
            assert_eq!(Role::parse(&r.as_str().to_uppercase()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
