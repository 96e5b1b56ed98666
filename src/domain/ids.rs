//! Identifier newtypes: an id of one kind can never be passed where another is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $prefix:expr, $uuid:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new unique id (with this kind's prefix if it has one).
            pub fn random() -> Self {
                Self(format!("{}{}", $prefix, $uuid))
            }
            /// Wraps an id read from storage or validated input.
            pub fn from_string(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A task id: a UUID (v7, time-ordered, so new rows land at the end of
    /// the indexes instead of on random pages).
    TaskId, "", uuid::Uuid::now_v7()
);
string_id!(
    /// A workspace id (UUID v4); also the workspace's directory name.
    WorkspaceId, "", uuid::Uuid::new_v4()
);
string_id!(
    /// A context id (UUID v4): one per (connector, external chat).
    ContextId, "", uuid::Uuid::new_v4()
);
string_id!(
    /// A trace id that follows one message from inbox to outbox.
    TraceId, "tr_", uuid::Uuid::new_v4().simple()
);

/// An outbox row id (monotonic, so clients can poll with `after=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OutboxId(pub i64);

impl fmt::Display for OutboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

string_id!(
    /// A user id (UUID v4).
    UserId, "", uuid::Uuid::new_v4()
);
string_id!(
    /// An approval (sensitive action request) id: `act_` and a UUID v7.
    ApprovalId, "act_", uuid::Uuid::now_v7().simple()
);
string_id!(
    /// A pairing request id (UUID v4); never the token.
    PairingId, "", uuid::Uuid::new_v4()
);
string_id!(
    /// An objective id: `obj_` and a UUID v4.
    ObjectiveId, "obj_", uuid::Uuid::new_v4().simple()
);
