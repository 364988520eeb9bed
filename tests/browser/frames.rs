//! Same-origin frames at any depth, and web components with open and closed
//! shadow roots.

use super::*;

const PAY: &str = r#"iframe[name="pay"]"#;
const INNER: &str = r#"iframe[name="pay"] | iframe#inner"#;

#[tokio::test]
async fn nested_frames_are_shared_by_frame_path() {
    let s = Shared::start("/frames.html").await;
    let (c, o) = (&s.customer, &s.operator);
    c.type_into("#ref", "NW-1").await;
    c.type_into(&format!("{PAY} | #holder"), "P EXAMPLE").await;
    c.type_into(&format!("{INNER} | #street"), "1 Main St")
        .await;
    s.on_operator(
        "values in the top page and both frames",
        "document.querySelector('#ref').value === 'NW-1' \
         && document.querySelector('iframe[name=pay]').contentDocument.querySelector('#holder').value === 'P EXAMPLE' \
         && document.querySelector('iframe[name=pay]').contentDocument.querySelector('#inner').contentDocument.querySelector('#street').value === '1 Main St'",
    )
    .await;
    assert!(
        c.websocket_frames()
            .iter()
            .any(|f| f.contains(r#""key":"top/iframe[name=pay]/iframe#inner/input#street""#)),
        "the inner field's key carries its frame path"
    );
    s.grant_control().await;
    o.type_into(&content(&format!("{INNER} | #street")), ", Flat 2")
        .await;
    s.on_customer(
        "the operator's typing in the inner frame",
        "document.querySelector('iframe[name=pay]').contentDocument.querySelector('#inner').contentDocument.querySelector('#street').value === '1 Main St, Flat 2'",
    )
    .await;
    s.assert_no_errors();
}

#[tokio::test]
async fn open_and_closed_shadow_roots_are_shared() {
    let s = Shared::start("/component.html").await;
    let (c, o) = (&s.customer, &s.operator);
    c.type_into(r#"#postcode | input[name="postcode"]"#, "SW1A 1AA")
        .await;
    // The closed root is not reachable by a selector chain: focus it the way
    // the page can, then type with real keys.
    c.eval("houseRoot(document.querySelector('#house')).querySelector('input').focus()")
        .await;
    c.type_text("10").await;
    s.on_operator(
        "both components' values",
        "document.querySelector('#postcode').shadowRoot.querySelector('input').value === 'SW1A 1AA' \
         && houseRoot(document.querySelector('#house')).querySelector('input').value === '10'",
    )
    .await;
    s.grant_control().await;
    o.type_into(&content(r#"#postcode | input[name="postcode"]"#), "!")
        .await;
    s.on_customer("the operator's typing in the open root", "document.querySelector('#postcode').shadowRoot.querySelector('input').value === 'SW1A 1AA!'").await;
    s.assert_no_errors();
}

#[tokio::test]
async fn frames_inside_open_and_closed_shadow_roots_are_shared() {
    let s = Shared::start("/shadow-frames.html").await;
    let (c, o) = (&s.customer, &s.operator);
    const BRANCH: &str = r#"#map | iframe[name="branch"] | #street"#;
    c.type_into(BRANCH, "1 Main St").await;
    // The closed root is not reachable by a selector chain: find the field's
    // place the way the page can, then click and type with real input.
    let at = c
        .eval(
            "(() => { const f = helpRoot(document.querySelector('#help')).querySelector('iframe'); const st = f.contentDocument.querySelector('#street'); \
             const a = f.getBoundingClientRect(), r = st.getBoundingClientRect(); \
             return [a.left + f.clientLeft + r.left + r.width / 2, a.top + f.clientTop + r.top + r.height / 2]; })()",
        )
        .await;
    let (x, y) = (at[0].as_f64().expect("x"), at[1].as_f64().expect("y"));
    c.mouse_at(x, y).await;
    c.type_text("2 Side Rd").await;
    s.on_operator(
        "the values in both components' frames",
        "document.querySelector('#map').shadowRoot.querySelector('iframe').contentDocument.querySelector('#street').value === '1 Main St' \
         && window.helpRoot(document.querySelector('#help')).querySelector('iframe').contentDocument.querySelector('#street').value === '2 Side Rd'",
    )
    .await;
    let sent = c.websocket_frames();
    for key in [
        "top/branch-map#map/#shadow/iframe[name=branch]/input#street",
        "top/help-box#help/#shadow/iframe[0]/input#street",
    ] {
        assert!(
            sent.iter()
                .any(|f| f.contains(&format!(r#""key":"{key}""#))),
            "a key through the shadow root: {key}"
        );
    }
    s.grant_control().await;
    o.type_into(&content(BRANCH), ", Flat 2").await;
    s.on_customer(
        "the operator's typing in the open root's frame",
        "document.querySelector('#map').shadowRoot.querySelector('iframe').contentDocument.querySelector('#street').value === '1 Main St, Flat 2'",
    )
    .await;
    s.assert_no_errors();
}
