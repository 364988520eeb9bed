//! The hub against the running binary, with real WebSocket clients: the
//! call, the queue and its offers, replay, invite, hang-up both ways,
//! reconnecting, timeouts, authentication and bad input.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::support::{Cobrowse, OPERATOR_HASH, OPERATOR_PASSWORD, OPERATOR_USER};

mod bounds;
mod cluster;
mod conversation;
mod outage;
mod store;

/// How long any one expected message may take.
const WAIT: Duration = Duration::from_secs(5);

/// An upstream nobody listens on: the hub needs none.
const NO_UPSTREAM: &str = "http://127.0.0.1:9";

async fn start(extra: &str) -> Cobrowse {
    Cobrowse::with_config(&Cobrowse::config_for(NO_UPSTREAM, extra)).await
}

/// A second operator account, `op2`, with the same password.
fn second_operator() -> String {
    format!(
        "[[operators]]\nuser = \"op2\"\nname = \"Oscar Operator\"\npassword_hash = \"{OPERATOR_HASH}\"\n"
    )
}

type Exchange = (u16, Vec<(String, String)>, String);

/// A raw HTTP/1.1 exchange with the site's door: status, headers
/// (lowercased names) and body.
pub(crate) async fn http(
    proxy: &Cobrowse,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Exchange {
    http_to(proxy.addr, method, path, headers, body).await
}

/// The same with the operator console's door.
pub(crate) async fn console_http(
    proxy: &Cobrowse,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Exchange {
    http_to(proxy.console_addr, method, path, headers, body).await
}

async fn http_to(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Exchange {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("HTTP response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Logs in and returns the `Cookie` header value to send.
async fn login_as(proxy: &Cobrowse, user: &str) -> String {
    let body = format!("user={user}&password={OPERATOR_PASSWORD}");
    let origin = format!("http://{}", proxy.console_addr);
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", origin.as_str()),
    ];
    let (status, headers, text) =
        console_http(proxy, "POST", "/__cobrowse/login", &form, &body).await;
    assert_eq!(status, 204, "login failed: {text}\n{}", proxy.output());
    let set = header(&headers, "set-cookie").expect("a cookie");
    set.split(';').next().unwrap().to_string()
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client that remembers everything it received, for failure
/// messages.
pub(crate) struct Client {
    name: &'static str,
    ws: Ws,
    pub(crate) seen: Vec<Value>,
    log: String,
}

impl Client {
    /// Customers connect on the site's door, operators on the console's,
    /// each from its own origin.
    async fn open(
        proxy: &Cobrowse,
        name: &'static str,
        role: &str,
        cookie: Option<&str>,
    ) -> Client {
        let origin = if role == "operator" {
            proxy.console_origin()
        } else {
            format!("http://{}", proxy.addr)
        };
        Self::open_from(proxy, name, role, cookie, &origin).await
    }

    /// Opens the WebSocket as a page of `origin` would.
    async fn open_from(
        proxy: &Cobrowse,
        name: &'static str,
        role: &str,
        cookie: Option<&str>,
        origin: &str,
    ) -> Client {
        let path = format!("/__cobrowse/ws?role={role}");
        let url = if role == "operator" {
            proxy.console_ws_url(&path)
        } else {
            proxy.ws_url(&path)
        };
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert("Origin", origin.parse().unwrap());
        if let Some(c) = cookie {
            req.headers_mut().insert("Cookie", c.parse().unwrap());
        }
        let (ws, _) = connect_async(req)
            .await
            .unwrap_or_else(|e| panic!("{name} could not connect: {e}\n{}", proxy.output()));
        Client {
            name,
            ws,
            seen: Vec::new(),
            log: String::new(),
        }
    }

    async fn customer(proxy: &Cobrowse, name: &'static str) -> Client {
        Self::open(proxy, name, "customer", None).await
    }

    async fn operator(proxy: &Cobrowse, name: &'static str, user: &str) -> Client {
        let cookie = login_as(proxy, user).await;
        Self::open(proxy, name, "operator", Some(&cookie)).await
    }

    pub(crate) async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text))
            .await
            .unwrap_or_else(|e| panic!("{} could not send: {e}", self.name));
    }

    /// The next message, or `None` if none arrives within `wait`.
    async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let m = tokio::time::timeout(wait, self.ws.next())
                .await
                .ok()??
                .ok()?;
            match m {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).expect("the hub sends JSON");
                    // Long messages are cut so a failure stays readable.
                    let shown: String = t.chars().take(400).collect();
                    let cut = if shown.len() < t.len() { " …" } else { "" };
                    self.log.push_str(&format!("  {shown}{cut}\n"));
                    self.seen.push(v.clone());
                    return Some(v);
                }
                Message::Close(f) => {
                    self.log.push_str(&format!("  <close {f:?}>\n"));
                    return None;
                }
                _ => continue,
            }
        }
    }

    /// Waits for the next message of type `kind` matching `pred`, skipping
    /// others; panics with everything received and the server's output.
    async fn expect_where(
        &mut self,
        proxy: &Cobrowse,
        kind: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(v) if v["type"] == kind && pred(&v) => return v,
                Some(_) => continue,
                None => panic!(
                    "{} did not receive a matching `{kind}` in {WAIT:?}; it received:\n{}\n---- server output ----\n{}",
                    self.name,
                    self.log,
                    proxy.output()
                ),
            }
        }
    }

    async fn expect(&mut self, proxy: &Cobrowse, kind: &str) -> Value {
        self.expect_where(proxy, kind, |_| true).await
    }

    /// The very next message must be of type `kind`.
    async fn expect_next(&mut self, proxy: &Cobrowse, kind: &str) -> Value {
        match self.next_within(WAIT).await {
            Some(v) if v["type"] == kind => v,
            other => panic!(
                "{} expected `{kind}` next, got {other:?}; it received:\n{}\n---- server output ----\n{}",
                self.name,
                self.log,
                proxy.output()
            ),
        }
    }

    async fn error(&mut self, proxy: &Cobrowse, code: &str) -> Value {
        self.expect_where(proxy, "error", |v| v["code"] == code)
            .await
    }
}

fn command(key: &str, f: &str, arg: Value) -> Value {
    json!({"type": "command", "key": key, "attribute": "others", "fn": f, "args": [arg]})
}

/// A customer calls and an operator responds; returns both and the session.
pub(crate) async fn connected_call(proxy: &Cobrowse) -> (Client, Client, String) {
    let mut op = Client::operator(proxy, "operator", OPERATOR_USER).await;
    op.send(json!({"type": "ready"})).await;
    op.expect(proxy, "queue").await;
    let mut customer = Client::customer(proxy, "customer").await;
    customer.send(json!({"type": "call"})).await;
    let joined = customer.expect_next(proxy, "joined").await;
    let session = joined["session"].as_str().unwrap().to_string();
    let offer = op.expect(proxy, "offer").await;
    assert_eq!(offer["session"], session.as_str());
    op.send(json!({"type": "respond", "session": session}))
        .await;
    op.expect(proxy, "joined").await;
    op.expect_next(proxy, "replay").await;
    customer
        .expect_where(proxy, "status", |v| v["state"] == "connected")
        .await;
    (customer, op, session)
}

