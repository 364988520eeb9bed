//! Navigation: full page loads both ways, and a single-page app's history
//! routing (pushState, back, hash links).

use super::*;

#[tokio::test]
async fn single_page_app_routes_follow_both_ways() {
    let s = Shared::start("/app/").await;
    let (c, o) = (&s.customer, &s.operator);

    c.click(r#"a[href="/app/cart"]"#).await;
    s.on_operator("the cart route", "location.pathname === '/app/cart' && document.querySelector('#view h2').textContent === 'Cart'").await;
    c.type_into("#coupon", "SPRING").await;
    s.on_operator(
        "the coupon typed on the cart route",
        "document.querySelector('#coupon') && document.querySelector('#coupon').value === 'SPRING'",
    )
    .await;

    c.eval("history.back()").await;
    s.on_operator("back to the products route", "location.pathname === '/app/' && document.querySelector('#view h2').textContent === 'Products'").await;

    c.click(r##"a[href="#faq"]"##).await;
    s.on_operator("the hash link", "location.hash === '#faq'")
        .await;

    // Without control, the operator's route change is put back.
    o.click(&content(r#"a[href="/app/help"]"#)).await;
    s.on_operator("the operator's view back on the customer's route", "location.pathname === '/app/' && location.hash === '#faq' && document.querySelector('#view h2').textContent === 'Products'").await;
    assert_eq!(
        c.eval("location.pathname").await,
        serde_json::json!("/app/")
    );

    // The operator navigates (with control): the customer follows.
    s.grant_control().await;
    o.click(&content(r#"a[href="/app/help"]"#)).await;
    s.on_customer("the operator's route on the customer's side", "location.pathname === '/app/help' && document.querySelector('#view h2').textContent === 'Help'").await;
    // The patched pushState still works for the app itself.
    assert_eq!(
        c.eval("history.state && history.state.route").await,
        serde_json::json!("/app/help")
    );
    s.assert_no_errors();
}

#[tokio::test]
async fn full_page_loads_follow_both_ways() {
    let s = Shared::start("/").await;
    let (c, o) = (&s.customer, &s.operator);
    c.click(r#"ul a[href="/form.html"]"#).await;
    s.on_operator(
        "the customer's page load",
        "location.pathname === '/form.html' && !!window.__cobrowse.engine",
    )
    .await;
    s.grant_control().await;
    o.click(&content(r#"header a[href="/"]"#)).await;
    s.on_customer(
        "the operator's link followed by the customer",
        "location.pathname === '/' && !!document.querySelector('[data-cobrowse=widget]')",
    )
    .await;
    s.on_operator(
        "the operator's page settled on home",
        "location.pathname === '/' && !!window.__cobrowse.engine",
    )
    .await;
    // A form submission (GET) navigates both.
    c.click(r#"ul a[href="/form.html"]"#).await;
    s.on_operator(
        "the form page again",
        "location.pathname === '/form.html' && !!window.__cobrowse.engine",
    )
    .await;
    c.type_into("#name", "Lin").await;
    c.click(r#"button[type="submit"]"#).await;
    s.on_operator(
        "the submitted form's page",
        "location.search.includes('name=Lin')",
    )
    .await;
    s.customer_connected("the widget still connected").await;
    s.assert_no_errors();
}

/// A navigation command that would take a participant's frame to another
/// origin: a tab between the slashes vanishes when the browser parses the
/// URL, leaving `//localhost:PORT/evil`.
fn off_site(evil: &crate::support::origin::Origin) -> String {
    format!("/\t/localhost:{}/evil", evil.addr.port())
}

/// `cmd` as the hub would deliver it, handed to the agent's applier.
fn deliver(url: &str) -> String {
    let cmd = serde_json::json!({"type": "command", "session": "s", "sender": "p0", "seq": 9999, "key": "top", "attribute": "others", "fn": "navigate", "args": [url, "load", null, "forged"]});
    format!("window.__cobrowse.engine.receive({cmd}), true")
}

const REFUSED: &str = "cobrowse: a navigation off this site was not applied";

#[tokio::test]
async fn a_navigation_off_the_site_is_not_applied_by_the_agent() {
    let evil = crate::support::origin::Origin::pages(&[(
        "/evil",
        "text/html",
        "<html><head></head><body id=evil>another site</body></html>",
    )])
    .await;
    let s = Shared::start("/").await;
    let (c, o) = (&s.customer, &s.operator);
    let url = off_site(&evil);
    let proxy_origin = serde_json::to_string(&s.server.url("")).unwrap();
    let refused = |tab: &Tab| tab.console_log().iter().any(|l| l.contains(REFUSED));

    // The hub refuses such a command; these reach the applier as if it had
    // not: the operator's content frame, then the customer's page.
    o.eval_on(
        CONTENT,
        &format!(
            "el.contentWindow.eval({})",
            serde_json::to_string(&deliver(&url)).unwrap()
        ),
    )
    .await;
    crate::support::wait_for(
        "the operator's agent to refuse the navigation",
        std::time::Duration::from_secs(10),
        || async { refused(o).then_some(()) },
        || o.console_log().join("\n"),
    )
    .await;
    c.eval(&deliver(&url)).await;
    crate::support::wait_for(
        "the customer's agent to refuse the navigation",
        std::time::Duration::from_secs(10),
        || async { refused(c).then_some(()) },
        || c.console_log().join("\n"),
    )
    .await;

    // A URL the console remembers for the frame is not loaded either when
    // the frame comes back and finds itself elsewhere (view only).
    o.eval(&format!("window.__cobrowse.console.send({{ key: 'top', fn: 'navigate', args: [{}, 'load', null] }}), true", serde_json::to_string(&url).unwrap())).await;
    o.eval_on(
        CONTENT,
        "(el.contentWindow.__before = true, el.contentWindow.location.reload(), true)",
    )
    .await;
    s.on_operator(
        "the content frame reloaded with its agent",
        "!window.__before && !!window.__cobrowse.engine",
    )
    .await;

    // Both stay on the site and keep sharing: the customer's next page
    // reaches the operator.
    c.click(r#"ul a[href="/form.html"]"#).await;
    s.on_operator("the customer's next page, on the proxy's origin", &format!("location.pathname === '/form.html' && location.origin === {proxy_origin} && !!window.__cobrowse.engine")).await;
    assert_eq!(
        c.eval("location.origin").await,
        serde_json::json!(s.server.url("")),
        "the customer left the site"
    );
    assert_eq!(
        evil.requests(),
        0,
        "a frame loaded the other origin\n{}",
        super::harness::context(&s.tabs(), &s.server).await
    );
}

/// JS: what the page fetched of the agent's scripts (resource timing), as
/// `file bytes-on-the-wire` (0 bytes: taken from the browser's cache).
const AGENT_SCRIPTS: &str = "performance.getEntriesByType('resource').filter((e) => /\\/__cobrowse\\/[a-z]+\\.js/.test(e.name)).map((e) => `${new URL(e.name).pathname.split('/').pop()}${new URL(e.name).search ? ' versioned' : ''} ${e.transferSize}`)";

/// A page without a call runs the agent alone: the customer's call (the
/// hub link, the widget's behaviour) and the sharing engine are fetched
/// when the customer calls, by URLs named by their versions, so the call's
/// next page takes them from the cache and resumes without a request.
#[tokio::test]
async fn the_calls_scripts_load_with_the_call_and_its_next_page_finds_them_cached() {
    let server = demo_server().await;
    let browser = Browser::launch().await;
    let operator = browser.tab("operator", 1400, 1000).await;
    let customer = browser.tab("customer", 1000, 760).await;
    let all = [&customer, &operator];
    operator_waits(&operator, &server, OPERATOR_USER, &[&customer]).await;
    customer.goto(&server.url("/")).await;
    until_on(
        &customer,
        "the widget's call button",
        CALL,
        "el && el.textContent === 'Call operator'",
        &all,
        &server,
    )
    .await;
    let idle = customer.eval(AGENT_SCRIPTS).await;
    assert!(
        idle.as_array().is_some_and(|a| a.len() == 1
            && a[0]
                .as_str()
                .is_some_and(|s| s.starts_with("agent.js versioned "))),
        "a page without a call fetched more than the agent: {idle}"
    );
    assert_eq!(
        customer
            .eval("!!(window.__cobrowse.call || window.__cobrowse.engineFactory)")
            .await,
        serde_json::json!(false),
        "the call's code ran on a page without a call"
    );

    customer_calls(&customer, &server, &[&operator]).await;
    operator_responds(&operator, &server, &[&customer]).await;
    let called = customer.eval(AGENT_SCRIPTS).await.to_string();
    for file in ["call.js", "share.js"] {
        assert!(
            called.contains(&format!("{file} versioned ")),
            "the call did not fetch {file} by its version: {called}"
        );
    }

    // The call's next page: it resumes, and neither script is asked for
    // again (not even revalidated).
    customer.click(r#"ul a[href="/form.html"]"#).await;
    until(
        &customer,
        "the next page to resume the call",
        &format!(
            "location.pathname === '/form.html' && !!window.__cobrowse.engine && {WIDGET_STATUS}.includes('Connected with')"
        ),
        &all,
        &server,
    )
    .await;
    let next = customer.eval(AGENT_SCRIPTS).await;
    let fetched: Vec<&str> = next
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str())
        .filter(|e| !e.ends_with(" 0"))
        .collect();
    assert!(
        fetched.is_empty(),
        "the call's next page fetched scripts again: {next}"
    );
}
