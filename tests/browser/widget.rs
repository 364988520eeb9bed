//! The customer's widget is usable by keyboard and readable by assistive
//! technology in each of its states: idle, waiting with the place in the
//! queue, connected with whom, control granted (and, in the conversation
//! tests, showing a code, asking for control, chatting). The checks live
//! here as one snippet, [`A11Y`], which the console's test runs too.

use super::harness::{Browser, Tab, until};
use super::*;

/// JS, in the customer's top document: which widget button has focus
/// (its `data-cobrowse`), or null.
const FOCUSED: &str = "(() => { const h = document.activeElement; return h && h.matches('cobrowse-widget') && h.shadowRoot.activeElement ? h.shadowRoot.activeElement.getAttribute('data-cobrowse') : null; })()";

/// JS that defines `a11y`, the checks the widget and the console share
/// (WCAG 2.2 AA, as far as a script can see them): `a11y.check(root)` lists
/// the problems of what `root` (a document or a shadow root) shows now:
/// every shown control has an accessible name that starts with its visible
/// text (its label, for a field), so it can be found by what it says; every
/// field has a visible label; every enabled control is in the Tab order;
/// every shown text, control and field reaches 4.5:1 contrast against what
/// is behind it (disabled ones too: a person must read what they will be
/// able to press). `a11y.ring(el)` says what is wrong with the focus ring
/// of `el` as it has keyboard focus (a ring of 3:1 or more), or null. Colours are measured as painted: a colour's alpha and
/// the opacity of the element and its ancestors are blended over the
/// backgrounds behind; a colour it cannot measure is a problem, not a pass.
pub(super) const A11Y: &str = r#"const a11y = (() => {
  const shown = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  const up = (el) => el.parentNode && el.parentNode.nodeType === 11 ? el.parentNode.host : el.parentElement;
  const words = (t) => (t || '').replace(/\s+/g, ' ').trim();
  const rgba = (css) => { const m = /^rgba?\(([^)]*)\)$/.exec(css); if (!m) return null; const v = m[1].split(/[\s,/]+/).filter(Boolean).map(Number); return v.length < 3 || v.some(Number.isNaN) ? null : [v[0], v[1], v[2], v.length > 3 ? v[3] : 1]; };
  const over = (top, a, ground) => ground.map((g, i) => top[i] * a + g * (1 - a));
  const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  // The opacity an element is painted with: its own times its ancestors'.
  const opacity = (el) => { let o = 1; for (let e = el; e; e = up(e)) o *= Number(getComputedStyle(e).opacity); return o; };
  // What shows behind the element's text: its background and its
  // ancestors', blended from the page's white up.
  const ground = (el) => {
    const layers = [];
    for (let e = el; e; e = up(e)) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (!c) return null;
      const a = c[3] * opacity(e);
      if (a > 0) layers.push([c, a]);
      if (a >= 1) break;
    }
    return layers.reverse().reduce((g, [c, a]) => over(c, a, g), [255, 255, 255]);
  };
  // The contrast of the element's text against its ground, or null when a
  // colour cannot be measured.
  const ratio = (el) => {
    const fg = rgba(getComputedStyle(el).color), g = ground(el);
    if (!fg || !g) return null;
    return contrast(over(fg, fg[3] * opacity(el), g), g);
  };
  const contrast = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
  // The focused control's ring: drawn, at least 2px, and 3:1 against what
  // is around the control (WCAG's non-text contrast).
  const ring = (el) => {
    const s = getComputedStyle(el);
    if (s.outlineStyle === 'none' || parseFloat(s.outlineWidth) < 2) return what(el) + ' shows no focus ring';
    const c = rgba(s.outlineColor), g = ground(up(el) || el);
    if (!c || !g) return what(el) + ': its focus ring cannot be measured';
    const r = contrast(over(c, c[3] * opacity(el), g), g);
    return r < 3 ? what(el) + ': its focus ring has low contrast (' + r.toFixed(2) + ':1)' : null;
  };
  const byId = (el, id) => el.getRootNode().getElementById(id);
  const refs = (el, attr) => (el.getAttribute(attr) || '').split(/\s+/).filter(Boolean).map((id) => byId(el, id)).filter(Boolean);
  const isField = (el) => el.matches('input:not([type=button]):not([type=submit]):not([type=reset]), select, textarea');
  // The text a person sees for a control: a button's words; a field's label.
  const visible = (el) => {
    if (!isField(el)) return words(el.matches('input') ? el.value : el.textContent);
    const by = refs(el, 'aria-labelledby').filter(shown);
    if (by.length) return words(by.map((e) => e.textContent).join(' '));
    return words([...(el.labels || [])].filter(shown).map((l) => l.textContent).join(' '));
  };
  // The accessible name, by the steps of accname 1.2 these pages use.
  const name = (el) => {
    const by = refs(el, 'aria-labelledby');
    if (by.length) return words(by.map((e) => e.textContent).join(' '));
    if (words(el.getAttribute('aria-label'))) return words(el.getAttribute('aria-label'));
    if (isField(el)) return words([...(el.labels || [])].map((l) => l.textContent).join(' ')) || words(el.title);
    return words(el.matches('input') ? el.value : el.textContent) || words(el.title);
  };
  const what = (el) => el.getAttribute('data-cobrowse') || (el.name ? el.localName + ' ' + el.name : '') || '"' + words(el.textContent).slice(0, 40) + '"';
  const CONTROLS = 'button, input:not([type=hidden]), select, textarea, a[href], [tabindex]';
  const controls = (root) => [...root.querySelectorAll(CONTROLS)].filter(shown);
  function check(root) {
    const out = [];
    const low = (el, label) => {
      const r = ratio(el);
      if (r === null) out.push(label + ': its colours cannot be measured');
      else if (r < 4.5) out.push(label + ' has low contrast (' + r.toFixed(2) + ':1)');
    };
    for (const c of controls(root)) {
      const text = visible(c), n = name(c), w = what(c);
      if (isField(c) && !text) out.push(w + ' has no visible label');
      if (!n) out.push(w + ' has no accessible name');
      else if (!n.toLowerCase().startsWith(text.toLowerCase())) out.push(w + ': its name "' + n + '" does not start with its visible text "' + text + '"');
      if (!c.matches(':disabled') && c.tabIndex < 0) out.push(w + ' cannot be reached by keyboard');
      if (!c.matches('input[type=checkbox], input[type=radio]')) low(c, w);
    }
    // Every shown piece of text, where it is written.
    for (const el of root.querySelectorAll('*')) {
      if (el.matches(CONTROLS) || el.closest('style, script, template') || !shown(el)) continue;
      const own = [...el.childNodes].filter((t) => t.nodeType === 3).map((t) => t.textContent).join('');
      if (words(own)) low(el, 'the text "' + words(own).slice(0, 40) + '"');
    }
    return out;
  }
  // A polite live region that says something.
  function politeStatus(el, label) {
    const out = [];
    if (!el) return [label + ' is missing'];
    if (el.getAttribute('role') !== 'status' || el.getAttribute('aria-live') !== 'polite') out.push(label + ' is not a polite live region');
    if (!words(el.textContent)) out.push(label + ' is empty');
    return out;
  }
  return { check, politeStatus, ring, controls, shown, name, visible, what, ratio };
})();"#;

