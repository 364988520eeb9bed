//! A node with a Redis store stops (SIGTERM, as in a rolling restart) or is
//! killed in the middle of a shared session, and another takes over on the
//! same address: a node that stops hands its sessions over (its
//! participants are told 1012) instead of ending them; one that is killed
//! leaves them in the checkpoint. Either way the widget and the console
//! reconnect and `resume` on the next node, and what the customer typed
//! while no node served reaches the operator once the agent has published
//! its page again.

use std::net::TcpListener;
use std::time::Duration;

use super::*;
use crate::support::TempDir;
use crate::support::redis::Redis;

/// A port whose next one is free too (the console's listener defaults to
/// it), so a second node can listen where the first did.
fn free_pair() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

async fn node(config: &std::path::Path, listen: &str) -> Cobrowse {
    Cobrowse::start(&["--config", config.to_str().unwrap(), "--listen", listen]).await
}

/// How the first node goes.
#[derive(Clone, Copy, PartialEq)]
enum Gone {
    Stopped,
    Killed,
}

#[tokio::test]
async fn a_node_that_stops_hands_the_session_over_and_typing_meanwhile_arrives() {
    the_next_node_goes_on(Gone::Stopped).await;
}

#[tokio::test]
async fn a_killed_nodes_session_goes_on_on_the_next_and_typing_meanwhile_arrives() {
    the_next_node_goes_on(Gone::Killed).await;
}

async fn the_next_node_goes_on(gone: Gone) {
    let redis = Redis::start();
    let dir = TempDir::new();
    let config = dir.path.join("proxy.toml");
    std::fs::write(
        &config,
        format!("{}\n{}", demo_config(), redis.node_config("cobrowse:")),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_pair());
    let mut s = Shared::on(node(&config, &listen).await, "/form.html").await;
    s.customer.type_into("#notes", "before").await;
    s.on_operator(
        "the customer's typing",
        "document.querySelector('#notes').value === 'before'",
    )
    .await;

    match gone {
        // The node stops: it hands the session over rather than ending it.
        Gone::Stopped => s.server.terminate(),
        // Killed: it says nothing to anyone.
        Gone::Killed => s.server.kill(),
    }
    let stopped = s.server.exited_within(Duration::from_secs(15)).await;
    let said = s.server.output();
    assert!(stopped.is_some(), "the node did not stop:\n{said}");
    if gone == Gone::Stopped {
        assert!(
            said.contains("connections closed with 1012"),
            "the node did not hand its session over:\n{said}"
        );
    }

    // The customer types while no node serves.
    s.customer.type_into("#notes", " during").await;

    // The next node takes over where the first listened.
    s.server = node(&config, &listen).await;
    s.on_operator(
        "what the customer typed while no node served",
        "document.querySelector('#notes').value === 'before during'",
    )
    .await;
    s.customer_connected("the widget connected again").await;
    until(
        &s.operator,
        "the console connected again",
        &format!("{CONSOLE_STATUS}.startsWith('Connected')"),
        &s.tabs(),
        &s.server,
    )
    .await;
    let log = s.server.output();
    assert!(
        log.contains("took over the shared sessions from the checkpoint")
            && log.contains("sessions=1"),
        "{log}"
    );

    // And the session goes on both ways.
    s.customer.type_into("#notes", " after").await;
    s.on_operator(
        "the customer's typing on the new node",
        "document.querySelector('#notes').value === 'before during after'",
    )
    .await;
}
