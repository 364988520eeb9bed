//! The shared pointer and free drawing, stored so an invited operator who
//! joins late sees them; clearing clears everywhere.

use super::harness::until;
use super::*;

const OVERLAY: &str = "document.querySelector('cobrowse-overlay')?.shadowRoot";

#[tokio::test]
async fn pointer_and_drawing_reach_everyone_including_a_late_joiner() {
    let s = Shared::start("/").await;
    let (c, o) = (&s.customer, &s.operator);

    // The customer's pointer, drawn on the operator's page with their name.
    c.click(r#"[data-cobrowse="widget"] | [data-cobrowse="pointer"]"#)
        .await;
    let (x, y) = c.center("h1").await;
    c.mouse(
        chromiumoxide::cdp::browser_protocol::input::DispatchMouseEventType::MouseMoved,
        x,
        y,
        0,
    )
    .await;
    s.on_operator(
        "the customer's pointer",
        &format!(
            "{OVERLAY}?.querySelector('[data-cobrowse=remote-pointer]')?.textContent === 'Customer'"
        ),
    )
    .await;

    // The operator draws a stroke over the page.
    o.click(r#"[data-cobrowse="draw"]"#).await;
    until_on(
        o,
        "the drawing tool on in the content frame",
        CONTENT,
        &in_frame(DRAWING_ON),
        &[c, o],
        &s.server,
    )
    .await;
    let (fx, fy) = o.center(CONTENT).await;
    o.drag(&[
        (fx - 100.0, fy - 50.0),
        (fx - 50.0, fy - 20.0),
        (fx, fy),
        (fx + 60.0, fy + 10.0),
    ])
    .await;
    s.on_customer(
        "the operator's stroke",
        &format!("{OVERLAY}?.querySelectorAll('[data-cobrowse=ink] polyline').length === 1"),
    )
    .await;

    // A second operator is invited, responds and sees the stroke and the
    // pointer at once.
    let late = s.browser.tab("second operator", 1400, 1000).await;
    let all = [c, o, &late];
    operator_waits(&late, &s.server, "op2", &[c, o]).await;
    o.click(r#"[data-cobrowse="invite"]"#).await;
    operator_responds(&late, &s.server, &[c, o]).await;
    until_on(&late, "the stroke for the late joiner", CONTENT, &in_frame("(() => { const r = document.querySelector('cobrowse-overlay')?.shadowRoot; return r && r.querySelectorAll('[data-cobrowse=ink] polyline').length === 1 && !!r.querySelector('[data-cobrowse=remote-pointer]'); })()"), &all, &s.server).await;
    until(&late, "both operators listed", r#"document.querySelector('[data-cobrowse="participants"]').textContent.includes('Olivia Operator') && document.querySelector('[data-cobrowse="participants"]').textContent.includes('Oscar Second')"#, &all, &s.server).await;

    // Clearing clears everywhere.
    o.click(r#"[data-cobrowse="clear"]"#).await;
    s.on_customer(
        "the drawing cleared",
        &format!("{OVERLAY}?.querySelectorAll('[data-cobrowse=ink] polyline').length === 0"),
    )
    .await;
    until_on(&late, "the drawing cleared for the late joiner", CONTENT, &in_frame("document.querySelector('cobrowse-overlay').shadowRoot.querySelectorAll('[data-cobrowse=ink] polyline').length === 0"), &all, &s.server).await;
    s.assert_no_errors();
}

/// JS, in a shared page's root document: is a remote pointer labelled
/// `name` within a few pixels of the centre of `#street`, in the frame two
/// levels down, in root document coordinates?
fn pointer_on_street(name: &str) -> String {
    format!(
        "(() => {{ const p = [...(document.querySelector('cobrowse-overlay')?.shadowRoot?.querySelectorAll('[data-cobrowse=remote-pointer]') || [])].find((e) => e.textContent === '{name}'); \
         if (!p) return false; \
         const pay = document.querySelector('iframe[name=pay]'); const inner = pay.contentDocument.querySelector('#inner'); \
         const st = inner.contentDocument.querySelector('#street'); \
         const a = pay.getBoundingClientRect(), b = inner.getBoundingClientRect(), r = st.getBoundingClientRect(); \
         const x = a.left + pay.clientLeft + b.left + inner.clientLeft + r.left + r.width / 2 + window.scrollX; \
         const y = a.top + pay.clientTop + b.top + inner.clientTop + r.top + r.height / 2 + window.scrollY; \
         return Math.abs(parseFloat(p.style.left) - x) <= 4 && Math.abs(parseFloat(p.style.top) - y) <= 4; }})()"
    )
}

#[tokio::test]
async fn pointer_and_drawing_work_inside_nested_frames() {
    let s = Shared::start("/frames.html").await;
    let (c, o) = (&s.customer, &s.operator);
    const STREET: &str = r#"iframe[name="pay"] | iframe#inner | #street"#;
    use chromiumoxide::cdp::browser_protocol::input::DispatchMouseEventType::MouseMoved;

    // The customer's pointer, moved inside the frame two levels down, shows
    // on the operator's page over the same field.
    c.click(r#"[data-cobrowse="widget"] | [data-cobrowse="pointer"]"#)
        .await;
    let (x, y) = c.center(STREET).await;
    c.mouse(MouseMoved, x - 3.0, y, 0).await;
    c.mouse(MouseMoved, x, y, 0).await;
    s.on_operator(
        "the customer's pointer over the nested field",
        &pointer_on_street("Customer"),
    )
    .await;

    // The operator's, moved inside the content frame's nested frame, shows
    // on the customer's page over the same field.
    o.click(r#"[data-cobrowse="pointer"]"#).await;
    until_on(
        o,
        "the pointer tool on in the content frame",
        CONTENT,
        &in_frame(POINTER_ON),
        &[c, o],
        &s.server,
    )
    .await;
    let (x, y) = o.center(&content(STREET)).await;
    o.mouse(MouseMoved, x - 3.0, y, 0).await;
    o.mouse(MouseMoved, x, y, 0).await;
    s.on_customer(
        "the operator's pointer over the nested field",
        &pointer_on_street("Olivia Operator"),
    )
    .await;
    assert!(
        o.websocket_frames()
            .iter()
            .any(|f| f.starts_with("sent") && f.contains(r#""key":"top/@pointer/"#)),
        "the pointer keeps its root key, whatever frame it moves in"
    );

    // A stroke drawn across the nested frame reaches the customer.
    o.click(r#"[data-cobrowse="draw"]"#).await;
    until_on(
        o,
        "the drawing tool on in the content frame",
        CONTENT,
        &in_frame(DRAWING_ON),
        &[c, o],
        &s.server,
    )
    .await;
    o.drag(&[
        (x - 60.0, y - 10.0),
        (x - 20.0, y),
        (x + 20.0, y + 5.0),
        (x + 60.0, y + 10.0),
    ])
    .await;
    s.on_customer("the operator's stroke over the nested frame", "document.querySelector('cobrowse-overlay')?.shadowRoot?.querySelectorAll('[data-cobrowse=ink] polyline').length === 1").await;
    s.assert_no_errors();
}