#[tokio::test]
async fn the_whole_call() {
    let proxy = start("").await;
    let mut op = Client::operator(&proxy, "operator", OPERATOR_USER).await;
    op.send(json!({"type": "ready"})).await;
    let queue = op.expect_next(&proxy, "queue").await;
    assert_eq!(queue["calls"], json!([]));
    assert_eq!(queue["offer"], Value::Null);

    let mut customer = Client::customer(&proxy, "customer").await;
    customer.send(json!({"type": "call"})).await;
    let joined = customer.expect_next(&proxy, "joined").await;
    let session = joined["session"].as_str().unwrap().to_string();
    assert_eq!(session.len(), 32, "{joined}");
    assert!(session.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(joined["role"], "customer");
    assert_eq!(joined["resume"].as_str().unwrap().len(), 32);
    let status = customer.expect_next(&proxy, "status").await;
    assert!(
        status["state"] == "queued" || status["state"] == "offered",
        "{status}"
    );
    assert_eq!(status["position"], 1);
    assert_eq!(status["control"], false);

    // The state the customer publishes before anyone responds is stored.
    customer.send(json!({"type": "command", "key": "top", "attribute": "others", "fn": "navigate", "args": ["/shop"]})).await;
    customer.send(json!({"type": "command", "key": "top/form#f/input[name=q]", "attribute": "all", "fn": "value", "args": ["shoes"]})).await;
    // The echo says both are stored.
    customer
        .expect_where(&proxy, "command", |v| v["args"][0] == "shoes")
        .await;

    let offer = op.expect(&proxy, "offer").await;
    assert_eq!(offer["session"], session.as_str());
    op.send(json!({"type": "respond", "session": session}))
        .await;
    let joined_op = op.expect(&proxy, "joined").await;
    assert_eq!(joined_op["role"], "operator");
    assert!(
        op.seen.iter().all(|v| v["type"] != "command"),
        "an operator who had not joined received the session's commands: {:#?}",
        op.seen
    );
    let replay = op.expect_next(&proxy, "replay").await;
    let commands = replay["commands"].as_array().unwrap();
    assert_eq!(commands.len(), 2, "{replay}");
    assert_eq!(commands[0]["fn"], "navigate");
    assert_eq!(commands[1]["args"][0], "shoes");
    assert_eq!(commands[0]["session"], session.as_str());
    assert_eq!(commands[0]["sender"], joined["participant"]);
    assert_eq!(
        (commands[0]["seq"].as_u64(), commands[1]["seq"].as_u64()),
        (Some(1), Some(2))
    );
    let status = op.expect_next(&proxy, "status").await;
    assert_eq!(status["state"], "connected");
    let names: Vec<&str> = status["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Customer", "Olivia Operator"]);
    customer
        .expect_where(&proxy, "status", |v| v["state"] == "connected")
        .await;

    // Live: the customer's commands reach the operator, stamped, in order.
    for i in 0..20 {
        customer
            .send(command(
                "top/form#f/input[name=q]",
                "value",
                json!(format!("v{i}")),
            ))
            .await;
    }
    for i in 0..20 {
        let c = op.expect(&proxy, "command").await;
        assert_eq!(c["args"][0], format!("v{i}"));
        assert_eq!(c["seq"], 3 + i);
    }
    // `all` echoes to the sender too; `others` does not.
    customer.send(json!({"type": "command", "key": "top/draw", "attribute": "all", "fn": "pointer", "args": [1, 2]})).await;
    let echo = customer.expect(&proxy, "command").await;
    assert_eq!(echo["fn"], "pointer");
    op.expect_where(&proxy, "command", |v| v["fn"] == "pointer")
        .await;

    // The operator is view-only until the customer grants control.
    op.send(command("top/form#f/input[name=q]", "value", json!("boots")))
        .await;
    let e = op.error(&proxy, "no_control").await;
    assert_eq!(e["request"], "command");
    op.send(json!({"type": "command", "key": "top/pointer/op", "attribute": "others", "fn": "pointer", "args": [5, 5]})).await;
    customer
        .expect_where(&proxy, "command", |v| {
            v["fn"] == "pointer" && v["args"][0] == 5
        })
        .await;
    customer
        .send(json!({"type": "control", "granted": true}))
        .await;
    op.expect_where(&proxy, "status", |v| v["control"] == true)
        .await;
    op.send(command("top/form#f/input[name=q]", "value", json!("boots")))
        .await;
    customer
        .expect_where(&proxy, "command", |v| v["args"][0] == "boots")
        .await;
    // ...and takes it back.
    customer
        .send(json!({"type": "control", "granted": false}))
        .await;
    op.expect_where(&proxy, "status", |v| v["control"] == false)
        .await;
    op.send(command(
        "top/form#f/input[name=q]",
        "value",
        json!("sandals"),
    ))
    .await;
    op.error(&proxy, "no_control").await;

    // Operator hangs up: it leaves, the customer alone again: ended.
    op.send(json!({"type": "hangup"})).await;
    op.expect_where(&proxy, "left", |v| v["session"] == session.as_str())
        .await;
    let ended = customer.expect(&proxy, "ended").await;
    assert_eq!(ended["reason"], "operator_left");
    // ...and may call again: a new session.
    customer.send(json!({"type": "call"})).await;
    let again = customer.expect(&proxy, "joined").await;
    assert_ne!(again["session"], session.as_str());
    // The operator is waiting again and gets the new call.
    op.expect_where(&proxy, "offer", |v| v["session"] == again["session"])
        .await;
    let out = proxy.output();
    assert!(
        out.contains("control_granted") && out.contains("control_revoked"),
        "the audit log records control changes"
    );
}

#[tokio::test]
async fn customer_hangup_ends_the_session_for_everyone() {
    let proxy = start("").await;
    let (mut customer, mut op, session) = connected_call(&proxy).await;
    customer.send(json!({"type": "hangup"})).await;
    for c in [&mut customer, &mut op] {
        let e = c.expect(&proxy, "ended").await;
        assert_eq!(
            (e["reason"].as_str(), e["session"].as_str()),
            (Some("customer_hangup"), Some(session.as_str()))
        );
    }
    // Nothing of the session is left to write into.
    op.send(command("top", "scroll", json!(1))).await;
    op.error(&proxy, "not_in_session").await;
    let out = proxy.output();
    assert!(
        out.contains("customer_hangup") && out.contains("audit"),
        "{out}"
    );
}

