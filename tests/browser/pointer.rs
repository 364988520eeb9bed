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
    c.click(r#"[data-cobrowse="widget"] | [data-cobrowse="pointer"]"#).await;
    let (x, y) = c.center("h1").await;
    c.mouse(chromiumoxide::cdp::browser_protocol::input::DispatchMouseEventType::MouseMoved, x, y, 0).await;
    s.on_operator("the customer's pointer", &format!("{OVERLAY}?.querySelector('[data-cobrowse=remote-pointer]')?.textContent === 'Customer'")).await;

    // The operator draws a stroke over the page.
    o.click(r#"[data-cobrowse="draw"]"#).await;
    let (fx, fy) = o.center(CONTENT).await;
    o.drag(&[(fx - 100.0, fy - 50.0), (fx - 50.0, fy - 20.0), (fx, fy), (fx + 60.0, fy + 10.0)]).await;
    s.on_customer("the operator's stroke", &format!("{OVERLAY}?.querySelectorAll('[data-cobrowse=ink] polyline').length === 1")).await;

    // A second operator is invited, responds and sees the stroke and the
    // pointer at once.
    let late = s.browser.tab("second operator", 1400, 1000).await;
    let all = [c, o, &late];
    operator_waits(&late, &s.server, "op2", &[c, o]).await;
    o.click(r#"[data-cobrowse="invite"]"#).await;
    operator_responds(&late, &s.server, &[c, o]).await;
    until(&late, "the stroke for the late joiner", &format!("(() => {{ const d = document.querySelector('{}').contentDocument; const r = d.querySelector('cobrowse-overlay')?.shadowRoot; return r && r.querySelectorAll('[data-cobrowse=ink] polyline').length === 1 && !!r.querySelector('[data-cobrowse=remote-pointer]'); }})()", CONTENT.replace('"', "\\\"")), &all, &s.server).await;
    until(&late, "both operators listed", r#"document.querySelector('[data-cobrowse="participants"]').textContent.includes('Olivia Operator') && document.querySelector('[data-cobrowse="participants"]').textContent.includes('Oscar Second')"#, &all, &s.server).await;

    // Clearing clears everywhere.
    o.click(r#"[data-cobrowse="clear"]"#).await;
    s.on_customer("the drawing cleared", &format!("{OVERLAY}?.querySelectorAll('[data-cobrowse=ink] polyline').length === 0")).await;
    until(&late, "the drawing cleared for the late joiner", &format!("document.querySelector('{}').contentDocument.querySelector('cobrowse-overlay').shadowRoot.querySelectorAll('[data-cobrowse=ink] polyline').length === 0", CONTENT.replace('"', "\\\"")), &all, &s.server).await;
    s.assert_no_errors();
}
