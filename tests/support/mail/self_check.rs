//! Drives the mail peers with the runtime's IMAP client and with lettre: a
//! message seeded by APPEND comes back byte for byte over plain, STARTTLS
//! and implicit TLS; only `mark_seen` sets `\Seen`; IDLE wakes on new mail,
//! times out and stops promptly; the SMTP sink records envelopes and TLS.

use super::{AGENT_USER, Captured, Dovecot, SmtpSink};
use agent_runtime::config::{MailTls, Secret};
use agent_runtime::connectors::email::imap::{self, IdleOutcome, ImapError, ImapSession};
use lettre::message::Mailbox;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn raw_message(n: u32) -> Vec<u8> {
    format!(
        "From: Ann <ann@example.test>\r\nTo: {AGENT_USER}\r\nSubject: test {n}\r\nMessage-ID: <m{n}@example.test>\r\n\
         Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nHello number {n}.\r\n"
    )
    .into_bytes()
}

async fn connect(d: &Dovecot, tls: MailTls) -> ImapSession {
    let cfg = d.email_config(tls);
    tokio::time::timeout(Duration::from_secs(10), imap::connect(&cfg))
        .await
        .expect("connect timed out")
        .unwrap_or_else(|e| panic!("connect over {tls:?}: {e}\n{}", d.log()))
}

#[tokio::test]
async fn appended_mail_reads_back_over_plain_starttls_and_implicit_tls() {
    let d = Dovecot::start().await;
    let raw = raw_message(1);
    let uid = d.append(AGENT_USER, &raw).await;
    for tls in [MailTls::Plain, MailTls::StartTls, MailTls::Implicit] {
        let mut s = connect(&d, tls).await;
        assert!(s.supports_idle(), "Dovecot offers IDLE");
        let mbox = s.select("INBOX").await.expect("select");
        assert_eq!((mbox.exists, mbox.uid_next), (1, Some(uid + 1)), "{tls:?}");
        assert!(mbox.uid_validity > 0);
        let got = s.fetch_after(0, 10).await.expect("fetch");
        assert_eq!(got.len(), 1, "{tls:?}");
        assert_eq!((got[0].uid, got[0].raw.as_slice()), (uid, raw.as_slice()), "{tls:?}");
        s.logout().await;
    }
    // Fetching is a peek: nothing became \Seen.
    assert_eq!(d.seen_uids(AGENT_USER).await, Vec::<u32>::new());
    assert!(d.log().contains("TLS"), "Dovecot logged the TLS sessions:\n{}", d.log());
}

#[tokio::test]
async fn fetch_after_returns_only_newer_uids_oldest_first_and_capped() {
    let d = Dovecot::start().await;
    let mut uids = Vec::new();
    for n in 1..=3 {
        uids.push(d.append(AGENT_USER, &raw_message(n)).await);
    }
    let mut s = connect(&d, MailTls::Plain).await;
    s.select("INBOX").await.expect("select");
    let first: Vec<u32> = s.fetch_after(0, 2).await.expect("fetch").iter().map(|f| f.uid).collect();
    assert_eq!(first, uids[..2]);
    let rest = s.fetch_after(uids[1], 10).await.expect("fetch");
    assert_eq!(rest.iter().map(|f| f.uid).collect::<Vec<_>>(), uids[2..]);
    assert!(String::from_utf8_lossy(&rest[0].raw).contains("Subject: test 3"));
    // `UID n:*` matches the highest message even when n is above it.
    assert!(s.fetch_after(uids[2], 10).await.expect("fetch").is_empty());
    assert!(s.fetch_after(uids[2] + 100, 10).await.expect("fetch").is_empty());

    s.mark_seen(&[uids[2], uids[0]]).await.expect("mark seen");
    assert_eq!(d.seen_uids(AGENT_USER).await, vec![uids[0], uids[2]]);
    assert!(d.flags_of(AGENT_USER, uids[0]).await.contains(&"\\Seen".to_string()));
    assert!(!d.flags_of(AGENT_USER, uids[1]).await.contains(&"\\Seen".to_string()));
    s.logout().await;
}

#[tokio::test]
async fn untrusted_certificates_wrong_passwords_and_remote_plain_are_refused() {
    let d = Dovecot::start().await;
    let mut cfg = d.email_config(MailTls::StartTls);
    cfg.ca_file = None;
    let err = imap::connect(&cfg).await.expect_err("an unknown CA is not trusted");
    assert!(matches!(err, ImapError::Tls { .. }) && !err.is_permanent(), "{err:?}");
    cfg.ca_file = Some(d.ca_path().with_file_name("missing.pem"));
    let err = imap::connect(&cfg).await.expect_err("a missing CA file");
    assert!(matches!(err, ImapError::CaFile { .. }) && err.is_permanent(), "{err:?}");

    let mut cfg = d.email_config(MailTls::StartTls);
    cfg.password = Secret::new("wrong-horse-battery");
    let err = imap::connect(&cfg).await.expect_err("wrong password");
    assert!(err.is_auth(), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("wrong-horse-battery"), "the password stays out of errors: {err:?}");

    let mut cfg = d.email_config(MailTls::Plain);
    cfg.host = "mail.example.test".into();
    let err = imap::connect(&cfg).await.expect_err("plain to a remote host");
    assert!(matches!(err, ImapError::PlainNotLoopback { .. }) && err.is_permanent(), "{err:?}");

    d.add_user("bob@example.test", "hunter2").await;
    let mut cfg = d.email_config(MailTls::StartTls);
    (cfg.username, cfg.password) = ("bob@example.test".into(), Secret::new("hunter2"));
    imap::connect(&cfg).await.expect("an added user logs in").logout().await;
}

