//! The shared pointer and free drawing, stored so an invited operator who
//! joins late sees them; clearing clears everywhere. Each mark is checked
//! where a person would see it: its colour on the screen, over the content
//! it points at, on each side.

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
    let colour = s
        .on_operator("the customer's pointer", &pointer_colour("Customer"))
        .await;
    let heading = centre(o, &content("h1")).await;
    until_seen(
        o,
        "the customer's pointer over the heading",
        around(heading, 8.0),
        colour.as_str().unwrap(),
        10,
        &s.tabs(),
        &s.server,
    )
    .await;

    // The operator draws a stroke across the heading.
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
    let (hx, hy) = heading;
    o.drag(&[
        (hx - 120.0, hy),
        (hx - 40.0, hy),
        (hx + 40.0, hy),
        (hx + 120.0, hy),
    ])
    .await;
    s.on_customer(
        "the operator's stroke",
        &format!("{OVERLAY}?.querySelectorAll('[data-cobrowse=ink] polyline').length === 1"),
    )
    .await;
    // Seen where it was drawn: on the operator's screen under the mouse
    // (beside the customer's pointer), on the customer's across the heading.
    let ink = c.eval(STROKE_COLOUR).await;
    let ink = ink.as_str().expect("the stroke's colour");
    let beside = (hx - 60.0, hy);
    until_seen(
        o,
        "the operator's own stroke",
        around(beside, 8.0),
        ink,
        6,
        &s.tabs(),
        &s.server,
    )
    .await;
    let seen = centre(c, "h1").await;
    until_seen(
        c,
        "the operator's stroke across the customer's heading",
        around(seen, 8.0),
        ink,
        6,
        &s.tabs(),
        &s.server,
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
    until_seen(
        &late,
        "the stroke on the late joiner's screen",
        around(beside, 8.0),
        ink,
        6,
        &all,
        &s.server,
    )
    .await;
    until_seen(
        &late,
        "the customer's pointer on the late joiner's screen",
        around(heading, 8.0),
        colour.as_str().unwrap(),
        10,
        &all,
        &s.server,
    )
    .await;
    until(&late, "both operators listed", r#"document.querySelector('[data-cobrowse="participants"]').textContent.includes('Olivia Operator') && document.querySelector('[data-cobrowse="participants"]').textContent.includes('Oscar Second')"#, &all, &s.server).await;

    // Clearing clears everywhere.
    o.click(r#"[data-cobrowse="clear"]"#).await;
    s.on_customer(
        "the drawing cleared",
        &format!("{OVERLAY}?.querySelectorAll('[data-cobrowse=ink] polyline').length === 0"),
    )
    .await;
    until_on(&late, "the drawing cleared for the late joiner", CONTENT, &in_frame("document.querySelector('cobrowse-overlay').shadowRoot.querySelectorAll('[data-cobrowse=ink] polyline').length === 0"), &all, &s.server).await;
    let gone = std::time::Duration::from_secs(5);
    until_unseen(
        c,
        "the cleared stroke",
        around(seen, 8.0),
        ink,
        gone,
        &all,
        &s.server,
    )
    .await;
    until_unseen(
        &late,
        "the cleared stroke",
        around(beside, 8.0),
        ink,
        gone,
        &all,
        &s.server,
    )
    .await;
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
    let colour = s
        .on_operator("the customer's pointer colour", &pointer_colour("Customer"))
        .await;
    let street = centre(o, &content(STREET)).await;
    until_seen(
        o,
        "the customer's pointer over the nested field",
        around(street, 8.0),
        colour.as_str().unwrap(),
        10,
        &s.tabs(),
        &s.server,
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
    let colour = s
        .on_customer(
            "the operator's pointer colour",
            &pointer_colour("Olivia Operator"),
        )
        .await;
    let street = centre(c, STREET).await;
    until_seen(
        c,
        "the operator's pointer over the nested field",
        around(street, 8.0),
        colour.as_str().unwrap(),
        10,
        &s.tabs(),
        &s.server,
    )
    .await;
    assert!(
        o.websocket_frames()
            .iter()
            .any(|f| f.starts_with("sent") && f.contains(r#""key":"top/@pointer/"#)),
        "the pointer keeps its root key, whatever frame it moves in"
    );

    // A stroke drawn across the nested frame reaches the customer. The
    // pointer goes first, so what shows over the field is the stroke.
    o.click(r#"[data-cobrowse="pointer"]"#).await;
    s.on_customer(
        "the operator's pointer gone",
        "!document.querySelector('cobrowse-overlay')?.shadowRoot?.querySelector('[data-cobrowse=remote-pointer]')",
    )
    .await;
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
    o.drag(&[(x - 90.0, y), (x - 30.0, y), (x + 30.0, y), (x + 90.0, y)])
        .await;
    s.on_customer("the operator's stroke over the nested frame", "document.querySelector('cobrowse-overlay')?.shadowRoot?.querySelectorAll('[data-cobrowse=ink] polyline').length === 1").await;
    // Seen across the field, over the frames, on the customer's screen.
    let ink = c.eval(STROKE_COLOUR).await;
    until_seen(
        c,
        "the operator's stroke across the nested field",
        around(street, 8.0),
        ink.as_str().unwrap(),
        6,
        &s.tabs(),
        &s.server,
    )
    .await;
    s.assert_no_errors();
}

/// JS, in a shared page's root document: the id of the first paragraph at
/// or below the point (`x`, `y`) of the viewport (between paragraphs is a
/// margin).
fn paragraph_at(x: f64, y: f64) -> String {
    format!(
        "(() => {{ for (let y = {y}; y < {y} + 60; y += 4) {{ const p = document.elementFromPoint({x}, y)?.closest('p[id]'); if (p) return p.id; }} return null; }})()"
    )
}

#[tokio::test]
async fn marks_land_on_the_same_words_on_a_scrolled_page() {
    let s = Shared::start("/long.html").await;
    let (c, o) = (&s.customer, &s.operator);
    use chromiumoxide::cdp::browser_protocol::input::DispatchMouseEventType::MouseMoved;

    // The customer reads far down the policy; the operator follows.
    c.eval(
        "document.querySelector('#cond-40').scrollIntoView({block: 'start', behavior: 'instant'})",
    )
    .await;
    let y = s
        .on_customer(
            "the customer's window scrolled",
            "scrollY > 500 && Math.round(scrollY)",
        )
        .await;
    s.on_operator(
        "the operator's window at the customer's position",
        &format!("Math.round(scrollY) === {y}"),
    )
    .await;

    // The customer points at a paragraph: the operator sees the pointer on
    // that paragraph.
    c.click(r#"[data-cobrowse="widget"] | [data-cobrowse="pointer"]"#)
        .await;
    let pointed = c.eval(&paragraph_at(200.0, 300.0)).await;
    let pointed = format!(
        "#{}",
        pointed
            .as_str()
            .expect("a paragraph under the customer's mouse")
    );
    let at = centre(c, &pointed).await;
    c.mouse(MouseMoved, at.0 - 3.0, at.1, 0).await;
    c.mouse(MouseMoved, at.0, at.1, 0).await;
    let colour = s
        .on_operator("the customer's pointer", &pointer_colour("Customer"))
        .await;
    until_seen(
        o,
        &format!("the customer's pointer over {pointed}"),
        around(centre(o, &content(&pointed)).await, 8.0),
        colour.as_str().unwrap(),
        10,
        &s.tabs(),
        &s.server,
    )
    .await;

    // The operator draws across another paragraph: the customer sees the
    // stroke on it. While drawing, the operator's mouse goes to the drawing
    // layer, not to the page under it.
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
    let marked = c.eval(&paragraph_at(300.0, 500.0)).await;
    let marked = format!(
        "#{}",
        marked
            .as_str()
            .expect("a paragraph lower on the customer's screen")
    );
    let (mx, my) = centre(o, &content(&marked)).await;
    let hit = o.element_at(mx, my).await;
    assert!(
        hit.ends_with("[data-cobrowse=canvas]"),
        "while drawing, the operator's mouse reaches {hit:?}"
    );
    o.drag(&[
        (mx - 120.0, my),
        (mx - 40.0, my),
        (mx + 40.0, my),
        (mx + 120.0, my),
    ])
    .await;
    s.on_customer(
        "the operator's stroke",
        &format!("{OVERLAY}?.querySelectorAll('[data-cobrowse=ink] polyline').length === 1"),
    )
    .await;
    let ink = c.eval(STROKE_COLOUR).await;
    let ink = ink.as_str().expect("the stroke's colour");
    until_seen(
        c,
        &format!("the operator's stroke across {marked}"),
        around(centre(c, &marked).await, 8.0),
        ink,
        6,
        &s.tabs(),
        &s.server,
    )
    .await;
    until_seen(
        o,
        &format!("the operator's own stroke across {marked}"),
        around((mx - 60.0, my), 8.0),
        ink,
        6,
        &s.tabs(),
        &s.server,
    )
    .await;

    // Drawing off: the page under the stroke takes the mouse again.
    o.click(r#"[data-cobrowse="draw"]"#).await;
    until_on(o, "the drawing tool off in the content frame", CONTENT, &in_frame("document.querySelector('cobrowse-overlay')?.shadowRoot?.querySelector('.capture')?.hidden === true"), &[c, o], &s.server).await;
    let hit = o.element_at(mx, my).await;
    assert!(
        hit.ends_with(&format!("p{marked}")),
        "after drawing, the operator's mouse reaches {hit:?}"
    );

    // The widget stays on top of the scrolled page and its marks.
    super::widget::seen_on_top(c, &s.tabs(), &s.server).await;
    s.assert_no_errors();
}
