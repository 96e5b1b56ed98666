//! Drives the fake with a real serenity 0.12.5 client.

use super::{Author, FakeDiscord, Fault};
use serde_json::json;
use serenity::all::{
    ChannelId, ClientBuilder, Command, Context, CreateCommand, CreateInteractionResponse, CreateInteractionResponseMessage, EventHandler,
    GatewayIntents, GetMessages, Interaction, Message, Ready, ResumedEvent,
};
use serenity::http::HttpBuilder;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Debug)]
enum Ev {
    Ready,
    Resumed,
    Message(String),
    Interaction(String, bool),
}

struct Recorder(mpsc::UnboundedSender<Ev>);

#[serenity::async_trait]
impl EventHandler for Recorder {
    async fn ready(&self, _: Context, _: Ready) {
        let _ = self.0.send(Ev::Ready);
    }

    async fn resume(&self, _: Context, _: ResumedEvent) {
        let _ = self.0.send(Ev::Resumed);
    }

    async fn message(&self, _: Context, msg: Message) {
        let _ = self.0.send(Ev::Message(msg.content));
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        let reply = CreateInteractionResponse::Message(CreateInteractionResponseMessage::new().content("pong"));
        let (what, ok) = match interaction {
            Interaction::Command(c) => (c.data.name.clone(), c.create_response(&ctx.http, reply).await.is_ok()),
            Interaction::Component(c) => {
                let ack = c.create_response(&ctx.http, CreateInteractionResponse::Acknowledge).await.is_ok();
                (format!("{}@{}", c.data.custom_id, c.message.content), ack)
            }
            other => (format!("{:?}", other.kind()), false),
        };
        let _ = self.0.send(Ev::Interaction(what, ok));
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Ev>) -> Ev {
    tokio::time::timeout(Duration::from_secs(3), rx.recv()).await.expect("serenity event within 3 s").expect("handler alive")
}

/// Everything the runtime relies on, end to end through serenity: READY,
/// MESSAGE_CREATE, REST sends/history/commands, resume after a dropped
/// socket (no second IDENTIFY, no duplicate), interactions, 429s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serenity_round_trip() {
    let fake = FakeDiscord::start("test-token").await;
    let http = HttpBuilder::new("test-token").proxy(fake.base_url()).ratelimiter_disabled(true).build();
    let intents = GatewayIntents::GUILD_MESSAGES | GatewayIntents::DIRECT_MESSAGES | GatewayIntents::MESSAGE_CONTENT;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut client = ClientBuilder::new_with_http(http, intents).event_handler(Recorder(tx)).await.expect("client builds");
    let (shards, http) = (client.shard_manager.clone(), client.http.clone());
    tokio::spawn(async move { client.start().await });

    assert!(matches!(next(&mut rx).await, Ev::Ready));
    assert_eq!(fake.intents(), Some(intents.bits()));
    let alice = Author::user("100000000000000001", "alice");
    fake.push_message("200", Some("300"), alice.clone(), "hello <@900000000000000001>");
    assert!(matches!(next(&mut rx).await, Ev::Message(m) if m == "hello <@900000000000000001>"));

    let hi = ChannelId::new(200).say(&http, "hi").await.expect("say");
    assert_eq!(fake.wait_sent(1, Duration::from_secs(1)).await[0].content, "hi");
    let history = ChannelId::new(200).messages(&http, GetMessages::new().limit(10)).await.expect("history");
    assert_eq!(history.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["hi", "hello <@900000000000000001>"]);
    let cmds = Command::set_global_commands(&http, vec![CreateCommand::new("ask").description("Ask")]).await.expect("commands");
    assert_eq!(cmds[0].name, "ask");

    let dropped = Instant::now();
    fake.drop_connection();
    fake.push_message("200", None, alice.clone(), "while away");
    let mut seen = vec![];
    while seen.len() < 2 {
        seen.push(next(&mut rx).await);
    }
    eprintln!("serenity resumed {:?} after drop_connection", dropped.elapsed());
    assert!(seen.iter().any(|e| matches!(e, Ev::Resumed)), "{seen:?}");
    assert!(seen.iter().any(|e| matches!(e, Ev::Message(m) if m == "while away")), "{seen:?}");
    assert_eq!((fake.identifies(), fake.resumes()), (1, 1));
    fake.push_message("200", None, alice.clone(), "sentinel");
    assert!(matches!(next(&mut rx).await, Ev::Message(m) if m == "sentinel"), "replayed message arrived twice");

    fake.push_interaction_command("200", Some("300"), alice.clone(), "ask", vec![("q".into(), json!("why"))]);
    assert!(matches!(next(&mut rx).await, Ev::Interaction(n, true) if n == "ask"));
    fake.push_interaction_component("200", None, alice, &hi.id.to_string(), "approve:1");
    assert!(matches!(next(&mut rx).await, Ev::Interaction(n, true) if n == "approve:1@hi"));
    let kinds: Vec<(u8, Option<String>)> =
        fake.interaction_responses().into_iter().map(|r| (r.kind, r.data["content"].as_str().map(str::to_string))).collect();
    assert_eq!(kinds, [(4, Some("pong".to_string())), (6, None)]);

    fake.fail_next("create_message", 1, Fault::RateLimited { retry_after_secs: 0.5, global: false });
    let limited = ChannelId::new(200).say(&http, "again").await.expect_err("429");
    // Discord's 429 body has no `code`, so serenity reports a decode failure with the status kept.
    let serenity::Error::Http(limited) = limited else { panic!("{limited}") };
    assert_eq!(limited.status_code().map(|s| s.as_u16()), Some(429));
    fake.missing_channel("404");
    assert!(ChannelId::new(404).say(&http, "x").await.expect_err("404").to_string().contains("Unknown Channel"));
    shards.shutdown_all().await;
}
