//! A follower reads what the driver read, and nothing else as the customer;
//! what cannot be masked never reaches it. Over plain HTTP with bound
//! participant cookies, against the real binary and a shop that counts
//! every request it sees.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Got, fetch};
use crate::hub::{connected_call, header, http};
use crate::support::redis::Redis;
use crate::support::shop::{CARD_ON_FILE, CVC_ON_FILE, PIN_ON_FILE, Shop};
use crate::support::{Cobrowse, wait_for};

/// A shared session over the shop: the customer signed in and bound on
/// `/account`, the operator bound as its follower.
struct Session {
    shop: Shop,
    server: Cobrowse,
    /// `Cookie` of the customer's browser: the shop's session and the
    /// participant cookie.
    driver: String,
    /// `Cookie` of the operator's browser: the participant cookie only.
    follower: String,
    session: String,
    /// The customer's and the operator's hub connections: they keep the
    /// session alive.
    clients: (crate::hub::Client, crate::hub::Client),
}

/// The participant cookie for `resume` in `session`, as the agent obtains it
/// from the page at `referer` with the browser's `cookie`.
async fn bind(
    server: &Cobrowse,
    session: &str,
    token: &str,
    cookie: &str,
    referer: &str,
) -> String {
    let origin = format!("http://{}", server.addr);
    let body = serde_json::json!({ "session": session, "token": token }).to_string();
    let referer = format!("{origin}{referer}");
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Origin", origin.as_str()),
        ("Referer", referer.as_str()),
    ];
    if !cookie.is_empty() {
        headers.push(("Cookie", cookie));
    }
    let (status, headers, text) = http(server, "POST", "/__cobrowse/bind", &headers, &body).await;
    assert_eq!(status, 200, "bind failed: {text}\n{}", server.output());
    header(&headers, "set-cookie")
        .expect("the participant cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// The single-use bind token the participant's connection got in `joined`.
fn token_of(seen: &[Value]) -> String {
    seen.iter()
        .find(|m| m["type"] == "joined")
        .and_then(|m| m["bind"].as_str())
        .expect("a joined message with a bind token")
        .to_string()
}

impl Session {
    async fn start(extra: &str) -> Session {
        Session::start_on(extra, "/account").await
    }

    /// As [`Session::start`], with the customer bound on `page`.
    async fn start_on(extra: &str, page: &str) -> Session {
        let shop = Shop::start().await;
        let server = Cobrowse::with_config(&Cobrowse::config_for(
            &shop.origin.url(),
            &format!("[driver]\nfollower_wait_ms = 300\n{extra}"),
        ))
        .await;
        let login = fetch("POST", &server.url("/login"), &[]).await;
        let sid = login
            .header("set-cookie")
            .split(';')
            .next()
            .unwrap()
            .to_string();
        assert!(
            sid.starts_with("sid="),
            "the shop signs the customer in: {:?}",
            login.headers
        );
        let (customer, operator, session) = connected_call(&server).await;
        let driver = bind(&server, &session, &token_of(&customer.seen), &sid, page).await;
        let follower = bind(
            &server,
            &session,
            &token_of(&operator.seen),
            "",
            "/__cobrowse/console",
        )
        .await;
        Session {
            shop,
            server,
            driver: format!("{sid}; {driver}"),
            follower,
            session,
            clients: (customer, operator),
        }
    }

    async fn driver_get(&self, path: &str, dest: &str) -> Got {
        fetch(
            "GET",
            &self.server.url(path),
            &[("Cookie", &self.driver), ("Sec-Fetch-Dest", dest)],
        )
        .await
    }

    async fn follower_get(&self, path: &str, headers: &[(&str, &str)]) -> Got {
        let mut all = vec![("Cookie", self.follower.as_str())];
        all.extend_from_slice(headers);
        fetch("GET", &self.server.url(path), &all).await
    }

    fn context(&self, got: &Got) -> String {
        format!(
            "status {}\nheaders {:?}\nbody {}\nshop saw {:#?}\n---- server ----\n{}",
            got.status,
            got.headers,
            got.text(),
            self.shop.log(),
            self.server.output()
        )
    }
}

const NAVIGATE: [(&str, &str); 2] = [
    ("Sec-Fetch-Mode", "navigate"),
    ("Sec-Fetch-Dest", "document"),
];
const SCRIPT: [(&str, &str); 2] = [("Sec-Fetch-Mode", "cors"), ("Sec-Fetch-Dest", "empty")];

#[tokio::test]
async fn a_get_with_a_side_effect_made_only_by_a_follower_is_not_made_as_the_customer() {
    let s = Session::start("").await;
    // The page the customer was on when bound is read as the customer.
    let account = s.follower_get("/account", &NAVIGATE).await;
    assert!(
        account.text().contains("Welcome, "),
        "{}",
        s.context(&account)
    );

    for headers in [&NAVIGATE, &SCRIPT] {
        let got = s.follower_get("/transfer?to=mallory", headers).await;
        assert_eq!(
            s.shop.transfers(),
            0,
            "the follower's GET ran with the customer's cookies:\n{}",
            s.context(&got)
        );
        assert!(!got.text().contains("Transfer"), "{}", s.context(&got));
    }
    // The shop saw the reads, without a session: it asked to sign in.
    assert_eq!(s.shop.count("GET /transfer"), 2, "{:#?}", s.shop.log());
    // The driver's own is the customer's business.
    s.driver_get("/transfer?to=landlord", "document").await;
    assert_eq!(s.shop.transfers(), 1);
}

#[tokio::test]
async fn a_scripts_read_is_served_from_what_the_driver_received_with_masked_keys_blanked() {
    let s = Session::start("").await;
    let driver = s.driver_get("/api/account", "empty").await;
    let driver_json: Value = serde_json::from_slice(&driver.body).unwrap();
    assert_eq!(driver_json["cardNumber"], CARD_ON_FILE);

    let got = s.follower_get("/api/account", &SCRIPT).await;
    assert_eq!(got.status, 200, "{}", s.context(&got));
    let json: Value =
        serde_json::from_slice(&got.body).unwrap_or_else(|_| panic!("{}", s.context(&got)));
    assert_eq!(
        json["serial"],
        driver_json["serial"],
        "the driver's very response: {}",
        s.context(&got)
    );
    assert_eq!(json["holder"], driver_json["holder"]);
    assert_eq!(
        (json["cardNumber"].as_str(), json["cvc"].as_str()),
        (Some(""), Some("")),
        "{}",
        s.context(&got)
    );
    assert!(!got.text().contains(CARD_ON_FILE) && !got.text().contains(CVC_ON_FILE));
    assert_eq!(
        s.shop.count("GET /api/account"),
        1,
        "only the driver's read reached the shop: {:#?}",
        s.shop.log()
    );

    // JSON the follower reads itself is masked too; what cannot be parsed
    // is refused.
    let got = s
        .follower_get("/offers.json", &[("Sec-Fetch-Dest", "empty")])
        .await;
    assert!(
        got.text().contains(r#""card_number":"""#) && !got.text().contains(CARD_ON_FILE),
        "{}",
        s.context(&got)
    );
    let got = s.follower_get("/broken.json", &[]).await;
    assert_eq!(
        (got.status.as_u16(), got.header("x-cobrowse-refused")),
        (403, "unmaskable"),
        "{}",
        s.context(&got)
    );
    assert!(!got.text().contains(CARD_ON_FILE));
}

#[tokio::test]
async fn what_cannot_be_masked_is_refused_to_a_follower_never_passed_raw() {
    let s = Session::start("[proxy]\nhtml_memory_limit = 4096\n").await;
    // Asked whole: the range is dropped and the page is masked.
    let got = s.follower_get("/ranged", &[("Range", "bytes=0-")]).await;
    assert_eq!(got.status, 200, "{}", s.context(&got));
    assert!(
        got.text().contains("Ranged") && !got.text().contains(PIN_ON_FILE),
        "{}",
        s.context(&got)
    );
    // A 206 anyway, and an encoding the proxy cannot decode: refused.
    for path in ["/partial", "/odd"] {
        let got = s.follower_get(path, &[]).await;
        assert_eq!(
            (got.status.as_u16(), got.header("x-cobrowse-refused")),
            (403, "unmaskable"),
            "{path}: {}",
            s.context(&got)
        );
        assert!(
            !got.text().contains(PIN_ON_FILE),
            "{path}: {}",
            s.context(&got)
        );
    }
    // Past the rewriter's memory limit: cut off with a notice.
    let got = s.follower_get("/big", &NAVIGATE).await;
    let text = got.text();
    assert!(
        !text.contains(PIN_ON_FILE) && !text.contains("xxxxxxxxxxxx"),
        "{}",
        &text[..text.len().min(3000)]
    );
    assert!(
        text.contains("could not be checked for the customer's masked values"),
        "{}",
        &text[..text.len().min(3000)]
    );
    assert!(
        s.server.output().contains("cut off"),
        "logged: {}",
        s.server.output()
    );
    // The customer's own browser still gets every one of them as before.
    let got = s.driver_get("/big", "document").await;
    assert!(got.text().contains(PIN_ON_FILE));
}

#[tokio::test]
async fn followers_cannot_act_as_the_customer_through_other_doors() {
    let s = Session::start("").await;
    let before = s.shop.log().len();
    for (name, value) in [
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-Method-Override", "PUT"),
        ("X-HTTP-Method", "DELETE"),
        ("Accept", "text/event-stream"),
    ] {
        // The page the customer was on: read as the customer, were it let through.
        let got = s
            .follower_get("/account", &[NAVIGATE[0], NAVIGATE[1], (name, value)])
            .await;
        assert_eq!(
            (got.status.as_u16(), got.header("x-cobrowse-refused")),
            (403, "one-driver"),
            "{name}: {}",
            s.context(&got)
        );
    }
    // The site's own WebSocket.
    let (status, headers, text) = http(
        &s.server,
        "GET",
        "/socket",
        &[
            ("Cookie", &s.follower),
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        "",
    )
    .await;
    assert_eq!(
        (status, header(&headers, "x-cobrowse-refused")),
        (403, Some("one-driver")),
        "{text}"
    );
    assert_eq!(
        s.shop.log().len(),
        before,
        "none of them reached the shop: {:#?}",
        s.shop.log()
    );
}

#[tokio::test]
async fn a_follower_never_receives_the_sites_cookies() {
    // The wallet renews the customer's session cookie on every view; the
    // follower reads it as the customer (the page the customer was on).
    let s = Session::start_on("", "/wallet").await;
    for (path, headers) in [
        ("/wallet", &NAVIGATE[..]),
        ("/tracked", &NAVIGATE[..]),
        ("/tracked", &[][..]),
    ] {
        let got = s.follower_get(path, headers).await;
        assert_eq!(got.status, 200, "{path}: {}", s.context(&got));
        assert!(
            got.headers.get("set-cookie").is_none(),
            "{path}: {}",
            s.context(&got)
        );
    }
    let got = s.driver_get("/tracked", "document").await;
    assert!(
        got.header("set-cookie").starts_with("tracker="),
        "the customer's own browser gets them"
    );
}

#[tokio::test]
async fn a_url_whose_masked_values_the_agent_blanked_is_served_the_drivers_document() {
    let s = Session::start("").await;
    let driver = s
        .driver_get("/search?q=teapot&pw=hunter2&cardno=4111", "document")
        .await;
    assert!(driver.text().contains("Results for teapot"));
    // The agent shares the navigation as `?q=teapot&pw=&cardno=`.
    let got = s
        .follower_get("/search?q=teapot&pw=&cardno=", &NAVIGATE)
        .await;
    assert_eq!(
        got.header("x-cobrowse-document"),
        "driver",
        "{}",
        s.context(&got)
    );
    assert!(
        got.text().contains("Results for teapot"),
        "{}",
        s.context(&got)
    );
    assert_eq!(
        s.shop.count("GET /search"),
        1,
        "the follower's copy is the driver's: {:#?}",
        s.shop.log()
    );
}

#[tokio::test]
async fn with_a_redis_store_what_the_driver_keeps_is_in_redis_until_the_session_ends() {
    let redis = Redis::start();
    let mut s = Session::start(&redis.node_config("it:")).await;
    let driver = s.driver_get("/api/account", "empty").await;
    assert_eq!(driver.status, 200, "{}", s.context(&driver));
    let docs = format!("it:{{{}}}:driver:docs", s.session);
    let cred = format!("it:{{{}}}:driver:cred", s.session);
    let sid = s.driver.split(';').next().unwrap().to_string();
    // What Redis and the server saw, printed when a wait below fails.
    let seen = || {
        format!(
            "redis holds {}\n---- server ----\n{}",
            redis.command(&["KEYS", "*"]),
            s.server.output()
        )
    };
    wait_for(
        "the driver's read and cookies written behind to Redis",
        Duration::from_secs(10),
        || async {
            let kept = redis.command(&["HEXISTS", &docs, "/api/account"]) == ":1\r\n";
            let cookie = redis.command(&["HGET", &cred, "cookie"]);
            (kept && cookie.contains(&sid)).then_some(())
        },
        &seen,
    )
    .await;
    // Nothing of the customer's cookies or kept reads reaches the log.
    assert!(!s.server.output().contains(&sid), "{}", s.server.output());

    // The customer hangs up: the session ends, and its keys go.
    s.clients.0.send(json!({"type": "hangup"})).await;
    wait_for(
        "the driver's keys removed from Redis",
        Duration::from_secs(10),
        || async { (redis.command(&["KEYS", "*driver*"]) == "*0\r\n").then_some(()) },
        &seen,
    )
    .await;
}

#[tokio::test]
async fn while_redis_is_down_followers_are_served_from_memory_and_the_writes_reach_redis_when_it_is_back()
 {
    let mut redis = Redis::start();
    let s = Session::start(&redis.node_config("it:")).await;
    redis.stop();
    let driver = s.driver_get("/api/account", "empty").await;
    assert_eq!(driver.status, 200, "{}", s.context(&driver));
    let got = s.follower_get("/api/account", &SCRIPT).await;
    assert_eq!(
        (got.status.as_u16(), got.header("x-cobrowse-document")),
        (200, "driver"),
        "{}",
        s.context(&got)
    );
    assert_eq!(s.shop.count("GET /api/account"), 1, "{:#?}", s.shop.log());

    // Every failed attempt is counted; the outage is logged once.
    let failures = || async {
        let text = http(&s.server, "GET", "/__cobrowse/metrics", &[], "")
            .await
            .2;
        crate::observe::sample(
            &text,
            "cobrowse_store_failures_total",
            &[("operation", "documents")],
        )
        .unwrap_or(0.0)
    };
    wait_for(
        "two failed writes counted",
        Duration::from_secs(15),
        || async { (failures().await >= 2.0).then_some(()) },
        || s.server.output(),
    )
    .await;
    let logged = "keeping the driver's documents and credentials in Redis failed";
    assert_eq!(
        s.server.output().matches(logged).count(),
        1,
        "{}",
        s.server.output()
    );

    // Redis is back (empty): the write goes through, and the log says so.
    redis.run().unwrap();
    let docs = format!("it:{{{}}}:driver:docs", s.session);
    wait_for(
        "the kept read written once Redis answers",
        Duration::from_secs(15),
        || async {
            let written = redis.command(&["HEXISTS", &docs, "/api/account"]) == ":1\r\n";
            (written && s.server.output().contains("written to Redis again")).then_some(())
        },
        || s.server.output(),
    )
    .await;
}
