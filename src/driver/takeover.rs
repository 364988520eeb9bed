//! A node that takes over the shared sessions serves followers what the
//! driver saw on the node that led before: the documents and credentials
//! written behind to Redis ([`super::mirror`]), against a real
//! `redis-server` from the integration tests' fixture (as the store's
//! contract, `hub::contract`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use super::tests::{keep, limits, privacy, request, text};
use super::{Driver, Sessions, Standing};
use crate::config::{DriverLimits, RedisStore, Store};
use crate::hub::contract::fixture::Redis;
use crate::hub::{Hub, Role};
use crate::proxy::policy::Decision;

/// How long a test waits for a condition before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

const PREFIX: &str = "test:";

fn store(redis: &Redis) -> Store {
    Store::Redis(RedisStore {
        url: redis.url(),
        prefix: PREFIX.into(),
        expire: Duration::from_secs(3600),
    })
}

/// A node's driver on `redis`.
fn node(redis: &Redis, limits: DriverLimits) -> Driver {
    Driver::for_store(limits, &store(redis)).unwrap()
}

/// The words of a Redis reply made of bulk strings and integers (enough
/// for the replies these tests read).
fn reply(redis: &Redis, words: &[&str]) -> Vec<String> {
    redis
        .command(words)
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
        .map(|l| l.trim_start_matches([':', '+']).to_string())
        .collect()
}

/// The driver's keys of every session in `redis`, sorted.
fn driver_keys(redis: &Redis) -> Vec<String> {
    let mut keys = reply(redis, &["KEYS", "*driver*"]);
    keys.sort();
    keys
}

fn number(redis: &Redis, words: &[&str]) -> i64 {
    let r = reply(redis, words);
    r.first()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{words:?} answered {r:?}"))
}

async fn flushed(d: &Driver) {
    assert!(
        d.flush(PATIENCE).await,
        "the write-behind did not reach Redis in {PATIENCE:?}"
    );
}

#[tokio::test]
async fn a_node_that_takes_over_serves_followers_the_drivers_post_result_masked() {
    let redis = Redis::start();
    let one = node(&redis, limits());
    let driver = Standing::Driver {
        session: "s".into(),
    };
    let follower = Standing::Follower {
        session: "s".into(),
        participant: "p2".into(),
    };

    // On the first node: bound from /account with the customer's cookies,
    // then an order placed with a POST; the result page is kept.
    let mut bound = HeaderMap::new();
    bound.insert(header::COOKIE, HeaderValue::from_static("sid=customer"));
    bound.insert(
        header::REFERER,
        HeaderValue::from_static("http://proxy.test:8080/account"),
    );
    one.record_credentials("s", &bound);
    let mut parts = request(Method::POST, "/order", true);
    parts
        .headers
        .insert(header::COOKIE, HeaderValue::from_static("sid=customer"));
    let Decision::Forward {
        record: Some(_), ..
    } = one
        .before_upstream(&driver, &mut parts, &privacy(&[]))
        .await
    else {
        panic!("the driver's POST navigation must be recorded")
    };
    keep(
        &one,
        "/order",
        "text/html",
        None,
        br#"<h1>Order 42 placed</h1><input type=password value="hunter2"><input id=pin value="9999">"#,
    );
    flushed(&one).await;

    // The second node takes over; the first one hands over.
    let two = node(&redis, limits());
    assert_eq!(two.take_over().await.unwrap(), 1, "one session loaded");
    one.hand_over();
    assert_eq!(one.documents.usage("s"), (0, 0), "the first node forgot");

    // The follower's GET of the POST's URL: the driver's copy, masked.
    let mut parts = request(Method::GET, "/order", true);
    let started = std::time::Instant::now();
    let Decision::Answer(response) = two
        .before_upstream(&follower, &mut parts, &privacy(&["#pin"]))
        .await
    else {
        panic!("the follower must be served the driver's copy, not the site: {parts:?}")
    };
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "served from what was loaded, not after waiting"
    );
    assert_eq!(response.headers()["x-cobrowse-document"], "driver");
    assert!(response.headers().get(header::SET_COOKIE).is_none());
    let page = text(response).await;
    assert!(page.contains("Order 42 placed"), "{page}");
    assert!(
        !page.contains("hunter2") && !page.contains("9999"),
        "masked values leaked: {page}"
    );

    // The page the driver was bound on: read with the driver's cookies,
    // never the follower's.
    let mut parts = request(Method::GET, "/account", true);
    let Decision::Forward {
        follower: Some(f), ..
    } = two
        .before_upstream(&follower, &mut parts, &privacy(&[]))
        .await
    else {
        panic!()
    };
    assert!(f.as_driver);
    assert_eq!(parts.headers[header::COOKIE], "sid=customer");

    // The node that handed over writes and deletes nothing any more, even
    // if a late response or a session end still reaches it.
    keep(&one, "/order", "text/html", None, b"<h1>stale copy</h1>");
    one.end_session("s");
    flushed(&one).await;

    // Handing over deleted nothing: a third node finds it all again.
    let three = node(&redis, limits());
    assert_eq!(three.take_over().await.unwrap(), 1);
    assert_eq!(three.documents.usage("s").0, 1);
    let kept = three.documents.lookup("s", "/order").unwrap();
    assert!(
        String::from_utf8_lossy(&kept.body).contains("Order 42 placed"),
        "the new leader's copy stands"
    );
}

