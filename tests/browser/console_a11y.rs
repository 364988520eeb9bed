//! The operator's console is usable by keyboard and readable by assistive
//! technology in each of its states: signed out, waiting, a call offered,
//! connected view-only, connected with control, and chatting. The checks
//! are the widget's ([`super::widget::A11Y`]), run on the console's page.

use super::harness::{Browser, Tab, until, until_on};
use super::widget::A11Y;
use super::*;

/// JS: the console's accessibility problems as it is now shown, as a list of
/// strings (empty when none): [`A11Y`]'s checks on the whole page, and: the
/// status line is a polite live region, notices are alerts, the chat log is
/// a polite live region, and each control the Tab key reaches comes after
/// the one before it in reading order (on a later line, or to the right on
/// the same line).
fn problems() -> String {
    format!(
        r#"(() => {{
  {A11Y}
  const out = a11y.check(document);
  const $ = (hook) => document.querySelector('[data-cobrowse="' + hook + '"]');
  if (a11y.shown($('desk'))) out.push(...a11y.politeStatus($('status'), 'the status line'));
  for (const hook of ['notice', 'login-error']) if ($(hook).getAttribute('role') !== 'alert') out.push('the ' + hook + ' line is not an alert');
  if (a11y.shown($('chat')) && $('chat-log').getAttribute('aria-live') !== 'polite') out.push('the chat log is not a polite live region');
  const box = (el) => el.getBoundingClientRect();
  const stops = {STOPS};
  for (let i = 1; i < stops.length; i++) {{
    const a = box(stops[i - 1]), b = box(stops[i]);
    const below = b.top >= a.bottom - 4;
    const right = Math.abs(b.top - a.top) < a.height && b.left >= a.right - 4;
    if (!below && !right) out.push(a11y.what(stops[i]) + ' comes after ' + a11y.what(stops[i - 1]) + ' by Tab but not in reading order');
  }}
  return out;
}})()"#,
        STOPS = STOPS
    )
}

/// JS (with `a11y` in scope): the console's controls the Tab key should
/// reach, in document order: shown, enabled, in the Tab order, in the
/// control frame (the content frame's page has its own).
const STOPS: &str = "a11y.controls(document).filter((c) => !c.matches(':disabled') && c.tabIndex >= 0 && c.closest('[data-cobrowse=\"stage\"]') === null)";

async fn no_problems(tab: &Tab, state: &str) {
    let problems = tab.eval(&problems()).await;
    assert_eq!(
        problems,
        serde_json::json!([]),
        "the console, {state}\n{}",
        tab.dump().await
    );
}

/// JS: what has the focus in the console: a control by [`A11Y`]'s `what`,
/// "content" for the content frame, or null.
fn focused() -> String {
    format!(
        "(() => {{ {A11Y} const f = document.activeElement; if (!f || f === document.body) return null; return f.matches('[data-cobrowse=\"content\"]') ? 'content' : a11y.what(f); }})()"
    )
}

/// Puts the keyboard's starting point at the top of the console, as a
/// click on its heading does.
async fn from_the_top(tab: &Tab) {
    tab.eval("document.activeElement && document.activeElement.blur()")
        .await;
    tab.click("h1").await;
}

/// Presses Tab from the top of the console until `which` (by [`A11Y`]'s
/// `what`) has focus.
async fn tab_to(tab: &Tab, which: &str) {
    from_the_top(tab).await;
    let focused = focused();
    for _ in 0..40 {
        tab.press("Tab", 9).await;
        if tab.eval(&focused).await == serde_json::json!(which) {
            return;
        }
    }
    panic!(
        "{}: Tab never reached the console's {which}\n{}",
        tab.name,
        tab.dump().await
    );
}

/// Presses Space on what has focus: a button is pressed on its release.
async fn space(tab: &Tab) {
    tab.type_text(" ").await;
}

