//! The store contract (`store.rs`), one body run against every store: the
//! in-memory one and the Redis one (a real `redis-server` per test, from
//! the integration tests' fixture). Then what only a shared store has: two
//! nodes, a lost link, Redis unreachable, expiry.

#[path = "../../tests/support/redis.rs"]
pub(crate) mod fixture;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::memory::MemoryStore;
use super::protocol::{Attribute, Command};
use super::redis::RedisStore;
use super::store::{
    Bounds, FeedError, STAMPED_OVERHEAD, Snapshot, Stamped, Store, StoreError, StoreHealth,
};
use fixture::Redis;

const ROOMY: Bounds = Bounds {
    max_keys: 1000,
    max_bytes: 1 << 20,
};

/// How long a test waits for a condition before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// Which store a contract body runs against; keeps a Redis server alive for
/// as long as the test holds it.
enum Kind {
    Memory,
    Redis(Redis),
}

impl Kind {
    fn redis() -> Kind {
        Kind::Redis(Redis::start())
    }

    fn store(&self, bounds: Bounds, backlog: usize) -> Arc<dyn Store> {
        match self {
            Kind::Memory => Arc::new(MemoryStore::new(bounds, backlog)),
            Kind::Redis(r) => Arc::new(redis_store(r, bounds, backlog)),
        }
    }
}

fn redis_store(r: &Redis, bounds: Bounds, backlog: usize) -> RedisStore {
    RedisStore::new(
        &r.url(),
        "test:",
        bounds,
        backlog,
        Duration::from_secs(3600),
    )
    .unwrap()
}

fn cmd(key: &str, function: &str, arg: &str) -> Command {
    Command {
        key: key.into(),
        attribute: Attribute::Others,
        function: function.into(),
        args: vec![Value::from(arg)],
    }
}

fn first_arg(c: &Stamped) -> Value {
    serde_json::from_str::<Value>(&c.json).unwrap()["args"][0].clone()
}

