//! The hub's state checkpointed to Redis and taken over by another hub
//! (issue 12): a hub hands over, or dies, and the one that takes over goes
//! on with the same sessions, queue, logins and join codes. Two hubs in one
//! process over a real `redis-server`.

use std::sync::atomic::Ordering;

use http::{HeaderMap, HeaderValue, header};

use super::*;
use crate::hub::auth::COOKIE;
use crate::hub::contract::fixture::{CLUSTER_SECRET, Redis};

const PREFIX: &str = "t:";

/// How long Redis is given to show what the checkpoint wrote.
const PATIENCE: Duration = Duration::from_secs(15);

fn cluster_config(redis: &Redis, extra: &str) -> Arc<Config> {
    // `extra` may hold `[store]` keys: before `[cluster]`.
    config(&format!(
        "[store]\nkind = \"redis\"\nurl = \"{}\"\nprefix = \"{PREFIX}\"\n{extra}\n[cluster]\nsecret = \"{CLUSTER_SECRET}\"\n",
        redis.url()
    ))
}

fn session_key(sid: &str) -> String {
    format!("{PREFIX}{{{sid}}}:hub")
}

/// Polls Redis with `words` until its raw answer satisfies `check`.
async fn until_in_redis(redis: &Redis, words: &[&str], what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = redis.command(words);
        if check(&answer) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Redis never showed {what}; {words:?} answers {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn secret_of(peer: &Peer) -> String {
    peer.last("joined").expect("joined")["resume"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A session as a hub holds it before it hands over or dies: customer and
/// operator connected, control granted, something typed and said, a join
/// code given, a second call queued, an operator logged in.
struct Held {
    customer: Peer,
    op: Peer,
    waiting: Peer,
    kept: Kept,
}

/// What the hub that takes over must know of it.
struct Kept {
    session: String,
    queued: String,
    code: String,
    login: String,
}

async fn hold_a_session(hub: &Hub, redis: &Redis) -> Held {
    let (mut customer, mut op, session) = connected(hub, 4096).await;
    customer
        .send(json!({"type": "control", "granted": true}))
        .await;
    op.expect_where("status", |s| s["control"] == true).await;
    customer.send(json!({"type": "command", "key": "top", "attribute": "others", "fn": "navigate", "args": ["/shop"]})).await;
    customer.send(json!({"type": "command", "key": "top/input[name=q]", "attribute": "others", "fn": "value", "args": ["blue shoes"]})).await;
    op.expect_where("command", |c| c["key"] == "top/input[name=q]")
        .await;
    customer
        .send(json!({"type": "chat", "text": "hello from the customer"}))
        .await;
    op.expect("chat").await;
    customer.send(json!({"type": "code"})).await;
    let code = customer.expect("code").await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let (waiting, queued) = call(hub, "second caller").await;
    let login = hub.shared().logins.issue(Account {
        user: "op".into(),
        name: "Olivia Operator".into(),
    });

    // Written behind: all of it reaches Redis on its own.
    until_in_redis(
        redis,
        &["GET", &session_key(&session)],
        "the session with control granted and its code",
        |r| r.contains("\"control\":true") && r.contains(&code) && r.contains("\"operator\""),
    )
    .await;
    until_in_redis(
        redis,
        &["GET", &format!("{PREFIX}{{{session}}}:chat")],
        "the chat",
        |r| r.contains("hello from the customer"),
    )
    .await;
    until_in_redis(
        redis,
        &["GET", &format!("{PREFIX}hub:queue")],
        "the queued call",
        |r| r.contains(&queued),
    )
    .await;
    until_in_redis(
        redis,
        &["HGET", &format!("{PREFIX}hub:logins"), &login],
        "the operator's login",
        |r| r.contains("Olivia Operator"),
    )
    .await;
    Held {
        customer,
        op,
        waiting,
        kept: Kept {
            session,
            queued,
            code,
            login,
        },
    }
}

/// What the hub that took over must do with what `held` held: the
/// customer and the operator resume with their secrets and see the same
/// session, the customer's typing after the move reaches the operator, the
/// queued call is offered, the login and the join code work.
async fn goes_on(hub: &Hub, held: &Kept, secrets: (&str, &str), typed: (&str, &str)) {
    let (customer_secret, op_secret) = secrets;
    let session = held.session.as_str();

    let mut customer = Peer::connect(hub, "customer", Role::Customer, 4096);
    customer
        .send(json!({"type": "resume", "session": session, "resume": customer_secret}))
        .await;
    customer.expect("joined").await;
    customer.gather(&["replay", "chat_log", "status"]).await;
    let mut op = Peer::connect(hub, "op", Role::Operator, 4096);
    op.send(json!({"type": "resume", "session": session, "resume": op_secret}))
        .await;
    op.expect("joined").await;
    op.gather(&["replay", "chat_log", "status"]).await;

    // The same session: its participants, control, page and chat.
    let replay = op.last("replay").unwrap().clone();
    let stored: Vec<(String, Value)> = replay["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["key"].as_str().unwrap().to_string(), c["args"][0].clone()))
        .collect();
    let (key, value) = typed;
    assert!(
        stored.contains(&(key.to_string(), json!(value))),
        "the replay lacks {key} = {value}: {stored:?}"
    );
    assert!(
        stored.contains(&("top".to_string(), json!("/shop"))),
        "{stored:?}"
    );
    let chat = op.last("chat_log").unwrap();
    assert_eq!(chat["messages"][0]["text"], "hello from the customer");
    let status = customer
        .expect_where("status", |s| {
            s["participants"]
                .as_array()
                .is_some_and(|p| p.iter().all(|p| p["connected"] == true))
        })
        .await;
    assert_eq!(status["control"], true, "{status}");
    assert_eq!(status["state"], "connected", "{status}");
    let roles: Vec<&str> = status["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["customer", "operator"], "{status}");

    // The customer's page published again after resuming reaches the
    // operator, and the operator may act (control was granted).
    customer.send(json!({"type": "command", "key": "top", "attribute": "others", "fn": "navigate", "args": ["/shop"]})).await;
    customer.send(json!({"type": "command", "key": key, "attribute": "others", "fn": "value", "args": [format!("{value} and more")]})).await;
    op.expect_where("command", |c| c["args"][0] == format!("{value} and more"))
        .await;
    op.send(json!({"type": "command", "key": "top/input[name=size]", "attribute": "others", "fn": "value", "args": ["42"]})).await;
    customer
        .expect_where("command", |c| c["key"] == "top/input[name=size]")
        .await;

    // The queued call is still queued, and offered to a waiting operator.
    let mut free = Peer::connect(hub, "free operator", Role::Operator, 4096);
    free.send(json!({"type": "ready"})).await;
    let offer = free.expect("offer").await;
    assert_eq!(offer["session"].as_str(), Some(held.queued.as_str()));

    // The operator's login cookie works here.
    let mut headers = HeaderMap::new();
    headers.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("{COOKIE}={}", held.login)).unwrap(),
    );
    let account = hub.shared().logins.account(&headers);
    assert_eq!(account.map(|a| a.user).as_deref(), Some("op"));

    // So does the customer's join code, once.
    let mut joiner = Peer::connect(hub, "second operator", Role::Operator, 4096);
    joiner
        .send(json!({"type": "join_code", "code": held.code}))
        .await;
    let joined = joiner.expect("joined").await;
    assert_eq!(joined["session"].as_str(), Some(session));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_handed_over_goes_on_on_the_hub_that_takes_over() {
    let redis = Redis::start();
    let first = Hub::new(cluster_config(&redis, "")).unwrap();
    let ends = record_ends(&first);
    let mut held = hold_a_session(&first, &redis).await;
    let secrets = (secret_of(&held.customer), secret_of(&held.op));

    first.hand_over();
    for peer in [&mut held.customer, &mut held.op, &mut held.waiting] {
        assert_eq!(peer.closed().await, Some(1012), "{}", peer.name);
    }
    let held = held.kept;
    assert!(first.session(&held.session).is_none());
    // Nothing ended: no end hook ran, nothing was deleted.
    let ended = crate::lock::lock(&ends).clone();
    assert!(ended.is_empty(), "{ended:?}");
    for key in [
        session_key(&held.session),
        format!("{PREFIX}{{{}}}:m", held.session),
    ] {
        assert!(redis.command(&["EXISTS", &key]).contains(":1"), "{key}");
    }

    // A hub that handed over answers none of its routes (no login, no
    // socket) until it takes over again.
    let refused = first.handed_over().expect("refused while handed over");
    assert_eq!(refused.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    let written = first.checkpoint_stats().written.load(Ordering::Relaxed);

    let second = Hub::new(cluster_config(&redis, "")).unwrap();
    assert!(second.handed_over().is_none());
    assert_eq!(second.take_over().await, Ok(2));
    goes_on(
        &second,
        &held,
        (&secrets.0, &secrets.1),
        ("top/input[name=q]", "blue shoes"),
    )
    .await;
    // The hub that handed over wrote nothing more meanwhile.
    assert_eq!(
        first.checkpoint_stats().written.load(Ordering::Relaxed),
        written
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_hubs_sessions_go_on_from_the_checkpoint_with_what_was_typed() {
    let redis = Redis::start();
    let first = Hub::new(cluster_config(&redis, "")).unwrap();
    let mut held = hold_a_session(&first, &redis).await;
    let secrets = (secret_of(&held.customer), secret_of(&held.op));
    // The customer types; the hub dies right after the last keystroke was
    // stored (the operator saw it).
    for typed in ["n", "ne", "nee", "need size 42"] {
        held.customer.send(json!({"type": "command", "key": "top/textarea[name=note]", "attribute": "others", "fn": "value", "args": [typed]})).await;
    }
    held.op
        .expect_where("command", |c| c["args"][0] == "need size 42")
        .await;
    // Killed: it writes nothing more and says nothing to anyone; its
    // clients see their connections drop.
    first.shared().checkpoint.set_active(false);
    drop((held.customer, held.op, held.waiting));
    let held = held.kept;

    let second = Hub::new(cluster_config(&redis, "")).unwrap();
    assert_eq!(second.take_over().await, Ok(2));
    goes_on(
        &second,
        &held,
        (&secrets.0, &secrets.1),
        ("top/textarea[name=note]", "need size 42"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_redis_is_down_reach_it_once_it_answers() {
    let mut redis = Redis::start();
    let hub = Hub::new(cluster_config(&redis, "")).unwrap();
    let (customer, mut op, session) = connected(&hub, 4096).await;
    until_in_redis(
        &redis,
        &["GET", &session_key(&session)],
        "the session",
        |r| r.contains("\"operator\""),
    )
    .await;

    // Redis goes away (and comes back empty): what changes meanwhile is
    // kept, and written once it answers.
    redis.stop();
    customer
        .send(json!({"type": "control", "granted": true}))
        .await;
    op.expect_where("status", |s| s["control"] == true).await;
    customer
        .send(json!({"type": "chat", "text": "said while Redis was down"}))
        .await;
    op.expect("chat").await;
    let stats = hub.checkpoint_stats();
    let deadline = Instant::now() + PATIENCE;
    while stats.failed.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no checkpoint write failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.run().unwrap();
    until_in_redis(
        &redis,
        &["GET", &session_key(&session)],
        "the control granted while Redis was down",
        |r| r.contains("\"control\":true"),
    )
    .await;
    until_in_redis(
        &redis,
        &["GET", &format!("{PREFIX}{{{session}}}:chat")],
        "the chat said while Redis was down",
        |r| r.contains("said while Redis was down"),
    )
    .await;
    until_in_redis(
        &redis,
        &["SISMEMBER", &format!("{PREFIX}hub:sessions"), &session],
        "the session in the index",
        |r| r.contains(":1"),
    )
    .await;
}

/// A leader cut off while another node took over must not overwrite what
/// the new leader wrote once it reaches Redis again: with the lease set as
/// its fence, it writes nothing once the lease is not its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_lease_writes_nothing_more() {
    let redis = Redis::start();
    let lease = format!("{PREFIX}leader");
    redis.command(&["SET", &lease, "node-a"]);
    let hub = Hub::new(cluster_config(&redis, "")).unwrap();
    hub.fence_checkpoint(&lease, "node-a");
    let (customer, mut op, session) = connected(&hub, 4096).await;
    until_in_redis(
        &redis,
        &["GET", &session_key(&session)],
        "the session, written while the lease is this node's",
        |r| r.contains("\"operator\"") && r.contains("\"control\":false"),
    )
    .await;

    // Another node leads now (and wrote the session as it holds it).
    redis.command(&["SET", &lease, "node-b"]);
    let theirs = "{\"written by\":\"node-b\"}";
    redis.command(&["SET", &session_key(&session), theirs]);
    customer
        .send(json!({"type": "control", "granted": true}))
        .await;
    op.expect_where("status", |s| s["control"] == true).await;
    let stats = hub.checkpoint_stats();
    let deadline = Instant::now() + PATIENCE;
    while stats.fenced.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no write was refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    customer
        .send(json!({"type": "chat", "text": "later"}))
        .await;
    op.expect("chat").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        redis
            .command(&["GET", &session_key(&session)])
            .contains(theirs),
        "the new leader's record was overwritten"
    );
    assert!(
        redis
            .command(&["EXISTS", &format!("{PREFIX}{{{session}}}:chat")])
            .contains(":0")
    );
    assert_eq!(stats.fenced.load(Ordering::Relaxed), 1);
}

/// A session whose state does not change is written again before its
/// record expires (records expire like the session's commands).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_does_not_change_does_not_expire_from_the_checkpoint() {
    let redis = Redis::start();
    let hub = Hub::new(cluster_config(&redis, "expire_secs = 3\n")).unwrap();
    let (_customer, _op, session) = connected(&hub, 4096).await;
    until_in_redis(
        &redis,
        &["GET", &session_key(&session)],
        "the session",
        |r| r.contains("\"operator\""),
    )
    .await;
    // Past its expiry with nothing changed, it is still there.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        redis
            .command(&["EXISTS", &session_key(&session)])
            .contains(":1"),
        "the session's record expired while the session went on"
    );
    let ttl = redis.command(&["PTTL", &session_key(&session)]);
    assert!(!ttl.contains(":-"), "{ttl}");
}

/// A session that ends normally leaves nothing in the checkpoint: its
/// record, its chat and its index entry go, and the queue no longer has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_ends_is_removed_from_the_checkpoint() {
    let redis = Redis::start();
    let hub = Hub::new(cluster_config(&redis, "")).unwrap();
    let (mut customer, mut op, session) = connected(&hub, 4096).await;
    customer
        .send(json!({"type": "chat", "text": "bye soon"}))
        .await;
    op.expect("chat").await;
    let (mut waiting, queued) = call(&hub, "second caller").await;
    let chat = format!("{PREFIX}{{{session}}}:chat");
    let queue = format!("{PREFIX}hub:queue");
    until_in_redis(&redis, &["EXISTS", &chat], "the chat", |r| r.contains(":1")).await;
    until_in_redis(&redis, &["GET", &queue], "the queued call", |r| {
        r.contains(&queued)
    })
    .await;

    customer.send(json!({"type": "hangup"})).await;
    customer.expect("ended").await;
    waiting.send(json!({"type": "hangup"})).await;
    waiting.expect("ended").await;
    for key in [session_key(&session), chat, session_key(&queued)] {
        until_in_redis(&redis, &["EXISTS", &key], "the key deleted", |r| {
            r.contains(":0")
        })
        .await;
    }
    until_in_redis(
        &redis,
        &["SCARD", &format!("{PREFIX}hub:sessions")],
        "an empty index",
        |r| r.contains(":0"),
    )
    .await;
    until_in_redis(&redis, &["GET", &queue], "an empty queue", |r| {
        r.contains("[]")
    })
    .await;
}

/// A hub that holds nothing (a node that does not lead) writes nothing,
/// not even when it marks everything against expiry: its empty queue must
/// not replace the leader's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_holds_nothing_writes_nothing() {
    let redis = Redis::start();
    let queue = format!("{PREFIX}hub:queue");
    let leaders = "[\"0123456789abcdef0123456789abcdef\"]";
    redis.command(&["SET", &queue, leaders]);
    let hub = Hub::new(cluster_config(&redis, "expire_secs = 3\n")).unwrap();
    let stats = hub.checkpoint_stats();
    let deadline = Instant::now() + PATIENCE;
    while stats.refreshed.load(Ordering::Relaxed) < 2 {
        assert!(Instant::now() < deadline, "the writer never refreshed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(redis.command(&["GET", &queue]).contains(leaders));
    assert_eq!(stats.batches.load(Ordering::Relaxed), 0);
}

/// A node that stops while it leads writes what it had not written yet
/// before it goes. (One thread: the writer cannot run before `shutdown`.)
#[tokio::test]
async fn stopping_writes_what_was_not_written_yet() {
    let redis = Redis::start();
    let hub = Hub::new(cluster_config(&redis, "")).unwrap();
    let login = hub.shared().logins.issue(Account {
        user: "op".into(),
        name: "Olivia Operator".into(),
    });
    hub.shutdown().await;
    let logins = format!("{PREFIX}hub:logins");
    assert!(
        redis
            .command(&["HGET", &logins, &login])
            .contains("Olivia Operator"),
        "the login issued just before stopping was not written"
    );
    assert_eq!(hub.checkpoint_stats().batches.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn with_the_store_in_memory_nothing_is_checkpointed() {
    let (hub, _) = hub_with_backlog(config(""), 64);
    assert!(!hub.checkpointed());
    let (customer, mut op, _) = connected(&hub, 64).await;
    customer
        .send(json!({"type": "control", "granted": true}))
        .await;
    customer.send(json!({"type": "chat", "text": "hi"})).await;
    op.expect("chat").await;
    assert_eq!(hub.checkpoint_stats().marked.load(Ordering::Relaxed), 0);
    assert_eq!(hub.take_over().await, Ok(0));
}

/// A record in Redis is input like any other: one that does not hold
/// together is left out, and the ids of those taken up are never given
/// again (a new participant must not replace one taken over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_checkpoint_that_holds_together_is_taken_up() {
    let redis = Redis::start();
    let customer = "0123456789abcdef0123456789abcdef";
    let operator = "fedcba9876543210fedcba9876543210";
    let good = "11111111111111111111111111111111";
    let record = |participants: &str| {
        format!(
            "{{\"since\":1,\"control\":false,\"wants_operator\":false,\"participants\":[{participants}]}}"
        )
    };
    let c = format!(
        "{{\"id\":\"p1\",\"role\":\"customer\",\"name\":\"Customer\",\"resume\":\"{customer}\"}}"
    );
    let o = format!(
        "{{\"id\":\"p2\",\"role\":\"operator\",\"name\":\"Olivia\",\"user\":\"op\",\"resume\":\"{operator}\"}}"
    );
    let bad = [
        // An operator with no account.
        (
            "22222222222222222222222222222222",
            record(&format!("{c},{}", o.replace(",\"user\":\"op\"", ""))),
        ),
        // A resume secret that is not one the hub gives.
        (
            "33333333333333333333333333333333",
            record(&c.replace(customer, "guess")),
        ),
        // No customer.
        ("44444444444444444444444444444444", record(&o)),
        // Not a record.
        ("55555555555555555555555555555555", "{".to_string()),
    ];
    for (sid, json) in bad
        .iter()
        .cloned()
        .chain([(good, record(&format!("{c},{o}")))])
    {
        redis.command(&["SET", &session_key(sid), &json]);
        redis.command(&["SADD", &format!("{PREFIX}hub:sessions"), sid]);
    }
    redis.command(&["SADD", &format!("{PREFIX}hub:sessions"), "../not-an-id"]);

    let hub = Hub::new(cluster_config(&redis, "")).unwrap();
    assert_eq!(hub.take_over().await, Ok(1));
    for (sid, _) in &bad {
        assert!(hub.session(sid).is_none(), "{sid} was taken up");
    }
    // A new caller gets ids of its own.
    let (mut caller, sid) = call(&hub, "new caller").await;
    let me = caller.last("joined").unwrap()["participant"].clone();
    assert!(me != "p1" && me != "p2", "{me} was given twice");
    let view = hub.session(good).unwrap();
    assert_eq!(view.participants.len(), 2);
    assert_eq!(view.participants[1].user.as_deref(), Some("op"));
    assert_ne!(sid, good);
    caller.send(json!({"type": "hangup"})).await;
    caller.expect("ended").await;
    // The ended session leaves Redis behind the lock: until it has, a take
    // over would find it there and take it up again.
    until_in_redis(
        &redis,
        &["EXISTS", &session_key(&sid)],
        "the ended session deleted",
        |r| r.contains(":0"),
    )
    .await;
    // Taking over twice changes nothing held.
    assert_eq!(hub.take_over().await, Ok(0));
    assert_eq!(hub.session(good).unwrap(), view);
}

/// Measured, not asserted: what the checkpoint costs per change under a
/// burst of calls meeting as many waiting operators, with Redis (the same
/// burst with the checkpoint stopped, for comparison).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_calls_with_the_checkpoint_in_redis() {
    const N: usize = 200;
    let redis = Redis::start();
    let limits = "[hub]\ncall_burst_per_address = 1000\nmax_sessions = 1000\n";
    let without = Hub::new(cluster_config(&redis, limits)).unwrap();
    without.shared().checkpoint.set_active(false);
    let without = burst(&without, N).await;

    let hub = Hub::new(cluster_config(&redis, limits)).unwrap();
    let elapsed = burst(&hub, N).await;
    // Everything is in Redis once every session is indexed and the queue's
    // last record is the empty queue.
    until_in_redis(
        &redis,
        &["SCARD", &format!("{PREFIX}hub:sessions")],
        "every session",
        |r| r.contains(&format!(":{N}")),
    )
    .await;
    until_in_redis(
        &redis,
        &["GET", &format!("{PREFIX}hub:queue")],
        "the empty queue",
        |r| r.contains("[]"),
    )
    .await;
    let s = hub.checkpoint_stats();
    let marked = s.marked.load(Ordering::Relaxed);
    let written = s.written.load(Ordering::Relaxed);
    let batches = s.batches.load(Ordering::Relaxed);
    let reading = Duration::from_nanos(s.reading_ns.load(Ordering::Relaxed));
    let writing = Duration::from_nanos(s.writing_ns.load(Ordering::Relaxed));
    println!(
        "checkpoint under a burst of {N} calls and {N} operators (Redis store): \
         the burst took {elapsed:?} ({without:?} with the checkpoint stopped); \
         {marked} changes marked, {written} items written in {batches} pipelines; \
         reading them under the lock {:.1} µs per change ({reading:?} in all); \
         waiting for Redis, off the lock, {writing:?} in all",
        reading.as_secs_f64() * 1e6 / marked.max(1) as f64,
    );
}
