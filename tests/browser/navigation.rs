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
    super::harness::until(
        c,
        "the widget still connected",
        &format!("{WIDGET_STATUS}.includes('Connected with')"),
        &s.tabs(),
        &s.server,
    )
    .await;
    s.assert_no_errors();
}
