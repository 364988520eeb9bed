//! Scroll of the window and of scrollable elements, and the customer's
//! viewport in the console.

use chromiumoxide::cdp::browser_protocol::input::{
    DispatchMouseEventParams, DispatchMouseEventType,
};

use super::harness::Tab;
use super::*;

async fn wheel(tab: &Tab, (x, y): (f64, f64), dy: f64) {
    let p = DispatchMouseEventParams::builder()
        .r#type(DispatchMouseEventType::MouseWheel)
        .x(x)
        .y(y)
        .delta_x(0.0)
        .delta_y(dy)
        .build()
        .unwrap();
    tab.page.execute(p).await.expect("wheel event");
}

#[tokio::test]
async fn window_and_pane_scroll_follow_and_the_viewport_is_outlined() {
    let s = Shared::start("/long.html").await;
    let (c, o) = (&s.customer, &s.operator);

    // The console shows the customer's viewport: the content frame takes its
    // size, outlined.
    super::harness::until(
        o,
        "the customer's viewport outlined in the console",
        r#"(() => { const v = document.querySelector('[data-cobrowse="viewport"]'); return v && v.dataset.width === '1000' && v.dataset.height === '760' && getComputedStyle(v).outlineStyle === 'dashed' && v.offsetWidth === 1000; })()"#,
        &s.tabs(),
        &s.server,
    )
    .await;
    // Seen: the dashed outline just outside the frame's left and top edges,
    // and nothing of the console over the customer's page inside it.
    let outline = o
        .eval_on(
            r#"[data-cobrowse="viewport"]"#,
            "getComputedStyle(el).outlineColor",
        )
        .await;
    let outline = outline.as_str().expect("the outline's colour");
    let (x, y, w, h) = o
        .rect(r#"[data-cobrowse="viewport"]"#)
        .await
        .expect("the viewport");
    super::harness::until_seen(
        o,
        "the outline along the left edge",
        (x - 4.0, y + 10.0, 4.0, h - 20.0),
        outline,
        30,
        &s.tabs(),
        &s.server,
    )
    .await;
    super::harness::until_seen(
        o,
        "the outline along the top edge",
        (x + 10.0, y - 4.0, w - 20.0, 4.0),
        outline,
        30,
        &s.tabs(),
        &s.server,
    )
    .await;
    let (hx, hy) = centre(o, &content("h1")).await;
    let hit = o.element_at(hx, hy).await;
    assert!(
        hit.starts_with(r#"iframe[data-cobrowse=content] | "#) && hit.ends_with("h1"),
        "the operator's click on the page's heading reaches it, not {hit:?}"
    );

    wheel(c, (500.0, 600.0), 900.0).await;
    s.on_customer("the customer's window scrolled", "scrollY > 500")
        .await;
    let y = c.eval("Math.round(scrollY)").await;
    s.on_operator(
        "the operator's window at the customer's position",
        &format!("Math.round(scrollY) === {y}"),
    )
    .await;

    c.eval("document.querySelector('#definitions').scrollIntoView({block: 'center', behavior: 'instant'})").await;
    let pane = c.center("#definitions").await;
    wheel(c, pane, 300.0).await;
    s.on_customer(
        "the pane scrolled",
        "document.querySelector('#definitions').scrollTop > 100",
    )
    .await;
    let top = c
        .eval("Math.round(document.querySelector('#definitions').scrollTop)")
        .await;
    s.on_operator(
        "the operator's pane at the customer's position",
        &format!("Math.round(document.querySelector('#definitions').scrollTop) === {top}"),
    )
    .await;

    s.grant_control().await;
    o.eval_on(
        CONTENT,
        &in_frame("document.querySelector('#cond-70').scrollIntoView({behavior: 'instant'})"),
    )
    .await;
    let oy = o.eval_on(CONTENT, &in_frame("Math.round(scrollY)")).await;
    s.on_customer(
        "the operator's scroll on the customer's side",
        &format!("Math.round(scrollY) === {oy}"),
    )
    .await;
    s.assert_no_errors();
}
