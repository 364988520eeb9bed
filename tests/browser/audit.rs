//! The audit log in its own file: a whole session leaves one JSON line per
//! event (login and its failure, call, offer, join, control, a follower's
//! refused request, hang-up), and nothing a customer typed, masked or not,
//! ever reaches it or the logs.

use std::time::Duration;

use super::*;

const MASKED: &str = "hunter2hunter2";
const TYPED: &str = "visible-typing";

#[tokio::test]
async fn a_session_is_audited_in_its_own_file_without_what_was_typed() {
    let server = Cobrowse::with_config(&format!(
        "{}\n[audit]\npath = \"{{dir}}/audit.jsonl\"\n",
        demo_config()
    ))
    .await;
    let path = server.dir().join("audit.jsonl");
    let s = Shared::on(server, "/controls.html").await;
    let (c, o) = (&s.customer, &s.operator);

    // A failed login, from the console's own page.
    let status = o
        .eval("fetch('/__cobrowse/login', { method: 'POST', body: new URLSearchParams({ user: 'op', password: 'wrong' }) }).then((r) => r.status)")
        .await;
    assert_eq!(status, serde_json::json!(401));

    c.type_into("#pw", MASKED).await;
    c.type_into("#full", TYPED).await;
    s.on_operator(
        "the customer's typing in the unmasked field",
        &format!("document.querySelector('#full').value === '{TYPED}'"),
    )
    .await;
    s.grant_control().await;
    s.take_control_back().await;
    // A follower's request that would change the site's state.
    let refused = o
        .eval_on(CONTENT, "el.contentWindow.fetch('/form.html', { method: 'POST', body: new URLSearchParams({ pw: 'x' }) }).then((r) => r.status)")
        .await;
    assert_eq!(refused, serde_json::json!(403));
    // The customer hangs up.
    c.click(CALL).await;
    until(
        c,
        "the widget to be idle",
        &format!("{WIDGET_STATUS}.startsWith('Need help')"),
        &s.tabs(),
        &s.server,
    )
    .await;

    let expected = [
        "login_failed",
        "login",
        "call",
        "offer",
        "join",
        "bind",
        "control_granted",
        "control_revoked",
        "follower_refused",
        "hangup",
        "ended",
    ];
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    let text = crate::support::wait_for(
        "every event in the audit file",
        Duration::from_secs(10),
        || async {
            let text = read();
            expected
                .iter()
                .all(|e| text.contains(&format!("\"event\":\"{e}\"")))
                .then_some(text)
        },
        || format!("audit file:\n{}\nserver:\n{}", read(), s.server.output()),
    )
    .await;

    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let session = lines
        .iter()
        .find(|l| l["event"] == "call")
        .and_then(|l| l["session"].as_str())
        .expect("the call names its session");
    for l in &lines {
        assert!(
            l["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "no time: {l}"
        );
        let event = l["event"]
            .as_str()
            .unwrap_or_else(|| panic!("no event: {l}"));
        if !event.starts_with("login") {
            assert_eq!(l["session"], session, "{l}");
        }
        if [
            "call",
            "join",
            "bind",
            "control_granted",
            "control_revoked",
            "follower_refused",
            "hangup",
        ]
        .contains(&event)
        {
            assert!(
                l["participant"].as_str().is_some_and(|p| !p.is_empty()),
                "no participant: {l}"
            );
        }
        if ["login", "login_failed", "offer"].contains(&event)
            || (event == "join" && l["role"] == "operator")
        {
            assert_eq!(l["user"], OPERATOR_USER, "{l}");
        }
    }
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "join" && l["role"] == "operator"),
        "{text}"
    );
    let refusal = lines
        .iter()
        .find(|l| l["event"] == "follower_refused")
        .unwrap();
    assert_eq!(
        (refusal["method"].as_str(), refusal["path"].as_str()),
        (Some("POST"), Some("/form.html")),
        "{refusal}"
    );

    // Audit lines go to the file only, and nothing typed reaches either.
    let logs = s.server.stderr();
    assert!(
        !logs.contains("\"control_granted\"") && !logs.contains("event=\"control_granted\""),
        "audit events in the log too:\n{logs}"
    );
    for secret in [MASKED, TYPED] {
        assert!(
            !text.contains(secret),
            "`{secret}` in the audit file:\n{text}"
        );
        assert!(!logs.contains(secret), "`{secret}` in the logs:\n{logs}");
    }
}
