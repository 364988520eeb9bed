//! The hub's bounds against the running binary, attacked with raw WebSocket
//! clients: the process's resident memory stays within what the configured
//! byte bounds allow, sockets per address are capped, and every frame
//! counts against the rate limit.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{Client, http, start};
use crate::support::{Cobrowse, wait_for};

const MIB: u64 = 1024 * 1024;

/// The process's resident memory and its peak so far, in bytes.
fn memory(proxy: &Cobrowse) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.pid()))
        .expect("the process's /proc status");
    let field = |name: &str| -> u64 {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in /proc status"));
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// The value of one metric series, 0 when absent.
async fn metric(proxy: &Cobrowse, series: &str) -> u64 {
    let (_, _, text) = http(proxy, "GET", "/__cobrowse/metrics", &[], "").await;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0, |v| v as u64)
}

/// Waits until the hub counts `n` accepted commands.
async fn commands_accepted(proxy: &Cobrowse, n: u64) {
    wait_for(
        &format!("{n} commands accepted"),
        Duration::from_secs(60),
        || async { (metric(proxy, "cobrowse_hub_commands_total").await >= n).then_some(()) },
        || {
            proxy
                .output()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        },
    )
    .await;
}

/// A command of about `size` bytes.
fn big_command(key: &str, attribute: &str, size: usize) -> String {
    json!({"type": "command", "key": key, "attribute": attribute, "fn": "value", "args": ["x".repeat(size)]}).to_string()
}

