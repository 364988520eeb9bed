//! The hub driven over channels instead of sockets: the connection logic,
//! the queue, resynchronisation of slow receivers, idle expiry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{sink, stream};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::auth::Account;
use super::memory::MemoryStore;
use super::store::{Bounds, Store};
use super::{Hub, Role, connection};
use crate::config::{Config, Overrides};

const WAIT: Duration = Duration::from_secs(5);

mod handover;

fn config(extra: &str) -> Arc<Config> {
    let text = format!("upstream = \"http://127.0.0.1:9\"\n{extra}");
    Arc::new(Config::parse(&text, None, &Overrides::default()).unwrap())
}

fn hub_with_backlog(config: Arc<Config>, backlog: usize) -> (Hub, Arc<MemoryStore>) {
    let bounds = Bounds {
        max_keys: config.hub.max_keys_per_session,
        max_bytes: config.hub.max_bytes_per_session,
    };
    let store = Arc::new(MemoryStore::new(bounds, backlog));
    (Hub::with_store(config, store.clone()), store)
}

/// Polls `check` until it holds, for at most `WAIT`.
async fn wait_until(mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "condition not reached in {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One end of a connection served by the hub over channels.
struct Peer {
    name: &'static str,
    to_hub: mpsc::Sender<Result<Message, String>>,
    from_hub: mpsc::Receiver<Message>,
    seen: Vec<Value>,
}

impl Peer {
    fn connect(hub: &Hub, name: &'static str, role: Role, outbound: usize) -> Peer {
        let (to_hub, rx) = mpsc::channel::<Result<Message, String>>(1024);
        let (tx, from_hub) = mpsc::channel::<Message>(outbound);
        let incoming = Box::pin(stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|m| (m, rx))
        }));
        let outgoing = Box::pin(sink::unfold(tx, |tx, m: Message| async move {
            tx.send(m).await.map(|()| tx)
        }));
        let account = (role == Role::Operator).then(|| Account {
            user: name.to_string(),
            name: name.to_string(),
        });
        let peer = connection::Peer {
            remote: std::net::Ipv4Addr::LOCALHOST.into(),
            role,
            account,
        };
        tokio::spawn(connection::serve(
            hub.shared().clone(),
            outgoing,
            incoming,
            peer,
        ));
        Peer {
            name,
            to_hub,
            from_hub,
            seen: Vec::new(),
        }
    }

    async fn send(&self, v: Value) {
        self.to_hub
            .send(Ok(Message::text(v.to_string())))
            .await
            .unwrap();
    }

    async fn next(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.from_hub.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("{} got nothing more; it saw {:#?}", self.name, self.seen)
                })
                .unwrap_or_else(|| {
                    panic!("{}: connection closed; it saw {:#?}", self.name, self.seen)
                });
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                self.seen.push(v.clone());
                return v;
            }
        }
    }

    /// Waits for the hub to close the connection; the close code, if it
    /// sent one.
    async fn closed(&mut self) -> Option<u16> {
        loop {
            let m = tokio::time::timeout(WAIT, self.from_hub.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("{} was not closed; it saw {:#?}", self.name, self.seen)
                });
            match m {
                None => return None,
                Some(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Some(Message::Text(t)) => self.seen.push(serde_json::from_str(&t).unwrap()),
                Some(_) => {}
            }
        }
    }

    /// Reads until a message of each of `kinds` arrived (in any order).
    async fn gather(&mut self, kinds: &[&str]) {
        let mut missing: Vec<&str> = kinds.to_vec();
        while !missing.is_empty() {
            let v = self.next().await;
            missing.retain(|k| v["type"] != *k);
        }
    }

    /// The last message of `kind` seen so far.
    fn last(&self, kind: &str) -> Option<&Value> {
        self.seen.iter().rev().find(|v| v["type"] == kind)
    }

    async fn expect(&mut self, kind: &str) -> Value {
        self.expect_where(kind, |_| true).await
    }

    async fn expect_where(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.next().await;
            if v["type"] == kind && pred(&v) {
                return v;
            }
        }
    }
}