#[tokio::test]
async fn idle_wakes_on_new_mail_times_out_and_stops_promptly() {
    let d = Dovecot::start().await;
    let mut s = connect(&d, MailTls::StartTls).await;
    s.select("INBOX").await.expect("select");
    let never = CancellationToken::new();

    let (s, outcome) = s.idle(Duration::from_millis(300), &never).await.expect("idle");
    assert_eq!(outcome, IdleOutcome::Timeout);

    let idling = tokio::spawn(async move {
        let started = Instant::now();
        let (s, outcome) = s.idle(Duration::from_secs(30), &CancellationToken::new()).await.expect("idle");
        (s, outcome, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let uid = d.append(AGENT_USER, &raw_message(7)).await;
    let (mut s, outcome, took) =
        tokio::time::timeout(Duration::from_secs(2), idling).await.expect("IDLE saw the new mail within 2 s").expect("join");
    assert_eq!(outcome, IdleOutcome::NewData, "after {took:?}");
    // The session is usable after DONE.
    assert_eq!(s.fetch_after(0, 10).await.expect("fetch").iter().map(|f| f.uid).collect::<Vec<_>>(), vec![uid]);

    let stop = CancellationToken::new();
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stopper.cancel();
    });
    let started = Instant::now();
    let (s, outcome) = s.idle(Duration::from_secs(30), &stop).await.expect("idle");
    let took = started.elapsed();
    assert_eq!(outcome, IdleOutcome::Stopped);
    assert!(took < Duration::from_millis(200 + 500), "stop ended IDLE after {took:?}");
    s.logout().await;
}

/// Dovecot announces new mail once, in the reply to whatever command comes
/// next; IDLE started afterwards would not repeat it.
#[tokio::test]
async fn new_mail_announced_during_a_command_ends_the_next_idle_at_once() {
    let d = Dovecot::start().await;
    let mut s = connect(&d, MailTls::Plain).await;
    s.select("INBOX").await.expect("select");
    d.append(AGENT_USER, &raw_message(1)).await;
    // A search above every UID: returns nothing, but its reply carries EXISTS.
    assert!(s.fetch_after(1000, 10).await.expect("fetch").is_empty());
    let (mut s, outcome) = tokio::time::timeout(Duration::from_secs(2), s.idle(Duration::from_secs(30), &CancellationToken::new()))
        .await
        .expect("the remembered EXISTS ends IDLE at once")
        .expect("idle");
    assert_eq!(outcome, IdleOutcome::NewData);
    assert_eq!(s.fetch_after(0, 10).await.expect("fetch").len(), 1);
    // Reported once: the next IDLE waits for real news.
    let (s, outcome) = s.idle(Duration::from_millis(300), &CancellationToken::new()).await.expect("idle");
    assert_eq!(outcome, IdleOutcome::Timeout);
    s.logout().await;
}

#[tokio::test]
async fn a_vanished_server_is_a_transient_error() {
    let d = Dovecot::start().await;
    let cfg = d.email_config(MailTls::Plain);
    let mut s = connect(&d, MailTls::StartTls).await;
    s.select("INBOX").await.expect("select");
    let idling = tokio::spawn(async move { s.idle(Duration::from_secs(30), &CancellationToken::new()).await.map(|(_, outcome)| outcome) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    d.shutdown().await;
    let err = tokio::time::timeout(Duration::from_secs(5), idling)
        .await
        .expect("IDLE noticed the shutdown")
        .expect("join")
        .expect_err("the server is gone");
    assert!(matches!(err, ImapError::Closed { .. }) && !err.is_permanent(), "{err:?}");
    let err = imap::connect(&cfg).await.expect_err("nobody listens");
    assert!(matches!(err, ImapError::Connect { .. }) && !err.is_permanent(), "{err:?}");
}

async fn send(sink: &SmtpSink, tls: bool, n: u32) {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1").port(sink.port());
    if tls {
        let ca = Certificate::from_pem(sink.ca_pem().as_bytes()).expect("CA");
        let params = TlsParameters::builder("localhost".into()).add_root_certificate(ca).build_rustls().expect("TLS parameters");
        builder = builder.tls(Tls::Required(params));
    }
    let mail = Message::builder()
        .from("agent@example.test".parse::<Mailbox>().expect("from"))
        .to(format!("rcpt{n}@example.test").parse::<Mailbox>().expect("to"))
        .subject(format!("sink {n}"))
        .body(format!("body {n}\r\n"))
        .expect("message");
    builder.build().send(mail).await.unwrap_or_else(|e| panic!("send over tls={tls}: {e}"));
}

#[tokio::test]
async fn smtp_sink_records_plain_and_starttls_mail_with_envelopes() {
    let sink = SmtpSink::start().await;
    send(&sink, false, 1).await;
    send(&sink, true, 2).await;
    let got: Vec<Captured> = sink.wait_messages(2, Duration::from_secs(5)).await;
    let summary: Vec<(&str, Vec<&str>, bool)> =
        got.iter().map(|c| (c.mail_from.as_str(), c.rcpt_to.iter().map(String::as_str).collect(), c.tls)).collect();
    assert_eq!(
        summary,
        vec![("agent@example.test", vec!["rcpt1@example.test"], false), ("agent@example.test", vec!["rcpt2@example.test"], true)]
    );
    assert!(String::from_utf8_lossy(&sink.messages()[1]).contains("Subject: sink 2"));

    sink.set_reply(Some("451 4.3.0 try again later"));
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1").port(sink.port()).build();
    let mail = Message::builder()
        .from("agent@example.test".parse::<Mailbox>().expect("from"))
        .to("rcpt3@example.test".parse::<Mailbox>().expect("to"))
        .body(String::from("x"))
        .expect("message");
    let err = transport.send(mail).await.expect_err("the injected 451");
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(sink.messages().len(), 2, "a refused message is not stored");
}