/// Tabs through the console from the top and checks that the Tab key
/// reaches every control shown and enabled, in document order (which the
/// problems check holds to reading order), each showing a focus ring,
/// ending in the content frame or leaving the page; and that `wanted` come
/// in that order. Returns the controls reached.
async fn tab_order(tab: &Tab, state: &str, wanted: &[&str]) -> Vec<String> {
    let expected = tab
        .eval(&format!(
            "(() => {{ {A11Y} return {STOPS}.map(a11y.what); }})()"
        ))
        .await;
    from_the_top(tab).await;
    let focused = focused();
    let ring = format!("(() => {{ {A11Y} return a11y.ring(document.activeElement); }})()");
    let mut reached: Vec<String> = Vec::new();
    let mut rings = Vec::new();
    for _ in 0..60 {
        tab.press("Tab", 9).await;
        match tab.eval(&focused).await.as_str() {
            None | Some("content") => break,
            Some(w) if reached.iter().any(|r| r == w) => break,
            Some(w) => reached.push(w.to_string()),
        }
        let problem = tab.eval(&ring).await;
        if !problem.is_null() {
            rings.push(problem);
        }
    }
    assert!(
        rings.is_empty(),
        "the console, {state}: focus rings {rings:?}"
    );
    assert_eq!(
        serde_json::json!(reached),
        expected,
        "the console, {state}: the controls Tab reaches\n{}",
        tab.dump().await
    );
    let mut at = 0;
    for w in wanted {
        match reached[at..].iter().position(|r| r == w) {
            Some(i) => at += i + 1,
            None => panic!(
                "the console, {state}: Tab does not reach {w} after {:?}; it reaches {reached:?}\n{}",
                &reached[..at],
                tab.dump().await
            ),
        }
    }
    reached
}

