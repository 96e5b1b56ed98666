//! Types shared by every module: ids as newtypes, tasks and their statuses,
//! chats and message envelopes. No I/O happens here.

mod ids;
mod message;
mod task;

pub use ids::{ContextId, OutboxId, TaskId, TraceId, WorkspaceId};
pub use message::{ChatRef, ChatRefError, Context, Inbound, MessageKind, OutboundMessage, OutboxStatus};
pub use task::{NewTask, NotifyPolicy, TASK_TITLE_MAX, Task, TaskEvent, TaskKind, TaskStatus, UnknownValue, title_from};
