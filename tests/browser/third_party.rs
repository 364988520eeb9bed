//! The same checks on real third-party pages: jQuery UI's own demos
//! (tests/fixtures/third-party/jquery-ui, MIT), whose widgets hide the native
//! controls behind styled labels, custom select menus, spinners and tabs
//! driven by click handlers.

use super::*;

#[tokio::test]
async fn jquery_ui_widgets_are_shared_both_ways() {
    let site = fixture_site("third-party/jquery-ui").await;
    let server = Cobrowse::with_config(&Cobrowse::config_for(
        &site.url(),
        "[privacy]\nmask = [\"#vertical-spinner\"]",
    ))
    .await;
    let s = Shared::on(server, "/controlgroup.html").await;
    let (c, o) = (&s.customer, &s.operator);

    // Styled checkbox and radio: the customer clicks the labels the widget
    // draws; the operator's widgets show the same state.
    c.click(r#"label[for="insurance"]"#).await;
    s.on_operator("the insurance checkbox", "document.querySelector('#insurance').checked && document.querySelector('label[for=insurance]').classList.contains('ui-checkboxradio-checked')").await;
    c.click(r#"label[for="transmission-automatic"]"#).await;
    s.on_operator("the automatic radio", "document.querySelector('#transmission-automatic').checked && document.querySelector('label[for=transmission-automatic]').classList.contains('ui-checkboxradio-checked')").await;

    // Spinner: typed, then stepped with its own button (a click its script
    // handles).
    c.type_into("#horizontal-spinner", "3").await;
    s.on_operator(
        "the typed spinner value",
        "document.querySelector('#horizontal-spinner').value === '3'",
    )
    .await;
    c.click(".controlgroup .ui-spinner-up").await;
    s.on_customer(
        "the customer's spinner stepped",
        "document.querySelector('#horizontal-spinner').value === '4'",
    )
    .await;
    s.on_operator(
        "the stepped spinner value",
        "document.querySelector('#horizontal-spinner').value === '4'",
    )
    .await;

    // The custom select menu: opened and chosen with clicks.
    c.click("#car-type-button").await;
    c.click("#car-type-menu li:nth-child(4) div").await;
    s.on_customer(
        "the customer's menu choice",
        "document.querySelector('#car-type').value === 'SUV'",
    )
    .await;
    s.on_operator("the operator's select menu", "document.querySelector('#car-type').value === 'SUV' && document.querySelector('#car-type-button').textContent.trim() === 'SUV'").await;

    // A field masked by the configuration never leaves the customer's browser.
    c.type_into("#vertical-spinner", "4242").await;
    s.on_operator("the masked spinner read-only and empty", "document.querySelector('#vertical-spinner').value === '' && document.querySelector('#vertical-spinner').readOnly").await;

    // The operator acts once granted control.
    s.grant_control().await;
    o.click(&content(r#"label[for="transmission-standard"]"#))
        .await;
    s.on_customer("the operator's radio choice", "document.querySelector('#transmission-standard').checked && document.querySelector('label[for=transmission-standard]').classList.contains('ui-checkboxradio-checked')").await;

    // Tabs: links the page's script handles, both ways.
    c.goto(&s.server.url("/tabs.html")).await;
    s.on_operator("the tabs page", "location.pathname === '/tabs.html' && !!window.__cobrowse.engine && !!document.querySelector('.ui-tabs')").await;
    s.customer_connected("the customer reconnected").await;
    c.click(r##"a[href="#tabs-2"]"##).await;
    s.on_operator("the second tab open", "document.querySelector('#tabs-2').style.display !== 'none' && document.querySelector('#tabs-1').style.display === 'none'").await;
    o.click(&content(r##"a[href="#tabs-3"]"##)).await;
    s.on_customer("the third tab open", "document.querySelector('#tabs-3').style.display !== 'none' && document.querySelector('#tabs-2').style.display === 'none'").await;

    for tab in [c, o] {
        assert!(
            !tab.websocket_frames().iter().any(|f| f.contains("4242")),
            "{}: the masked value in a WebSocket frame",
            tab.name
        );
    }
    s.assert_no_errors();
}