#[tokio::test]
async fn resume_after_a_reconnect_brings_the_participant_up_to_date() {
    let proxy = start("").await;
    let (mut customer, mut op, session) = connected_call(&proxy).await;
    let joined = customer
        .seen
        .iter()
        .find(|v| v["type"] == "joined")
        .unwrap()
        .clone();
    customer
        .send(command("top/a", "value", json!("before")))
        .await;
    op.expect(&proxy, "command").await;
    drop(customer);
    op.expect_where(&proxy, "status", |v| {
        v["participants"][0]["connected"] == false
    })
    .await;
    // While the customer is away the operator's pointer moves on.
    op.send(json!({"type": "command", "key": "top/pointer", "attribute": "all", "fn": "pointer", "args": [3, 4]})).await;
    // Its echo says it is stored.
    op.expect_where(&proxy, "command", |c| c["fn"] == "pointer")
        .await;

    let mut back = Client::customer(&proxy, "customer again").await;
    back.send(json!({"type": "resume", "session": session, "resume": joined["resume"]}))
        .await;
    let again = back.expect_next(&proxy, "joined").await;
    assert_eq!(again["participant"], joined["participant"]);
    let replay = back.expect_next(&proxy, "replay").await;
    let fns: Vec<&str> = replay["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["fn"].as_str().unwrap())
        .collect();
    assert_eq!(fns, ["value", "pointer"], "{replay}");
    back.expect_next(&proxy, "status").await;
    op.expect_where(&proxy, "status", |v| {
        v["participants"][0]["connected"] == true
    })
    .await;
    back.send(command("top/a", "value", json!("after"))).await;
    op.expect_where(&proxy, "command", |v| v["args"][0] == "after")
        .await;

    // The same participant resumed elsewhere: the older connection is
    // closed with 4001 and the newer one receives.
    let mut third = Client::customer(&proxy, "customer on a third connection").await;
    third
        .send(json!({"type": "resume", "session": session, "resume": joined["resume"]}))
        .await;
    third.expect_next(&proxy, "joined").await;
    // After its replay, everything else reaches it live.
    third.expect_next(&proxy, "replay").await;
    let closed = loop {
        match tokio::time::timeout(WAIT, back.ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}\n{}", proxy.output()),
        }
    };
    assert_eq!(
        u16::from(closed.expect("a close frame with a code").code),
        4001
    );
    op.send(json!({"type": "command", "key": "top/pointer", "attribute": "others", "fn": "pointer", "args": [9, 9]})).await;
    third
        .expect_where(&proxy, "command", |c| c["args"][0] == 9)
        .await;

    // A wrong secret or an unknown session learns nothing.
    let mut stranger = Client::customer(&proxy, "stranger").await;
    stranger
        .send(json!({"type": "resume", "session": session, "resume": "0".repeat(32)}))
        .await;
    stranger.error(&proxy, "unknown_session").await;
    stranger
        .send(command("top/a", "value", json!("intruder")))
        .await;
    stranger.error(&proxy, "not_in_session").await;
}

#[tokio::test]
async fn an_unanswered_offer_moves_to_the_next_operator() {
    let proxy = start(&format!(
        "[hub]\noffer_timeout_secs = 1\n{}",
        second_operator()
    ))
    .await;
    let mut first = Client::operator(&proxy, "first operator", OPERATOR_USER).await;
    first.send(json!({"type": "ready"})).await;
    first.expect(&proxy, "queue").await;
    let mut second = Client::operator(&proxy, "second operator", "op2").await;
    second.send(json!({"type": "ready"})).await;
    second.expect(&proxy, "queue").await;

    let mut customer = Client::customer(&proxy, "customer").await;
    customer.send(json!({"type": "call"})).await;
    let session = customer.expect(&proxy, "joined").await["session"]
        .as_str()
        .unwrap()
        .to_string();
    // The operator who waited longest gets it first, and lets it lapse.
    let offer = first.expect(&proxy, "offer").await;
    assert_eq!(
        (offer["session"].as_str(), offer["expires_in"].as_u64()),
        (Some(session.as_str()), Some(1))
    );
    let offer = second.expect(&proxy, "offer").await;
    assert_eq!(offer["session"], session.as_str());
    first
        .expect_where(&proxy, "queue", |q| q["offer"].is_null())
        .await;
    // The first can no longer respond to it.
    first
        .send(json!({"type": "respond", "session": session}))
        .await;
    first.error(&proxy, "not_offered").await;
    // The second declines: the call is never offered to it again, and a new
    // round starts with the first.
    second
        .send(json!({"type": "decline", "session": session}))
        .await;
    first
        .expect_where(&proxy, "offer", |o| o["session"] == session.as_str())
        .await;
    // The first lets it lapse again: with nobody else, it stays with the
    // first, in round after round.
    first
        .expect_where(&proxy, "offer", |o| o["session"] == session.as_str())
        .await;
    second
        .expect_where(&proxy, "queue", |q| q["offer"].is_null())
        .await;
    first
        .send(json!({"type": "respond", "session": session}))
        .await;
    first.expect(&proxy, "joined").await;
    customer
        .expect_where(&proxy, "status", |s| s["state"] == "connected")
        .await;
    assert!(
        second.seen.iter().filter(|v| v["type"] == "offer").count() == 1,
        "a declined call came back: {:#?}",
        second.seen
    );
}