#[tokio::test]
async fn the_console_works_by_keyboard_and_reads_well_in_every_state() {
    let server = demo_server().await;
    let browser = Browser::launch().await;
    let operator = browser.tab("operator", 1400, 1000).await;
    let customer = browser.tab("customer", 1000, 760).await;
    let all = [&operator, &customer];
    let signed_out = r#"form[data-cobrowse="login"]"#;

    // Signed out: the sign-in form, filled in and sent by keyboard.
    operator.goto(&server.url("/__cobrowse/console")).await;
    until_on(
        &operator,
        "the sign-in form",
        signed_out,
        "el && el.getClientRects().length > 0",
        &all,
        &server,
    )
    .await;
    no_problems(&operator, "signed out").await;
    tab_order(
        &operator,
        "signed out",
        &["input user", "input password", "\"Sign in\""],
    )
    .await;
    tab_to(&operator, "input user").await;
    operator.type_text(OPERATOR_USER).await;
    operator.press("Tab", 9).await;
    operator.type_text(OPERATOR_PASSWORD).await;
    operator.type_text("\n").await;
    // Signed out, the hidden status line says "Waiting for calls" too: the
    // desk on show is what tells the sign-in worked.
    until(
        &operator,
        "the console to wait for calls",
        &format!("!document.querySelector('[data-cobrowse=\"desk\"]').hidden && {CONSOLE_STATUS}.startsWith('Waiting for calls')"),
        &all,
        &server,
    )
    .await;
    no_problems(&operator, "waiting").await;
    tab_order(&operator, "waiting", &["logout", "input code"]).await;

    // A call offered: Respond is reached and pressed with Space, after a
    // wrong code typed into the join form is sent with Enter and refused.
    customer.goto(&server.url("/")).await;
    customer_calls(&customer, &server, &[&operator]).await;
    until_on(
        &operator,
        "Respond to be enabled",
        r#"[data-cobrowse="respond"]"#,
        "el && !el.disabled",
        &all,
        &server,
    )
    .await;
    no_problems(&operator, "with a call offered").await;
    tab_order(
        &operator,
        "with a call offered",
        &["respond", "decline", "input code"],
    )
    .await;
    tab_to(&operator, "input code").await;
    operator.type_text("999999\n").await;
    until(
        &operator,
        "the refusal of a wrong code",
        "document.querySelector('[data-cobrowse=\"notice\"]:not([hidden])')?.textContent.includes('No session has that code')",
        &all,
        &server,
    )
    .await;
    no_problems(&operator, "with a notice").await;
    tab_to(&operator, "respond").await;
    space(&operator).await;
    until(
        &operator,
        "the console to be connected",
        &format!("{CONSOLE_STATUS}.startsWith('Connected')"),
        &all,
        &server,
    )
    .await;
    until_on(
        &operator,
        "the customer's page with its agent in the content frame",
        CONTENT,
        &in_frame("!!(window.__cobrowse && window.__cobrowse.engine)"),
        &all,
        &server,
    )
    .await;
    until(
        &operator,
        "the address bar to show the customer's page",
        &format!(
            "document.querySelector('[data-cobrowse=\"address\"] input').value === {:?}",
            server.url("/")
        ),
        &all,
        &server,
    )
    .await;

    // Connected, view only: Request control is pressed with Enter.
    no_problems(&operator, "connected, view only").await;
    tab_order(
        &operator,
        "connected, view only",
        &[
            "input url",
            "back",
            "forward",
            "reload",
            "request-control",
            "chat-input",
        ],
    )
    .await;
    tab_to(&operator, "request-control").await;
    operator.type_text("\n").await;
    let allow = r#"[data-cobrowse="widget"] | [data-cobrowse="allow-control"]"#;
    until_on(
        &customer,
        "the request for control",
        allow,
        "el && el.getClientRects().length > 0",
        &all,
        &server,
    )
    .await;
    customer.click(allow).await;
    until(
        &operator,
        "the console to say the operator has control",
        &format!("{CONSOLE_STATUS}.includes('You have control')"),
        &all,
        &server,
    )
    .await;

    // With control: the address bar opens a page on Enter; Back (Space),
    // Forward (Enter) and Reload (Space) move the customer's browser.
    no_problems(&operator, "connected with control").await;
    tab_order(
        &operator,
        "connected with control",
        &["input url", "back", "forward", "reload", "chat-input"],
    )
    .await;
    tab_to(&operator, "input url").await;
    operator.edit("selectAll").await;
    operator.type_text("/form.html\n").await;
    until(
        &customer,
        "the customer's browser to open the typed page",
        "location.pathname === '/form.html' && !!window.__cobrowse",
        &all,
        &server,
    )
    .await;
    tab_to(&operator, "back").await;
    space(&operator).await;
    until(
        &customer,
        "the customer's browser to go back",
        "location.pathname === '/' && !!window.__cobrowse",
        &all,
        &server,
    )
    .await;
    tab_to(&operator, "forward").await;
    operator.type_text("\n").await;
    until(
        &customer,
        "the customer's browser to go forward",
        "location.pathname === '/form.html' && !!window.__cobrowse",
        &all,
        &server,
    )
    .await;
    customer.eval("window.__before_reload = 1").await;
    tab_to(&operator, "reload").await;
    space(&operator).await;
    until(
        &customer,
        "the customer's page to reload",
        "window.__before_reload === undefined && !!window.__cobrowse",
        &all,
        &server,
    )
    .await;

    // The chat: the field is reached by Tab and sends on Enter; with the
    // customer's answer in the log, the console still reads well.
    let log = "[...document.querySelectorAll('[data-cobrowse=\"chat-log\"] > *')].map((e) => e.textContent)";
    tab_to(&operator, "chat-input").await;
    operator.type_text("Hello from the keyboard\n").await;
    until(
        &operator,
        "the operator's message in the log",
        &format!("{log}.length === 1 && {log}[0].includes('Hello from the keyboard')"),
        &all,
        &server,
    )
    .await;
    let widget_chat =
        |hook: &str| format!(r#"[data-cobrowse="widget"] | [data-cobrowse="{hook}"]"#);
    until_on(
        &customer,
        "the widget's chat button",
        &widget_chat("chat-toggle"),
        "el && el.getClientRects().length > 0",
        &all,
        &server,
    )
    .await;
    customer.click(&widget_chat("chat-toggle")).await;
    customer
        .type_into(&widget_chat("chat-input"), "Thanks, I see it\n")
        .await;
    until(
        &operator,
        "the customer's answer in the log",
        &format!("{log}.length === 2 && {log}[1].includes('Thanks, I see it')"),
        &all,
        &server,
    )
    .await;
    no_problems(&operator, "chatting").await;
    super::widget::no_problems(&customer, "chatting").await;
}