/// Key and first argument of each command, read back from its wire form.
fn keys(s: &Snapshot) -> Vec<(String, String)> {
    s.commands
        .iter()
        .map(|c| {
            (
                c.key.to_string(),
                first_arg(c).as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn opened(kind: &Kind, bounds: Bounds, backlog: usize) -> Arc<dyn Store> {
    let store = kind.store(bounds, backlog);
    store.open("s").await.unwrap();
    store
}

async fn put(store: &Arc<dyn Store>, sender: &str, key: &str, function: &str, arg: &str) {
    store
        .append("s", sender, cmd(key, function, arg))
        .await
        .unwrap();
}

// ---- the contract ---------------------------------------------------------

async fn same_key_overwrites_and_moves_to_the_end(kind: Kind) {
    let store = opened(&kind, ROOMY, 16).await;
    put(&store, "p1", "top/a", "value", "1").await;
    put(&store, "p1", "top/b", "value", "2").await;
    let stamped = store
        .append("s", "p2", cmd("top/a", "value", "3"))
        .await
        .unwrap();
    let s = store.snapshot("s").await.unwrap();
    assert_eq!(keys(&s), owned(&[("top/b", "2"), ("top/a", "3")]));
    assert_eq!(s.last_seq, 3);
    // The wire form is exactly what receivers get, stamped.
    let stored = &s.commands[1];
    assert_eq!(&*stored.json, &*stamped.json);
    assert_eq!(
        stored.json.as_str(),
        Stamped::new("s", "p2", 3, cmd("top/a", "value", "3"))
            .json
            .as_str()
    );
    assert_eq!((stored.seq, stored.sender.as_str()), (3, "p2"));
    assert_eq!(
        stored.bytes(),
        stored.json.len() + "top/a".len() + "p2".len() + STAMPED_OVERHEAD
    );
}

async fn a_frame_url_drops_the_frames_subtree_only(kind: Kind) {
    let store = opened(&kind, ROOMY, 16).await;
    put(&store, "p1", "top", "navigate", "/one").await;
    put(&store, "p1", "top/pay", "navigate", "/pay").await;
    put(&store, "p1", "top/pay/input[name=n]", "value", "4111").await;
    put(&store, "p1", "top/form#f", "value", "x").await;
    put(&store, "p1", "topmost", "value", "sibling").await;
    put(&store, "p1", "top.x", "value", "sibling2").await;
    put(&store, "p1", "top/pay", "navigate", "/pay2").await;
    assert_eq!(
        keys(&store.snapshot("s").await.unwrap()),
        owned(&[
            ("top", "/one"),
            ("top/pay", "/pay2"),
            ("top/form#f", "x"),
            ("topmost", "sibling"),
            ("top.x", "sibling2")
        ])
    );
    put(&store, "p1", "top", "navigate", "/two").await;
    assert_eq!(
        keys(&store.snapshot("s").await.unwrap()),
        owned(&[
            ("top", "/two"),
            ("topmost", "sibling"),
            ("top.x", "sibling2")
        ])
    );
}

async fn replay_puts_frame_urls_shallow_to_deep_then_parts_in_write_order(kind: Kind) {
    let store = opened(&kind, ROOMY, 16).await;
    put(&store, "p1", "top/a", "value", "a").await;
    put(&store, "p1", "top/f1/f2", "navigate", "/deep").await;
    put(&store, "p1", "top/b", "value", "b").await;
    put(&store, "p1", "top/f1", "navigate", "/mid").await;
    put(&store, "p1", "top/g", "navigate", "/mid2").await;
    put(&store, "p1", "top", "scroll", "0").await;
    let s = store.snapshot("s").await.unwrap();
    // `top/f1` navigating after `top/f1/f2` dropped it.
    assert_eq!(
        keys(&s),
        owned(&[
            ("top/f1", "/mid"),
            ("top/g", "/mid2"),
            ("top/a", "a"),
            ("top/b", "b"),
            ("top", "0")
        ])
    );
    let seqs: Vec<u64> = s.commands.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [4, 5, 1, 3, 6]);
}

async fn bounds_refuse_without_changing_anything(kind: Kind) {
    let tight = Bounds {
        max_keys: 2,
        max_bytes: 1 << 20,
    };
    let store = opened(&kind, tight, 16).await;
    put(&store, "p1", "top/a", "value", "a").await;
    put(&store, "p1", "top/b", "value", "b").await;
    let e = store
        .append("s", "p1", cmd("top/c", "value", "c"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Limit(ref m) if m.contains("2 keys")),
        "{e:?}"
    );
    let s = store.snapshot("s").await.unwrap();
    assert_eq!((s.commands.len(), s.last_seq), (2, 2));
    // Overwriting an existing key needs no new room.
    put(&store, "p1", "top/a", "value", "A").await;
    // A frame URL that drops a subtree makes room.
    put(&store, "p1", "top", "navigate", "/next").await;
    let s = store.snapshot("s").await.unwrap();
    assert_eq!(keys(&s), owned(&[("top", "/next")]));
    assert_eq!(s.last_seq, 4);

    let one = Stamped::new("s", "p1", 1, cmd("top/a", "value", "a")).bytes();
    let small = Bounds {
        max_keys: 100,
        max_bytes: one * 2 + 5,
    };
    let again = kind_again(&kind);
    let store = opened(&again, small, 16).await;
    put(&store, "p1", "top/a", "value", "a").await;
    put(&store, "p1", "top/b", "value", "b").await;
    let e = store
        .append(
            "s",
            "p1",
            cmd("top/c", "value", "a much longer value than before"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Limit(ref m) if m.contains("bytes")),
        "{e:?}"
    );
    let s = store.snapshot("s").await.unwrap();
    assert_eq!((s.commands.len(), s.last_seq), (2, 2));
    // Replacing a command frees what it cost.
    put(&store, "p1", "top/a", "value", "b").await;
    put(&store, "p1", "top/b", "value", "c").await;
}

/// The same kind of store, empty: another Redis server for the Redis store.
fn kind_again(kind: &Kind) -> Kind {
    match kind {
        Kind::Memory => Kind::Memory,
        Kind::Redis(_) => Kind::redis(),
    }
}

async fn a_resynchronising_replay_leaves_out_the_receivers_own_commands(kind: Kind) {
    let store = opened(&kind, ROOMY, 16).await;
    put(&store, "p1", "top/mine", "value", "1").await;
    put(&store, "p2", "top/theirs", "value", "2").await;
    let echoed = Command {
        attribute: Attribute::All,
        ..cmd("top/echoed", "pointer", "3")
    };
    store.append("s", "p1", echoed).await.unwrap();
    let snapshot = store.snapshot("s").await.unwrap();
    let keys_in = |json: String| -> Vec<String> {
        let v: Value = serde_json::from_str(&json).unwrap();
        v["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["key"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        keys_in(snapshot.replay_json("s")),
        ["top/mine", "top/theirs", "top/echoed"]
    );
    assert_eq!(
        keys_in(snapshot.replay_json_for("s", Some("p1"))),
        ["top/theirs", "top/echoed"]
    );
    assert_eq!(
        keys_in(snapshot.replay_json_for("s", Some("p3"))),
        ["top/mine", "top/theirs", "top/echoed"]
    );
}

async fn follow_then_live_has_no_gap_and_no_duplicate(kind: Kind) {
    let store = opened(&kind, ROOMY, 16).await;
    put(&store, "p1", "top/a", "value", "1").await;
    let (mut live, snap) = store.follow("s").await.unwrap();
    put(&store, "p1", "top/a", "value", "2").await;
    assert_eq!(snap.last_seq, 1);
    assert_eq!(keys(&snap), owned(&[("top/a", "1")]));
    let next = tokio::time::timeout(PATIENCE, live.recv()).await.unwrap();
    assert_eq!(next.unwrap().seq, 2);
    assert!(matches!(
        store.append("gone", "p1", cmd("top", "x", "y")).await,
        Err(StoreError::UnknownSession)
    ));
    assert!(matches!(
        store.snapshot("gone").await,
        Err(StoreError::UnknownSession)
    ));
    store.remove("s").await;
    let end = tokio::time::timeout(PATIENCE, live.recv()).await.unwrap();
    assert_eq!(end.unwrap_err(), FeedError::Closed);
    assert!(matches!(
        store.append("s", "p1", cmd("top", "x", "y")).await,
        Err(StoreError::UnknownSession)
    ));
}

async fn a_subscriber_that_falls_behind_is_told(kind: Kind) {
    let store = opened(&kind, ROOMY, 2).await;
    let (mut live, _) = store.follow("s").await.unwrap();
    for i in 0..5 {
        put(&store, "p1", &format!("top/{i}"), "value", "v").await;
    }
    // Waits until the last one is delivered: on the way, the receiver was
    // told what it missed, and missed plus received is everything.
    let (mut received, mut missed) = (0, 0);
    loop {
        match tokio::time::timeout(PATIENCE, live.recv()).await.unwrap() {
            Ok(c) => {
                received += 1;
                if c.seq == 5 {
                    break;
                }
            }
            Err(FeedError::Lagged(n)) => missed += n,
            Err(FeedError::Closed) => panic!("closed"),
        }
    }
    assert!(
        missed > 0,
        "a receiver 5 behind a backlog of 2 was not told"
    );
    assert_eq!(received + missed, 5);
    let replay = store.snapshot("s").await.unwrap().replay_json("s");
    let v: Value = serde_json::from_str(&replay).unwrap();
    assert_eq!(v["type"], "replay");
    assert_eq!(v["commands"].as_array().unwrap().len(), 5);
    assert_eq!(v["last_seq"], 5);
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_memory {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Kind::Memory).await
            })*
        }
        mod on_redis {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Kind::redis()).await
            })*
        }
    };
}

