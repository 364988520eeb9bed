//! One driver: in a shared session the customer's browser performs every
//! request that changes the site's state; the operator's browser follows,
//! sees the very documents the customer received, and never repeats a side
//! effect. The upstream is a real shop that counts every request.

use super::*;
use crate::support::shop::{CARD_ON_FILE, CVC_ON_FILE, PIN_ON_FILE, Shop};

/// The text of `#serial` on the customer's page: every document the shop
/// renders carries a fresh one.
async fn customer_serial(s: &Shared) -> String {
    s.customer
        .eval("document.querySelector('#serial')?.textContent || ''")
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// JS, with `el` the content frame: a copy of its document without its
/// random tokens (script nonces, the agent's content hash), whose hex
/// digits may spell a short masked value such as a card code by chance;
/// every text, value and other attribute stays in it.
const OUR_TOKENS_OUT: &str = "(() => { const d = el.contentDocument.documentElement.cloneNode(true); d.querySelectorAll('[nonce]').forEach((e) => e.removeAttribute('nonce')); d.querySelectorAll('script[src*=\"/__cobrowse/agent.js\"]').forEach((e) => e.removeAttribute('src')); return d; })()";

/// The operator's page reads exactly as the customer's does.
async fn same_text(s: &Shared, step: &str) {
    let text = s.customer.eval("document.body.innerText").await;
    let text = text.as_str().unwrap_or_default().to_string();
    assert!(!text.is_empty());
    let js = format!(
        "document.body.innerText === {}",
        serde_json::to_string(&text).unwrap()
    );
    s.on_operator(
        &format!("the operator's page to read as the customer's ({step})"),
        &js,
    )
    .await;
}

fn count(shop: &Shop, line: &str) -> usize {
    shop.log().iter().filter(|l| *l == line).count()
}

#[tokio::test]
async fn the_customer_drives_and_an_order_is_placed_exactly_once() {
    let shop = Shop::start().await;
    let server = Cobrowse::with_config(&Cobrowse::config_for(&shop.origin.url(), "")).await;
    let browser = Browser::launch().await;
    let operator = browser.tab("operator", 1400, 1000).await;
    let customer = browser.tab("customer", 1000, 760).await;
    operator_waits(&operator, &server, OPERATOR_USER, &[&customer]).await;

    // The customer signs in before calling: the operator has no account at
    // the shop and must still see the pages behind the customer's login.
    customer.goto(&server.url("/login")).await;
    customer.type_into("input[name=user]", "pat").await;
    customer
        .type_into("input[name=password]", "correct-horse")
        .await;
    customer.click("form button").await;
    until(
        &customer,
        "the account page",
        "document.querySelector('#welcome')?.textContent === 'Welcome, pat'",
        &[&customer, &operator],
        &server,
    )
    .await;
    customer_calls(&customer, &server, &[&operator]).await;
    operator_responds(&operator, &server, &[&customer]).await;
    let s = Shared {
        server,
        operator_server: None,
        browser,
        customer,
        operator,
    };
    let context = || format!("shop saw: {:#?}", shop.log());

    s.on_operator(
        "the account page behind the customer's login",
        "document.querySelector('#welcome')?.textContent === 'Welcome, pat'",
    )
    .await;

    // A navigation: the operator is served the document the customer got.
    s.customer.click("#to-cart").await;
    s.on_customer(
        "the cart",
        "location.pathname === '/cart' && !!document.querySelector('#serial')",
    )
    .await;
    let serial = customer_serial(&s).await;
    s.on_operator("the customer's very cart document", &format!("location.pathname === '/cart' && document.querySelector('#serial')?.textContent === '{serial}'")).await;

    // A POST by the customer, then its redirect: done once, seen by both.
    s.customer.click("#add").await;
    s.on_customer(
        "a teapot in the cart",
        "document.querySelectorAll('#items li').length === 1",
    )
    .await;
    let serial = customer_serial(&s).await;
    s.on_operator("the cart with the teapot, as the customer got it", &format!("document.querySelectorAll('#items li').length === 1 && document.querySelector('#serial')?.textContent === '{serial}'")).await;
    same_text(&s, "cart").await;
    assert_eq!(count(&shop, "POST /cart/add"), 1, "{}", context());

    // The order form: the shop renders a card number and a PIN into masked
    // fields; the operator's copy has neither.
    s.customer.click("#to-order").await;
    s.on_customer(
        "the order form",
        "location.pathname === '/order' && !!document.querySelector('#place')",
    )
    .await;
    let serial = customer_serial(&s).await;
    s.on_operator("the order form", &format!("!!document.querySelector('#place') && document.querySelector('#serial')?.textContent === '{serial}'")).await;
    let customer_card = s
        .customer
        .eval("document.querySelector('input[name=card]').value")
        .await;
    assert_eq!(
        customer_card,
        serde_json::json!(CARD_ON_FILE),
        "the customer's own page keeps the card on file"
    );
    let seen = s
        .operator
        .eval_on(CONTENT, &format!("{OUR_TOKENS_OUT}.outerHTML + ' ' + [...el.contentDocument.querySelectorAll('input')].map((i) => i.value).join(' ')"))
        .await
        .to_string();
    assert!(
        !seen.contains(CARD_ON_FILE) && !seen.contains(PIN_ON_FILE),
        "a masked server-rendered value reached the operator:\n{seen}"
    );
    // Nor through a scripted read of the same page.
    let fetched = s
        .operator
        .eval_on(
            CONTENT,
            "el.contentWindow.fetch('/order').then((r) => r.text())",
        )
        .await
        .to_string();
    assert!(
        fetched.contains("Place order")
            && !fetched.contains(CARD_ON_FILE)
            && !fetched.contains(PIN_ON_FILE),
        "{fetched}"
    );

    // A follower's own state-changing request is refused by the proxy and
    // never reaches the shop.
    let status = s
        .operator
        .eval_on(CONTENT, "el.contentWindow.fetch('/order', { method: 'POST', body: new URLSearchParams({ holder: 'x' }) }).then((r) => r.status)")
        .await;
    assert_eq!(status, serde_json::json!(403));
    assert_eq!(count(&shop, "POST /order"), 0, "{}", context());
    assert_eq!(shop.orders(), 0);

    // The operator, with control, fills in the form and presses "Place
    // order": the customer's browser performs it, once.
    s.grant_control().await;
    s.on_operator(
        "the order form, shared",
        "!!(window.__cobrowse && window.__cobrowse.engine)",
    )
    .await;
    s.operator
        .type_into(&content("#holder"), "Pat Example")
        .await;
    s.on_customer(
        "the operator's typing",
        "document.querySelector('#holder').value === 'Pat Example'",
    )
    .await;
    s.operator.click(&content("#place")).await;
    s.on_customer("the confirmation", "document.querySelector('#confirmation')?.textContent === 'Order 1 for Pat Example confirmed'").await;
    let serial = customer_serial(&s).await;
    s.on_operator(
        "the confirmation page reached by the customer's POST",
        &format!("document.querySelector('#confirmation')?.textContent === 'Order 1 for Pat Example confirmed' && document.querySelector('#serial')?.textContent === '{serial}'"),
    )
    .await;
    same_text(&s, "confirmation").await;
    assert_eq!(shop.orders(), 1, "{}", context());
    assert_eq!(count(&shop, "POST /order"), 1, "{}", context());

    // A second press is a second order, still performed once.
    s.customer.click("#to-order-again").await;
    s.on_customer("the order form again", "!!document.querySelector('#place')")
        .await;
    // Typed only once the page's agent is sharing it.
    s.on_operator(
        "the order form again, shared",
        "!!document.querySelector('#place') && !!(window.__cobrowse && window.__cobrowse.engine)",
    )
    .await;
    s.operator.type_into(&content("#holder"), "Bob").await;
    s.on_customer(
        "the operator's typing",
        "document.querySelector('#holder').value === 'Bob'",
    )
    .await;
    s.operator.click(&content("#place")).await;
    s.on_customer(
        "the second confirmation",
        "document.querySelector('#confirmation')?.textContent === 'Order 2 for Bob confirmed'",
    )
    .await;
    s.on_operator(
        "the second confirmation",
        "document.querySelector('#confirmation')?.textContent === 'Order 2 for Bob confirmed'",
    )
    .await;
    assert_eq!(shop.orders(), 2, "{}", context());
    assert_eq!(count(&shop, "POST /order"), 2, "{}", context());
}

/// The names of the cookies `tab`'s browser holds for its page.
async fn cookie_names(tab: &harness::Tab) -> Vec<String> {
    tab.page
        .get_cookies()
        .await
        .expect("the browser's cookies")
        .into_iter()
        .map(|c| c.name)
        .collect()
}

#[tokio::test]
async fn a_follower_is_served_what_the_drivers_scripts_read_and_never_gets_the_sites_cookies() {
    let shop = Shop::start().await;
    let server = Cobrowse::with_config(&Cobrowse::config_for(&shop.origin.url(), "")).await;
    let browser = Browser::launch().await;
    let operator = browser.tab("operator", 1400, 1000).await;
    let customer = browser.tab("customer", 1000, 760).await;
    operator_waits(&operator, &server, OPERATOR_USER, &[&customer]).await;
    customer.goto(&server.url("/login")).await;
    customer.type_into("input[name=user]", "pat").await;
    customer
        .type_into("input[name=password]", "correct-horse")
        .await;
    customer.click("form button").await;
    until(
        &customer,
        "the account page",
        "document.querySelector('#welcome')?.textContent === 'Welcome, pat'",
        &[&customer, &operator],
        &server,
    )
    .await;
    customer.click("#to-wallet").await;
    let card_shown = format!("document.querySelector('#card')?.textContent === '{CARD_ON_FILE}'");
    until(
        &customer,
        "the wallet with the card from the account API",
        &card_shown,
        &[&customer, &operator],
        &server,
    )
    .await;
    // The customer calls from the wallet, which renews the shop's session
    // cookie on every view: the operator's copy of it is read as the
    // customer, and must not hand the operator the customer's session.
    customer_calls(&customer, &server, &[&operator]).await;
    operator_responds(&operator, &server, &[&customer]).await;
    let s = Shared {
        server,
        operator_server: None,
        browser,
        customer,
        operator,
    };
    let context = || format!("shop saw: {:#?}", shop.log());
    s.on_operator(
        "the wallet",
        "location.pathname === '/wallet' && !!document.querySelector('#card')",
    )
    .await;

    // The customer refreshes the wallet while shared: its script reads the
    // account API once, and the operator's page is served that very answer,
    // with the card number and code blanked.
    let reads = shop.count("GET /api/account");
    let before = customer_serial(&s).await;
    s.customer.click("#to-wallet-again").await;
    s.on_customer(
        "the refreshed wallet",
        &format!("{card_shown} && document.querySelector('#serial').textContent !== '{before}' && document.querySelector('#api-serial').textContent !== ''"),
    )
    .await;
    let page_serial = customer_serial(&s).await;
    let api_serial = s
        .customer
        .eval("document.querySelector('#api-serial').textContent")
        .await;
    let api_serial = api_serial.as_str().unwrap_or_default().to_string();
    s.on_operator(
        "the customer's wallet document and the customer's API answer, masked",
        &format!(
            "document.querySelector('#serial')?.textContent === '{page_serial}' && document.querySelector('#api-serial')?.textContent === '{api_serial}' \
             && document.querySelector('#card').textContent === '' && document.querySelector('#cvc').textContent === ''"
        ),
    )
    .await;
    let seen = s
        .operator
        .eval_on(CONTENT, &format!("{OUR_TOKENS_OUT}.outerHTML"))
        .await
        .to_string();
    assert!(
        !seen.contains(CARD_ON_FILE) && !seen.contains(CVC_ON_FILE),
        "a masked API value reached the operator:\n{seen}"
    );
    assert_eq!(
        shop.count("GET /api/account"),
        reads + 1,
        "the operator's page read the API itself: {}",
        context()
    );

    // The customer's browser holds the shop's session; the operator's never
    // received a cookie of the shop.
    assert!(
        cookie_names(&s.customer).await.contains(&"sid".to_string()),
        "{}",
        context()
    );
    let operator_cookies = cookie_names(&s.operator).await;
    assert!(
        !operator_cookies.contains(&"sid".to_string()),
        "the shop's session cookie reached the operator's browser: {operator_cookies:?}"
    );
}