/// A customer who called and an operator who responded.
async fn connected(hub: &Hub, operator_outbound: usize) -> (Peer, Peer, String) {
    let mut op = Peer::connect(hub, "op", Role::Operator, operator_outbound);
    op.send(json!({"type": "ready"})).await;
    op.expect("queue").await;
    let mut customer = Peer::connect(hub, "customer", Role::Customer, 4096);
    customer.send(json!({"type": "call"})).await;
    let session = customer.expect("joined").await["session"]
        .as_str()
        .unwrap()
        .to_string();
    op.expect("offer").await;
    op.send(json!({"type": "respond", "session": session}))
        .await;
    op.expect("joined").await;
    op.expect("replay").await;
    customer.expect("status").await;
    (customer, op, session)
}

/// What a terminal holds after applying what it received: the latest
/// arguments per key.
fn apply(state: &mut BTreeMap<String, Value>, v: &Value) {
    match v["type"].as_str() {
        Some("command") => {
            let key = v["key"].as_str().unwrap().to_string();
            if v["fn"] == "navigate" {
                let below = format!("{key}/");
                state.retain(|k, _| !k.starts_with(&below));
            }
            state.insert(key, v["args"].clone());
        }
        Some("replay") => {
            for c in v["commands"].as_array().unwrap() {
                apply(state, c);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn a_slow_receiver_is_resynchronised_from_the_store() {
    let (hub, store) = hub_with_backlog(config(""), 4);
    // The operator's link holds one message: it falls behind at once.
    let (customer, mut op, session) = connected(&hub, 1).await;
    for i in 0..200 {
        let key = format!("top/k{}", i % 17);
        customer.send(json!({"type": "command", "key": key, "attribute": "others", "fn": "value", "args": [i]})).await;
    }
    customer.send(json!({"type": "command", "key": "top/done", "attribute": "others", "fn": "value", "args": ["done"]})).await;
    let mut state = BTreeMap::new();
    let mut replays = 0;
    loop {
        let v = op.next().await;
        if v["type"] == "replay" {
            replays += 1;
        }
        apply(&mut state, &v);
        if state.contains_key("top/done") {
            break;
        }
    }
    assert!(
        replays >= 1,
        "the operator fell behind but was never resynchronised: {:#?}",
        op.seen
    );
    let mut expected = BTreeMap::new();
    for c in store.snapshot(&session).await.unwrap().commands {
        let v: Value = serde_json::from_str(&c.json).unwrap();
        expected.insert(c.key.to_string(), v["args"].clone());
    }
    assert_eq!(state, expected);
}

#[tokio::test]
async fn calls_wait_in_order_and_learn_their_place() {
    let (hub, _) = hub_with_backlog(config(""), 64);
    let mut customers = Vec::new();
    for (i, name) in ["first", "second", "third"].into_iter().enumerate() {
        let mut c = Peer::connect(&hub, name, Role::Customer, 64);
        c.send(json!({"type": "call"})).await;
        c.expect("joined").await;
        let status = c.expect("status").await;
        assert_eq!(
            (status["state"].as_str(), status["position"].as_u64()),
            (Some("queued"), Some(i as u64 + 1))
        );
        customers.push(c);
    }
    let mut op = Peer::connect(&hub, "op", Role::Operator, 64);
    op.send(json!({"type": "ready"})).await;
    let offer = op.expect("offer").await;
    let first = customers[0].seen[0]["session"].clone();
    assert_eq!(offer["session"], first);
    let queue = op.expect("queue").await;
    assert_eq!(queue["calls"].as_array().unwrap().len(), 3);
    assert_eq!(queue["offer"], first);
    // The first caller gives up: the others move up.
    customers[0].send(json!({"type": "hangup"})).await;
    assert_eq!(
        customers[0].expect("ended").await["reason"],
        "customer_hangup"
    );
    customers[1]
        .expect_where("status", |s| s["position"] == 1)
        .await;
    customers[2]
        .expect_where("status", |s| s["position"] == 2)
        .await;
    // ...and the operator is offered the next call.
    let offer = op.expect("offer").await;
    assert_eq!(offer["session"], customers[1].seen[0]["session"]);
}

#[test]
fn sockets_are_counted_per_address_and_ipv6_per_64() {
    use super::registry::{SocketCount, address_of};
    use std::net::IpAddr;
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let (a, b, other) = (
        ip("2001:db8:1:2:aaaa::1"),
        ip("2001:db8:1:2:bbbb::9"),
        ip("2001:db8:1:3::1"),
    );
    assert_eq!(address_of(a), address_of(b));
    assert_ne!(address_of(a), address_of(other));
    assert_eq!(address_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    let count = Arc::new(SocketCount::default());
    let first = count.take(a, 2).unwrap();
    let _second = count.take(b, 2).unwrap();
    assert!(
        count.take(a, 2).is_none(),
        "a third socket from the same /64"
    );
    assert!(count.take(other, 2).is_some());
    drop(first);
    assert!(
        count.take(b, 2).is_some(),
        "a closed socket gives its place back"
    );
}

#[tokio::test]
async fn only_calls_whose_place_moves_are_told() {
    let (hub, _) = hub_with_backlog(config(""), 64);
    let mut customers = Vec::new();
    for (i, name) in ["first", "second", "third"].into_iter().enumerate() {
        let mut c = Peer::connect(&hub, name, Role::Customer, 64);
        c.send(json!({"type": "call"})).await;
        c.expect("joined").await;
        c.expect_where("status", |s| s["position"] == i as u64 + 1)
            .await;
        customers.push(c);
    }
    // Calls behind it moved nobody ahead: the first caller's next message is
    // the answer to its own request, not a `status` per later call.
    customers[0].send(json!({"type": "ready"})).await;
    let next = customers[0].next().await;
    assert_eq!(
        (next["type"].as_str(), next["code"].as_str()),
        (Some("error"), Some("forbidden")),
        "{:#?}",
        customers[0].seen
    );
    // The second gives up: the third moves up and is told; the first is not.
    customers[1].send(json!({"type": "hangup"})).await;
    customers[2]
        .expect_where("status", |s| s["position"] == 2)
        .await;
    customers[0].send(json!({"type": "ready"})).await;
    let next = customers[0].next().await;
    assert_eq!(next["code"], "forbidden", "{:#?}", customers[0].seen);
}

/// Sends a message that is refused and returns what `peer` receives up to
/// and including the refusal: what the hub queued for it meanwhile.
async fn until_refused(peer: &mut Peer, probe: Value) -> Vec<Value> {
    peer.send(probe).await;
    let mut got = Vec::new();
    loop {
        let v = peer.next().await;
        let done = v["type"] == "error";
        got.push(v);
        if done {
            return got;
        }
    }
}

fn kinds(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| match m["position"].as_u64() {
            Some(p) => format!("{}@{p}", m["type"].as_str().unwrap_or("?")),
            None => m["type"].as_str().unwrap_or("?").to_string(),
        })
        .collect()
}

#[tokio::test]
async fn queue_positions_cost_messages_only_where_they_move() {
    const N: usize = 6;
    let (hub, _) = hub_with_backlog(config(""), 64);
    let mut op = Peer::connect(&hub, "op", Role::Operator, 256);
    op.send(json!({"type": "ready"})).await;
    op.expect("queue").await;
    let mut customers = Vec::new();
    for i in 0..N {
        let mut c = Peer::connect(&hub, "customer", Role::Customer, 256);
        c.send(json!({"type": "call"})).await;
        c.expect("joined").await;
        c.expect_where("status", |s| s["position"] == i as u64 + 1)
            .await;
        customers.push(c);
    }
    // Everyone has read what the calls caused (the operator's `queue` may
    // still be coalescing): start counting from here.
    for c in &mut customers[..N - 1] {
        let got = until_refused(c, json!({"type": "ready"})).await;
        assert_eq!(kinds(&got), ["error"], "{}", c.name);
    }
    let _ = until_refused(&mut op, json!({"type": "call"})).await;

    // One more call: nobody ahead of it moved, so nobody ahead is told; the
    // waiting operator's list of calls changed: one `queue`.
    let mut last = Peer::connect(&hub, "last", Role::Customer, 256);
    last.send(json!({"type": "call"})).await;
    last.expect("joined").await;
    last.expect_where("status", |s| s["position"] == N as u64 + 1)
        .await;
    for (i, c) in customers.iter_mut().enumerate() {
        let got = until_refused(c, json!({"type": "ready"})).await;
        assert_eq!(kinds(&got), ["error"], "customer {i} was told again");
    }
    let got = until_refused(&mut op, json!({"type": "call"})).await;
    assert_eq!(kinds(&got), ["queue", "error"], "the operator");
    customers.push(last);

    // A change that moves nothing in the queue (a queued customer grants
    // control) tells that session only, and the operator nothing.
    customers[0]
        .send(json!({"type": "control", "granted": true}))
        .await;
    let got = until_refused(&mut customers[0], json!({"type": "ready"})).await;
    assert_eq!(kinds(&got), ["status@1", "error"]);
    let got = until_refused(&mut op, json!({"type": "call"})).await;
    assert_eq!(kinds(&got), ["error"], "the operator");

    // The third leaves the queue: those ahead of it are not told, each one
    // behind it is told its new place exactly once.
    let gone = 2;
    customers[gone].send(json!({"type": "hangup"})).await;
    customers[gone].expect("ended").await;
    for (i, c) in customers.iter_mut().enumerate() {
        if i == gone {
            continue;
        }
        let got = until_refused(c, json!({"type": "ready"})).await;
        let expected: Vec<String> = if i < gone {
            vec!["error".into()]
        } else {
            vec![format!("status@{i}"), "error".into()]
        };
        assert_eq!(kinds(&got), expected, "customer {i}");
    }
    let got = until_refused(&mut op, json!({"type": "call"})).await;
    assert_eq!(kinds(&got), ["queue", "error"], "the operator");
}

#[tokio::test]
async fn a_session_nobody_is_connected_to_expires() {
    let (hub, store) = hub_with_backlog(config("[hub]\nidle_session_secs = 60\n"), 64);
    let (customer, op, session) = connected(&hub, 64).await;
    drop(customer);
    drop(op);
    let shared = hub.shared().clone();
    wait_until(|| {
        hub.session(&session)
            .is_some_and(|s| s.participants.iter().all(|p| !p.connected))
    })
    .await;
    assert_eq!(
        shared.expire_idle(Instant::now()),
        0,
        "not idle long enough yet"
    );
    assert_eq!(
        shared.expire_idle(Instant::now() + Duration::from_secs(61)),
        1
    );
    assert!(hub.session(&session).is_none());
    wait_until(|| {
        futures_util::FutureExt::now_or_never(store.snapshot(&session)).is_some_and(|r| r.is_err())
    })
    .await;
}

#[tokio::test]
async fn the_query_api_names_the_driver() {
    let (hub, _) = hub_with_backlog(config(""), 64);
    let (customer, _op, session) = connected(&hub, 64).await;
    let joined = customer
        .seen
        .iter()
        .find(|v| v["type"] == "joined")
        .unwrap()
        .clone();
    let view = hub.session(&session).unwrap();
    let driver = view.driver().unwrap();
    assert_eq!(
        (driver.role, driver.id.as_str()),
        (Role::Customer, joined["participant"].as_str().unwrap())
    );
    let operator = view
        .participants
        .iter()
        .find(|p| p.role == Role::Operator)
        .unwrap();
    assert!(view.is_follower(&operator.id));
    assert!(!view.is_follower(&driver.id));
    let (v, p) = hub
        .participant(&session, joined["resume"].as_str().unwrap())
        .unwrap();
    assert_eq!((v.id, p.id), (session.clone(), driver.id.clone()));
    assert!(hub.participant(&session, "nope").is_none());
    assert_eq!(hub.sessions_of_operator("op").len(), 1);
    assert!(hub.sessions_of_operator("other").is_empty());
}

#[tokio::test]
async fn a_participant_gone_past_the_grace_is_taken_out() {
    let (hub, _) = hub_with_backlog(config(""), 64);
    let (mut customer, op, session) = connected(&hub, 64).await;
    let joined = customer
        .seen
        .iter()
        .find(|v| v["type"] == "joined")
        .unwrap()
        .clone();
    let mut tab = Peer::connect(&hub, "tab", Role::Customer, 64);
    tab.send(json!({"type": "join", "session": session, "resume": joined["resume"]}))
        .await;
    tab.expect("replay").await;
    drop(tab);
    drop(op);
    let shared = hub.shared().clone();
    let detached = |hub: &Hub| {
        hub.session(&session)
            .is_some_and(|s| s.participants.iter().filter(|p| !p.connected).count() == 2)
    };
    wait_until(|| detached(&hub)).await;
    assert_eq!(
        shared.drop_detached(Instant::now()),
        0,
        "within the grace they may still resume"
    );
    let later = Instant::now()
        + super::membership::reconnect_grace(&hub.shared().config)
        + Duration::from_secs(1);
    assert_eq!(shared.drop_detached(later), 2);
    // The operator was the last one: the customer is told the session is over.
    let ended = customer.expect("ended").await;
    assert_eq!(ended["reason"], "operator_left");
    assert!(hub.session(&session).is_none());
}

#[tokio::test]
async fn calls_beyond_max_sessions_are_refused_with_no_session() {
    let (hub, _) = hub_with_backlog(config("[hub]\nmax_sessions = 2\n"), 64);
    let mut callers = Vec::new();
    for name in ["first", "second"] {
        let mut c = Peer::connect(&hub, name, Role::Customer, 64);
        c.send(json!({"type": "call"})).await;
        c.expect("joined").await;
        callers.push(c);
    }
    let mut third = Peer::connect(&hub, "third", Role::Customer, 64);
    third.send(json!({"type": "call"})).await;
    let e = third.next().await;
    assert_eq!(
        (
            e["type"].as_str(),
            e["code"].as_str(),
            e["request"].as_str()
        ),
        (Some("error"), Some("limit"), Some("call")),
        "{e}"
    );
    assert!(
        e["message"].as_str().unwrap().contains("max_sessions"),
        "{e}"
    );
    assert_eq!(
        hub.shared().lock().sessions.len(),
        2,
        "a refused call leaves no session"
    );
    // Room again once a session ends.
    callers[0].send(json!({"type": "hangup"})).await;
    callers[0].expect("ended").await;
    third.send(json!({"type": "call"})).await;
    third.expect("joined").await;
}

#[test]
fn the_reconnect_grace_is_configured_and_capped_by_the_idle_expiry() {
    let grace = |extra: &str| super::membership::reconnect_grace(&config(extra));
    assert_eq!(grace(""), Duration::from_secs(120));
    assert_eq!(
        grace("[hub]\nreconnect_grace_secs = 5\n"),
        Duration::from_secs(5)
    );
    assert_eq!(
        grace("[hub]\nreconnect_grace_secs = 500\nidle_session_secs = 60\n"),
        Duration::from_secs(60)
    );
}

/// Records every session end the hub announces, and whether the session was
/// gone from the hub's state when it did (taking the lock in the callback
/// also proves the lock is released by then: it would deadlock otherwise).
fn record_ends(hub: &Hub) -> Arc<std::sync::Mutex<Vec<(String, bool)>>> {
    let ends = Arc::new(std::sync::Mutex::new(Vec::new()));
    let shared = Arc::downgrade(hub.shared());
    let seen = ends.clone();
    hub.on_session_end(move |sid| {
        let gone = shared
            .upgrade()
            .is_some_and(|s| !s.lock().sessions.contains_key(sid));
        seen.lock().unwrap().push((sid.to_string(), gone));
    });
    ends
}

async fn call(hub: &Hub, name: &'static str) -> (Peer, String) {
    let mut c = Peer::connect(hub, name, Role::Customer, 64);
    c.send(json!({"type": "call"})).await;
    let session = c.expect("joined").await["session"]
        .as_str()
        .unwrap()
        .to_string();
    (c, session)
}

#[tokio::test]
async fn every_way_a_session_ends_is_announced_once_after_the_lock() {
    let (hub, _) = hub_with_backlog(config("[hub]\nidle_session_secs = 60\n"), 64);
    // A callback that fails does not keep the others from running.
    hub.on_session_end(|_| panic!("a broken callback"));
    let ends = record_ends(&hub);
    let ended = |sid: &str| {
        ends.lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| s == sid)
            .map(|(_, gone)| *gone)
            .collect::<Vec<_>>()
    };

    // The customer hangs up.
    let (customer, by_customer) = call(&hub, "hangs up").await;
    customer.send(json!({"type": "hangup"})).await;
    wait_until(|| !ended(&by_customer).is_empty()).await;

    // The last operator leaves.
    let (mut customer, op, by_operator) = connected(&hub, 64).await;
    // Not waiting for calls any more, so later calls go to later operators.
    op.send(json!({"type": "away"})).await;
    op.send(json!({"type": "hangup"})).await;
    customer.expect("ended").await;
    wait_until(|| !ended(&by_operator).is_empty()).await;

    // The last operator is gone past the reconnect grace.
    let (mut customer, op, by_grace) = connected(&hub, 64).await;
    drop(op);
    wait_until(|| {
        hub.session(&by_grace)
            .is_some_and(|s| s.participants.iter().any(|p| !p.connected))
    })
    .await;
    hub.shared()
        .drop_detached(Instant::now() + Duration::from_secs(61));
    customer.expect("ended").await;
    assert_eq!(ended(&by_grace), [true]);

    // Nobody is connected past the idle expiry.
    let (customer, by_expiry) = call(&hub, "leaves").await;
    drop(customer);
    wait_until(|| {
        hub.session(&by_expiry)
            .is_some_and(|s| s.participants.iter().all(|p| !p.connected))
    })
    .await;
    hub.shared()
        .expire_idle(Instant::now() + Duration::from_secs(61));
    assert_eq!(ended(&by_expiry), [true]);

    // The hub shuts down with sessions open.
    let (_c, _o, connected_at_shutdown) = connected(&hub, 64).await;
    let (_waiting, by_shutdown) = call(&hub, "waits").await;
    hub.shutdown().await;
    assert!(hub.session(&by_shutdown).is_none() && hub.session(&connected_at_shutdown).is_none());
    // Once each, with the session gone from the state.
    for sid in [
        &by_customer,
        &by_operator,
        &by_grace,
        &by_expiry,
        &by_shutdown,
        &connected_at_shutdown,
    ] {
        assert_eq!(ended(sid), [true], "{sid}");
    }
    assert_eq!(ends.lock().unwrap().len(), 6);
}

/// A store that accepts sessions but fails every write, as a shared store
/// does when it is unreachable.
struct Unreachable(MemoryStore);

impl Store for Unreachable {
    fn open<'a>(
        &'a self,
        session: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<(), super::store::StoreError>> {
        self.0.open(session)
    }
    fn append<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: super::protocol::Command,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<Arc<super::store::Stamped>, super::store::StoreError>,
    > {
        Box::pin(async {
            Err(super::store::StoreError::Unavailable(
                "connection refused".into(),
            ))
        })
    }
    fn snapshot<'a>(
        &'a self,
        session: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<super::store::Snapshot, super::store::StoreError>>
    {
        self.0.snapshot(session)
    }
    fn follow<'a>(
        &'a self,
        session: &'a str,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<(super::store::Subscription, super::store::Snapshot), super::store::StoreError>,
    > {
        self.0.follow(session)
    }
    fn remove<'a>(&'a self, session: &'a str) -> futures_util::future::BoxFuture<'a, ()> {
        self.0.remove(session)
    }
    fn health(&self) -> super::store::StoreHealth {
        super::store::StoreHealth {
            kind: "unreachable",
            down: Some("connection refused".into()),
        }
    }
}

#[tokio::test]
async fn any_store_fits_and_its_failures_are_reported() {
    let config = config("");
    let store = Unreachable(MemoryStore::new(
        Bounds {
            max_keys: 10,
            max_bytes: 10_000,
        },
        16,
    ));
    let hub = Hub::with_store(config, Arc::new(store));
    let (mut customer, _op, _) = connected(&hub, 64).await;
    customer.send(json!({"type": "command", "key": "top", "attribute": "all", "fn": "navigate", "args": ["/"]})).await;
    let e = customer.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["request"].as_str()),
        (Some("unavailable"), Some("command"))
    );
    // The session is still there.
    customer
        .send(json!({"type": "control", "granted": true}))
        .await;
    customer
        .expect_where("status", |s| s["control"] == true)
        .await;
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const KEYS: [&str; 6] = ["top", "top/a", "top/f", "top/f/x", "top/f/g/y", "topx"];

    /// Customer and operator send interleaved, without waiting for each
    /// other; a tab that saw everything live and a tab that joins at the end
    /// hold the same state, and the live one saw every `seq` once, in order.
    fn run(ops: Vec<(bool, usize, bool, u16)>) -> Result<(), TestCaseError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (hub, _) = hub_with_backlog(config(""), 4096);
            let (mut customer, op, session) = connected(&hub, 4096).await;
            let secret = customer.seen.iter().find(|v| v["type"] == "joined").unwrap()["resume"].clone();
            customer.send(json!({"type": "control", "granted": true})).await;
            customer.expect_where("status", |s| s["control"] == true).await;
            let mut live = Peer::connect(&hub, "live tab", Role::Customer, 4096);
            live.send(json!({"type": "join", "session": session, "resume": secret})).await;
            let replay = live.expect("replay").await;
            let mut live_state = BTreeMap::new();
            apply(&mut live_state, &replay);
            let mut last_seq = replay["last_seq"].as_u64().unwrap();

            let total = ops.len();
            for (from_customer, k, navigate, v) in ops {
                // A frame URL key's target is a path on the site.
                let (f, arg) = if navigate { ("navigate", json!(format!("/{v}"))) } else { ("value", json!(v)) };
                let c = json!({"type": "command", "key": KEYS[k], "attribute": "others", "fn": f, "args": [arg]});
                if from_customer { customer.send(c).await } else { op.send(c).await }
            }
            for _ in 0..total {
                let c = live.expect("command").await;
                let seq = c["seq"].as_u64().unwrap();
                prop_assert_eq!(seq, last_seq + 1, "a gap or a duplicate");
                last_seq = seq;
                apply(&mut live_state, &c);
            }

            let mut late = Peer::connect(&hub, "late tab", Role::Customer, 4096);
            late.send(json!({"type": "join", "session": session, "resume": secret})).await;
            let replay = late.expect("replay").await;
            prop_assert_eq!(replay["last_seq"].as_u64(), Some(last_seq));
            let mut late_state = BTreeMap::new();
            apply(&mut late_state, &replay);
            prop_assert_eq!(late_state, live_state);
            Ok(())
        })
    }

    /// Any text at all: the hub answers and the connection stays.
    fn garbage_keeps_the_connection(texts: Vec<String>) -> Result<(), TestCaseError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (hub, _) = hub_with_backlog(config(""), 64);
            let mut customer = Peer::connect(&hub, "customer", Role::Customer, 4096);
            for t in &texts {
                customer
                    .to_hub
                    .send(Ok(Message::text(t.clone())))
                    .await
                    .unwrap();
            }
            // A customer's `away` is always refused, and nothing above sends
            // one: its refusal is the answer to the last message.
            customer.send(json!({"type": "away"})).await;
            loop {
                let v = customer.next().await;
                if v["type"] == "error" && v["request"] == "away" {
                    prop_assert_eq!(&v["code"], "forbidden");
                    break;
                }
            }
            Ok(())
        })
    }

    fn message_like() -> impl Strategy<Value = String> {
        let kinds = prop::sample::select(vec![
            "call", "resume", "join", "command", "control", "hangup", "ready", "respond",
            "decline", "invite", "x",
        ]);
        let values = prop::sample::select(vec![
            "null",
            "1",
            "\"s\"",
            "[]",
            "{}",
            "true",
            "\"top//x\"",
            "\"others\"",
        ]);
        prop_oneof![
            any::<String>(),
            (kinds, values.clone(), values).prop_map(|(k, a, b)| format!(
                "{{\"type\":\"{k}\",\"session\":{a},\"resume\":{b},\"key\":{a},\"attribute\":{b},\"fn\":{a},\"granted\":{b}}}"
            )),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        #[test]
        fn bad_input_never_ends_a_connection(texts in prop::collection::vec(message_like(), 0..40)) {
            garbage_keeps_the_connection(texts)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn late_and_live_participants_agree(ops in prop::collection::vec((any::<bool>(), 0..KEYS.len(), prop::bool::weighted(0.25), any::<u16>()), 0..60)) {
            run(ops)?;
        }
    }
}

#[tokio::test]
async fn one_address_cannot_flood_the_queue_with_calls() {
    let (hub, _) = hub_with_backlog(
        config("[hub]\ncall_burst_per_address = 5\ncalls_per_minute_per_address = 1\n"),
        64,
    );
    let mut customer = Peer::connect(&hub, "customer", Role::Customer, 4096);
    for _ in 0..5 {
        customer.send(json!({"type": "call"})).await;
        customer.expect("joined").await;
        customer.send(json!({"type": "hangup"})).await;
        customer.expect("ended").await;
    }
    customer.send(json!({"type": "call"})).await;
    let e = customer.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["request"].as_str()),
        (Some("rate_limited"), Some("call"))
    );
    assert!(hub.shared().lock().sessions.is_empty());
}

