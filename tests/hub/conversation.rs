//! Join codes, requests for control, the chat and the operator's address
//! bar (`go`), attacked with raw WebSocket clients: brute force on codes is
//! cut off, a code works once and skips the queue, the chat is bounded and
//! replayed to late joiners, requests and answers reach the right side.

use serde_json::{Value, json};

use super::{Client, connected_call, second_operator, start};
use crate::support::{Cobrowse, OPERATOR_USER, wait_for};

/// The customer asks for a join code; returns it.
async fn code_of(proxy: &Cobrowse, customer: &mut Client) -> String {
    customer.send(json!({"type": "code"})).await;
    let m = customer.expect(proxy, "code").await;
    m["code"].as_str().expect("a code").to_string()
}

/// Waits for an audit line holding `what` in the server's output.
async fn audited(proxy: &Cobrowse, what: &str) {
    wait_for(
        &format!("an audit line with {what}"),
        std::time::Duration::from_secs(5),
        || async {
            proxy
                .output()
                .lines()
                .any(|l| l.contains("audit:") && l.contains(what))
                .then_some(())
        },
        || proxy.output(),
    )
    .await;
}

/// A code that is not `code`, of the same length.
fn wrong(code: &str, i: u32) -> String {
    let n: u64 = code.parse().unwrap();
    format!(
        "{:0width$}",
        (n + 1 + u64::from(i)) % 10u64.pow(code.len() as u32),
        width = code.len()
    )
}

