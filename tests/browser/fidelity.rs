//! With no call active the agent must not change how a page looks or
//! behaves: same layout, same globals but one, no console errors, patched
//! functions that look native, and no WebSocket.

use super::harness::{Browser, Tab, until_on};
use super::*;

/// The demo site's own address, from the server's log, to load pages
/// without the proxy for comparison.
fn demo_origin(server: &Cobrowse) -> String {
    let out = server.output();
    let line = out
        .lines()
        .find(|l| l.contains("demo site started"))
        .expect("the server logs the demo site's address");
    let start = line
        .find("127.0.0.1:")
        .expect("a loopback address in the demo site log line");
    let addr: String = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    format!("http://{addr}")
}

const SNAPSHOT: &str = r#"(() => {
  const rects = [...document.body.querySelectorAll('*')].map((e) => {
    const r = e.getBoundingClientRect();
    return [e.localName, e.id, Math.round(r.x), Math.round(r.y), Math.round(r.width), Math.round(r.height)].join(':');
  });
  return { rects, globals: Object.getOwnPropertyNames(window).sort(), scrollHeight: document.documentElement.scrollHeight };
})()"#;

async fn snapshot(tab: &Tab) -> serde_json::Value {
    tab.eval(SNAPSHOT).await
}

#[tokio::test]
async fn an_idle_agent_changes_nothing_on_the_page() {
    let server = demo_server().await;
    let browser = Browser::launch().await;
    let tab = browser.tab("customer", 1000, 760).await;
    let all = [&tab];
    for page in ["/controls.html", "/app/cart", "/component.html"] {
        tab.goto(&format!("{}{page}", demo_origin(&server))).await;
        let direct = snapshot(&tab).await;
        tab.goto(&server.url(page)).await;
        until_on(
            &tab,
            "the widget",
            CALL,
            "el && el.textContent === 'Call operator'",
            &all,
            &server,
        )
        .await;
        let proxied = snapshot(&tab).await;
        assert_eq!(
            direct["rects"], proxied["rects"],
            "{page}: the layout changed with the agent"
        );
        assert_eq!(
            direct["scrollHeight"], proxied["scrollHeight"],
            "{page}: the page height changed with the agent"
        );
        let before: Vec<&str> = direct["globals"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let added: Vec<&str> = proxied["globals"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .filter(|g| !before.contains(g))
            .collect();
        assert_eq!(
            added,
            vec!["__cobrowse"],
            "{page}: global names added by the agent"
        );
    }

    // Patched functions keep their name, length and native look.
    let looks = tab
        .eval(
            "[history.pushState.name, history.pushState.length, String(history.pushState).includes('[native code]'), \
              history.replaceState.name, Element.prototype.attachShadow.name, Element.prototype.attachShadow.length, \
              String(Element.prototype.attachShadow).includes('[native code]')]",
        )
        .await;
    assert_eq!(
        looks,
        serde_json::json!([
            "pushState",
            2,
            true,
            "replaceState",
            "attachShadow",
            1,
            true
        ])
    );

    // The widget lives in an open shadow root; its controls are real buttons
    // with labels, reachable from the keyboard, and the status is announced.
    let widget = tab
        .eval(
            r#"(() => {
  const host = document.querySelector('[data-cobrowse="widget"]');
  const root = host.shadowRoot;
  const call = root.querySelector('[data-cobrowse="call"]');
  call.focus();
  return [root.mode, call.localName, !!call.getAttribute('aria-label'), root.activeElement === call,
          root.querySelector('[data-cobrowse="status"]').getAttribute('role'), getComputedStyle(host).position];
})()"#,
        )
        .await;
    assert_eq!(
        widget,
        serde_json::json!(["open", "button", true, true, "status", "fixed"])
    );

    // The site's CSS cannot hide or restyle the widget's insides.
    tab.eval("document.head.insertAdjacentHTML('beforeend', '<style>button { display: none !important; } * { color: red !important; }</style>')").await;
    let visible = tab.eval_on(CALL, "getComputedStyle(el).display !== 'none' && getComputedStyle(el).color !== 'rgb(255, 0, 0)'").await;
    assert_eq!(
        visible,
        serde_json::json!(true),
        "site CSS reached into the widget"
    );

    assert!(
        tab.websocket_frames().is_empty(),
        "a WebSocket opened without a call: {:?}",
        tab.websocket_frames()
    );
    let errors: Vec<String> = tab
        .console_log()
        .into_iter()
        .filter(|l| l.starts_with("uncaught") || l.starts_with("console.Error"))
        .collect();
    assert!(
        errors.is_empty(),
        "console errors with the agent: {errors:#?}"
    );
}
