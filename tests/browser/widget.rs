//! The customer's widget is usable by keyboard and readable by assistive
//! technology in each of its states: idle, waiting with the place in the
//! queue, connected with whom, control granted.

use super::harness::{Browser, Tab, until};
use super::*;

/// JS, in the customer's top document: which widget button has focus
/// (its `data-cobrowse`), or null.
const FOCUSED: &str = "(() => { const h = document.activeElement; return h && h.matches('cobrowse-widget') && h.shadowRoot.activeElement ? h.shadowRoot.activeElement.getAttribute('data-cobrowse') : null; })()";

/// JS: the accessibility problems of the widget as it is now shown, as a
/// list of strings (empty when none): the region and the live status line
/// are named; every shown button has an accessible name that starts with
/// its visible text (so it can be found by what it says), and reaches 4.5:1
/// contrast; the status text too.
pub(super) const PROBLEMS: &str = r#"(() => {
  const root = document.querySelector('[data-cobrowse="widget"]').shadowRoot;
  const out = [];
  const region = root.querySelector('[role="region"]');
  if (!region || !region.getAttribute('aria-label')) out.push('the widget is not a named region');
  const status = root.querySelector('[data-cobrowse="status"]');
  if (status.getAttribute('role') !== 'status' || status.getAttribute('aria-live') !== 'polite') out.push('the status line is not a polite live region');
  if (!status.textContent.trim()) out.push('the status line is empty');
  const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const bg = (el) => { for (let e = el; e && e.nodeType === 1; e = e.parentNode) { const c = rgb(getComputedStyle(e).backgroundColor); if (c.length === 3 || c[3] > 0) return c; } return [255, 255, 255]; };
  const ratio = (el) => { const a = lum(rgb(getComputedStyle(el).color)), b = lum(bg(el)); return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); };
  if (ratio(status) < 4.5) out.push('the status text has low contrast');
  for (const b of root.querySelectorAll('button')) {
    if (!b.getClientRects().length) continue;
    const text = b.textContent.trim();
    const name = (b.getAttribute('aria-label') || text).trim();
    const what = b.getAttribute('data-cobrowse');
    if (!name) out.push(what + ' has no accessible name');
    else if (!name.toLowerCase().startsWith(text.toLowerCase())) out.push(what + ': its name "' + name + '" does not start with its text "' + text + '"');
    if (b.tabIndex < 0 || b.disabled) out.push(what + ' cannot be reached by keyboard');
    if (ratio(b) < 4.5) out.push(what + ' has low contrast');
  }
  const call = root.querySelector('[data-cobrowse="call"]');
  if (call.getAttribute('aria-describedby') !== status.id || !status.id) out.push('the call button is not described by the status line');
  return out;
})()"#;

pub(super) async fn no_problems(tab: &Tab, state: &str) {
    let problems = tab.eval(PROBLEMS).await;
    assert_eq!(problems, serde_json::json!([]), "the widget, {state}");
}

/// The widget's call button is what a person sees and clicks at its place:
/// hit testing finds it there (nothing of the page or of the overlay takes
/// the click), and the screen shows its colour.
pub async fn seen_on_top(tab: &Tab, all: &[&Tab], server: &Cobrowse) {
    let (x, y) = centre(tab, CALL).await;
    let hit = tab.element_at(x, y).await;
    assert!(
        hit.ends_with("button[data-cobrowse=call]"),
        "{}: a click on the call button's place reaches {hit:?}",
        tab.name
    );
    let ground = tab
        .eval_on(CALL, "getComputedStyle(el).backgroundColor")
        .await;
    let (bx, by, bw, bh) = tab.rect(CALL).await.expect("the call button");
    // Inside its rounded border, where the button's ground shows.
    super::harness::until_seen(
        tab,
        "the call button",
        (bx + 6.0, by + 4.0, bw - 12.0, bh - 8.0),
        ground.as_str().expect("a background colour"),
        20,
        all,
        server,
    )
    .await;
}

/// Presses Tab until the widget button `which` has focus.
async fn tab_to(tab: &Tab, which: &str) {
    for _ in 0..60 {
        if tab.eval(FOCUSED).await == serde_json::json!(which) {
            return;
        }
        tab.press("Tab", 9).await;
    }
    panic!(
        "{}: Tab never reached the widget's {which} button\n{}",
        tab.name,
        tab.dump().await
    );
}

#[tokio::test]
async fn the_widget_works_by_keyboard_and_reads_well_in_every_state() {
    let server = demo_server().await;
    let browser = Browser::launch().await;
    let operator = browser.tab("operator", 1400, 1000).await;
    let customer = browser.tab("customer", 1000, 760).await;
    let all = [&customer, &operator];

    customer.goto(&server.url("/")).await;
    until(
        &customer,
        "the idle widget",
        &format!("{WIDGET_STATUS}.startsWith('Need help')"),
        &all,
        &server,
    )
    .await;
    no_problems(&customer, "idle").await;

    // Tab reaches the call button; Enter calls. No operator is ready, so
    // the customer waits and is told their place in the queue.
    tab_to(&customer, "call").await;
    customer.type_text("\n").await;
    until(
        &customer,
        "the place in the queue",
        &format!("{WIDGET_STATUS}.includes('you are next in the queue')"),
        &all,
        &server,
    )
    .await;
    no_problems(&customer, "waiting in the queue").await;

    operator_waits(&operator, &server, "op", &[&customer]).await;
    operator_responds(&operator, &server, &[&customer]).await;
    until(
        &customer,
        "the widget to say who is connected",
        &format!("{WIDGET_STATUS}.includes('Connected with Olivia Operator')"),
        &all,
        &server,
    )
    .await;
    no_problems(&customer, "connected").await;
    seen_on_top(&customer, &[&customer, &operator], &server).await;

    // The control toggle is reached and pressed by keyboard too, and says
    // so both in its pressed state and in the status line.
    tab_to(&customer, "control").await;
    customer.type_text("\n").await;
    until(&customer, "control granted", &format!("{WIDGET_STATUS}.includes('They can act on this page') && document.querySelector('[data-cobrowse=widget]').shadowRoot.querySelector('[data-cobrowse=control]').getAttribute('aria-pressed') === 'true'"), &all, &server).await;
    until(
        &operator,
        "the console to say the operator has control",
        &format!("{CONSOLE_STATUS}.includes('You have control')"),
        &all,
        &server,
    )
    .await;
    no_problems(&customer, "with control granted").await;
}