#[tokio::test]
async fn a_follower_who_asks_during_the_take_over_is_served_once_it_is_loaded() {
    let redis = Redis::start();
    let one = node(&redis, limits());
    keep(&one, "/order", "text/html", None, b"<p>Order 42 placed</p>");
    flushed(&one).await;
    let two = node(&redis, limits());
    let asking = two.clone();
    let follower = tokio::spawn(async move {
        let follower = Standing::Follower {
            session: "s".into(),
            participant: "p2".into(),
        };
        let mut parts = request(Method::GET, "/order", true);
        match asking
            .before_upstream(&follower, &mut parts, &privacy(&[]))
            .await
        {
            Decision::Answer(response) => text(response).await,
            _ => String::from("not served the driver's copy"),
        }
    });
    // The follower is waiting (for up to `follower_wait`) when the node
    // takes over.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!follower.is_finished(), "still waiting for the document");
    two.take_over().await.unwrap();
    let page = follower.await.unwrap();
    assert!(page.contains("Order 42 placed"), "{page}");
}

#[tokio::test]
async fn a_take_over_loads_every_session_however_many() {
    let redis = Redis::start();
    let one = node(&redis, limits());
    let sessions: Vec<String> = (0..250).map(|i| format!("s{i}")).collect();
    for s in &sessions {
        one.documents.record(
            s,
            "/order".into(),
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from(format!("<p>{s}</p>")),
        );
    }
    flushed(&one).await;
    let two = node(&redis, limits());
    assert_eq!(two.take_over().await.unwrap(), sessions.len());
    for s in &sessions {
        let kept = two.documents.lookup(s, "/order").unwrap();
        assert_eq!(kept.body, format!("<p>{s}</p>"));
    }
}

#[tokio::test]
async fn redis_holds_a_session_within_its_bounds() {
    let redis = Redis::start();
    let bounds = DriverLimits {
        documents_per_session: 2,
        bytes_per_session: 10,
        ..limits()
    };
    let one = node(&redis, bounds);
    let docs = format!("{PREFIX}{{s}}:driver:docs");
    let order = format!("{PREFIX}{{s}}:driver:order");
    let meta = format!("{PREFIX}{{s}}:driver:meta");
    let record = |target: &str, body: &'static str| {
        one.documents.record(
            "s",
            target.into(),
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(body.as_bytes()),
        )
    };

    // Each written on its own, so Redis's own bounds decide.
    record("/a", "123456");
    flushed(&one).await;
    record("/b", "12345");
    flushed(&one).await;
    assert_eq!(reply(&redis, &["ZRANGE", &order, "0", "-1"]), ["/b"]);
    assert_eq!(reply(&redis, &["HKEYS", &docs]), ["/b"], "over the bytes");
    assert_eq!(number(&redis, &["HGET", &meta, "bytes"]), 5);
    record("/c", "1");
    flushed(&one).await;
    record("/d", "1");
    flushed(&one).await;
    assert_eq!(
        reply(&redis, &["ZRANGE", &order, "0", "-1"]),
        ["/c", "/d"],
        "over the count"
    );
    assert_eq!(number(&redis, &["HLEN", &docs]), 2);
    assert_eq!(number(&redis, &["HGET", &meta, "bytes"]), 2);
    // Larger than the whole budget: kept nowhere.
    record("/huge", "12345678901");
    flushed(&one).await;
    assert_eq!(number(&redis, &["HEXISTS", &docs, "/huge"]), 0);
    // The documents expire with the age bound.
    for key in [&docs, &order, &meta] {
        let ttl = number(&redis, &["PTTL", key]);
        assert!(
            0 < ttl && ttl <= bounds.max_age.as_millis() as i64,
            "{key}: {ttl}"
        );
    }

    let two = node(&redis, bounds);
    two.take_over().await.unwrap();
    assert_eq!(two.documents.usage("s"), (2, 2));
}