/// JS: the accessibility problems of the widget as it is now shown, as a
/// list of strings (empty when none): [`A11Y`]'s checks on its shadow root
/// (its buttons, the code on show, the request for control and its Allow
/// and Deny, the chat's field and log), and: the widget is a named region,
/// its status line a polite live region describing the call button, the
/// code is announced when it shows, the request for control is a named
/// group, and no button shown is disabled.
pub(super) fn problems() -> String {
    format!(
        r#"(() => {{
  {A11Y}
  const root = document.querySelector('[data-cobrowse="widget"]').shadowRoot;
  const out = a11y.check(root);
  const region = root.querySelector('[role="region"]');
  if (!region || !region.getAttribute('aria-label')) out.push('the widget is not a named region');
  const status = root.querySelector('[data-cobrowse="status"]');
  out.push(...a11y.politeStatus(status, 'the status line'));
  for (const b of a11y.controls(root)) if (b.matches(':disabled')) out.push(a11y.what(b) + ' is shown but disabled');
  const call = root.querySelector('[data-cobrowse="call"]');
  if (call.getAttribute('aria-describedby') !== status.id || !status.id) out.push('the call button is not described by the status line');
  const code = root.querySelector('[data-cobrowse="code"]');
  if (a11y.shown(code) && !code.closest('[aria-live="polite"]')) out.push('the code on show is not in a live region');
  const prompt = root.querySelector('[data-cobrowse="control-prompt"]');
  // The idle face has none until a call begins (the agent loads the rest).
  if (prompt && a11y.shown(prompt) && !a11y.name(prompt)) out.push('the request for control is not a named group');
  return out;
}})()"#
    )
}

pub(super) async fn no_problems(tab: &Tab, state: &str) {
    let problems = tab.eval(&problems()).await;
    assert_eq!(
        problems,
        serde_json::json!([]),
        "the widget, {state}\n{}",
        tab.dump().await
    );
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

/// Presses Tab until the widget button `which` has focus, and checks that
/// its focus ring shows.
async fn tab_to(tab: &Tab, which: &str) {
    for _ in 0..60 {
        if tab.eval(FOCUSED).await == serde_json::json!(which) {
            let ring = tab
                .eval(&format!(
                    "(() => {{ {A11Y} return a11y.ring(document.activeElement.shadowRoot.activeElement); }})()"
                ))
                .await;
            assert_eq!(ring, serde_json::Value::Null, "the widget's {which} button");
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