#[tokio::test]
async fn customers_flooding_commands_they_never_read_stay_within_the_byte_bounds() {
    // Sixty-kilobyte `all` commands to one key, from customers who never
    // read: every command is echoed to its sender, and every superseded one
    // the live feed keeps for that sender is memory only the feed's bound
    // limits.
    let bound = MIB;
    let proxy = start(&format!(
        "[hub]\nmessages_per_second = 1000000\nmax_bytes_per_session = {bound}\nmax_feed_bytes_per_session = {bound}\nmax_outbound_bytes = {bound}\n"
    ))
    .await;
    let sessions = 5u64;
    let per_session = 600u64;
    let mut customers = Vec::new();
    for _ in 0..sessions {
        let mut c = Client::customer(&proxy, "flooding customer").await;
        c.send(json!({"type": "call"})).await;
        c.expect_next(&proxy, "joined").await;
        customers.push(c);
    }
    let (before, _) = memory(&proxy);
    let text = big_command("top/form#f/input[name=q]", "all", 60_000);
    let floods: Vec<_> = customers
        .into_iter()
        .map(|mut c| {
            let text = text.clone();
            tokio::spawn(async move {
                for _ in 0..per_session {
                    c.send_text(&text).await;
                }
                // Kept open, unread, until the measurement is done.
                c
            })
        })
        .collect();
    let mut customers = Vec::new();
    for f in floods {
        customers.push(f.await.unwrap());
    }
    commands_accepted(&proxy, sessions * per_session).await;
    let (after, peak) = memory(&proxy);
    // Per session: its store, its feed, the customer's outbox, one message
    // being read (four times the 64 KiB default at most) and one written;
    // plus room for the allocator and the runtime.
    let allowed = sessions * (3 * bound + 4 * 64 * 1024 + 64 * 1024) + 24 * MIB;
    eprintln!(
        "flood: resident {} before, {} after, peak {}; growth allowed {}",
        mib(before),
        mib(after),
        mib(peak),
        mib(allowed)
    );
    assert!(
        after.saturating_sub(before) <= allowed && peak.saturating_sub(before) <= allowed,
        "{sessions} sessions flooded with {per_session} commands of 60 KB each grew the process from {} to {} (peak {}), over the {} its bounds allow\n{}",
        mib(before),
        mib(after),
        mib(peak),
        mib(allowed),
        proxy
            .output()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(customers);
}

#[tokio::test]
async fn a_session_filled_to_its_store_bound_costs_about_the_bound() {
    // Each command kept once: a store filled to its bound takes about the
    // bound, not the bound twice over (parsed and as text).
    let bound = 40 * MIB;
    let proxy = start(&format!(
        "[hub]\nmessages_per_second = 1000000\nmax_bytes_per_session = {bound}\n"
    ))
    .await;
    let mut customer = Client::customer(&proxy, "customer").await;
    customer.send(json!({"type": "call"})).await;
    customer.expect_next(&proxy, "joined").await;
    let (before, _) = memory(&proxy);
    // More than fits: the last ones are refused with `limit`.
    let sends = bound / 60_000 + 20;
    for i in 0..sends {
        customer
            .send_text(&big_command(&format!("top/k{i}"), "others", 60_000))
            .await;
    }
    // Messages are handled in order: the answer to this one comes after
    // every command above was stored or refused.
    customer
        .send(json!({"type": "control", "granted": true}))
        .await;
    customer
        .expect_where(&proxy, "status", |s| s["control"] == true)
        .await;
    assert!(
        customer.seen.iter().any(|v| v["code"] == "limit"),
        "the store never reached its bound:\n{}",
        customer.log
    );
    let (after, peak) = memory(&proxy);
    let allowed = bound * 3 / 2 + 4 * MIB;
    eprintln!(
        "store: resident {} before, {} after, peak {}; growth allowed {}",
        mib(before),
        mib(after),
        mib(peak),
        mib(allowed)
    );
    assert!(
        after.saturating_sub(before) <= allowed,
        "a store bound of {} grew the process from {} to {}, over {}\n{}",
        mib(bound),
        mib(before),
        mib(after),
        mib(allowed),
        proxy
            .output()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn idle_sockets_cost_little_each() {
    // All from one address: the listener's per-address cap is raised so the
    // hub's own bounds are what is measured.
    let proxy = start("[server]\nmax_connections_per_address = 1000\n").await;
    let sockets = 300u64;
    // A first socket, so what every socket shares is in the baseline.
    let first = Client::customer(&proxy, "first").await;
    wait_for(
        "the first socket",
        Duration::from_secs(10),
        || async { (metric(&proxy, "cobrowse_hub_connections").await == 1).then_some(()) },
        || proxy.output(),
    )
    .await;
    let (before, _) = memory(&proxy);
    let mut idle = Vec::new();
    for _ in 0..sockets {
        idle.push(Client::customer(&proxy, "idle").await);
    }
    wait_for(
        "every idle socket registered",
        Duration::from_secs(20),
        || async {
            (metric(&proxy, "cobrowse_hub_connections").await == sockets + 1).then_some(())
        },
        || {
            proxy
                .output()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        },
    )
    .await;
    let (after, _) = memory(&proxy);
    let each = after.saturating_sub(before) / sockets;
    eprintln!(
        "idle sockets: resident {} before, {} after {sockets} sockets: {each} bytes each",
        mib(before),
        mib(after)
    );
    assert!(
        each <= 48 * 1024,
        "{sockets} idle sockets cost {each} bytes each (from {} to {})",
        mib(before),
        mib(after)
    );
    drop((first, idle));
}

/// Opens a customer WebSocket; the handshake's error when refused.
async fn try_open(proxy: &Cobrowse) -> Result<super::Ws, WsError> {
    let mut req = proxy
        .ws_url("/__cobrowse/ws?role=customer")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Origin", format!("http://{}", proxy.addr).parse().unwrap());
    connect_async(req).await.map(|(ws, _)| ws)
}

#[tokio::test]
async fn sockets_past_the_per_address_cap_are_refused() {
    let proxy = start("[hub]\nmax_sockets_per_address = 3\n").await;
    let mut open = Vec::new();
    for i in 0..3 {
        open.push(
            try_open(&proxy)
                .await
                .unwrap_or_else(|e| panic!("socket {i} refused: {e}\n{}", proxy.output())),
        );
    }
    match try_open(&proxy).await {
        Err(WsError::Http(response)) => {
            let body =
                String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).to_string();
            assert_eq!(response.status(), 429, "{body}");
            assert!(body.contains("hub.max_sockets_per_address = 3"), "{body}");
        }
        Err(e) => panic!(
            "the fourth socket failed otherwise: {e}\n{}",
            proxy.output()
        ),
        Ok(_) => panic!(
            "a fourth socket from one address was accepted past a cap of 3\n{}",
            proxy.output()
        ),
    }
    assert_eq!(
        metric(
            &proxy,
            "cobrowse_hub_sockets_refused_total{reason=\"per_address\"}"
        )
        .await,
        1
    );
    // A socket that closes gives its place back.
    let mut gone = open.pop().unwrap();
    gone.close(None).await.unwrap();
    let reopened = wait_for(
        "a socket accepted again once one closed",
        Duration::from_secs(10),
        || async { try_open(&proxy).await.ok() },
        || proxy.output(),
    )
    .await;
    drop((open, reopened));
}

#[tokio::test]
async fn binary_frames_are_refused_and_count_against_the_rate() {
    let proxy = start("[hub]\nmessages_per_second = 5\n").await;
    let mut customer = Client::customer(&proxy, "customer").await;
    for _ in 0..40 {
        customer
            .ws
            .send(Message::binary(vec![0u8; 100]))
            .await
            .unwrap();
    }
    let e = customer.error(&proxy, "rate_limited").await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("5 messages per second"),
        "{e}"
    );
    assert!(
        customer.seen.iter().any(|v| v["code"] == "bad_message"),
        "binary frames were not refused:\n{}",
        customer.log
    );
    // The error comes at the first refusal (once per window); the frames
    // after it are counted as the hub reads them.
    wait_for(
        "the refused binary frames counted",
        Duration::from_secs(10),
        || async { (metric(&proxy, "cobrowse_hub_rate_limited_total").await >= 20).then_some(()) },
        || proxy.output(),
    )
    .await;
}

#[tokio::test]
async fn a_frame_far_over_the_message_limit_ends_the_connection() {
    let proxy = start("[hub]\nmax_message_bytes = 1024\n").await;
    let mut customer = Client::customer(&proxy, "customer").await;
    // Over the limit but under four times it: refused, the connection stays.
    customer
        .send_text(&big_command("top/a", "others", 3000))
        .await;
    customer.error(&proxy, "too_large").await;
    // Over four times the limit: not even buffered.
    let _ = customer
        .ws
        .send(Message::text(big_command("top/a", "others", 5000)))
        .await;
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match customer.ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "the connection survived a 5 KB frame over a 1 KiB limit\n{}",
        proxy.output()
    );
    wait_for(
        "the hub to log why it ended the connection",
        Duration::from_secs(5),
        || async {
            proxy
                .output()
                .contains("connection read failed")
                .then_some(())
        },
        || proxy.output(),
    )
    .await;
}

