//! Pages rendered direct and through the proxy in Chromium read the same:
//! same text, same images loaded, same styles applied, no new console
//! errors. The pages name their own origin in every place the proxy maps
//! (tests/fixtures/proxy/fidelity), come gzip-encoded, in Shift_JIS, under a
//! nonce CSP, and from jQuery UI's demos (tests/fixtures/third-party, MIT).

use std::path::PathBuf;

use http::Response;

use crate::browser::harness::{Browser, Tab, until};
use crate::support::Cobrowse;
use crate::support::origin::{Origin, full};

async fn site() -> Origin {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    Origin::start(move |req| {
        let root = root.clone();
        async move {
            let path = req.uri().path().to_string();
            let file = match path.strip_prefix("/fidelity/") {
                Some(rest) => root.join("proxy/fidelity").join(rest),
                None => root.join("third-party/jquery-ui").join(path.trim_start_matches('/')),
            };
            let Ok(mut bytes) = std::fs::read(&file).map_err(|_| ()).and_then(|b| if path.contains("..") { Err(()) } else { Ok(b) }) else {
                return Response::builder().status(404).body(full("not found")).unwrap();
            };
            if path.starts_with("/fidelity/") {
                // The page names its origin as the browser reached it.
                let up = format!("http://{}", req.headers()["host"].to_str().unwrap());
                bytes = memchr::memmem::find_iter(&bytes, b"UPSTREAM").collect::<Vec<_>>().iter().rev().fold(bytes.clone(), |mut b, &at| {
                    b.splice(at..at + 8, up.bytes());
                    b
                });
            }
            let mut res = Response::builder();
            res = match path.rsplit('.').next() {
                Some("html") if path.ends_with("sjis.html") => res.header("content-type", "text/html; charset=Shift_JIS"),
                Some("html") => res.header("content-type", "text/html; charset=utf-8"),
                Some("css") => res.header("content-type", "text/css"),
                Some("js") => res.header("content-type", "text/javascript"),
                Some("json") => res.header("content-type", "application/json"),
                Some("svg") => res.header("content-type", "image/svg+xml"),
                Some("png") => res.header("content-type", "image/png"),
                _ => res.header("content-type", "application/octet-stream"),
            };
            if path.ends_with("csp.html") {
                res = res.header("content-security-policy", "script-src 'nonce-site-nonce' 'strict-dynamic'; object-src 'none'");
            }
            if path.ends_with("compressed.html") {
                use tokio::io::AsyncReadExt;
                let mut gz = Vec::new();
                async_compression::tokio::bufread::GzipEncoder::new(&bytes[..]).read_to_end(&mut gz).await.unwrap();
                bytes = gz;
                res = res.header("content-encoding", "gzip");
            }
            res.body(full(bytes)).unwrap()
        }
    })
    .await
}

const LOOK: &str = r#"(() => ({
  text: document.body.innerText,
  title: document.title,
  images: [...document.images].map((i) => i.complete && i.naturalWidth > 0),
  sheets: document.styleSheets.length,
  color: getComputedStyle(document.querySelector('h1') || document.body).color,
  font: getComputedStyle(document.body).fontFamily,
}))()"#;

async fn look(tab: &Tab, url: &str, proxy: &Cobrowse) -> (serde_json::Value, Vec<String>) {
    let before = tab.console_log().len();
    tab.goto(url).await;
    until(tab, "the page to settle", "document.readyState === 'complete' && !document.body.innerText.includes('waiting for the script')", &[tab], proxy).await;
    let errors = tab.console_log()[before..].iter().filter(|l| l.starts_with("uncaught") || l.starts_with("console.Error")).cloned().collect();
    (tab.eval(LOOK).await, errors)
}

#[tokio::test]
async fn pages_read_the_same_direct_and_through_the_proxy() {
    let origin = site().await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    let browser = Browser::launch().await;
    let tab = browser.tab("customer", 1000, 760).await;
    for path in [
        "/fidelity/absolute.html",
        "/fidelity/compressed.html",
        "/fidelity/sjis.html",
        "/fidelity/csp.html",
        "/tabs.html",
        "/controlgroup.html",
    ] {
        let (direct, direct_errors) = look(&tab, &format!("{}{path}", origin.url()), &proxy).await;
        let (proxied, proxied_errors) = look(&tab, &proxy.url(path), &proxy).await;
        assert_eq!(direct, proxied, "{path} reads differently through the proxy\n{}", proxy.output());
        let new: Vec<&String> = proxied_errors.iter().filter(|e| !direct_errors.contains(e)).collect();
        assert!(new.is_empty(), "{path}: console errors only through the proxy: {new:#?}");
        let agent = tab.eval("!!document.querySelector('script[src$=\"agent.js\"]')").await;
        assert_eq!(agent, serde_json::json!(true), "{path}: no agent");
    }
    // The pages' own checks, which only pass when mapping worked.
    tab.goto(&proxy.url("/fidelity/absolute.html")).await;
    let scripted = until(&tab, "the script's fetch", "document.getElementById('scripted').textContent.includes('(true)') && document.getElementById('scripted').textContent", &[&tab], &proxy).await;
    assert_eq!(scripted, "the script says: hello from the site's API (true)");
    tab.goto(&proxy.url("/fidelity/csp.html")).await;
    let csp = tab.eval("[document.getElementById('out').textContent, document.getElementById('bad').textContent, !!window.__cobrowse]").await;
    assert_eq!(csp, serde_json::json!(["inline script with the site nonce ran", "blocked as the site asked", true]), "the site's CSP still holds and the agent runs");
}
