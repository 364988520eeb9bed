//! The walking skeleton, end to end: an operator waits, a customer calls
//! from a demo page, the operator responds, and text typed on either side
//! appears on the other, without echoes.

use super::harness::{Browser, until, until_on};
use super::*;

fn value_commands(frames: &[String], direction: &str, key_part: &str) -> usize {
    frames
        .iter()
        .filter(|f| {
            f.starts_with(direction) && f.contains(r#""fn":"value""#) && f.contains(key_part)
        })
        .count()
}

#[tokio::test]
async fn customer_and_operator_type_into_the_same_form() {
    let server = demo_server().await;
    let browser = Browser::launch().await;
    let operator = browser.tab("operator", 1400, 1000).await;
    let customer = browser.tab("customer", 1000, 760).await;
    let all = [&customer, &operator];

    operator_waits(&operator, &server, "op", &[&customer]).await;
    let respond_disabled = operator
        .eval_on(r#"[data-cobrowse="respond"]"#, "el.disabled")
        .await;
    assert_eq!(
        respond_disabled,
        serde_json::json!(true),
        "Respond must be disabled while no call waits"
    );
    // Nothing stands over the waiting message until there is a page to show.
    let viewport_hidden = operator
        .eval_on(
            r#"[data-cobrowse="viewport"]"#,
            "el.hidden && el.getBoundingClientRect().width === 0",
        )
        .await;
    assert_eq!(
        viewport_hidden,
        serde_json::json!(true),
        "the empty content frame must not cover the waiting console"
    );

    customer.goto(&server.url("/form.html")).await;
    until_on(
        &customer,
        "the widget",
        CALL,
        "el && el.textContent === 'Call operator'",
        &all,
        &server,
    )
    .await;
    // The agent stays silent until the customer calls.
    assert!(
        customer.websocket_frames().is_empty(),
        "no WebSocket before the call: {:?}",
        customer.websocket_frames()
    );

    // What the customer typed before calling is part of the page they share.
    customer.type_into("#notes", "early").await;
    customer_calls(&customer, &server, &[&operator]).await;
    operator_responds(&operator, &server, &[&customer]).await;
    until_on(
        &operator,
        "what the customer typed before calling",
        CONTENT,
        &in_frame("document.querySelector('#notes').value === 'early'"),
        &all,
        &server,
    )
    .await;
    until(
        &customer,
        "the widget to say who is connected",
        &format!("{WIDGET_STATUS}.includes('Connected with Olivia Operator')"),
        &all,
        &server,
    )
    .await;
    // The content frame's agent knows it runs for an operator.
    let op_role = operator
        .eval_on(CONTENT, &in_frame("window.__cobrowse.operator"))
        .await;
    assert_eq!(op_role, serde_json::json!(true));

    // The customer types; the operator sees it.
    customer.type_into("#name", "Sam Example").await;
    until_on(
        &operator,
        "the customer's typing in the operator's form",
        CONTENT,
        &in_frame("document.querySelector('#name').value === 'Sam Example'"),
        &all,
        &server,
    )
    .await;

    // A round trip on another field: by the time it arrives, any echo of the
    // first would have been sent.
    customer.type_into("#email", "sam@example.org").await;
    until_on(
        &operator,
        "the e-mail in the operator's form",
        CONTENT,
        &in_frame("document.querySelector('#email').value === 'sam@example.org'"),
        &all,
        &server,
    )
    .await;
    let op_frames = operator.websocket_frames();
    assert_eq!(
        value_commands(&op_frames, "sent", "input#name"),
        0,
        "the operator echoed applied values: {op_frames:#?}"
    );
    assert_eq!(
        value_commands(&customer.websocket_frames(), "sent", "input#name"),
        "Sam Example".len(),
        "one command per keystroke"
    );

    // View only until the customer grants control: the operator's typing is
    // not applied on the customer's side, and the console says why.
    operator.type_into(&content("#notes"), "x").await;
    until(&operator, "the console to explain view-only", r#"document.querySelector('[data-cobrowse="notice"]').textContent.includes('has not given you control')"#, &all, &server).await;
    until_on(
        &operator,
        "the operator's keystroke reverted",
        CONTENT,
        &in_frame("document.querySelector('#notes').value === 'early'"),
        &all,
        &server,
    )
    .await;

    customer.click(CONTROL).await;
    until(
        &operator,
        "control granted",
        &format!("{CONSOLE_STATUS}.includes('You have control')"),
        &all,
        &server,
    )
    .await;

    // The operator types; the customer sees it.
    operator.type_into(&content("#name"), " King").await;
    until(
        &customer,
        "the operator's typing on the customer's page",
        "document.querySelector('#name').value === 'Sam Example King'",
        &all,
        &server,
    )
    .await;
    customer.type_into("#notes", " ok").await;
    until_on(
        &operator,
        "the notes in the operator's form",
        CONTENT,
        &in_frame("document.querySelector('#notes').value === 'early ok'"),
        &all,
        &server,
    )
    .await;
    assert_eq!(
        value_commands(&customer.websocket_frames(), "sent", "input#name"),
        "Sam Example".len(),
        "the customer echoed the operator's typing"
    );
    assert_eq!(
        value_commands(&operator.websocket_frames(), "sent", "input#name"),
        " King".len()
    );

    // The session survives the customer's navigation, and the operator follows.
    customer.click(r#"header a[href="/"]"#).await;
    until_on(
        &operator,
        "the operator to follow to the home page",
        CONTENT,
        &in_frame("location.pathname === '/' && !!window.__cobrowse.engine"),
        &all,
        &server,
    )
    .await;
    until(
        &customer,
        "the widget to be connected again after navigating",
        &format!("{WIDGET_STATUS}.includes('Connected with')"),
        &all,
        &server,
    )
    .await;

    // The customer hangs up: the console clears its content frame and waits.
    customer.click(CALL).await;
    until(&operator, "the console to clear the content frame", &format!("{CONSOLE_STATUS}.startsWith('Waiting for calls') && document.querySelector('{}').contentWindow.location.href === 'about:blank'", CONTENT.replace('\'', "\\'")), &all, &server).await;
    until(
        &customer,
        "the widget to be idle",
        &format!("{WIDGET_STATUS}.startsWith('Need help')"),
        &all,
        &server,
    )
    .await;
}

#[tokio::test]
async fn a_declined_call_goes_to_the_next_free_operator() {
    let server = demo_server().await;
    let browser = Browser::launch().await;
    let op = browser.tab("operator", 1400, 1000).await;
    let op2 = browser.tab("second operator", 1400, 1000).await;
    let customer = browser.tab("customer", 1000, 760).await;
    let all = [&customer, &op, &op2];
    const RESPOND: &str = r#"[data-cobrowse="respond"]"#;
    const DECLINE: &str = r#"[data-cobrowse="decline"]"#;

    // The operator who has been ready longest is offered the call first.
    operator_waits(&op, &server, "op", &[&customer, &op2]).await;
    operator_waits(&op2, &server, "op2", &[&customer, &op]).await;
    assert_eq!(
        op.eval_on(DECLINE, "el.disabled").await,
        serde_json::json!(true),
        "Decline is disabled while no call is offered"
    );
    customer.goto(&server.url("/form.html")).await;
    customer_calls(&customer, &server, &[&op, &op2]).await;
    until_on(
        &op,
        "Respond and Decline enabled for the first operator",
        DECLINE,
        &format!("el && !el.disabled && !document.querySelector('{RESPOND}').disabled"),
        &all,
        &server,
    )
    .await;
    assert_eq!(
        op2.eval_on(RESPOND, "el.disabled").await,
        serde_json::json!(true),
        "the call is offered to one operator at a time"
    );

    op.click(DECLINE).await;
    until_on(
        &op2,
        "the next free operator offered the call",
        RESPOND,
        "el && !el.disabled",
        &all,
        &server,
    )
    .await;
    // The browser reports a sent frame a moment after the page sends it.
    crate::support::wait_for(
        "the console to send the documented decline message",
        std::time::Duration::from_secs(5),
        || async {
            op.websocket_frames()
                .iter()
                .any(|f| f.starts_with("sent") && f.contains(r#""type":"decline""#))
                .then_some(())
        },
        || format!("{:#?}", op.websocket_frames()),
    )
    .await;
    until_on(
        &op,
        "the declining operator's buttons disabled",
        DECLINE,
        &format!("el && el.disabled && document.querySelector('{RESPOND}').disabled"),
        &all,
        &server,
    )
    .await;

    operator_responds(&op2, &server, &[&customer, &op]).await;
    until(
        &customer,
        "the widget to say who answered",
        &format!("{WIDGET_STATUS}.includes('Connected with Oscar Second')"),
        &all,
        &server,
    )
    .await;
}
