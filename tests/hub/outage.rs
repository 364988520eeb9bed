//! Redis unreachable, against the running binary and a real
//! `redis-server` killed mid-session and started again on the same port:
//! healthz says so (503, in our words), the gauge drops, the failures are
//! counted and logged at most once a second, a call is refused with
//! `unavailable` rather than queued; once Redis is back, all of it recovers
//! on its own and a new call works.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Client, command, connected_call, http, second_operator, start};
use crate::observe::sample;
use crate::support::redis::Redis;
use crate::support::{Cobrowse, wait_for};

/// Time for the store to notice: a PING a second, each given a second.
const NOTICE: Duration = Duration::from_secs(8);

async fn healthz(proxy: &Cobrowse) -> (u16, String) {
    let (status, _, body) = http(proxy, "GET", "/__cobrowse/healthz", &[], "").await;
    (status, body)
}

async fn metrics(proxy: &Cobrowse) -> String {
    http(proxy, "GET", "/__cobrowse/metrics", &[], "").await.2
}

async fn wait_for_health(proxy: &Cobrowse, status: u16) -> String {
    wait_for(
        &format!("healthz answering {status}"),
        NOTICE,
        || async {
            let (got, body) = healthz(proxy).await;
            (got == status).then_some(body)
        },
        || proxy.output(),
    )
    .await
}

#[tokio::test]
async fn redis_down_is_reported_refused_and_recovered_from() {
    let mut redis = Redis::start();
    let proxy = start(&format!(
        "{}{}",
        redis.node_config("it:"),
        second_operator()
    ))
    .await;
    let body = wait_for_health(&proxy, 200).await;
    assert!(body.contains("store: redis answers"), "{body}");
    let text = metrics(&proxy).await;
    assert_eq!(sample(&text, "cobrowse_store_up", &[]), Some(1.0), "{text}");

    let (mut customer, mut op, _) = connected_call(&proxy).await;
    customer
        .send(command("top/form#f/input[name=q]", "value", json!("shoes")))
        .await;
    op.expect_where(&proxy, "command", |v| v["args"][0] == "shoes")
        .await;

    // Redis goes away mid-session.
    redis.stop();
    let down_at = Instant::now();
    let body = wait_for_health(&proxy, 503).await;
    assert!(body.contains("Redis does not answer"), "{body}");
    // In our words: nothing of Redis's own (its address) reaches a client.
    let port = redis.url().rsplit(':').next().unwrap().to_string();
    assert!(
        !body.contains("127.0.0.1") && !body.contains(port.trim_end_matches("/0")),
        "{body}"
    );
    let text = metrics(&proxy).await;
    assert_eq!(sample(&text, "cobrowse_store_up", &[]), Some(0.0), "{text}");
    let failures: f64 = text
        .lines()
        .filter(|l| l.starts_with("cobrowse_store_failures_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert!(failures >= 1.0, "{text}");

    // The customer's typing is refused, saying so.
    customer
        .send(command("top/form#f/input[name=q]", "value", json!("boots")))
        .await;
    let refused = customer.error(&proxy, "unavailable").await;
    assert_eq!(refused["request"], "command", "{refused}");

    // A new call is refused with the message, not queued to be lost.
    let mut late = Client::customer(&proxy, "late customer").await;
    late.send(json!({"type": "call"})).await;
    let refused = late.error(&proxy, "unavailable").await;
    assert_eq!(refused["request"], "call", "{refused}");
    let text = metrics(&proxy).await;
    assert_eq!(
        sample(&text, "cobrowse_hub_queued_calls", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "cobrowse_hub_sessions", &[]),
        Some(1.0),
        "{text}"
    );

    // While it lasts, the outage keeps being noticed (the health check's
    // PING) but logged at most once a second, and said once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = proxy.stderr();
    let outage = down_at.elapsed().as_secs() + 1;
    let logged = log
        .lines()
        .filter(|l| l.contains("failures_not_logged"))
        .count() as u64;
    assert!(
        (1..=outage).contains(&logged),
        "{logged} failure lines in {outage} s:\n{log}"
    );
    assert_eq!(
        log.matches("Redis store: Redis does not answer").count(),
        1,
        "{log}"
    );

    // Redis is back (empty: it kept nothing): healthz, the gauge and calls
    // recover without a restart of cobrowse.
    redis.run().expect("redis-server starts again on its port");
    let body = wait_for_health(&proxy, 200).await;
    assert!(body.contains("store: redis answers"), "{body}");
    let text = metrics(&proxy).await;
    assert_eq!(sample(&text, "cobrowse_store_up", &[]), Some(1.0), "{text}");
    assert!(
        proxy
            .stderr()
            .contains("Redis store: Redis answers; calls and commands are accepted"),
        "{}",
        proxy.output()
    );

    let mut op2 = Client::operator(&proxy, "second operator", "op2").await;
    op2.send(json!({"type": "ready"})).await;
    op2.expect(&proxy, "queue").await;
    late.send(json!({"type": "call"})).await;
    let joined = late.expect(&proxy, "joined").await;
    let session = joined["session"].as_str().unwrap().to_string();
    op2.expect_where(&proxy, "offer", |v| v["session"] == session.as_str())
        .await;
    op2.send(json!({"type": "respond", "session": session}))
        .await;
    op2.expect(&proxy, "joined").await;
    late.expect_where(&proxy, "status", |v| v["state"] == "connected")
        .await;
    late.send(command(
        "top/form#f/input[name=q]",
        "value",
        json!("sandals"),
    ))
    .await;
    op2.expect_where(&proxy, "command", |v| v["args"][0] == "sandals")
        .await;
}

/// An operator who joins while Redis does not answer is told so, and the
/// page reaches it once Redis answers again: its follow is tried again, not
/// dropped.
#[tokio::test]
async fn a_join_during_the_outage_catches_up_when_redis_answers() {
    let redis = Redis::start();
    let proxy = start(&format!(
        "{}{}",
        redis.node_config("it:"),
        second_operator()
    ))
    .await;
    let (mut customer, mut op, session) = connected_call(&proxy).await;
    customer
        .send(command("top/form#f/input[name=q]", "value", json!("shoes")))
        .await;
    op.expect_where(&proxy, "command", |v| v["args"][0] == "shoes")
        .await;
    let mut late = Client::operator(&proxy, "late operator", "op2").await;
    late.send(json!({"type": "ready"})).await;
    late.expect(&proxy, "queue").await;

    // Redis hangs; the second operator is invited and responds.
    redis.freeze();
    op.send(json!({"type": "invite"})).await;
    late.expect_where(&proxy, "queue", |q| q["offer"] == session.as_str())
        .await;
    late.send(json!({"type": "respond", "session": session}))
        .await;
    late.expect(&proxy, "joined").await;
    late.error(&proxy, "unavailable").await;

    // Redis answers again: the replay arrives, then live commands.
    redis.thaw();
    let replay = late.expect(&proxy, "replay").await;
    assert!(
        replay["commands"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["args"][0] == "shoes"),
        "{replay}"
    );
    customer
        .send(command("top/form#f/input[name=q]", "value", json!("boots")))
        .await;
    late.expect_where(&proxy, "command", |v| v["args"][0] == "boots")
        .await;
}
