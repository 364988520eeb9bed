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

/// How long any one expected message may take.
const WAIT: Duration = Duration::from_secs(5);

/// An upstream nobody listens on: the hub needs none.
const NO_UPSTREAM: &str = "http://127.0.0.1:9";

async fn start(extra: &str) -> Cobrowse {
    Cobrowse::with_config(&Cobrowse::config_for(NO_UPSTREAM, extra)).await
}

/// A second operator account, `op2`, with the same password.
fn second_operator() -> String {
    format!("[[operators]]\nuser = \"op2\"\nname = \"Oscar Operator\"\npassword_hash = \"{OPERATOR_HASH}\"\n")
}

/// A raw HTTP/1.1 exchange: status, headers (lowercased names) and body.
async fn http(proxy: &Cobrowse, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Vec<(String, String)>, String) {
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n", proxy.addr, body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await.expect("HTTP response in time").unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Logs in and returns the `Cookie` header value to send.
async fn login_as(proxy: &Cobrowse, user: &str) -> String {
    let body = format!("user={user}&password={OPERATOR_PASSWORD}");
    let (status, headers, text) =
        http(proxy, "POST", "/__cobrowse/login", &[("Content-Type", "application/x-www-form-urlencoded")], &body).await;
    assert_eq!(status, 204, "login failed: {text}\n{}", proxy.output());
    let set = header(&headers, "set-cookie").expect("a cookie");
    set.split(';').next().unwrap().to_string()
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client that remembers everything it received, for failure
/// messages.
struct Client {
    name: &'static str,
    ws: Ws,
    seen: Vec<Value>,
    log: String,
}

impl Client {
    async fn open(proxy: &Cobrowse, name: &'static str, role: &str, cookie: Option<&str>) -> Client {
        let mut req = proxy.ws_url(&format!("/__cobrowse/ws?role={role}")).into_client_request().unwrap();
        req.headers_mut().insert("Origin", format!("http://{}", proxy.addr).parse().unwrap());
        if let Some(c) = cookie {
            req.headers_mut().insert("Cookie", c.parse().unwrap());
        }
        let (ws, _) = connect_async(req).await.unwrap_or_else(|e| panic!("{name} could not connect: {e}\n{}", proxy.output()));
        Client { name, ws, seen: Vec::new(), log: String::new() }
    }

    async fn customer(proxy: &Cobrowse, name: &'static str) -> Client {
        Self::open(proxy, name, "customer", None).await
    }

    async fn operator(proxy: &Cobrowse, name: &'static str, user: &str) -> Client {
        let cookie = login_as(proxy, user).await;
        Self::open(proxy, name, "operator", Some(&cookie)).await
    }

    async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap_or_else(|e| panic!("{} could not send: {e}", self.name));
    }

    /// The next message, or `None` if none arrives within `wait`.
    async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let m = tokio::time::timeout(wait, self.ws.next()).await.ok()??.ok()?;
            match m {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).expect("the hub sends JSON");
                    self.log.push_str(&format!("  {}\n", t));
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
    async fn expect_where(&mut self, proxy: &Cobrowse, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
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

    /// Nothing at all arrives for a while.
    async fn expect_silence(&mut self, proxy: &Cobrowse, wait: Duration) {
        if let Some(v) = self.next_within(wait).await {
            panic!("{} expected nothing, got {v}; it received:\n{}\n---- server output ----\n{}", self.name, self.log, proxy.output());
        }
    }

    async fn error(&mut self, proxy: &Cobrowse, code: &str) -> Value {
        self.expect_where(proxy, "error", |v| v["code"] == code).await
    }
}

fn command(key: &str, f: &str, arg: Value) -> Value {
    json!({"type": "command", "key": key, "attribute": "others", "fn": f, "args": [arg]})
}

/// A customer calls and an operator responds; returns both and the session.
async fn connected_call(proxy: &Cobrowse) -> (Client, Client, String) {
    let mut op = Client::operator(proxy, "operator", OPERATOR_USER).await;
    op.send(json!({"type": "ready"})).await;
    op.expect(proxy, "queue").await;
    let mut customer = Client::customer(proxy, "customer").await;
    customer.send(json!({"type": "call"})).await;
    let joined = customer.expect_next(proxy, "joined").await;
    let session = joined["session"].as_str().unwrap().to_string();
    let offer = op.expect(proxy, "offer").await;
    assert_eq!(offer["session"], session.as_str());
    op.send(json!({"type": "respond", "session": session})).await;
    op.expect(proxy, "joined").await;
    op.expect_next(proxy, "replay").await;
    customer.expect_where(proxy, "status", |v| v["state"] == "connected").await;
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
    assert!(status["state"] == "queued" || status["state"] == "offered", "{status}");
    assert_eq!(status["position"], 1);
    assert_eq!(status["control"], false);

    // The state the customer publishes before anyone responds is stored.
    customer.send(json!({"type": "command", "key": "top", "attribute": "others", "fn": "navigate", "args": ["/shop"]})).await;
    customer.send(json!({"type": "command", "key": "top/form#f/input[name=q]", "attribute": "all", "fn": "value", "args": ["shoes"]})).await;
    // The echo says both are stored.
    customer.expect_where(&proxy, "command", |v| v["args"][0] == "shoes").await;

    let offer = op.expect(&proxy, "offer").await;
    assert_eq!(offer["session"], session.as_str());
    op.send(json!({"type": "respond", "session": session})).await;
    let joined_op = op.expect(&proxy, "joined").await;
    assert_eq!(joined_op["role"], "operator");
    let replay = op.expect_next(&proxy, "replay").await;
    let commands = replay["commands"].as_array().unwrap();
    assert_eq!(commands.len(), 2, "{replay}");
    assert_eq!(commands[0]["fn"], "navigate");
    assert_eq!(commands[1]["args"][0], "shoes");
    assert_eq!(commands[0]["session"], session.as_str());
    assert_eq!(commands[0]["sender"], joined["participant"]);
    assert_eq!((commands[0]["seq"].as_u64(), commands[1]["seq"].as_u64()), (Some(1), Some(2)));
    let status = op.expect_next(&proxy, "status").await;
    assert_eq!(status["state"], "connected");
    let names: Vec<&str> = status["participants"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Customer", "Olivia Operator"]);
    customer.expect_where(&proxy, "status", |v| v["state"] == "connected").await;

    // Live: the customer's commands reach the operator, stamped, in order.
    for i in 0..20 {
        customer.send(command("top/form#f/input[name=q]", "value", json!(format!("v{i}")))).await;
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
    op.expect_where(&proxy, "command", |v| v["fn"] == "pointer").await;

    // The operator is view-only until the customer grants control.
    op.send(command("top/form#f/input[name=q]", "value", json!("boots"))).await;
    let e = op.error(&proxy, "no_control").await;
    assert_eq!(e["request"], "command");
    op.send(json!({"type": "command", "key": "top/pointer/op", "attribute": "others", "fn": "pointer", "args": [5, 5]})).await;
    customer.expect_where(&proxy, "command", |v| v["fn"] == "pointer" && v["args"][0] == 5).await;
    customer.send(json!({"type": "control", "granted": true})).await;
    op.expect_where(&proxy, "status", |v| v["control"] == true).await;
    op.send(command("top/form#f/input[name=q]", "value", json!("boots"))).await;
    customer.expect_where(&proxy, "command", |v| v["args"][0] == "boots").await;

    // Operator hangs up: it leaves, the customer alone again: ended.
    op.send(json!({"type": "hangup"})).await;
    op.expect_where(&proxy, "left", |v| v["session"] == session.as_str()).await;
    let ended = customer.expect(&proxy, "ended").await;
    assert_eq!(ended["reason"], "operator_left");
    // ...and may call again: a new session.
    customer.send(json!({"type": "call"})).await;
    let again = customer.expect(&proxy, "joined").await;
    assert_ne!(again["session"], session.as_str());
    // The operator is waiting again and gets the new call.
    op.expect_where(&proxy, "offer", |v| v["session"] == again["session"]).await;
    assert!(proxy.output().contains("control_granted"), "the audit log records control grants");
}

#[tokio::test]
async fn customer_hangup_ends_the_session_for_everyone() {
    let proxy = start("").await;
    let (mut customer, mut op, session) = connected_call(&proxy).await;
    customer.send(json!({"type": "hangup"})).await;
    for c in [&mut customer, &mut op] {
        let e = c.expect(&proxy, "ended").await;
        assert_eq!((e["reason"].as_str(), e["session"].as_str()), (Some("customer_hangup"), Some(session.as_str())));
    }
    // Nothing of the session is left to write into.
    op.send(command("top", "scroll", json!(1))).await;
    op.error(&proxy, "not_in_session").await;
    let out = proxy.output();
    assert!(out.contains("customer_hangup") && out.contains("audit"), "{out}");
}

#[tokio::test]
async fn resume_after_a_reconnect_brings_the_participant_up_to_date() {
    let proxy = start("").await;
    let (mut customer, mut op, session) = connected_call(&proxy).await;
    let joined = customer.seen.iter().find(|v| v["type"] == "joined").unwrap().clone();
    customer.send(command("top/a", "value", json!("before"))).await;
    op.expect(&proxy, "command").await;
    drop(customer);
    op.expect_where(&proxy, "status", |v| v["participants"][0]["connected"] == false).await;
    // While the customer is away the operator's pointer moves on.
    op.send(json!({"type": "command", "key": "top/pointer", "attribute": "others", "fn": "pointer", "args": [3, 4]})).await;

    let mut back = Client::customer(&proxy, "customer again").await;
    back.send(json!({"type": "resume", "session": session, "resume": joined["resume"]})).await;
    let again = back.expect_next(&proxy, "joined").await;
    assert_eq!(again["participant"], joined["participant"]);
    let replay = back.expect_next(&proxy, "replay").await;
    let fns: Vec<&str> = replay["commands"].as_array().unwrap().iter().map(|c| c["fn"].as_str().unwrap()).collect();
    assert_eq!(fns, ["value", "pointer"], "{replay}");
    back.expect_next(&proxy, "status").await;
    op.expect_where(&proxy, "status", |v| v["participants"][0]["connected"] == true).await;
    back.send(command("top/a", "value", json!("after"))).await;
    op.expect_where(&proxy, "command", |v| v["args"][0] == "after").await;

    // A wrong secret or an unknown session learns nothing.
    let mut stranger = Client::customer(&proxy, "stranger").await;
    stranger.send(json!({"type": "resume", "session": session, "resume": "0".repeat(32)})).await;
    stranger.error(&proxy, "unknown_session").await;
    stranger.send(command("top/a", "value", json!("intruder"))).await;
    stranger.error(&proxy, "not_in_session").await;
}