#[tokio::test]
async fn guessing_join_codes_is_cut_off_per_operator_and_per_address() {
    let third = "[[operators]]\nuser = \"op3\"\nname = \"Otto\"\npassword_hash = \"".to_string()
        + crate::support::OPERATOR_HASH
        + "\"\n";
    let proxy = start(&format!(
        "[hub]\ncode_lookups_per_minute_per_operator = 5\ncode_lookups_per_minute_per_address = 8\n\n{}{third}",
        second_operator()
    ))
    .await;
    let mut customer = Client::customer(&proxy, "customer").await;
    customer.send(json!({"type": "call"})).await;
    customer.expect_next(&proxy, "joined").await;
    let code = code_of(&proxy, &mut customer).await;

    // Five guesses are answered; the sixth is refused whatever it names,
    // the right code included.
    let mut op = Client::operator(&proxy, "operator", OPERATOR_USER).await;
    for i in 0..5 {
        op.send(json!({"type": "join_code", "code": wrong(&code, i)}))
            .await;
        let e = op.expect(&proxy, "error").await;
        assert_eq!(e["code"], "unknown_code", "{e}");
        assert_eq!(e["request"], "join_code", "{e}");
    }
    op.send(json!({"type": "join_code", "code": code})).await;
    let e = op.expect(&proxy, "error").await;
    assert_eq!(
        e["code"], "rate_limited",
        "the right code after the budget: {e}"
    );
    assert!(e["message"].as_str().unwrap().contains("operator"), "{e}");

    // Another account from the same address shares the address's budget.
    let mut op2 = Client::operator(&proxy, "second operator", "op2").await;
    for i in 0..3 {
        op2.send(json!({"type": "join_code", "code": wrong(&code, 10 + i)}))
            .await;
        op2.error(&proxy, "unknown_code").await;
    }
    op2.send(json!({"type": "join_code", "code": code})).await;
    let e = op2.expect(&proxy, "error").await;
    assert_eq!(e["code"], "rate_limited", "{e}");
    assert!(e["message"].as_str().unwrap().contains("address"), "{e}");
    let mut op3 = Client::operator(&proxy, "third operator", "op3").await;
    op3.send(json!({"type": "join_code", "code": code})).await;
    op3.error(&proxy, "rate_limited").await;

    // Nobody got in (a join would have told the customer before the answer
    // to its next request), and the code is written nowhere the server logs.
    customer.send(json!({"type": "code"})).await;
    customer.expect(&proxy, "code").await;
    assert!(
        customer
            .seen
            .iter()
            .all(|m| m["type"] != "status" || m["participants"].as_array().unwrap().len() == 1),
        "{:?}",
        customer.seen
    );
    assert!(
        !proxy.output().contains(&code),
        "the code {code} is in the server's output:\n{}",
        proxy.output()
    );
    let metrics = super::http(&proxy, "GET", "/__cobrowse/metrics", &[], "")
        .await
        .2;
    assert!(
        metrics.contains("cobrowse_hub_code_lookups_total{result=\"rate_limited\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_join_code_skips_the_queue_replays_like_respond_and_works_once() {
    let proxy = start(&second_operator()).await;
    // A ready operator holds the offer of the call; the code goes past it.
    let mut waiting = Client::operator(&proxy, "waiting operator", "op2").await;
    waiting.send(json!({"type": "ready"})).await;
    waiting.expect(&proxy, "queue").await;
    let mut customer = Client::customer(&proxy, "customer").await;
    customer.send(json!({"type": "call"})).await;
    customer.expect_next(&proxy, "joined").await;
    waiting.expect(&proxy, "offer").await;
    customer.send(json!({"type": "command", "key": "top/form#f/input[name=q]", "attribute": "others", "fn": "value", "args": ["boots"]})).await;
    customer.send(json!({"type": "command", "key": "top", "attribute": "others", "fn": "navigate", "args": ["/shop"]})).await;
    customer.send(json!({"type": "command", "key": "top/form#f/input[name=q]", "attribute": "all", "fn": "value", "args": ["shoes"]})).await;
    customer
        .expect_where(&proxy, "command", |v| v["args"][0] == "shoes")
        .await;
    let code = code_of(&proxy, &mut customer).await;
    assert_eq!(code.len(), 6, "{code}");
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    let told = customer
        .seen
        .iter()
        .find(|m| m["type"] == "code")
        .unwrap()
        .clone();
    assert_eq!(told["expires_in"], 600, "{told}");

    // Only customers give codes; only operators use them.
    let mut op = Client::operator(&proxy, "operator", OPERATOR_USER).await;
    op.send(json!({"type": "code"})).await;
    op.error(&proxy, "forbidden").await;
    customer
        .send(json!({"type": "join_code", "code": code}))
        .await;
    customer.error(&proxy, "forbidden").await;

    op.send(json!({"type": "join_code", "code": code})).await;
    let joined = op.expect_next(&proxy, "joined").await;
    assert_eq!(joined["role"], "operator");
    let replay = op.expect_next(&proxy, "replay").await;
    let keys: Vec<&str> = replay["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["top", "top/form#f/input[name=q]"],
        "pages first: {replay}"
    );
    assert_eq!(replay["commands"][1]["args"][0], "shoes");
    let status = customer
        .expect_where(&proxy, "status", |v| v["state"] == "connected")
        .await;
    let names: Vec<&str> = status["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Customer", "Olivia Operator"],
        "the customer sees who joined"
    );
    // The offer the waiting operator held is withdrawn.
    waiting
        .expect_where(&proxy, "queue", |v| {
            v["offer"].is_null() && v["calls"] == json!([])
        })
        .await;

    // Used once: the same code joins nobody else.
    waiting
        .send(json!({"type": "join_code", "code": code}))
        .await;
    waiting.error(&proxy, "unknown_code").await;
    audited(&proxy, "via=\"code\"").await;
    let out = proxy.output();
    assert!(
        !out.contains(&code),
        "the code is in the server's output:\n{out}"
    );
}

#[tokio::test]
async fn the_chat_is_plain_bounded_paced_and_replayed_to_late_joiners() {
    let proxy = start(&format!(
        "[hub]\nchat_max_messages = 3\nchat_max_chars = 40\n\n{}",
        second_operator()
    ))
    .await;
    let (mut customer, mut op, _) = connected_call(&proxy).await;

    customer
        .send(json!({"type": "chat", "text": "  <b>Hi</b> there \n"}))
        .await;
    for who in [&mut customer, &mut op] {
        let m = who.expect(&proxy, "chat").await;
        assert_eq!(m["text"], "<b>Hi</b> there", "kept as sent, trimmed: {m}");
        assert_eq!(
            (m["n"].as_u64(), m["name"].as_str(), m["role"].as_str()),
            (Some(1), Some("Customer"), Some("customer")),
            "{m}"
        );
        assert!(m["time"].as_u64().unwrap() > 1_700_000_000, "{m}");
    }
    customer
        .send(json!({"type": "chat", "text": "x".repeat(41)}))
        .await;
    customer.error(&proxy, "too_large").await;
    customer
        .send(json!({"type": "chat", "text": "a\u{1b}[31mred"}))
        .await;
    customer.error(&proxy, "bad_message").await;
    customer.send(json!({"type": "chat", "text": 7})).await;
    customer.error(&proxy, "bad_message").await;
    for i in 2..=5 {
        op.send(json!({"type": "chat", "text": format!("message {i}")}))
            .await;
        customer.expect_where(&proxy, "chat", |m| m["n"] == i).await;
    }

    // A late joiner gets the page, then the latest three messages.
    let code = code_of(&proxy, &mut customer).await;
    let mut late = Client::operator(&proxy, "late operator", "op2").await;
    late.send(json!({"type": "join_code", "code": code})).await;
    late.expect_next(&proxy, "joined").await;
    late.expect_next(&proxy, "replay").await;
    let log = late.expect_next(&proxy, "chat_log").await;
    let texts: Vec<&str> = log["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["message 3", "message 4", "message 5"], "{log}");

    // Paced like commands: a burst, then one a second.
    for i in 0..14 {
        late.send(json!({"type": "chat", "text": format!("flood {i}")}))
            .await;
    }
    let e = late.error(&proxy, "rate_limited").await;
    assert_eq!(e["request"], "chat", "{e}");

    // Outside a session there is nobody to talk to.
    let mut stranger = Client::customer(&proxy, "stranger").await;
    stranger
        .send(json!({"type": "chat", "text": "hello?"}))
        .await;
    stranger.error(&proxy, "not_in_session").await;
}

#[tokio::test]
async fn an_operator_requests_control_and_the_customer_answers() {
    let proxy = start("").await;
    let (mut customer, mut op, _) = connected_call(&proxy).await;

    customer.send(json!({"type": "request_control"})).await;
    customer.error(&proxy, "forbidden").await;
    op.send(json!({"type": "answer_control", "granted": true}))
        .await;
    op.error(&proxy, "forbidden").await;

    op.send(json!({"type": "request_control"})).await;
    let ask = customer.expect(&proxy, "control_request").await;
    assert_eq!(ask["name"], "Olivia Operator", "{ask}");
    customer
        .send(json!({"type": "answer_control", "granted": false}))
        .await;
    let answer = op.expect(&proxy, "control_answer").await;
    assert_eq!(answer["granted"], false, "{answer}");
    // Right after a denial the customer is not asked again.
    op.send(json!({"type": "request_control"})).await;
    op.error(&proxy, "rate_limited").await;
    // Allowing is the grant; the customer takes it back at any time.
    customer
        .send(json!({"type": "answer_control", "granted": true}))
        .await;
    op.expect_where(&proxy, "status", |v| v["control"] == true)
        .await;
    customer
        .send(json!({"type": "control", "granted": false}))
        .await;
    op.expect_where(&proxy, "status", |v| v["control"] == false)
        .await;
    for event in [
        "control_requested",
        "control_denied",
        "control_granted",
        "control_revoked",
    ] {
        audited(&proxy, event).await;
    }
}

#[tokio::test]
async fn the_address_bar_needs_control_and_stays_on_the_site() {
    let proxy = start("").await;
    let (mut customer, mut op, _) = connected_call(&proxy).await;
    let go = |args: Value| json!({"type": "command", "key": "top/@go", "attribute": "others", "fn": "go", "args": args});

    op.send(go(json!(["load", "/quote"]))).await;
    op.error(&proxy, "no_control").await;
    customer
        .send(json!({"type": "control", "granted": true}))
        .await;
    op.expect_where(&proxy, "status", |v| v["control"] == true)
        .await;
    for bad in [
        json!(["load", "//evil.example/"]),
        json!(["load", "javascript:alert(1)"]),
        json!(["load"]),
        json!(["fly"]),
    ] {
        op.send(go(bad.clone())).await;
        let e = op.error(&proxy, "bad_message").await;
        assert_eq!(e["request"], "command", "{bad}: {e}");
    }
    op.send(go(json!(["load", "/quote?x=1"]))).await;
    op.send(go(json!(["back"]))).await;
    let first = customer.expect(&proxy, "command").await;
    assert_eq!(first["args"], json!(["load", "/quote?x=1"]), "{first}");
    let second = customer.expect(&proxy, "command").await;
    assert_eq!(second["args"], json!(["back"]), "{second}");
}