contract!(
    same_key_overwrites_and_moves_to_the_end,
    a_frame_url_drops_the_frames_subtree_only,
    replay_puts_frame_urls_shallow_to_deep_then_parts_in_write_order,
    bounds_refuse_without_changing_anything,
    a_resynchronising_replay_leaves_out_the_receivers_own_commands,
    follow_then_live_has_no_gap_and_no_duplicate,
    a_subscriber_that_falls_behind_is_told,
);

// ---- the property, against both ----------------------------------------

mod properties {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use std::collections::BTreeMap;

    const KEYS: [&str; 8] = [
        "top",
        "top/a",
        "top/f",
        "top/f/x",
        "top/f/g",
        "top/f/g/y",
        "topx",
        "top/b",
    ];

    /// What a terminal holds after applying commands in order.
    fn apply(state: &mut BTreeMap<String, (String, Value)>, c: &Stamped) {
        if c.frame_url {
            let below = format!("{}/", c.key);
            state.retain(|k, _| !k.starts_with(&below));
        }
        let v: Value = serde_json::from_str(&c.json).unwrap();
        state.insert(
            c.key.to_string(),
            (v["fn"].as_str().unwrap().to_string(), v["args"][0].clone()),
        );
    }

    /// A fresh joiner's replay ends where a live participant does, within
    /// the bounds, in replay order; `cases` runs, each in a session of its
    /// own on one store per bounds.
    fn a_fresh_joiner_ends_where_a_live_participant_does(kind: Kind, cases: u32) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let case = std::sync::atomic::AtomicU64::new(0);
        let strategy = (
            prop::collection::vec(
                (0..KEYS.len(), prop::bool::weighted(0.3), any::<u16>()),
                0..80,
            ),
            1usize..12,
            any::<bool>(),
        );
        runner
            .run(&strategy, |(ops, max_keys, tight)| {
                let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let session = format!("case{n}");
                let bounds = Bounds {
                    max_keys,
                    max_bytes: if tight { 900 } else { 1 << 20 },
                };
                rt.block_on(async {
                    let store = kind.store(bounds, 16);
                    store.open(&session).await.unwrap();
                    let mut live = BTreeMap::new();
                    let mut accepted = 0;
                    for (k, navigate, v) in ops {
                        let c = cmd(
                            KEYS[k],
                            if navigate { "navigate" } else { "value" },
                            &v.to_string(),
                        );
                        match store.append(&session, "p1", c).await {
                            Ok(stamped) => {
                                accepted += 1;
                                prop_assert_eq!(stamped.seq, accepted);
                                apply(&mut live, &stamped);
                            }
                            Err(StoreError::Limit(_)) => {}
                            Err(e) => panic!("{e}"),
                        }
                        let s = store.snapshot(&session).await.unwrap();
                        prop_assert!(s.commands.len() <= bounds.max_keys);
                        prop_assert!(
                            s.commands.iter().map(|c| c.bytes()).sum::<usize>() <= bounds.max_bytes
                        );
                    }
                    let snapshot = store.snapshot(&session).await.unwrap();
                    prop_assert_eq!(snapshot.last_seq, accepted);
                    let mut joiner = BTreeMap::new();
                    for c in &snapshot.commands {
                        apply(&mut joiner, c);
                    }
                    prop_assert_eq!(&joiner, &live);
                    let frames: Vec<_> = snapshot
                        .commands
                        .iter()
                        .take_while(|c| c.frame_url)
                        .collect();
                    let depth = |c: &Stamped| c.key.matches('/').count();
                    let shallow_to_deep = frames.windows(2).all(|w| depth(w[0]) <= depth(w[1]));
                    prop_assert!(shallow_to_deep);
                    let parts = &snapshot.commands[frames.len()..];
                    prop_assert!(parts.iter().all(|c| !c.frame_url));
                    prop_assert!(parts.windows(2).all(|w| w[0].seq < w[1].seq));
                    Ok(())
                })
            })
            .unwrap();
    }

    #[test]
    fn on_memory() {
        a_fresh_joiner_ends_where_a_live_participant_does(Kind::Memory, 256);
    }

    #[test]
    fn on_redis() {
        a_fresh_joiner_ends_where_a_live_participant_does(Kind::redis(), 64);
    }
}

