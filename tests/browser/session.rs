//! The call around the sharing: the queue as customers and operators see it,
//! hanging up from the console, the customer's window size, the operator's
//! own navigation without control, the operator's pointer and fading strokes.

use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::input::DispatchMouseEventType;

use super::harness::{Browser, until, until_on};
use super::*;

#[tokio::test]
async fn customers_see_their_place_in_the_queue_and_operators_the_calls() {
    let server = demo_server().await;
    let browser = Browser::launch().await;
    let first = browser.tab("first customer", 1000, 760).await;
    let second = browser.tab("second customer", 1000, 760).await;
    let operator = browser.tab("operator", 1400, 1000).await;
    let all = [&first, &second, &operator];
    for c in [&first, &second] {
        c.goto(&server.url("/")).await;
        customer_calls(c, &server, &[&operator]).await;
    }
    until(
        &first,
        "first in the queue",
        &format!("{WIDGET_STATUS}.includes('you are next in the queue')"),
        &all,
        &server,
    )
    .await;
    until(
        &second,
        "second in the queue",
        &format!("{WIDGET_STATUS}.includes('you are number 2 in the queue')"),
        &all,
        &server,
    )
    .await;

    // Waiting customers may browse on: the call keeps its place, and the
    // page the operator gets is the one the customer is on.
    first.click(r#"ul a[href="/form.html"]"#).await;
    until(&first, "the first customer still first after navigating", &format!("location.pathname === '/form.html' && {WIDGET_STATUS}.includes('you are next in the queue')"), &all, &server).await;
    first.type_into("#name", "Queued Quentin").await;

    operator.goto(&server.url("/__cobrowse/console")).await;
    operator.type_into(r#"input[name="user"]"#, "op").await;
    operator
        .type_into(
            r#"input[name="password"]"#,
            crate::support::OPERATOR_PASSWORD,
        )
        .await;
    operator.type_text("\n").await; // Enter submits the sign-in form
    until(&operator, "the console to list both calls", r#"document.querySelectorAll('[data-cobrowse="queue"] li').length === 2 && document.querySelector('[data-cobrowse="queue"]').textContent.includes('offered to you')"#, &all, &server).await;
    operator_responds(&operator, &server, &[&first, &second]).await;
    until(
        &first,
        "the first customer connected",
        &format!("{WIDGET_STATUS}.includes('Connected with Olivia Operator')"),
        &all,
        &server,
    )
    .await;
    until_on(&operator, "the page the customer is on, with what they typed while waiting", CONTENT, &in_frame("location.pathname === '/form.html' && document.querySelector('#name').value === 'Queued Quentin'"), &all, &server).await;
    until(
        &second,
        "the second customer now next",
        &format!("{WIDGET_STATUS}.includes('you are next in the queue')"),
        &all,
        &server,
    )
    .await;

    // The operator hangs up: the customer is told, the console clears and
    // the second call is offered.
    operator.click(r#"[data-cobrowse="hangup"]"#).await;
    until(&first, "the first customer told the operator left", "document.querySelector('[data-cobrowse=widget]').shadowRoot.querySelector('[data-cobrowse=notice]').textContent.includes('operator has left')", &all, &server).await;
    until(
        &first,
        "the first customer's widget idle",
        &format!("{WIDGET_STATUS}.startsWith('Need help')"),
        &all,
        &server,
    )
    .await;
    until_on(
        &operator,
        "Respond enabled for the second call",
        r#"[data-cobrowse="respond"]"#,
        "!el.disabled",
        &all,
        &server,
    )
    .await;
    assert_eq!(
        operator
            .eval_on(CONTENT, "el.contentWindow.location.href")
            .await,
        serde_json::json!("about:blank")
    );
}

#[tokio::test]
async fn window_size_navigation_without_control_pointer_and_fading_strokes() {
    let s = Shared::start("/form.html").await;
    let (c, o) = (&s.customer, &s.operator);

    // The customer's window is resized: the console's outline follows.
    c.page
        .execute(SetDeviceMetricsOverrideParams::new(820, 600, 1.0, false))
        .await
        .unwrap();
    until(o, "the console's viewport at the new size", r#"(() => { const v = document.querySelector('[data-cobrowse="viewport"]'); return v.dataset.width === '820' && v.dataset.height === '600' && v.offsetWidth === 820; })()"#, &s.tabs(), &s.server).await;

    // Without control, an operator's link click does not move the customer;
    // the content frame comes back to the customer's page.
    o.click(&content(r#"header a[href="/"]"#)).await;
    until(o, "the console to explain view-only", r#"document.querySelector('[data-cobrowse="notice"]').textContent.includes('has not given you control')"#, &s.tabs(), &s.server).await;
    s.on_operator(
        "the content frame back on the customer's page",
        "location.pathname === '/form.html' && !!window.__cobrowse.engine",
    )
    .await;
    assert_eq!(
        c.eval("location.pathname").await,
        serde_json::json!("/form.html")
    );

    // The operator's pointer needs no control, and shows on the customer's page.
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
    let (x, y) = o.center(&content("h1")).await;
    o.mouse(DispatchMouseEventType::MouseMoved, x, y, 0).await;
    s.on_customer("the operator's pointer with their name", "document.querySelector('cobrowse-overlay')?.shadowRoot.querySelector('[data-cobrowse=remote-pointer]')?.textContent === 'Olivia Operator'").await;
    let colour = s
        .on_customer(
            "the operator's pointer colour",
            &pointer_colour("Olivia Operator"),
        )
        .await;
    until_seen(
        c,
        "the operator's pointer over the customer's heading",
        around(centre(c, "h1").await, 8.0),
        colour.as_str().unwrap(),
        10,
        &s.tabs(),
        &s.server,
    )
    .await;

    // The customer draws a fading stroke: the operator sees it, then it goes.
    c.click(r#"[data-cobrowse="widget"] | [data-cobrowse="draw"]"#)
        .await;
    let (cx, cy) = c.center("#notes").await;
    c.drag(&[(cx - 80.0, cy), (cx, cy), (cx + 80.0, cy)]).await;
    s.on_operator("the customer's stroke", "document.querySelector('cobrowse-overlay')?.shadowRoot.querySelectorAll('[data-cobrowse=ink] polyline').length === 1").await;
    // The quote page's stroke is seen on both screens, across the notes.
    let ink = c.eval(STROKE_COLOUR).await;
    let ink = ink.as_str().expect("the stroke's colour").to_string();
    until_seen(
        c,
        "the customer's own stroke",
        around((cx, cy), 8.0),
        &ink,
        6,
        &s.tabs(),
        &s.server,
    )
    .await;
    until_seen(
        o,
        "the customer's stroke across the operator's notes",
        around(centre(o, &content("#notes")).await, 8.0),
        &ink,
        6,
        &s.tabs(),
        &s.server,
    )
    .await;
    // Drawing mode takes the mouse: the page under it is not clicked.
    assert_eq!(
        c.eval("document.activeElement === document.querySelector('#notes')")
            .await,
        serde_json::json!(false)
    );
    o.click(r#"[data-cobrowse="fade"]"#).await;
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
    // Across the name field, away from where the pointer ends.
    let (fx, fy) = centre(o, &content("#name")).await;
    o.drag(&[
        (fx - 120.0, fy),
        (fx - 40.0, fy),
        (fx + 40.0, fy),
        (fx + 120.0, fy),
    ])
    .await;
    s.on_customer("the operator's fading stroke", "document.querySelector('cobrowse-overlay').shadowRoot.querySelectorAll('[data-cobrowse=ink] polyline').length === 2").await;
    let fading = c.eval(STROKE_COLOUR).await;
    let fading = fading.as_str().expect("the fading stroke's colour");
    let name = around(centre(c, "#name").await, 8.0);
    until_seen(
        c,
        "the operator's fading stroke across the name field",
        name,
        fading,
        6,
        &s.tabs(),
        &s.server,
    )
    .await;
    super::harness::until_for(c, "the fading stroke gone, the other kept", "document.querySelector('cobrowse-overlay').shadowRoot.querySelectorAll('[data-cobrowse=ink] polyline').length === 1", std::time::Duration::from_secs(10), &s.tabs(), &s.server).await;
    until_unseen(
        c,
        "the faded stroke",
        name,
        fading,
        std::time::Duration::from_secs(5),
        &s.tabs(),
        &s.server,
    )
    .await;
    until_seen(
        c,
        "the kept stroke",
        around((cx, cy), 8.0),
        &ink,
        6,
        &s.tabs(),
        &s.server,
    )
    .await;
    s.assert_no_errors();
}

#[tokio::test]
async fn reloads_on_either_side_keep_the_session() {
    let s = Shared::start("/form.html").await;
    let (c, o) = (&s.customer, &s.operator);
    c.type_into("#name", "Ada").await;
    s.on_operator(
        "the name",
        "document.querySelector('#name').value === 'Ada'",
    )
    .await;

    // The customer reloads: the same session resumes and sharing goes on.
    c.page.reload().await.expect("reload");
    until(
        c,
        "the widget connected after the reload",
        &format!("{WIDGET_STATUS}.includes('Connected with Olivia Operator')"),
        &s.tabs(),
        &s.server,
    )
    .await;
    c.type_into("#email", "ada@example.org").await;
    s.on_operator(
        "the e-mail typed after the customer's reload",
        "document.querySelector('#email').value === 'ada@example.org'",
    )
    .await;

    // The operator reloads the console: it resumes and shows the same state.
    o.page.reload().await.expect("reload");
    until(
        o,
        "the console connected after its reload",
        &format!("{CONSOLE_STATUS}.startsWith('Connected')"),
        &s.tabs(),
        &s.server,
    )
    .await;
    s.on_operator("the state replayed after the console's reload", "!!window.__cobrowse.engine && document.querySelector('#email').value === 'ada@example.org'").await;
    c.type_into("#notes", "hi").await;
    s.on_operator(
        "live typing after the console's reload",
        "document.querySelector('#notes').value === 'hi'",
    )
    .await;
    let participants = o
        .eval(r#"document.querySelector('[data-cobrowse="participants"]').children.length"#)
        .await;
    assert_eq!(
        participants,
        serde_json::json!(2),
        "still one customer and one operator"
    );
    s.assert_no_errors();
}

/// The link to the hub (`inject/hub.js`, one for the customer's agent and
/// the console): a session resumed by another tab or console window (the
/// hub closes the old connection with `4001`) ends sharing where it was and
/// never comes back there, while the session goes on in the new place.
#[tokio::test]
async fn a_session_resumed_elsewhere_ends_the_link_where_it_was_for_good() {
    let s = Shared::start("/form.html").await;
    let notice = "(document.querySelector('[data-cobrowse=widget]')?.shadowRoot?.querySelector('[data-cobrowse=notice]')?.textContent || '')";

    // A second tab with a copy of the customer's session storage resumes.
    let saved = s
        .customer
        .eval("sessionStorage.getItem('cobrowse.session')")
        .await;
    let saved = saved
        .as_str()
        .expect("the customer's tab keeps its session");
    let copy = s.browser.tab("the customer's copied tab", 1000, 760).await;
    // A copied tab is in the same browser: it carries the browser's
    // binding too (without it the proxy tells the agent no session can
    // resume, and it does not look).
    let cookies = s
        .customer
        .page
        .get_cookies()
        .await
        .expect("the customer's cookies");
    for c in cookies {
        let mut cookie =
            chromiumoxide::cdp::browser_protocol::network::CookieParam::new(c.name, c.value);
        cookie.url = Some(s.server.url("/"));
        cookie.http_only = Some(c.http_only);
        cookie.same_site = c.same_site;
        copy.page
            .set_cookie(cookie)
            .await
            .expect("the copied tab's cookies");
    }
    copy.goto(&s.server.url("/form.html")).await;
    copy.eval(&format!(
        "sessionStorage.setItem('cobrowse.session', {})",
        serde_json::to_string(saved).unwrap()
    ))
    .await;
    copy.goto(&s.server.url("/form.html")).await;
    let all = [&s.customer, &s.operator, &copy];
    until(
        &copy,
        "the copied tab to share the session",
        &format!("{WIDGET_STATUS}.includes('Connected with')"),
        &all,
        &s.server,
    )
    .await;
    until(&s.customer, "the first tab to stop sharing and say where it goes on", &format!("{notice}.includes('Sharing continues in another tab.') && sessionStorage.getItem('cobrowse.session') === null && window.__cobrowse.link.state === 'idle' && !window.__cobrowse.engine"), &all, &s.server).await;

    // The session goes on with the copy; the first tab stays out of it.
    copy.type_into("#name", "Copied Carla").await;
    s.on_operator(
        "the operator to see what the copied tab typed",
        "document.querySelector('#name').value === 'Copied Carla'",
    )
    .await;
    let first = s.customer.eval(&format!("({{ state: window.__cobrowse.link.state, saved: sessionStorage.getItem('cobrowse.session'), call: document.querySelector('[data-cobrowse=widget]').shadowRoot.querySelector('[data-cobrowse=call]').textContent, name: document.querySelector('#name').value, notice: {notice} }})")).await;
    assert_eq!(first["state"], "idle", "{first}");
    assert_eq!(first["saved"], serde_json::Value::Null, "{first}");
    assert_eq!(first["call"], "Call operator", "{first}");
    assert_ne!(first["name"], "Copied Carla", "{first}");

    // A second console window with a copy of the console's session storage
    // resumes the operator's part: the first window steps back for good.
    let saved = s
        .operator
        .eval("sessionStorage.getItem('cobrowse.console.session')")
        .await;
    let saved = saved.as_str().expect("the console keeps its session");
    let console = s.browser.tab("a second console window", 1400, 1000).await;
    console.goto(&s.server.url("/__cobrowse/console")).await;
    console
        .eval(&format!(
            "sessionStorage.setItem('cobrowse.console.session', {})",
            serde_json::to_string(saved).unwrap()
        ))
        .await;
    console
        .type_into(r#"input[name="user"]"#, OPERATOR_USER)
        .await;
    console
        .type_into(
            r#"input[name="password"]"#,
            crate::support::OPERATOR_PASSWORD,
        )
        .await;
    console.type_text("\n").await; // signs in, then resumes what it was given
    let all = [&s.operator, &console, &copy];
    until(
        &console,
        "the second console window to be in the session",
        &format!("{CONSOLE_STATUS}.startsWith('Connected')"),
        &all,
        &s.server,
    )
    .await;
    until(
        &s.operator,
        "the first console window to step back",
        &format!("{CONSOLE_STATUS}.includes('continues in another console window') && document.querySelector('[data-cobrowse=\"content\"]').src === 'about:blank'"),
        &all,
        &s.server,
    )
    .await;
    copy.type_text(" again").await; // still in the field
    until_on(
        &console,
        "the second console window to follow the customer",
        CONTENT,
        &in_frame("document.querySelector('#name').value === 'Copied Carla again'"),
        &all,
        &s.server,
    )
    .await;
    let status = s.operator.eval(CONSOLE_STATUS).await;
    assert!(
        status
            .as_str()
            .is_some_and(|t| t.contains("continues in another console window")),
        "the first console window came back: {status}"
    );
}