#[tokio::test]
async fn an_invited_operator_joins_with_the_same_replay() {
    let proxy = start(&second_operator()).await;
    let (mut customer, mut op, session) = connected_call(&proxy).await;
    customer.send(json!({"type": "command", "key": "top", "attribute": "others", "fn": "navigate", "args": ["/cart"]})).await;
    customer.send(json!({"type": "command", "key": "top/qty", "attribute": "all", "fn": "value", "args": ["2"]})).await;
    customer.expect(&proxy, "command").await;
    op.expect_where(&proxy, "command", |c| c["key"] == "top/qty")
        .await;

    let mut second = Client::operator(&proxy, "second operator", "op2").await;
    second.send(json!({"type": "ready"})).await;
    second.expect(&proxy, "queue").await;
    op.send(json!({"type": "invite"})).await;
    let queue = second
        .expect_where(&proxy, "queue", |q| q["offer"] == session.as_str())
        .await;
    assert_eq!(queue["calls"][0]["invite"], true);
    second
        .send(json!({"type": "respond", "session": session}))
        .await;
    second.expect(&proxy, "joined").await;
    let replay = second.expect_next(&proxy, "replay").await;
    let got: Vec<(&str, &str)> = replay["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["key"].as_str().unwrap(), c["args"][0].as_str().unwrap()))
        .collect();
    assert_eq!(got, [("top", "/cart"), ("top/qty", "2")]);
    let status = customer
        .expect_where(&proxy, "status", |s| {
            s["participants"].as_array().unwrap().len() == 3
        })
        .await;
    assert_eq!(status["state"], "connected");

    // Live commands reach both operators.
    customer.send(command("top/qty", "value", json!("3"))).await;
    op.expect_where(&proxy, "command", |c| c["args"][0] == "3")
        .await;
    second
        .expect_where(&proxy, "command", |c| c["args"][0] == "3")
        .await;

    // One operator leaving keeps the session for the others.
    second.send(json!({"type": "hangup"})).await;
    second.expect(&proxy, "left").await;
    customer
        .expect_where(&proxy, "status", |s| {
            s["participants"].as_array().unwrap().len() == 2
        })
        .await;
    customer.send(command("top/qty", "value", json!("4"))).await;
    op.expect_where(&proxy, "command", |c| c["args"][0] == "4")
        .await;
    // Invite by a customer makes no sense.
    customer.send(json!({"type": "invite"})).await;
    customer.error(&proxy, "forbidden").await;
}

#[tokio::test]
async fn another_customer_tab_joins_the_session() {
    let proxy = start("").await;
    let (mut customer, mut op, session) = connected_call(&proxy).await;
    let joined = customer
        .seen
        .iter()
        .find(|v| v["type"] == "joined")
        .unwrap()
        .clone();
    customer.send(json!({"type": "command", "key": "top", "attribute": "all", "fn": "navigate", "args": ["/"]})).await;
    customer.expect(&proxy, "command").await;

    let mut tab = Client::customer(&proxy, "second tab").await;
    tab.send(json!({"type": "join", "session": session, "resume": joined["resume"]}))
        .await;
    let tab_joined = tab.expect_next(&proxy, "joined").await;
    assert_ne!(tab_joined["participant"], joined["participant"]);
    assert_ne!(tab_joined["resume"], joined["resume"]);
    let replay = tab.expect_next(&proxy, "replay").await;
    assert_eq!(replay["commands"][0]["args"][0], "/");
    customer
        .send(json!({"type": "control", "granted": true}))
        .await;
    op.expect_where(&proxy, "status", |s| s["control"] == true)
        .await;
    op.send(command("top/x", "value", json!("from the operator")))
        .await;
    customer
        .expect_where(&proxy, "command", |c| c["key"] == "top/x")
        .await;
    tab.expect_where(&proxy, "command", |c| c["key"] == "top/x")
        .await;
    // A wrong secret does not let a stranger's tab in, nor does an
    // operator's secret make a customer's tab.
    let mut stranger = Client::customer(&proxy, "stranger").await;
    stranger
        .send(json!({"type": "join", "session": session, "resume": "f".repeat(32)}))
        .await;
    stranger.error(&proxy, "unknown_session").await;
    let op_resume = op.seen.iter().find(|v| v["type"] == "joined").unwrap()["resume"].clone();
    stranger
        .send(json!({"type": "join", "session": session, "resume": op_resume}))
        .await;
    stranger.error(&proxy, "forbidden").await;

    // The operator's console may join a second connection of its own.
    let mut frame = Client::operator(&proxy, "operator's second frame", OPERATOR_USER).await;
    frame
        .send(json!({"type": "join", "session": session, "resume": op_resume}))
        .await;
    let frame_joined = frame.expect_next(&proxy, "joined").await;
    assert_eq!(frame_joined["role"], "operator");
    frame.expect_next(&proxy, "replay").await;
    customer
        .send(command("top/y", "value", json!("to every frame")))
        .await;
    frame
        .expect_where(&proxy, "command", |c| c["key"] == "top/y")
        .await;
    op.expect_where(&proxy, "command", |c| c["key"] == "top/y")
        .await;
}

#[tokio::test]
async fn operators_must_log_in_and_logins_are_rate_limited() {
    let proxy = start("").await;
    let ws = proxy.console_ws_url("/__cobrowse/ws?role=operator");
    let origin = format!("http://{}", proxy.addr);
    let console = proxy.console_origin();

    // The handshake: no cookie, a foreign origin, no role.
    let refused = |status: u16, req: http::Request<()>| async move {
        match connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status().as_u16(), status)
            }
            other => panic!(
                "expected {status}, got {:?}",
                other.map(|(_, r)| r.status())
            ),
        }
    };
    let mut req = ws.as_str().into_client_request().unwrap();
    req.headers_mut().insert("Origin", console.parse().unwrap());
    refused(401, req).await;
    let mut req = proxy
        .ws_url("/__cobrowse/ws?role=customer")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Origin", "http://evil.example".parse().unwrap());
    refused(403, req).await;
    let req = proxy
        .ws_url("/__cobrowse/ws?role=customer")
        .into_client_request()
        .unwrap();
    refused(403, req).await;
    let mut req = proxy
        .ws_url("/__cobrowse/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("Origin", origin.parse().unwrap());
    refused(400, req).await;
    let mut req = ws.as_str().into_client_request().unwrap();
    req.headers_mut().insert("Origin", console.parse().unwrap());
    req.headers_mut().insert(
        "Cookie",
        "cobrowse_operator=00000000000000000000000000000000"
            .parse()
            .unwrap(),
    );
    refused(401, req).await;

    // Login: JSON works too; the cookie is HttpOnly and SameSite=Strict.
    let body = json!({"user": OPERATOR_USER, "password": OPERATOR_PASSWORD}).to_string();
    let json_ours = [
        ("Content-Type", "application/json"),
        ("Origin", console.as_str()),
    ];
    let (status, headers, _) =
        console_http(&proxy, "POST", "/__cobrowse/login", &json_ours, &body).await;
    assert_eq!(status, 204);
    let set = header(&headers, "set-cookie").unwrap().to_string();
    assert!(
        set.contains("HttpOnly")
            && set.contains("SameSite=Strict")
            && set.contains("Path=/__cobrowse/"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let (status, _, me) =
        console_http(&proxy, "GET", "/__cobrowse/me", &[("Cookie", &cookie)], "").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&me).unwrap()["user"],
        OPERATOR_USER
    );
    let (status, _, _) = console_http(&proxy, "GET", "/__cobrowse/me", &[], "").await;
    assert_eq!(status, 401);
    // A page that cannot say it is ours cannot log anyone out.
    let (status, _, _) = console_http(
        &proxy,
        "POST",
        "/__cobrowse/logout",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = console_http(
        &proxy,
        "POST",
        "/__cobrowse/logout",
        &[("Cookie", &cookie), ("Origin", "http://evil.example")],
        "",
    )
    .await;
    assert_eq!(status, 403);
    // Nor can the site's pages, though the cookie reaches them (cookies
    // ignore ports).
    let (status, _, _) = http(
        &proxy,
        "POST",
        "/__cobrowse/logout",
        &[("Cookie", &cookie), ("Origin", origin.as_str())],
        "",
    )
    .await;
    assert_ne!(status, 204);
    let (status, _, _) =
        console_http(&proxy, "GET", "/__cobrowse/me", &[("Cookie", &cookie)], "").await;
    assert_eq!(status, 200, "still logged in");
    let (status, _, _) = console_http(
        &proxy,
        "POST",
        "/__cobrowse/logout",
        &[("Cookie", &cookie), ("Origin", console.as_str())],
        "",
    )
    .await;
    assert_eq!(status, 204);
    let (status, _, _) =
        console_http(&proxy, "GET", "/__cobrowse/me", &[("Cookie", &cookie)], "").await;
    assert_eq!(status, 401, "a logged-out cookie is worth nothing");
    let (status, _, text) = console_http(
        &proxy,
        "POST",
        "/__cobrowse/login",
        &json_ours,
        "{\"user\":1}",
    )
    .await;
    assert_eq!(status, 400, "{text}");
    // A foreign page cannot log anyone in, nor can a request that does not
    // say where it comes from, or that the browser says is from another site.
    let foreign = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", "http://evil.example"),
    ];
    let (status, _, _) = console_http(
        &proxy,
        "POST",
        "/__cobrowse/login",
        &foreign,
        &format!("user=op&password={OPERATOR_PASSWORD}"),
    )
    .await;
    assert_eq!(status, 403);
    let unsaid = [("Content-Type", "application/x-www-form-urlencoded")];
    let (status, _, text) = console_http(
        &proxy,
        "POST",
        "/__cobrowse/login",
        &unsaid,
        &format!("user=op&password={OPERATOR_PASSWORD}"),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("no Origin"), "{text}");
    let cross = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", console.as_str()),
        ("Sec-Fetch-Site", "cross-site"),
    ];
    let (status, _, _) = console_http(
        &proxy,
        "POST",
        "/__cobrowse/login",
        &cross,
        &format!("user=op&password={OPERATOR_PASSWORD}"),
    )
    .await;
    assert_eq!(status, 403);
    let ours = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", console.as_str()),
    ];
    let (status, _, _) = console_http(
        &proxy,
        "POST",
        "/__cobrowse/login",
        &ours,
        &format!("user=op&password={OPERATOR_PASSWORD}"),
    )
    .await;
    assert_eq!(status, 204);

    // Wrong passwords: 401 with a clear error, then 429 for the account.
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", console.as_str()),
    ];
    let (status, _, text) = console_http(
        &proxy,
        "POST",
        "/__cobrowse/login",
        &form,
        "user=op&password=wrong",
    )
    .await;
    assert_eq!(status, 401);
    assert!(text.contains("wrong user or password"), "{text}");
    let mut last = 0;
    for _ in 0..12 {
        last = console_http(
            &proxy,
            "POST",
            "/__cobrowse/login",
            &form,
            "user=op&password=wrong",
        )
        .await
        .0;
        if last == 429 {
            break;
        }
        assert_eq!(last, 401);
    }
    assert_eq!(last, 429, "wrong passwords are rate-limited per account");
    let (status, headers, _) = console_http(
        &proxy,
        "POST",
        "/__cobrowse/login",
        &form,
        &format!("user=op&password={OPERATOR_PASSWORD}"),
    )
    .await;
    assert_eq!(status, 429, "even the right password waits");
    assert!(header(&headers, "retry-after").is_some());
    assert!(proxy.output().contains("login_failed"));
}

