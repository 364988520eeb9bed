//! Redis that stops answering mid-session, as the customer and the operator
//! see it: the widget and the console say sharing is unavailable (never
//! Redis's own words), a call made meanwhile is refused rather than left
//! waiting, and once Redis answers again both messages clear on their own
//! and what the customer typed meanwhile reaches the operator.

use super::*;
use crate::hub::http;
use crate::support::redis::Redis;
use crate::support::wait_for;

const UNAVAILABLE: &str = "Sharing is unavailable right now; try again in a moment.";

#[tokio::test]
async fn the_console_and_the_widget_say_sharing_is_unavailable_and_clear_it() {
    let redis = Redis::start();
    let server = Cobrowse::with_config(&format!(
        "{}{}",
        demo_config(),
        redis.node_config("cobrowse:")
    ))
    .await;
    let s = Shared::on(server, "/form.html").await;
    let (c, o) = (&s.customer, &s.operator);
    s.grant_control().await;
    c.type_into("#notes", "before").await;
    s.on_operator(
        "the customer's typing",
        "document.querySelector('#notes').value === 'before'",
    )
    .await;

    // Redis hangs: the node notices (healthz), and each side learns it when
    // the hub refuses what it sends.
    redis.freeze();
    wait_for(
        "healthz to report the store down",
        std::time::Duration::from_secs(8),
        || async {
            let (status, _, _) = http(&s.server, "GET", "/__cobrowse/healthz", &[], "").await;
            (status == 503).then_some(())
        },
        || s.server.output(),
    )
    .await;
    c.type_into("#notes", " during").await;
    s.on_customer(
        "the widget to say sharing is unavailable",
        &format!("{WIDGET_STATUS}.startsWith({UNAVAILABLE:?})"),
    )
    .await;
    o.type_into(&content("#name"), "Ann").await;
    until(
        o,
        "the console to say sharing is unavailable",
        &format!("{CONSOLE_STATUS}.startsWith({UNAVAILABLE:?})"),
        &s.tabs(),
        &s.server,
    )
    .await;
    for (tab, status) in [(c, WIDGET_STATUS), (o, CONSOLE_STATUS)] {
        let text = tab.eval(status).await;
        assert!(!text.to_string().contains("Redis"), "{}: {text}", tab.name);
    }

    // A new call meanwhile is refused with the message and is over, not
    // left waiting.
    let late = s.browser.tab("late customer", 1000, 760).await;
    let all = [c, o, &late];
    late.goto(&s.server.url("/form.html")).await;
    until_on(
        &late,
        "the call button",
        CALL,
        "el && el.textContent === 'Call operator'",
        &all,
        &s.server,
    )
    .await;
    late.click(CALL).await;
    until(
        &late,
        "the refused call to say sharing is unavailable",
        &format!("{WIDGET_STATUS} === {UNAVAILABLE:?}"),
        &all,
        &s.server,
    )
    .await;
    until_on(
        &late,
        "the call button back",
        CALL,
        "el && el.textContent === 'Call operator'",
        &all,
        &s.server,
    )
    .await;

    // Redis answers again: the messages clear without anyone doing a thing,
    // and what the customer typed while it hung reaches the operator.
    redis.thaw();
    s.on_customer(
        "the widget's message to clear",
        &format!(
            "!{WIDGET_STATUS}.includes('unavailable') && {WIDGET_STATUS}.includes('Connected with')"
        ),
    )
    .await;
    until(
        o,
        "the console's message to clear",
        &format!(
            "!{CONSOLE_STATUS}.includes('unavailable') && {CONSOLE_STATUS}.startsWith('Connected')"
        ),
        &all,
        &s.server,
    )
    .await;
    until(
        &late,
        "the refused caller's message to clear",
        &format!("!{WIDGET_STATUS}.includes('unavailable')"),
        &all,
        &s.server,
    )
    .await;
    s.on_operator(
        "what the customer typed while Redis hung",
        "document.querySelector('#notes').value === 'before during'",
    )
    .await;
    // And a new call is taken.
    late.click(CALL).await;
    until(
        &late,
        "the new call to wait for an operator",
        &format!("{WIDGET_STATUS}.startsWith('Waiting')"),
        &all,
        &s.server,
    )
    .await;
}