#[tokio::test]
async fn a_bind_token_is_good_once_and_only_while_fresh() {
    let (hub, _) = hub_with_backlog(config(""), 64);
    let (customer, op, session) = connected(&hub, 4096).await;
    let token = customer
        .seen
        .iter()
        .find(|v| v["type"] == "joined")
        .unwrap()["bind"]
        .as_str()
        .unwrap()
        .to_string();
    let op_token = op.seen.iter().find(|v| v["type"] == "joined").unwrap()["bind"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(token, op_token);
    assert!(
        hub.redeem_bind("0".repeat(32).as_str(), &token).is_none(),
        "a token is good for its own session only"
    );
    let (_, p, resume) = hub
        .redeem_bind(&session, &token)
        .expect("a fresh token binds");
    assert_eq!(p.role, Role::Customer);
    assert_eq!(hub.participant(&session, &resume).unwrap().1.id, p.id);
    assert!(
        hub.redeem_bind(&session, &token).is_none(),
        "a token is good once"
    );

    // The operator's token, left unused past its lifetime, is worth nothing.
    {
        let mut st = hub.shared().lock();
        let p = st
            .participants
            .values_mut()
            .find(|p| p.role == Role::Operator)
            .unwrap();
        let (_, issued) = p.bind.as_mut().unwrap();
        *issued = Instant::now()
            .checked_sub(super::membership::BIND_TOKEN_LIFETIME)
            .unwrap();
    }
    assert!(
        hub.redeem_bind(&session, &op_token).is_none(),
        "an expired token binds nothing"
    );
}

/// A burst: as many calls at once as operators waiting. Every call is
/// offered, answered and connected, none waits on another's offer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_calls_meets_as_many_waiting_operators() {
    const N: usize = 200;
    let hub = Hub::with_store(
        config("[hub]\ncall_burst_per_address = 1000\nmax_sessions = 1000\n"),
        Arc::new(MemoryStore::new(
            Bounds {
                max_keys: 100,
                max_bytes: 1 << 20,
            },
            64,
        )),
    );
    burst(&hub, N).await;
}

/// `n` calls at once meeting as many waiting operators: every call is
/// offered, answered and connected; how long it took.
async fn burst(hub: &Hub, n: usize) -> Duration {
    let mut operators = Vec::new();
    for i in 0..n {
        let name: &'static str = Box::leak(format!("op{i}").into_boxed_str());
        let mut op = Peer::connect(hub, name, Role::Operator, 4096);
        op.send(json!({"type": "ready"})).await;
        op.expect("queue").await;
        operators.push(op);
    }
    let customers: Vec<Peer> = (0..n)
        .map(|_| Peer::connect(hub, "customer", Role::Customer, 4096))
        .collect();
    let started = Instant::now();
    for c in &customers {
        c.send(json!({"type": "call"})).await;
    }
    let answering = operators.into_iter().map(|mut op| {
        tokio::spawn(async move {
            let offer = op.expect("offer").await;
            op.send(json!({"type": "respond", "session": offer["session"]}))
                .await;
            op.expect("joined").await;
        })
    });
    for task in answering.collect::<Vec<_>>() {
        task.await
            .expect("every operator is offered a call and joins it");
    }
    for mut c in customers {
        c.expect_where("status", |v| v["state"] == "connected")
            .await;
    }
    started.elapsed()
}