#[tokio::test]
async fn behind_a_tls_load_balancer_the_public_origin_is_ours() {
    let public = "https://support.example.com";
    let console = "https://console.example.com";
    let proxy = start(&format!(
        "public_origins = [\"{public}\"]\n[console]\npublic_origin = \"{console}\"\n"
    ))
    .await;
    let own = format!("http://{}", proxy.addr);
    let handshake = |origin: &str| {
        let mut req = proxy
            .ws_url("/__cobrowse/ws?role=customer")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("Origin", origin.parse().unwrap());
        async move {
            match connect_async(req).await {
                Ok((_, r)) => r.status().as_u16(),
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
                Err(e) => panic!("handshake failed: {e}"),
            }
        }
    };
    assert_eq!(handshake(public).await, 101);
    // The request as it reaches us (plain HTTP, our own Host) is not what a
    // browser behind the load balancer sends, and is refused like any other.
    assert_eq!(handshake(&own).await, 403);
    assert_eq!(handshake("http://support.example.com").await, 403);
    assert_eq!(handshake("https://evil.example").await, 403);

    // Login from the console's public origin works, and its cookie is Secure
    // since the browser speaks HTTPS; a foreign page, the site's public
    // origin and the console's plain origin cannot.
    let form = format!("user={OPERATOR_USER}&password={OPERATOR_PASSWORD}");
    let from = |origin: &'static str| {
        [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", origin),
        ]
    };
    let (status, headers, text) = console_http(
        &proxy,
        "POST",
        "/__cobrowse/login",
        &from("https://console.example.com"),
        &form,
    )
    .await;
    assert_eq!(status, 204, "{text}");
    let set = header(&headers, "set-cookie").unwrap();
    assert!(set.contains("; Secure"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    for other in [
        "https://evil.example",
        "https://support.example.com",
        "http://console.example.com",
    ] {
        let (status, _, _) =
            console_http(&proxy, "POST", "/__cobrowse/login", &from(other), &form).await;
        assert_eq!(status, 403, "login from {other}");
    }

    // The whole call works from the public origin.
    let mut op = Client::open_from(&proxy, "operator", "operator", Some(&cookie), console).await;
    op.send(json!({"type": "ready"})).await;
    op.expect(&proxy, "queue").await;
    let mut customer = Client::open_from(&proxy, "customer", "customer", None, public).await;
    customer.send(json!({"type": "call"})).await;
    let session = customer.expect_next(&proxy, "joined").await["session"]
        .as_str()
        .unwrap()
        .to_string();
    op.expect_where(&proxy, "offer", |o| o["session"] == session.as_str())
        .await;
}

#[tokio::test]
async fn bad_input_gets_an_error_and_keeps_the_session() {
    let proxy = start(
        "[hub]\nmax_message_bytes = 1024\nmessages_per_second = 20\nmax_keys_per_session = 5\n",
    )
    .await;
    let (mut customer, mut op, _session) = connected_call(&proxy).await;
    let cases: [(&str, &str, Option<&str>); 8] = [
        ("{not json", "bad_json", None),
        ("[1,2]", "bad_message", None),
        ("{\"no\":\"type\"}", "bad_message", None),
        ("{\"type\":7}", "bad_message", None),
        ("{\"type\":\"teleport\"}", "bad_message", Some("teleport")),
        (
            "{\"type\":\"control\",\"granted\":\"yes\"}",
            "bad_message",
            Some("control"),
        ),
        (
            "{\"type\":\"command\",\"key\":\"/top\",\"attribute\":\"others\",\"fn\":\"value\"}",
            "bad_message",
            Some("command"),
        ),
        (
            "{\"type\":\"command\",\"key\":\"top\",\"attribute\":\"me\",\"fn\":\"value\"}",
            "bad_message",
            Some("command"),
        ),
    ];
    for (text, code, request) in cases {
        customer.send_text(text).await;
        let e = customer.error(&proxy, code).await;
        assert_eq!(e["request"].as_str(), request, "{text} -> {e}");
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    customer
        .ws
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    customer.error(&proxy, "bad_message").await;
    customer.send_text(&format!("{{\"type\":\"command\",\"key\":\"top\",\"attribute\":\"others\",\"fn\":\"value\",\"args\":[\"{}\"]}}", "x".repeat(2000))).await;
    customer.error(&proxy, "too_large").await;

    // Messages for another role or another state.
    customer.send(json!({"type": "ready"})).await;
    customer.error(&proxy, "forbidden").await;
    customer.send(json!({"type": "call"})).await;
    customer.error(&proxy, "in_session").await;
    op.send(json!({"type": "call"})).await;
    op.error(&proxy, "forbidden").await;
    op.send(json!({"type": "control", "granted": true})).await;
    op.error(&proxy, "forbidden").await;
    op.send(json!({"type": "respond", "session": "0".repeat(32)}))
        .await;
    op.error(&proxy, "not_offered").await;

    // The store's bound: five keys.
    for i in 0..5 {
        customer
            .send(command(&format!("top/k{i}"), "value", json!(i)))
            .await;
    }
    customer.send(command("top/k5", "value", json!(5))).await;
    let e = customer.error(&proxy, "limit").await;
    assert!(e["message"].as_str().unwrap().contains("keys"), "{e}");
    op.expect_where(&proxy, "command", |c| c["key"] == "top/k4")
        .await;

    // A flood: one `rate_limited`, and the connection stays.
    for i in 0..100 {
        customer.send(command("top/k0", "value", json!(i))).await;
    }
    customer.error(&proxy, "rate_limited").await;
    // The bucket refills: keep trying (each try waits for its echo) until
    // one is accepted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let echoed = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing accepted after the flood:\n{}\n{}",
            customer.log,
            proxy.output()
        );
        customer.send(json!({"type": "command", "key": "top/k1", "attribute": "all", "fn": "value", "args": ["after"]})).await;
        if let Some(v) = customer.next_within(Duration::from_millis(300)).await
            && v["type"] == "command"
            && v["args"][0] == "after"
        {
            break v;
        }
    };
    assert_eq!(echoed["key"], "top/k1");
    op.expect_where(&proxy, "command", |c| c["args"][0] == "after")
        .await;
    // Every refusal was logged.
    assert!(proxy.output().contains("message refused"));
}

