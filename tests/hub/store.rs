//! The hub over the Redis store (`[store] kind = "redis"`), against the
//! running binary and a real `redis-server`: a call's commands are kept in
//! Redis and fanned out through it, and Redis that stops answering is a
//! clear error to the sender, with the session working again once it
//! answers.

use std::time::Duration;

use serde_json::json;

use super::{Client, command, connected_call, second_operator, start};
use crate::support::redis::Redis;
use crate::support::wait_for;

fn redis_store(redis: &Redis) -> String {
    redis.node_config("it:")
}

#[tokio::test]
async fn a_call_over_the_redis_store() {
    let redis = Redis::start();
    let proxy = start(&format!("{}{}", redis_store(&redis), second_operator())).await;
    let (mut customer, mut op, session) = connected_call(&proxy).await;

    customer
        .send(command("top", "navigate", json!("/shop")))
        .await;
    customer
        .send(command("top/form#f/input[name=q]", "value", json!("shoes")))
        .await;
    op.expect_where(&proxy, "command", |v| v["args"][0] == "shoes")
        .await;
    // Kept in Redis, under the configured prefix and the session's tag.
    let stored = redis.command(&["ZCARD", &format!("it:{{{session}}}:o")]);
    assert_eq!(stored, ":2\r\n", "{}", proxy.output());

    // A second operator joins late: the replay comes from Redis.
    let mut late = Client::operator(&proxy, "late operator", "op2").await;
    late.send(json!({"type": "ready"})).await;
    late.expect(&proxy, "queue").await;
    op.send(json!({"type": "invite"})).await;
    late.expect_where(&proxy, "queue", |q| q["offer"] == session.as_str())
        .await;
    late.send(json!({"type": "respond", "session": session}))
        .await;
    late.expect(&proxy, "joined").await;
    let replay = late.expect_next(&proxy, "replay").await;
    let keys: Vec<&str> = replay["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["top", "top/form#f/input[name=q]"], "{replay}");

    // Redis stops answering: the command is refused, saying so.
    let paused = redis.command(&["CLIENT", "PAUSE", "4000", "ALL"]);
    assert_eq!(paused, "+OK\r\n");
    customer
        .send(command("top/form#f/input[name=q]", "value", json!("boots")))
        .await;
    let refused = customer.error(&proxy, "unavailable").await;
    assert!(
        refused["message"].as_str().unwrap().contains("Redis"),
        "{refused}"
    );
    wait_for(
        "the failure in the log",
        Duration::from_secs(5),
        || async {
            proxy
                .output()
                .contains("Redis store: storing a command failed")
                .then_some(())
        },
        || proxy.output(),
    )
    .await;

    // And answers again: the same session goes on.
    redis.command(&["CLIENT", "UNPAUSE"]);
    customer
        .send(command(
            "top/form#f/input[name=q]",
            "value",
            json!("sandals"),
        ))
        .await;
    op.expect_where(&proxy, "command", |v| v["args"][0] == "sandals")
        .await;
    late.expect_where(&proxy, "command", |v| v["args"][0] == "sandals")
        .await;
}
