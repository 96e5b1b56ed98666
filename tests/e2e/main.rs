//! The one integration-test binary: behaviour through real parts (real
//! SQLite files, the real binary, real HTTP on loopback, a scripted LLM).

#![allow(clippy::expect_used, reason = "test setup that cannot proceed panics with a message")]

#[path = "../support/mod.rs"]
mod support;

mod admin_api;
mod agent;
mod api;
mod api_trust;
mod approvals;
mod backup;
mod budget;
mod cli;
mod daemon;
mod discord;
mod email;
mod events;
mod gateway;
mod intake;
mod llm;
mod observability;
mod operator;
mod outbox;
mod pairings;
mod queue;
mod resources;
mod retention;
mod retrieval;
mod scheduler;
mod sweep;
mod telegram;
mod tls;
mod tui;
mod upgrade;
