//! The run-time URL patches (inject/patch-urls.js) in real Chromium: a page
//! whose script builds absolute upstream URLs keeps talking to the proxy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Response;

use crate::browser::harness::{Browser, Tab};
use crate::support::origin::{Origin, full};
use crate::support::{Cobrowse, wait_for};

const SITE_SCRIPT: &str = r#"
const UP = 'UPSTREAM';
const results = window.results = {};
fetch(UP + '/api/fetch').then((r) => r.text()).then((t) => { results.fetch = t; }, (e) => { results.fetch = 'error ' + e; });
fetch(new Request(UP + '/api/request')).then((r) => r.text()).then((t) => { results.request = t; }, (e) => { results.request = 'error ' + e; });
const xhr = new XMLHttpRequest();
xhr.open('GET', UP + '/api/xhr');
xhr.onload = () => { results.xhr = xhr.responseText; };
xhr.onerror = () => { results.xhr = 'error'; };
xhr.send();
const es = new EventSource(UP + '/events');
es.onmessage = (e) => { results.sse = e.data; es.close(); };
es.onerror = () => { results.sse = results.sse || 'error'; es.close(); };
try { history.pushState({}, '', UP + '/pushed?x=1'); results.pushed = location.pathname + location.search; } catch (e) { results.pushed = 'error ' + e; }
const img = document.createElement('img');
img.src = UP + '/pixel.gif';
results.img = img.src.startsWith(location.origin) ? 'mapped' : img.src;
const a = document.createElement('a');
a.setAttribute('href', UP + '/x');
results.attr = a.href.startsWith(location.origin) ? 'mapped' : a.href;
results.ws = new WebSocket(UP.replace('http', 'ws') + '/ws').url.startsWith(location.origin.replace('http', 'ws')) ? 'mapped' : 'not mapped';
results.beacon = navigator.sendBeacon(UP + '/beacon', 'x');
results.identity = [fetch.name, fetch.length, String(fetch).includes('[native code]'), WebSocket.name, WebSocket.length,
  XMLHttpRequest.prototype.open.name, XMLHttpRequest.prototype.open.length, new WebSocket(location.origin.replace('http', 'ws') + '/w') instanceof WebSocket,
  typeof CONFIG, typeof PATCH_URLS].join(' ');
results.relative = (() => { const i = document.createElement('img'); i.src = '/rel.png'; return i.getAttribute('src'); })();
"#;