#[tokio::test]
async fn an_abandoned_session_expires() {
    let proxy = start("[hub]\nidle_session_secs = 1\n").await;
    let mut customer = Client::customer(&proxy, "customer").await;
    customer.send(json!({"type": "call"})).await;
    let joined = customer.expect(&proxy, "joined").await;
    drop(customer);
    crate::support::wait_for(
        "the session to expire",
        Duration::from_secs(10),
        || async {
            proxy
                .output()
                .lines()
                .any(|l| l.contains("audit") && l.contains("\"expired\""))
                .then_some(())
        },
        || proxy.output(),
    )
    .await;
    let mut back = Client::customer(&proxy, "customer again").await;
    back.send(json!({"type": "resume", "session": joined["session"], "resume": joined["resume"]}))
        .await;
    back.error(&proxy, "unknown_session").await;
    let (_, _, metrics) = http(&proxy, "GET", "/__cobrowse/metrics", &[], "").await;
    assert!(
        metrics.contains("cobrowse_hub_sessions_ended_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_call_beyond_max_sessions_is_refused_and_counted() {
    let proxy = start("[hub]\nmax_sessions = 1\n").await;
    let mut first = Client::customer(&proxy, "first").await;
    first.send(json!({"type": "call"})).await;
    first.expect_next(&proxy, "joined").await;
    let mut second = Client::customer(&proxy, "second").await;
    second.send(json!({"type": "call"})).await;
    let e = second.expect_next(&proxy, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["request"].as_str()),
        (Some("limit"), Some("call")),
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("maximum of 1 sessions"),
        "{e}"
    );
    let (_, _, metrics) = http(&proxy, "GET", "/__cobrowse/metrics", &[], "").await;
    assert!(
        metrics.contains("cobrowse_hub_calls_refused_total{reason=\"max_sessions\"} 1"),
        "{metrics}"
    );
    first.send(json!({"type": "hangup"})).await;
    first.expect(&proxy, "ended").await;
    second.send(json!({"type": "call"})).await;
    second.expect_next(&proxy, "joined").await;
}

#[tokio::test]
async fn an_operator_gone_past_the_configured_grace_leaves() {
    let proxy = start("[hub]\nreconnect_grace_secs = 1\n").await;
    let (mut customer, op, _session) = connected_call(&proxy).await;
    drop(op);
    customer
        .expect_where(&proxy, "status", |s| {
            s["participants"][1]["connected"] == false
        })
        .await;
    let ended = customer.expect(&proxy, "ended").await;
    assert_eq!(ended["reason"], "operator_left");
}

#[tokio::test]
async fn a_receiver_too_slow_for_the_feed_is_resynchronised() {
    let proxy = start("[hub]\nmessages_per_second = 1000000\n").await;
    let (customer, mut op, _session) = connected_call(&proxy).await;
    // The operator reads nothing while the customer sends far more than the
    // socket buffers and the feed's backlog hold.
    let filler = "x".repeat(4000);
    let mut customer = customer;
    let sends = 6000;
    for i in 0..sends {
        let key = format!("top/k{}", i % 50);
        customer.send(json!({"type": "command", "key": key, "attribute": "others", "fn": "value", "args": [i, filler]})).await;
    }
    customer.send(json!({"type": "command", "key": "top/done", "attribute": "all", "fn": "value", "args": [sends, ""]})).await;
    // The echo says everything was accepted. It may come inside a replay:
    // a sender is a receiver too, and one this fast may fall behind as well.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let v = customer
            .next_within(left)
            .await
            .unwrap_or_else(|| panic!("no echo of the last command\n{}", proxy.output()));
        let done = |c: &Value| c["key"] == "top/done";
        if (v["type"] == "command" && done(&v))
            || (v["type"] == "replay" && v["commands"].as_array().unwrap().iter().any(done))
        {
            break;
        }
    }

    // Now it reads: live commands and fresh replays add up to the latest
    // state, the same as the customer's.
    let mut state = std::collections::BTreeMap::new();
    let mut replays = 0;
    while !state.contains_key("top/done") {
        let v = op
            .next_within(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("the operator stopped receiving\n{}", proxy.output()));
        let commands = match v["type"].as_str() {
            Some("command") => vec![v.clone()],
            Some("replay") => {
                replays += 1;
                v["commands"].as_array().unwrap().clone()
            }
            _ => continue,
        };
        for c in commands {
            state.insert(
                c["key"].as_str().unwrap().to_string(),
                c["args"][0].as_u64().unwrap(),
            );
        }
    }
    assert!(replays >= 1, "the operator was never resynchronised");
    for k in 0..50u64 {
        let last = (0..sends as u64).filter(|i| i % 50 == k).max().unwrap();
        assert_eq!(state.get(&format!("top/k{k}")), Some(&last), "key top/k{k}");
    }
    let (_, _, metrics) = http(&proxy, "GET", "/__cobrowse/metrics", &[], "").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("cobrowse_hub_resyncs_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[tokio::test]
async fn calls_are_served_first_come_first_served() {
    let proxy = start("").await;
    let mut first = Client::customer(&proxy, "first customer").await;
    first.send(json!({"type": "call"})).await;
    let first_session = first.expect(&proxy, "joined").await["session"]
        .as_str()
        .unwrap()
        .to_string();
    first
        .expect_where(&proxy, "status", |s| {
            s["state"] == "queued" && s["position"] == 1
        })
        .await;
    let mut second = Client::customer(&proxy, "second customer").await;
    second.send(json!({"type": "call"})).await;
    let second_session = second.expect(&proxy, "joined").await["session"]
        .as_str()
        .unwrap()
        .to_string();
    second
        .expect_where(&proxy, "status", |s| {
            s["state"] == "queued" && s["position"] == 2
        })
        .await;

    let mut op = Client::operator(&proxy, "operator", OPERATOR_USER).await;
    op.send(json!({"type": "ready"})).await;
    let offer = op.expect(&proxy, "offer").await;
    assert_eq!(offer["session"], first_session.as_str());
    let queue = op.expect(&proxy, "queue").await;
    let calls: Vec<&str> = queue["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["session"].as_str().unwrap())
        .collect();
    assert_eq!(calls, [first_session.as_str(), second_session.as_str()]);
    first
        .expect_where(&proxy, "status", |s| s["state"] == "offered")
        .await;
    op.send(json!({"type": "respond", "session": first_session}))
        .await;
    op.expect(&proxy, "joined").await;
    // The second moves up, and waits: the only operator is busy.
    second
        .expect_where(&proxy, "status", |s| {
            s["state"] == "queued" && s["position"] == 1
        })
        .await;
    // The operator's hang-up frees it for the second call.
    op.send(json!({"type": "hangup"})).await;
    first.expect(&proxy, "ended").await;
    op.expect_where(&proxy, "offer", |o| o["session"] == second_session.as_str())
        .await;
}

#[tokio::test]
async fn a_navigation_off_the_site_is_refused_and_neither_stored_nor_forwarded() {
    let proxy = start("").await;
    let (mut customer, mut op, session) = connected_call(&proxy).await;
    let joined = customer
        .seen
        .iter()
        .find(|v| v["type"] == "joined")
        .unwrap()
        .clone();
    // A tab between the slashes: the browser drops it and loads
    // `//localhost:1/evil`, another origin.
    let evil = [
        "/\t/localhost:1/evil",
        "//evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "http://evil.example/",
    ];
    for url in evil {
        customer.send(json!({"type": "command", "key": "top", "attribute": "all", "fn": "navigate", "args": [url, "load", null]})).await;
        let e = customer.error(&proxy, "bad_message").await;
        assert_eq!(e["request"], "command", "{e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("not a path on this site"),
            "{e}"
        );
    }
    // The operator, granted control, is held to the same rule.
    customer
        .send(json!({"type": "control", "granted": true}))
        .await;
    op.expect_where(&proxy, "status", |s| s["control"] == true)
        .await;
    op.send(json!({"type": "command", "key": "top/iframe[0]", "attribute": "others", "fn": "navigate", "args": ["/\n/evil.example"]})).await;
    op.error(&proxy, "bad_message").await;

    // Nothing was forwarded or numbered: the first command anyone receives
    // is the next good one, with sequence number 1.
    customer.send(json!({"type": "command", "key": "top", "attribute": "others", "fn": "navigate", "args": ["/shop?q=1", "load", null]})).await;
    let first = op.expect(&proxy, "command").await;
    assert_eq!(
        (first["args"][0].as_str(), first["seq"].as_u64()),
        (Some("/shop?q=1"), Some(1)),
        "{}",
        op.log
    );
    // Nor stored: a late joiner's replay holds the good navigation only.
    let mut tab = Client::customer(&proxy, "second tab").await;
    tab.send(json!({"type": "join", "session": session, "resume": joined["resume"]}))
        .await;
    tab.expect_next(&proxy, "joined").await;
    let replay = tab.expect_next(&proxy, "replay").await;
    let urls: Vec<&Value> = replay["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["args"][0])
        .collect();
    assert_eq!(urls, [&json!("/shop?q=1")], "{replay}");
}

/// `POST {prefix}bind` as a page would send it: JSON from our own origin
/// unless `headers` say otherwise.
async fn bind(
    proxy: &Cobrowse,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let origin = format!("http://{}", proxy.addr);
    let mut all = vec![
        ("Content-Type", "application/json"),
        ("Origin", origin.as_str()),
    ];
    for &(k, v) in headers {
        all.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
        if !v.is_empty() {
            all.push((k, v));
        }
    }
    http(proxy, "POST", "/__cobrowse/bind", &all, body).await
}

#[tokio::test]
async fn only_our_own_page_with_a_fresh_bind_token_binds_a_browser() {
    let proxy = start("").await;
    let mut customer = Client::customer(&proxy, "customer").await;
    customer.send(json!({"type": "call"})).await;
    let joined = customer.expect_next(&proxy, "joined").await;
    let (session, resume, token) = (
        joined["session"].as_str().unwrap(),
        joined["resume"].as_str().unwrap(),
        joined["bind"].as_str().unwrap(),
    );
    assert_eq!(token.len(), 32, "{joined}");
    let good = json!({"session": session, "token": token}).to_string();

    // What a page on another site can send: a `text/plain` form carrying
    // JSON, a script's request without an Origin we know. None binds, and
    // none uses up the token.
    let refused: [(&[(&str, &str)], u16); 7] = [
        (&[("Content-Type", "text/plain")], 415),
        (
            &[("Content-Type", "application/x-www-form-urlencoded")],
            415,
        ),
        (&[("Content-Type", "")], 415),
        (&[("Origin", "")], 403),
        (&[("Origin", "http://evil.example")], 403),
        (&[("Origin", "null")], 403),
        (&[("Sec-Fetch-Site", "cross-site")], 403),
    ];
    for (headers, status) in refused {
        let (got, set, text) = bind(&proxy, headers, &good).await;
        assert_eq!(got, status, "{headers:?}: {text}");
        assert!(header(&set, "set-cookie").is_none(), "{headers:?}");
    }
    // The resume secret alone is no proof; nor is a made-up token.
    let (status, _, text) = bind(
        &proxy,
        &[],
        &json!({"session": session, "resume": resume}).to_string(),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    let (status, _, _) = bind(
        &proxy,
        &[],
        &json!({"session": session, "token": "0".repeat(32)}).to_string(),
    )
    .await;
    assert_eq!(status, 403);

    // Our page, with the token: bound, once.
    let (status, headers, text) = bind(&proxy, &[("Sec-Fetch-Site", "same-origin")], &good).await;
    assert_eq!(status, 200, "{text}\n{}", proxy.output());
    let set = header(&headers, "set-cookie").unwrap();
    assert!(
        set.starts_with(&format!("cobrowse_participant={session}.{resume};"))
            && set.contains("HttpOnly")
            && set.contains("SameSite=Strict"),
        "{set}"
    );
    let (status, headers, text) = bind(&proxy, &[], &good).await;
    assert_eq!(status, 403, "a bind token is good once: {text}");
    assert!(header(&headers, "set-cookie").is_none());

    // A reconnect gets a new token.
    let mut back = Client::customer(&proxy, "customer again").await;
    back.send(json!({"type": "resume", "session": session, "resume": resume}))
        .await;
    let again = back.expect_next(&proxy, "joined").await;
    assert_ne!(again["bind"], joined["bind"]);
    let (status, _, _) = bind(
        &proxy,
        &[],
        &json!({"session": session, "token": again["bind"]}).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    // Clearing is a state change too: only from our own page.
    let (status, _, _) = bind(&proxy, &[("Origin", "http://evil.example")], "").await;
    assert_eq!(status, 403);
    let (status, headers, _) = bind(&proxy, &[], "").await;
    assert_eq!(status, 200);
    assert!(
        header(&headers, "set-cookie")
            .unwrap()
            .contains("Max-Age=0")
    );
    let out = proxy.output();
    assert!(
        out.contains("refused a request from a foreign page") && out.contains("bind refused"),
        "{out}"
    );
}

/// The operator's authority is the console's alone: a page of the site (the
/// same host on another port, so the browser sends it the operator's cookie
/// all the same) cannot log in, ask who is logged in, log out or open the
/// hub as an operator, and the console's door serves nothing of the site.
#[tokio::test]
async fn operator_routes_answer_only_on_the_consoles_own_origin() {
    let proxy = start("").await;
    let site = format!("http://{}", proxy.addr);
    let console = proxy.console_origin();
    let cookie = login_as(&proxy, OPERATOR_USER).await;
    let form = format!("user={OPERATOR_USER}&password={OPERATOR_PASSWORD}");
    let from = |origin: &str| {
        [
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("Origin", origin.to_string()),
        ]
    };
    let pairs =
        |h: &[(&'static str, String)]| h.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();

    // The site's door: none of the operator's routes, whoever asks.
    for origin in [site.as_str(), console.as_str()] {
        let h = pairs(&from(origin));
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, text) = http(&proxy, "POST", "/__cobrowse/login", &h, &form).await;
        assert_eq!(
            status, 403,
            "login on the site's door from {origin}: {text}"
        );
    }
    let (status, _, text) = http(&proxy, "GET", "/__cobrowse/me", &[("Cookie", &cookie)], "").await;
    assert_eq!(status, 403, "me on the site's door: {text}");
    assert!(!text.contains("\"user\""), "{text}");
    let (status, _, _) = http(
        &proxy,
        "POST",
        "/__cobrowse/logout",
        &[("Cookie", &cookie), ("Origin", &site)],
        "",
    )
    .await;
    assert_eq!(status, 403);
    let handshake = |url: String, origin: String, cookie: Option<String>| async move {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert("Origin", origin.parse().unwrap());
        if let Some(c) = cookie {
            req.headers_mut().insert("Cookie", c.parse().unwrap());
        }
        match connect_async(req).await {
            Ok((_, r)) => r.status().as_u16(),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
            Err(e) => panic!("handshake failed: {e}"),
        }
    };
    let on_site = proxy.ws_url("/__cobrowse/ws?role=operator");
    let on_console = proxy.console_ws_url("/__cobrowse/ws?role=operator");
    assert_eq!(
        handshake(on_site.clone(), site.clone(), Some(cookie.clone())).await,
        403,
        "an operator hub link from the site's page"
    );
    assert_eq!(
        handshake(on_site, console.clone(), Some(cookie.clone())).await,
        403,
        "an operator hub link on the site's door"
    );
    assert_eq!(
        handshake(on_console.clone(), site.clone(), Some(cookie.clone())).await,
        403,
        "the site's page reaching for the console's door"
    );
    assert_eq!(
        handshake(
            proxy.console_ws_url("/__cobrowse/ws?role=customer"),
            console.clone(),
            None
        )
        .await,
        403,
        "customers use the site's door"
    );
    assert_eq!(
        handshake(on_console, console.clone(), Some(cookie.clone())).await,
        101,
        "the console itself"
    );

    // The console's door, asked by the site's pages.
    let h = pairs(&from(&site));
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, _) = console_http(&proxy, "POST", "/__cobrowse/login", &h, &form).await;
    assert_eq!(status, 403, "a login posted by the site's page");
    let (status, _, text) = console_http(
        &proxy,
        "GET",
        "/__cobrowse/me",
        &[("Cookie", &cookie), ("Origin", &site)],
        "",
    )
    .await;
    assert_eq!(status, 403, "{text}");
    let (status, _, text) = console_http(
        &proxy,
        "GET",
        "/__cobrowse/me",
        &[("Cookie", &cookie), ("Sec-Fetch-Site", "same-site")],
        "",
    )
    .await;
    assert_eq!(
        status, 403,
        "a same-site, cross-origin read of `me`: {text}"
    );
    let (status, _, text) = console_http(
        &proxy,
        "GET",
        "/__cobrowse/me",
        &[("Cookie", &cookie), ("Sec-Fetch-Site", "same-origin")],
        "",
    )
    .await;
    assert_eq!(status, 200, "{text}");

    // Where things are: the known address redirects; the console's door
    // serves the console and nothing of the site.
    let (status, headers, _) = http(&proxy, "GET", "/__cobrowse/console", &[], "").await;
    assert_eq!(status, 302);
    assert_eq!(
        header(&headers, "location"),
        Some(format!("{console}/__cobrowse/console").as_str())
    );
    let (status, headers, _) = console_http(&proxy, "GET", "/", &[], "").await;
    assert_eq!(
        (status, header(&headers, "location")),
        (302, Some("/__cobrowse/console"))
    );
    let (status, headers, page) = console_http(&proxy, "GET", "/__cobrowse/console", &[], "").await;
    assert_eq!(status, 200);
    assert!(page.contains("data-cobrowse=\"content\""), "{page}");
    let policy = header(&headers, "content-security-policy").unwrap_or_default();
    assert!(
        policy.contains("frame-ancestors 'none'") && policy.contains(&format!("frame-src {site}")),
        "{policy}"
    );
    assert_eq!(
        header(&headers, "cross-origin-opener-policy"),
        Some("same-origin")
    );
    for path in [
        "/index.html",
        "/__cobrowse/agent.js",
        "/__cobrowse/bind",
        "/__cobrowse/frame",
    ] {
        assert_eq!(
            console_http(&proxy, "GET", path, &[], "").await.0,
            404,
            "{path} on the console's door"
        );
    }
    for path in ["/__cobrowse/console.js", "/__cobrowse/console.css"] {
        assert_eq!(
            http(&proxy, "GET", path, &[], "").await.0,
            404,
            "{path} on the site's door"
        );
    }
}