#[tokio::test]
async fn kept_documents_expire_in_redis_with_the_age_bound() {
    let redis = Redis::start();
    let bounds = DriverLimits {
        max_age: Duration::from_millis(300),
        ..limits()
    };
    let one = node(&redis, bounds);
    keep(&one, "/a", "text/html", None, b"<p>soon gone</p>");
    flushed(&one).await;
    assert_eq!(number(&redis, &["EXISTS", "test:{s}:driver:docs"]), 1);
    let deadline = std::time::Instant::now() + PATIENCE;
    while number(&redis, &["EXISTS", "test:{s}:driver:docs"]) == 1 {
        assert!(std::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let two = node(&redis, bounds);
    assert_eq!(two.take_over().await.unwrap(), 0, "nothing left to load");
    assert_eq!(
        number(&redis, &["SCARD", "test:driver:sessions"]),
        0,
        "the expired session is taken out of the list"
    );
}

#[tokio::test]
async fn the_end_of_a_session_removes_its_redis_keys_and_a_forged_cookie_removes_nothing() {
    let redis = Redis::start();
    let config = crate::config::Config::parse(
        &format!(
            "upstream = \"http://127.0.0.1:9\"\n{}",
            redis.node_config(PREFIX)
        ),
        None,
        &Default::default(),
    )
    .unwrap();
    let hub = Hub::new(Arc::new(config.clone())).unwrap();
    let d = Driver::for_store(config.driver, &config.store).unwrap();
    let sessions = Sessions::new(hub.clone(), d.clone());
    let shared = hub.shared().clone();
    let (conn, _rx, _cancel) =
        shared.connect(std::net::Ipv4Addr::LOCALHOST.into(), Role::Customer, None);
    shared.call(conn).await.unwrap();
    let session = shared.lock().sessions.keys().next().unwrap().clone();
    let mut bound = HeaderMap::new();
    bound.insert(header::COOKIE, HeaderValue::from_static("sid=customer"));
    d.record_credentials(&session, &bound);
    d.documents.record(
        &session,
        "/order".into(),
        StatusCode::OK,
        HeaderMap::new(),
        Bytes::from_static(b"<p>kept</p>"),
    );
    flushed(&d).await;
    let kinds = ["cred", "docs", "meta", "order"];
    let expected: Vec<String> = kinds
        .iter()
        .map(|k| format!("{PREFIX}{{{session}}}:driver:{k}"))
        .chain([format!("{PREFIX}driver:sessions")])
        .collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(driver_keys(&redis), expected_sorted);
    let cred_ttl = number(&redis, &["PTTL", &expected[0]]);
    assert!(
        0 < cred_ttl && cred_ttl <= 24 * 3600 * 1000,
        "the customer's cookies expire with the session: {cred_ttl}"
    );

    // Anyone can send a participant cookie naming the session with a wrong
    // secret: it stands alone, and nothing kept for the session goes.
    let mut forged = HeaderMap::new();
    forged.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("cobrowse_participant={session}.wrong")).unwrap(),
    );
    assert_eq!(sessions.standing(&mut forged), Standing::Alone);
    flushed(&d).await;
    assert_eq!(driver_keys(&redis), expected_sorted, "Redis kept all");
    assert_eq!(d.documents.usage(&session).0, 1, "memory kept all");

    // The session ends: everything of it goes from Redis too, and a
    // document that finishes arriving after the end is not written there.
    shared.hangup(conn).unwrap();
    flushed(&d).await;
    d.documents.record(
        &session,
        "/late".into(),
        StatusCode::OK,
        HeaderMap::new(),
        Bytes::from_static(b"<p>still streaming at the end</p>"),
    );
    flushed(&d).await;
    assert_eq!(driver_keys(&redis), Vec::<String>::new());
    let mut follower = HeaderMap::new();
    d.apply_credentials(&session, &mut follower);
    assert!(follower.get(header::COOKIE).is_none());
}

#[tokio::test]
async fn while_redis_fails_memory_serves_and_the_writes_are_retried() {
    let mut redis = Redis::start();
    let d = node(&redis, limits());
    redis.stop();
    let mut bound = HeaderMap::new();
    bound.insert(header::COOKIE, HeaderValue::from_static("sid=customer"));
    d.record_credentials("s", &bound);
    keep(&d, "/order", "text/html", None, b"<p>placed</p>");
    // Served from memory at once, Redis or not.
    let follower = Standing::Follower {
        session: "s".into(),
        participant: "p".into(),
    };
    let Decision::Answer(response) = d
        .before_upstream(
            &follower,
            &mut request(Method::GET, "/order", true),
            &privacy(&[]),
        )
        .await
    else {
        panic!("served from memory")
    };
    assert!(text(response).await.contains("placed"));
    assert!(
        !d.flush(Duration::from_millis(300)).await,
        "nothing can be written while Redis is down"
    );

    // Redis is back (empty): the noted writes reach it.
    redis.run().unwrap();
    flushed(&d).await;
    assert_eq!(
        number(&redis, &["HEXISTS", "test:{s}:driver:docs", "/order"]),
        1
    );
    assert_eq!(
        reply(&redis, &["HGET", "test:{s}:driver:cred", "cookie"]),
        ["sid=customer"]
    );
}

#[tokio::test]
async fn the_in_memory_default_writes_nothing_to_redis() {
    let redis = Redis::start();
    let d = Driver::for_store(limits(), &Store::Memory).unwrap();
    let mut bound = HeaderMap::new();
    bound.insert(header::COOKIE, HeaderValue::from_static("sid=customer"));
    d.record_credentials("s", &bound);
    keep(&d, "/order", "text/html", None, b"<p>placed</p>");
    d.end_session("s");
    assert!(d.flush(Duration::ZERO).await);
    assert_eq!(d.take_over().await.unwrap(), 0);
    assert_eq!(number(&redis, &["DBSIZE"]), 0);
    // The same with Redis named writes there.
    let r = node(&redis, limits());
    keep(&r, "/order", "text/html", None, b"<p>placed</p>");
    flushed(&r).await;
    assert!(number(&redis, &["DBSIZE"]) > 0);
}