#[tokio::test]
async fn urls_built_in_script_stay_inside_the_proxy() {
    let beacons = Arc::new(AtomicUsize::new(0));
    let counter = beacons.clone();
    let origin = Origin::start(move |req| {
        let counter = counter.clone();
        async move {
            let via = if req.headers().contains_key("x-forwarded-host") { "via proxy" } else { "direct" };
            let up = format!("http://{}", req.headers()["host"].to_str().unwrap());
            match req.uri().path() {
                "/" => Response::builder()
                    .header("content-type", "text/html")
                    .body(full(format!("<html><head><title>t</title></head><body><script>{}</script></body></html>", SITE_SCRIPT.replace("UPSTREAM", &up))))
                    .unwrap(),
                "/events" => Response::builder().header("content-type", "text/event-stream").body(full(format!("data: {via}\n\n"))).unwrap(),
                "/beacon" => {
                    if via == "via proxy" {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    Response::builder().status(204).body(full("")).unwrap()
                }
                _ => Response::builder().header("content-type", "text/plain").body(full(via)).unwrap(),
            }
        }
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    let browser = Browser::launch().await;
    let tab = browser.tab("customer", 1000, 700).await;
    tab.goto(&proxy.url("/")).await;
    let results: serde_json::Value = wait_for(
        "the page's script to finish",
        Duration::from_secs(20),
        || async {
            let v = tab.eval("window.results || {}").await;
            ["fetch", "request", "xhr", "sse", "pushed"]
                .iter()
                .all(|k| v.get(k).is_some())
                .then_some(v)
        },
        || proxy.output(),
    )
    .await;
    let proxy_port = proxy.addr.port();
    assert_eq!(results["fetch"], "via proxy", "{results}");
    assert_eq!(results["request"], "via proxy", "{results}");
    assert_eq!(results["xhr"], "via proxy", "{results}");
    assert_eq!(results["sse"], "via proxy", "{results}");
    assert_eq!(results["pushed"], "/pushed?x=1", "{results}");
    assert_eq!(results["img"], "mapped", "{results}");
    assert_eq!(results["attr"], "mapped", "{results}");
    assert_eq!(results["ws"], "mapped", "{results}");
    assert_eq!(results["beacon"], true, "{results}");
    assert_eq!(
        results["relative"], "/rel.png",
        "relative URLs are left alone: {results}"
    );
    assert_eq!(
        results["identity"], "fetch 1 true WebSocket 1 open 2 true undefined undefined",
        "patched functions look native, no globals: {results}"
    );
    wait_for(
        "the beacon to reach the upstream through the proxy",
        Duration::from_secs(30),
        || async { (beacons.load(Ordering::SeqCst) > 0).then_some(()) },
        || format!("port {proxy_port}\n{}", proxy.output()),
    )
    .await;
}

#[tokio::test]
async fn links_and_forms_aimed_at_top_stay_inside_the_console_frame() {
    let origin = Origin::start(|req| async move {
        let body = match req.uri().path() {
            "/framed" => "<html><head><title>framed</title></head><body>\
                <a id=top href=/next-link target=_top>top</a>\
                <form id=form action=/next-form target=_parent><button id=go>go</button></form></body></html>",
            _ => "<html><head><title>page</title></head><body>page</body></html>",
        };
        Response::builder().header("content-type", "text/html").body(full(body)).unwrap()
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    let browser = Browser::launch().await;
    let page = browser.tab("operator", 1000, 700).await;
    page.goto(&proxy.url("/start")).await;
    // The console is the top document at `{prefix}console`, framing the site.
    page.eval(
        "history.replaceState(null, '', '/__cobrowse/console'); \
         const f = document.createElement('iframe'); f.id = 'content'; f.src = '/framed'; document.body.appendChild(f); true",
    )
    .await;
    async fn frame_path(page: &Tab) -> Option<String> {
        page.eval("(() => { try { const d = document.getElementById('content').contentDocument; return d.readyState === 'complete' ? d.location.pathname : ''; } catch (e) { return 'error ' + e; } })()")
            .await
            .as_str()
            .map(str::to_string)
    }
    wait_for(
        "the framed page",
        Duration::from_secs(20),
        || async { frame_path(&page).await.filter(|p| p == "/framed") },
        || proxy.output(),
    )
    .await;
    page.eval(
        "document.getElementById('content').contentDocument.getElementById('top').click(); true",
    )
    .await;
    wait_for(
        "the link to navigate the content frame",
        Duration::from_secs(20),
        || async { frame_path(&page).await.filter(|p| p == "/next-link") },
        || proxy.output(),
    )
    .await;
    let top = page.eval("location.pathname").await;
    assert_eq!(
        top, "/__cobrowse/console",
        "a link aimed at _top replaced the console"
    );

    page.eval("document.getElementById('content').src = '/framed'; true")
        .await;
    wait_for(
        "the framed page again",
        Duration::from_secs(20),
        || async { frame_path(&page).await.filter(|p| p == "/framed") },
        || proxy.output(),
    )
    .await;
    page.eval(
        "document.getElementById('content').contentDocument.getElementById('go').click(); true",
    )
    .await;
    wait_for(
        "the form to navigate the content frame",
        Duration::from_secs(20),
        || async { frame_path(&page).await.filter(|p| p == "/next-form") },
        || proxy.output(),
    )
    .await;
    let top = page.eval("location.pathname").await;
    assert_eq!(
        top, "/__cobrowse/console",
        "a form aimed at _parent replaced the console"
    );
}