// ---- what only a shared store has ----------------------------------------

/// What a receiver ends up holding: a replay, then live commands above it,
/// resynchronising from a snapshot when told it fell behind.
struct Receiver {
    live: super::store::Subscription,
    last_seq: u64,
    state: std::collections::BTreeMap<String, String>,
    /// Sequence numbers received live, in order.
    seqs: Vec<u64>,
    /// Times it was told it fell behind.
    resyncs: usize,
}

impl Receiver {
    async fn follow(store: &Arc<dyn Store>, session: &str) -> Receiver {
        let (live, snapshot) = store.follow(session).await.unwrap();
        let mut r = Receiver {
            live,
            last_seq: 0,
            state: Default::default(),
            seqs: Vec::new(),
            resyncs: 0,
        };
        r.replace(&snapshot);
        r
    }

    fn replace(&mut self, snapshot: &Snapshot) {
        self.state.clear();
        for c in &snapshot.commands {
            self.apply(c);
        }
        self.last_seq = snapshot.last_seq;
    }

    fn apply(&mut self, c: &Stamped) {
        if c.frame_url {
            let below = format!("{}/", c.key);
            self.state.retain(|k, _| !k.starts_with(&below));
        }
        self.state
            .insert(c.key.to_string(), first_arg(c).to_string());
    }

