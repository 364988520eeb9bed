//! Form state of every control type, contenteditable, file names, caret and
//! clicks that drive the page's own scripts, both ways.

use super::harness::{until_on, until_seen};
use super::*;

/// Sets a control's value the way its browser-drawn picker would (colour,
/// date and time pickers are browser chrome that CDP input cannot reach),
/// with the events the picker fires.
fn pick(value: &str) -> String {
    format!(
        "(el.value = {v}, el.dispatchEvent(new Event('input', {{bubbles: true}})), el.dispatchEvent(new Event('change', {{bubbles: true}})), el.value === {v})",
        v = serde_json::to_string(value).unwrap()
    )
}

#[tokio::test]
async fn every_control_type_is_shared_both_ways() {
    let s = Shared::start("/controls.html").await;
    let (c, o) = (&s.customer, &s.operator);

    // Typed by the customer with real keys.
    for (id, text) in [
        ("#full", "Pat Example"),
        ("#search", "flood"),
        ("#site", "https://example.org"),
        ("#phone", "+44 20 7946 0000"),
        ("#mail", "pat@example.org"),
        ("#age", "45"),
        ("#bio", "Two floors,\nnear a river"),
    ] {
        c.type_into(id, text).await;
        let js = format!(
            "document.querySelector('{id}').value === {}",
            serde_json::to_string(text).unwrap()
        );
        s.on_operator(&format!("{id} on the operator's side"), &js)
            .await;
    }
    // Select: keyboard on a focused single select; mouse on a list box.
    c.click("#plan").await;
    c.press("Escape", 27).await;
    c.press("ArrowDown", 40).await;
    s.on_customer(
        "the plan changed by the keyboard",
        "document.querySelector('#plan').value === 'plus'",
    )
    .await;
    s.on_operator(
        "the plan on the operator's side",
        "document.querySelector('#plan').value === 'plus'",
    )
    .await;
    c.click(r#"#extras option[value="glass"]"#).await;
    s.on_operator("the extras on the operator's side", "[...document.querySelector('#extras').selectedOptions].map(o => o.value).join() === 'glass'").await;
    c.click("#flood").await;
    s.on_operator(
        "the checkbox on the operator's side",
        "document.querySelector('#flood').checked",
    )
    .await;
    c.click(r#"input[name="pay"][value="yearly"]"#).await;
    s.on_operator("the radio group on the operator's side", "document.querySelector('input[name=pay][value=yearly]').checked && !document.querySelector('input[name=pay][value=monthly]').checked").await;
    c.click("#excess").await;
    c.press("ArrowRight", 39).await;
    let excess = c.eval("document.querySelector('#excess').value").await;
    s.on_operator(
        "the range on the operator's side",
        &format!("document.querySelector('#excess').value === {excess}"),
    )
    .await;
    for (id, value) in [
        ("#colour", "#aa3300"),
        ("#start", "2027-02-01"),
        ("#at", "09:30"),
        ("#when", "2027-02-01T10:15"),
        ("#month", "2027-03"),
        ("#week", "2027-W09"),
    ] {
        assert_eq!(
            c.eval_on(id, &pick(value)).await,
            serde_json::json!(true),
            "{id} takes {value}"
        );
        s.on_operator(
            &format!("{id} on the operator's side"),
            &format!("document.querySelector('{id}').value === '{value}'"),
        )
        .await;
    }
    // Contenteditable, typed.
    c.click("#rich").await;
    c.eval("(() => { const r = document.createRange(); r.selectNodeContents(document.querySelector('#rich')); r.collapse(false); getSelection().removeAllRanges(); getSelection().addRange(r); })()").await;
    c.type_text(" please call").await;
    s.on_operator(
        "the rich text on the operator's side",
        "document.querySelector('#rich').textContent === 'Dear Northwind, please call'",
    )
    .await;
    // A chosen file: its name only, shown beside the field.
    c.eval_on("#docs", "(() => { const dt = new DataTransfer(); dt.items.add(new File(['secret contents'], 'deeds.pdf')); el.files = dt.files; el.dispatchEvent(new Event('input', {bubbles: true})); el.dispatchEvent(new Event('change', {bubbles: true})); return true; })()").await;
    s.on_operator("the chosen file's name shown to the operator", "[...document.querySelector('cobrowse-overlay').shadowRoot.querySelectorAll('[data-cobrowse=badge]')].some(b => b.textContent === 'Chosen: deeds.pdf')").await;
    // Seen beside the field, on the operator's screen: the badge's dark
    // ground just right of it.
    let (x, y, w, h) = o.rect(&content("#docs")).await.expect("the file field");
    until_seen(
        o,
        "the file badge beside the field",
        (x + w + 6.0, y, 60.0, h.min(16.0)),
        "#444c5c",
        40,
        &s.tabs(),
        &s.server,
    )
    .await;
    assert!(
        !c.websocket_frames()
            .iter()
            .any(|f| f.contains("secret contents")),
        "a file's contents left the browser"
    );

    // Caret: the customer's selection in the focused field is shown.
    c.click("#full").await;
    c.eval("document.querySelector('#full').setSelectionRange(2, 5)")
        .await;
    s.on_operator("the customer's selection in the operator's field", "document.querySelector('#full').selectionStart === 2 && document.querySelector('#full').selectionEnd === 5").await;
    s.on_operator("the customer's caret marker", "[...document.querySelector('cobrowse-overlay').shadowRoot.querySelectorAll('[data-cobrowse=remote-caret]')].some(b => b.textContent.endsWith('2–5'))").await;
    // Seen around the field on the operator's screen: the marker's frame
    // along the field's left edge, and its label above or, where that is
    // out of sight (the field at the top of the window), below it.
    let caret = s
        .on_operator("the caret marker's colour", "document.querySelector('cobrowse-overlay').shadowRoot.querySelector('[data-cobrowse=remote-caret]')?.style.borderColor || null")
        .await;
    let caret = caret.as_str().unwrap();
    let (x, y, _, h) = o
        .rect(&content("#full"))
        .await
        .expect("the full name field");
    until_seen(
        o,
        "the caret marker's frame left of the field",
        (x - 5.0, y + 2.0, 5.0, h - 4.0),
        caret,
        10,
        &s.tabs(),
        &s.server,
    )
    .await;
    let above = o.pixels_at(x, y - 18.0, 40.0, 14.0).await;
    let below = o.pixels_at(x, y + h + 4.0, 40.0, 14.0).await;
    let tolerance = super::harness::COLOUR_TOLERANCE;
    let want = super::harness::rgb(caret);
    assert!(
        above.count_near(want, tolerance) >= 150 || below.count_near(want, tolerance) >= 150,
        "the caret marker's label is not seen by the field: above {}, below {}",
        above.summary(),
        below.summary()
    );

    // Clicks that drive the page's scripts.
    c.click("#menu-button").await;
    s.on_operator(
        "the menu open on the operator's side",
        "!document.querySelector('#menu').hidden",
    )
    .await;

    // A React-style controlled input: its state follows only a value set
    // through the native setter.
    c.type_into("#promo", "SAVE10").await;
    s.on_operator(
        "the controlled input's state on the operator's side",
        "document.querySelector('#promo-state').textContent === 'SAVE10'",
    )
    .await;

    // Keyboard-driven: Enter adds the note on both sides.
    c.type_into("#quick", "call back").await;
    c.press("Enter", 13).await;
    s.on_customer("the customer's note added", "document.querySelector('#quick-list').textContent === 'call back' && document.querySelector('#quick').value === ''").await;
    s.on_operator("the note added on the operator's side", "document.querySelector('#quick-list').textContent === 'call back' && document.querySelector('#quick').value === ''").await;

    // The operator, with control, changes things; the customer sees them.
    s.grant_control().await;
    o.type_into(&content("#full"), " Jr").await;
    s.on_customer(
        "the operator's typing",
        "document.querySelector('#full').value === 'Pat Example Jr'",
    )
    .await;
    o.click(&content("#flood")).await;
    s.on_customer(
        "the operator's checkbox",
        "!document.querySelector('#flood').checked",
    )
    .await;
    o.click(&content(r#"input[name="pay"][value="monthly"]"#))
        .await;
    s.on_customer(
        "the operator's radio",
        "document.querySelector('input[name=pay][value=monthly]').checked",
    )
    .await;
    o.click(&content("#tab-car")).await;
    s.on_customer(
        "the operator's tab click",
        "document.querySelector('#tab-panel').textContent === 'Car cover details.'",
    )
    .await;
    o.click(&content("#rich")).await;
    o.type_text("!").await;
    s.on_customer(
        "the operator's rich text",
        "document.querySelector('#rich').textContent.includes('!')",
    )
    .await;
    until_on(
        c,
        "the customer's own values intact",
        "#bio",
        "el.value === 'Two floors,\\nnear a river'",
        &s.tabs(),
        &s.server,
    )
    .await;
    s.assert_no_errors();
}
/// Input method composition (Japanese, Chinese...): a remote value never
/// overwrites the field in the middle of it, and the committed text is shared.
#[tokio::test]
async fn composition_is_never_interrupted_and_its_result_is_shared() {
    use chromiumoxide::cdp::browser_protocol::input::{ImeSetCompositionParams, InsertTextParams};
    let s = Shared::start("/form.html").await;
    let (c, o) = (&s.customer, &s.operator);
    s.grant_control().await;
    c.click("#name").await;
    c.page
        .execute(ImeSetCompositionParams::new("にほ", 2, 2))
        .await
        .expect("composition");
    s.on_customer(
        "the composition in progress",
        "document.querySelector('#name').value === 'にほ'",
    )
    .await;

    // The operator types into the same field meanwhile, then into another;
    // when the second arrives, the first has too.
    o.type_into(&content("#name"), "X").await;
    o.type_into(&content("#notes"), "y").await;
    s.on_customer(
        "the operator's later typing",
        "document.querySelector('#notes').value === 'y'",
    )
    .await;
    assert_eq!(
        c.eval("document.querySelector('#name').value").await,
        serde_json::json!("にほ"),
        "a remote value broke the composition"
    );

    c.page
        .execute(InsertTextParams::new("日本"))
        .await
        .expect("commit");
    s.on_customer(
        "the committed text",
        "document.querySelector('#name').value === '日本'",
    )
    .await;
    s.on_operator(
        "the committed text on the operator's side",
        "document.querySelector('#name').value === '日本'",
    )
    .await;
    s.assert_no_errors();
}
