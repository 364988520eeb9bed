//! The conversation beside the page, in real Chromium with customer and
//! operators in separate browser contexts: joining by the code the customer
//! reads out, the operator's address bar, requesting control, and the chat.

use super::harness::{Browser, Tab, until, until_on};
use super::*;

/// JS: the console's notice line.
const CONSOLE_NOTICE: &str =
    r#"(document.querySelector('[data-cobrowse="notice"]:not([hidden])')?.textContent || '')"#;

#[tokio::test]
async fn an_operator_joins_the_customer_by_the_code_read_out() {
    let server = demo_server().await;
    let browser = Browser::launch().await;
    let operator = browser.tab("operator", 1400, 1000).await;
    let customer = browser.tab("customer", 1000, 760).await;
    let all = [&customer, &operator];
    operator_waits(&operator, &server, "op2", &[&customer]).await;

    customer.goto(&server.url("/form.html")).await;
    let code = customer_shares_a_code(&customer, &server, &all).await;
    // The call waits in the queue meanwhile; the code goes past it.
    until(
        &customer,
        "the call waiting",
        &format!("/Waiting|being connected/.test({WIDGET_STATUS})"),
        &all,
        &server,
    )
    .await;
    super::widget::no_problems(&customer, "showing a join code").await;

    // A wrong code is refused with a sentence; the right one joins.
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    operator_joins_by_code(&operator, &wrong, &server, &all).await;
    until(
        &operator,
        "the refusal of a wrong code",
        &format!("{CONSOLE_NOTICE}.includes('No session has that code')"),
        &all,
        &server,
    )
    .await;
    operator_joins_by_code(&operator, &code, &server, &all).await;
    until(
        &operator,
        "the console to be connected",
        &format!("{CONSOLE_STATUS}.startsWith('Connected')"),
        &all,
        &server,
    )
    .await;
    let field = operator
        .eval_on(r#"form[data-cobrowse="join-code"] input"#, "el.value")
        .await;
    assert_eq!(
        field,
        serde_json::json!(""),
        "the code is not kept in the form"
    );
    until_on(
        &operator,
        "the customer's page in the content frame",
        CONTENT,
        &in_frame("location.pathname === '/form.html' && !!window.__cobrowse.engine"),
        &all,
        &server,
    )
    .await;
    until(
        &customer,
        "the widget to say who joined",
        &format!("{WIDGET_STATUS}.includes('Connected with Oscar Second')"),
        &all,
        &server,
    )
    .await;
    until(
        &customer,
        "the code gone from the widget",
        &format!("{} === ''", widget_text("code")),
        &all,
        &server,
    )
    .await;

    // The state the customer had typed is there for the operator.
    customer.type_into("#name", "Ada").await;
    until_on(
        &operator,
        "the customer's typing",
        CONTENT,
        &in_frame("document.querySelector('#name').value === 'Ada'"),
        &all,
        &server,
    )
    .await;
}

#[tokio::test]
async fn the_operators_address_bar_follows_the_customer_and_drives_their_browser() {
    let shared = Shared::start("/app/").await;
    let (customer, operator, server) = (&shared.customer, &shared.operator, &shared.server);
    let all = shared.tabs();
    let address = r#"form[data-cobrowse="address"] input"#;
    let shown = |path: &str| {
        format!(
            "document.querySelector('{address}').value === {:?}",
            server.url(path)
        )
    };
    until(
        operator,
        "the address bar to show the customer's page",
        &shown("/app/"),
        &all,
        server,
    )
    .await;

    // Single-page navigation moves it too.
    customer.click(r#"a[href="/app/cart"]"#).await;
    until(
        operator,
        "the address bar to follow the app's history",
        &shown("/app/cart"),
        &all,
        server,
    )
    .await;

    // Without control the address bar opens nothing.
    operator.click(address).await;
    operator.eval_on(address, "el.select()").await;
    operator.type_text("/form.html\n").await;
    until(
        operator,
        "the view-only notice",
        &format!("{CONSOLE_NOTICE}.includes('request control')"),
        &all,
        server,
    )
    .await;
    assert_eq!(
        customer.eval("location.pathname").await,
        serde_json::json!("/app/cart")
    );

    shared.grant_control().await;
    // Another site is refused with a message and never reaches the customer.
    operator
        .eval_on(address, "(el.focus(), el.select(), true)")
        .await;
    operator.type_text("https://evil.example/steal\n").await;
    until(
        operator,
        "the refusal of another site",
        &format!("{CONSOLE_NOTICE}.includes('Only pages of this site')"),
        &all,
        server,
    )
    .await;
    operator
        .eval_on(address, "(el.focus(), el.select(), true)")
        .await;
    operator.type_text("javascript:alert(1)\n").await;
    until(
        operator,
        "the refusal of a script URL",
        &format!("{CONSOLE_NOTICE}.includes('javascript:alert(1) is not one')"),
        &all,
        server,
    )
    .await;
    assert_eq!(
        customer.eval("location.pathname").await,
        serde_json::json!("/app/cart")
    );

    // A path of the site is opened by the customer's browser, once.
    operator
        .eval_on(address, "(el.focus(), el.select(), true)")
        .await;
    operator.type_text("/form.html?from=operator\n").await;
    until(
        customer,
        "the customer's browser to open the typed page",
        "location.pathname + location.search === '/form.html?from=operator'",
        &all,
        server,
    )
    .await;
    until_on(
        operator,
        "the operator to follow",
        CONTENT,
        &in_frame("location.pathname === '/form.html'"),
        &all,
        server,
    )
    .await;
    until(
        operator,
        "the address bar to show it",
        &shown("/form.html?from=operator"),
        &all,
        server,
    )
    .await;
    let loads = customer
        .websocket_frames()
        .iter()
        .filter(|f| {
            f.starts_with("sent")
                && f.contains(r#""fn":"navigate","args":["/form.html?from=operator","load""#)
        })
        .count();
    assert_eq!(
        loads,
        1,
        "the customer's browser opened the page once: {:?}",
        customer.websocket_frames()
    );

    // Back and Forward move the customer's own history.
    operator.click(r#"[data-cobrowse="back"]"#).await;
    until(
        customer,
        "the customer's browser to go back",
        "location.pathname === '/app/cart'",
        &all,
        server,
    )
    .await;
    until(
        operator,
        "the address bar to follow back",
        &shown("/app/cart"),
        &all,
        server,
    )
    .await;
    operator.click(r#"[data-cobrowse="forward"]"#).await;
    until(
        customer,
        "the customer's browser to go forward",
        "location.pathname === '/form.html'",
        &all,
        server,
    )
    .await;
    until_on(
        operator,
        "the operator to follow forward",
        CONTENT,
        &in_frame("location.pathname === '/form.html'"),
        &all,
        server,
    )
    .await;
    customer.eval("window.__before_reload = 1").await;
    operator.click(r#"[data-cobrowse="reload"]"#).await;
    until(
        customer,
        "the customer's page to reload",
        "window.__before_reload === undefined && !!window.__cobrowse",
        &all,
        server,
    )
    .await;
    shared.assert_no_errors();
}

#[tokio::test]
async fn the_operator_requests_control_and_the_customer_answers_by_keyboard() {
    let shared = Shared::start("/form.html").await;
    let (customer, operator, server) = (&shared.customer, &shared.operator, &shared.server);
    let all = shared.tabs();
    let prompt = widget_text("control-prompt");

    operator.click(r#"[data-cobrowse="request-control"]"#).await;
    until(
        customer,
        "the prompt naming the operator",
        &format!("{prompt}.includes('Olivia Operator asks to act on this page')"),
        &all,
        server,
    )
    .await;
    super::widget::no_problems(customer, "asking for control").await;
    // Deny, by keyboard.
    tab_until(customer, "deny-control").await;
    customer.type_text("\n").await;
    until(
        operator,
        "the denial in the console",
        &format!("{CONSOLE_NOTICE}.includes('declined')"),
        &all,
        server,
    )
    .await;
    until(
        customer,
        "the prompt gone",
        &format!("{prompt} === ''"),
        &all,
        server,
    )
    .await;
    assert!(
        !operator
            .eval(&format!("{CONSOLE_STATUS}.includes('You have control')"))
            .await
            .as_bool()
            .unwrap()
    );

    // Asked again after the pause, allowed by keyboard.
    until(
        operator,
        "Request control enabled",
        "!document.querySelector('[data-cobrowse=\"request-control\"]').disabled",
        &all,
        server,
    )
    .await;
    // The hub holds requests back for a few seconds after a denial: ask
    // until the prompt shows, each time waiting for it a little.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(25);
    'ask: loop {
        operator.click(r#"[data-cobrowse="request-control"]"#).await;
        let asked_at = tokio::time::Instant::now();
        while asked_at.elapsed() < std::time::Duration::from_millis(1500) {
            if customer
                .eval(&format!("{prompt}.includes('asks to act')"))
                .await
                == serde_json::json!(true)
            {
                break 'ask;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request was never let through\n{}",
            super::harness::context(&all, server).await
        );
    }
    assert!(
        operator
            .websocket_frames()
            .iter()
            .any(|f| f.contains("declined a moment ago")),
        "a request right after the denial is held back"
    );
    until(
        customer,
        "the prompt again",
        &format!("{prompt}.includes('asks to act')"),
        &all,
        server,
    )
    .await;
    tab_until(customer, "allow-control").await;
    customer.type_text("\n").await;
    until(
        operator,
        "control in the console",
        &format!("{CONSOLE_STATUS}.includes('You have control')"),
        &all,
        server,
    )
    .await;
    until(
        customer,
        "the widget to say so",
        &format!("{WIDGET_STATUS}.includes('They can act on this page')"),
        &all,
        server,
    )
    .await;
    // The customer takes it back at any time.
    customer.click(CONTROL).await;
    until(
        operator,
        "control taken back",
        &format!("{CONSOLE_STATUS}.includes('View only')"),
        &all,
        server,
    )
    .await;
    let out = server.output();
    for event in [
        "control_requested",
        "control_denied",
        "control_granted",
        "control_revoked",
    ] {
        assert!(out.contains(event), "no audit line for {event}");
    }
}

/// Presses Tab in the customer's page until the widget button `which` has
/// focus.
async fn tab_until(tab: &Tab, which: &str) {
    let focused = "(() => { const h = document.activeElement; return h && h.matches('cobrowse-widget') && h.shadowRoot.activeElement ? h.shadowRoot.activeElement.getAttribute('data-cobrowse') : null; })()";
    for _ in 0..80 {
        if tab.eval(focused).await == serde_json::json!(which) {
            return;
        }
        tab.press("Tab", 9).await;
    }
    panic!(
        "{}: Tab never reached {which}\n{}",
        tab.name,
        tab.dump().await
    );
}

#[tokio::test]
async fn customer_and_operators_chat_beside_the_page() {
    let shared = Shared::start("/form.html").await;
    let (customer, operator, server) = (&shared.customer, &shared.operator, &shared.server);
    let all = shared.tabs();
    let console_log = "[...document.querySelectorAll('[data-cobrowse=\"chat-log\"] > *')].map((e) => e.textContent)";
    let widget_log = "[...document.querySelector('[data-cobrowse=\"widget\"]').shadowRoot.querySelectorAll('[data-cobrowse=\"chat-log\"] > *')].map((e) => e.textContent)";

    // The operator writes while the customer's panel is closed: unread.
    operator
        .type_into(
            r#"[data-cobrowse="chat-input"]"#,
            "Hello, I can see your form.\n",
        )
        .await;
    until(operator, "the operator's own message", &format!("{console_log}.length === 1 && {console_log}[0].includes('You') && {console_log}[0].includes('I can see your form')"), &all, server).await;
    until(
        customer,
        "the unread indicator",
        &format!("{}.startsWith('Chat (1 new)')", widget_text("chat-toggle")),
        &all,
        server,
    )
    .await;

    // Opened, the message is read; the customer answers with Enter. Markup
    // stays text on both sides.
    customer.click(&widget("chat-toggle")).await;
    until(
        customer,
        "the message in the widget",
        &format!("{widget_log}.length === 1 && {widget_log}[0].includes('Olivia Operator')"),
        &all,
        server,
    )
    .await;
    until(
        customer,
        "the indicator cleared",
        &format!("{} === 'Chat'", widget_text("chat-toggle")),
        &all,
        server,
    )
    .await;
    super::widget::no_problems(customer, "with the chat open").await;
    customer
        .type_into(
            &widget("chat-input"),
            "<img src=x onerror=\"window.__pwned=1\">Thanks!\n",
        )
        .await;
    until(operator, "the customer's answer", &format!("{console_log}.length === 2 && {console_log}[1].includes('Customer') && {console_log}[1].includes('<img src=x')"), &all, server).await;
    until(
        customer,
        "the answer in the widget",
        &format!("{widget_log}.length === 2 && {widget_log}[1].includes('You')"),
        &all,
        server,
    )
    .await;
    let markup = operator.eval("document.querySelectorAll('[data-cobrowse=\"chat-log\"] img').length + (window.__pwned || 0)").await;
    assert_eq!(
        markup,
        serde_json::json!(0),
        "chat text became markup in the console"
    );
    let markup = customer.eval("document.querySelector('[data-cobrowse=\"widget\"]').shadowRoot.querySelectorAll('[data-cobrowse=\"chat-log\"] img').length + (window.__pwned || 0)").await;
    assert_eq!(
        markup,
        serde_json::json!(0),
        "chat text became markup in the widget"
    );

    // A late joiner sees the conversation so far; a reload keeps it.
    let second = shared.browser.tab("second operator", 1400, 1000).await;
    let all3 = [customer, operator, &second];
    operator_waits(&second, server, "op2", &all).await;
    let code = customer_shares_a_code(customer, server, &all3).await;
    operator_joins_by_code(&second, &code, server, &all3).await;
    let late = until(
        &second,
        "the conversation so far",
        &format!("{console_log}.length === 2 && {console_log}"),
        &all3,
        server,
    )
    .await;
    assert!(
        late[0].as_str().unwrap().contains("Olivia Operator"),
        "{late}"
    );
    customer.eval("location.reload()").await;
    until(
        customer,
        "the conversation after a reload",
        &format!(
            "!!document.querySelector('[data-cobrowse=\"widget\"]') && {} === 'Chat'",
            widget_text("chat-toggle")
        ),
        &all3,
        server,
    )
    .await;
    customer.click(&widget("chat-toggle")).await;
    until(
        customer,
        "the messages after a reload",
        &format!("{widget_log}.length === 2"),
        &all3,
        server,
    )
    .await;
}