    /// Receives until it has everything up to `seq`.
    async fn until(&mut self, store: &Arc<dyn Store>, session: &str, seq: u64) {
        while self.last_seq < seq {
            let next = tokio::time::timeout(PATIENCE, self.live.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "waited {PATIENCE:?} for command {} of {seq}; received live {:?}",
                        self.last_seq + 1,
                        self.seqs
                    )
                });
            match next {
                Ok(c) if c.seq > self.last_seq => {
                    assert_eq!(c.seq, self.last_seq + 1, "a gap in live delivery");
                    self.last_seq = c.seq;
                    self.seqs.push(c.seq);
                    self.apply(&c);
                }
                // At or below the replay: dropped, as connections do.
                Ok(_) => {}
                Err(FeedError::Lagged(_)) => {
                    self.resyncs += 1;
                    let snapshot = store.snapshot(session).await.unwrap();
                    self.live.skip_to(snapshot.last_seq);
                    self.replace(&snapshot);
                }
                Err(FeedError::Closed) => panic!("the session closed"),
            }
        }
    }
}

fn state_of(snapshot: &Snapshot) -> std::collections::BTreeMap<String, String> {
    let mut r = std::collections::BTreeMap::new();
    for c in &snapshot.commands {
        if c.frame_url {
            let below = format!("{}/", c.key);
            r.retain(|k: &String, _| !k.starts_with(&below));
        }
        r.insert(c.key.to_string(), first_arg(c).to_string());
    }
    r
}

/// Two nodes (two stores on one Redis): a customer's commands appended on
/// node A reach a participant following on node B, replay then live, while
/// both nodes append at once; a late joiner on B starts mid-stream. Each
/// ends exactly where the store does, with live sequence numbers that
/// follow each other.
#[tokio::test]
async fn two_nodes_share_a_session_with_no_gap_and_no_duplicate() {
    let redis = Redis::start();
    let a: Arc<dyn Store> = Arc::new(redis_store(&redis, ROOMY, 4096));
    let b: Arc<dyn Store> = Arc::new(redis_store(&redis, ROOMY, 4096));
    a.open("s").await.unwrap();
    b.open("s").await.unwrap();
    for i in 0..20 {
        put(
            &a,
            "customer",
            &format!("top/form/input{i}"),
            "value",
            "typed",
        )
        .await;
    }
    let mut early = Receiver::follow(&b, "s").await;
    assert_eq!(early.last_seq, 20);
    assert_eq!(early.state.len(), 20);

    let writer = |store: Arc<dyn Store>, who: &'static str| {
        tokio::spawn(async move {
            for i in 0..150 {
                let key = format!("top/form/{who}{}", i % 40);
                let function = if i % 50 == 49 { "navigate" } else { "value" };
                let key = if function == "navigate" {
                    format!("top/frame{who}")
                } else {
                    key
                };
                store
                    .append("s", who, cmd(&key, function, &format!("{who}{i}")))
                    .await
                    .unwrap();
            }
        })
    };
    let on_a = writer(a.clone(), "customer");
    let on_b = writer(b.clone(), "operator");
    // Late joiners on both nodes while both write: each replay and live
    // delivery must fit with nothing missed (no resynchronisation needed:
    // the feeds keep far more than is written).
    let mut late = Vec::new();
    for i in 0..12 {
        let node = if i % 2 == 0 { &b } else { &a };
        late.push((node.clone(), Receiver::follow(node, "s").await));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    on_a.await.unwrap();
    on_b.await.unwrap();

    let end = a.snapshot("s").await.unwrap();
    assert_eq!(end.last_seq, 320);
    early.until(&b, "s", 320).await;
    let expected = state_of(&end);
    assert_eq!(early.state, expected);
    for (i, (node, r)) in late.iter_mut().enumerate() {
        r.until(node, "s", 320).await;
        assert_eq!(r.state, expected, "late joiner {i}");
        assert_eq!(
            r.resyncs, 0,
            "late joiner {i} missed commands between its replay and live delivery"
        );
    }
    assert_eq!(early.resyncs, 0);
    // Everything after its replay reached the early receiver live, in order.
    assert_eq!(early.seqs, (21..=320).collect::<Vec<_>>());
    // Node A's own receivers see the same.
    let mut on_node_a = Receiver::follow(&a, "s").await;
    assert_eq!(on_node_a.state, expected);
    put(&b, "operator", "top/last", "value", "x").await;
    on_node_a.until(&a, "s", 321).await;
    assert_eq!(on_node_a.seqs, [321]);
}