#[tokio::test]
async fn a_rate_limited_connection_is_told_once_per_window() {
    let proxy = start("[hub]\nmessages_per_second = 10\n").await;
    let mut customer = Client::customer(&proxy, "customer").await;
    // 25 messages a second for 2.4 s against 10 a second (burst 20): past
    // the burst, accepted and refused messages alternate.
    let mut pace = tokio::time::interval(Duration::from_millis(40));
    for _ in 0..60 {
        pace.tick().await;
        customer.send(json!({"type": "away"})).await;
    }
    // Once the bucket refills, a message that is answered marks the end of
    // what the flood produced.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    'answered: loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing accepted after the flood:\n{}\n{}",
            customer.log,
            proxy.output()
        );
        customer.send(json!({"type": "hangup"})).await;
        // Read what came until the answer, or a pause before trying again.
        while let Some(v) = customer.next_within(Duration::from_millis(300)).await {
            if v["request"] == "hangup" && v["code"] == "not_in_session" {
                break 'answered;
            }
        }
    }
    let told = customer
        .seen
        .iter()
        .filter(|v| v["code"] == "rate_limited")
        .count();
    let refused = metric(&proxy, "cobrowse_hub_rate_limited_total").await;
    assert!(
        refused >= 10,
        "the flood was not limited ({refused} refused):\n{}",
        customer.log
    );
    assert!(
        (1..=4).contains(&told),
        "{told} `rate_limited` errors for {refused} refusals in about 2.4 s:\n{}",
        customer.log
    );
}