/// The subscriber connection is cut (Redis kills it) and commands are
/// published before it is back: they never arrive live, so once it is back
/// every receiver is told it fell behind and resynchronises. Without that, a
/// receiver waits for them for ever.
#[tokio::test]
async fn a_lost_subscriber_link_resynchronises_its_receivers() {
    let redis = Redis::start();
    let a: Arc<dyn Store> = Arc::new(redis_store(&redis, ROOMY, 64));
    let b: Arc<dyn Store> = Arc::new(redis_store(&redis, ROOMY, 64));
    a.open("s").await.unwrap();
    put(&a, "customer", "top/a", "value", "1").await;
    let mut receiver = Receiver::follow(&b, "s").await;
    // The kill and the appends go out back to back; the node needs a new
    // connection and a subscription before it hears anything again.
    let killed = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert!(killed.starts_with(':'), "{killed}");
    put(&a, "customer", "top/a", "value", "2").await;
    put(&a, "customer", "top/b", "value", "3").await;
    receiver.until(&b, "s", 3).await;
    assert_eq!(receiver.state, state_of(&a.snapshot("s").await.unwrap()));
}

/// Redis unreachable: every operation fails with a clear error, in bounded
/// time and without a panic; once Redis is there the same store works,
/// having reconnected on its own.
#[tokio::test]
async fn redis_unreachable_is_a_clear_error_and_the_store_recovers() {
    let mut redis = Redis::start();
    redis.stop();
    let store: Arc<dyn Store> = Arc::new(redis_store(&redis, ROOMY, 16));
    let started = std::time::Instant::now();
    let e = store.open("s").await.unwrap_err();
    assert!(
        matches!(e, StoreError::Unavailable(ref m) if m.contains("Redis")),
        "{e:?}"
    );
    let e = store
        .append("s", "p1", cmd("top/a", "value", "1"))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert!(matches!(
        store.snapshot("s").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.follow("s").await,
        Err(StoreError::Unavailable(_))
    ));
    store.remove("s").await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "failing took {:?}",
        started.elapsed()
    );

    redis.run().unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    while store.open("s").await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the store did not reconnect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    put(&store, "p1", "top/a", "value", "1").await;
    let mut receiver = loop {
        match store.follow("s").await {
            Ok((live, snapshot)) => {
                let mut r = Receiver {
                    live,
                    last_seq: 0,
                    state: Default::default(),
                    seqs: Vec::new(),
                    resyncs: 0,
                };
                r.replace(&snapshot);
                break r;
            }
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    put(&store, "p1", "top/b", "value", "2").await;
    receiver.until(&store, "s", 2).await;
    assert_eq!(receiver.seqs, [2]);
}

/// Every key of a session expires after `expire` unless written or read,
/// and the stored byte count is what the stored commands cost.
#[tokio::test]
async fn a_sessions_keys_expire_and_count_their_bytes() {
    let redis = Redis::start();
    let store =
        RedisStore::new(&redis.url(), "test:", ROOMY, 16, Duration::from_secs(100)).unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    store.open("s").await.unwrap();
    put(&store, "p1", "top", "navigate", "/x").await;
    put(&store, "p1", "top/a", "value", "1").await;
    put(&store, "p1", "top/a", "value", "22").await;
    for k in ["m", "c", "o", "k"] {
        let ttl = redis.command(&["PTTL", &format!("test:{{s}}:{k}")]);
        let ms: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
        assert!((90_000..=100_000).contains(&ms), "{k}: {ttl}");
    }
    let snapshot = store.snapshot("s").await.unwrap();
    let bytes = redis.command(&["HGET", "test:{s}:m", "bytes"]);
    let counted: usize = bytes.lines().nth(1).unwrap().parse().unwrap();
    assert_eq!(
        counted,
        snapshot.commands.iter().map(|c| c.bytes()).sum::<usize>()
    );
    store.remove("s").await;
    assert_eq!(
        redis.command(&["EXISTS", "test:{s}:m", "test:{s}:o"]),
        ":0\r\n"
    );
}

/// A session at its key bound (10,000) is replayed whole to a late joiner
/// from Redis. Its time is printed, not asserted (a measurement for
/// docs/performance.md): `cargo test --release --lib
/// late_join_of_ten_thousand_keys -- --nocapture`.
#[tokio::test]
async fn late_join_of_ten_thousand_keys() {
    let redis = Redis::start();
    let bounds = Bounds {
        max_keys: 10_000,
        max_bytes: 64 << 20,
    };
    let store: Arc<dyn Store> = Arc::new(redis_store(&redis, bounds, 512));
    store.open("s").await.unwrap();
    put(&store, "c", "top", "navigate", "/catalogue").await;
    for i in 1..10_000 {
        put(
            &store,
            "c",
            &format!("top/form#f/input[name=field{i}]"),
            "value",
            &format!("value {i}"),
        )
        .await;
    }
    let mut runs = Vec::new();
    for _ in 0..9 {
        let started = std::time::Instant::now();
        let (_live, snapshot) = store.follow("s").await.unwrap();
        let replay = snapshot.replay_json("s");
        runs.push(started.elapsed());
        assert_eq!(snapshot.commands.len(), 10_000);
        assert!(replay.len() > 1_000_000);
    }
    runs.sort();
    println!(
        "late join of 10,000 keys from Redis (follow + replay message): median {:?}, min {:?}, max {:?}",
        runs[runs.len() / 2],
        runs[0],
        runs[runs.len() - 1]
    );
}

/// Waits until the store's health says it answers (or not); fails with
/// what it last said.
async fn until_health(store: &dyn Store, up: bool) -> StoreHealth {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let health = store.health();
        if health.down.is_none() == up {
            return health;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the store's health stayed {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Redis that hangs (its process stopped: connections open, nothing
/// answered) is noticed with no request of the hub's, reported in our
/// words, and its return is noticed the same way; the in-memory store
/// always answers.
#[tokio::test]
async fn health_follows_a_redis_that_hangs_and_comes_back() {
    assert_eq!(Kind::Memory.store(ROOMY, 16).health().down, None);
    let redis = Redis::start();
    let store = redis_store(&redis, ROOMY, 16);
    until_health(&store, true).await;

    redis.freeze();
    let why = until_health(&store, false).await.down.unwrap();
    assert!(why.contains("Redis does not answer"), "{why}");
    assert!(!why.contains("127.0.0.1"), "{why}");
    assert!(
        matches!(store.open("s").await, Err(StoreError::Unavailable(_))),
        "a request while it hangs is refused"
    );

    redis.thaw();
    until_health(&store, true).await;
    store.open("s").await.unwrap();
}
