//! Pages rendered direct and through the proxy in Chromium read the same:
//! same text, same images loaded, same styles applied, no new console
//! errors. The pages name their own origin in every place the proxy maps
//! (tests/fixtures/proxy/fidelity), come gzip-encoded, in Shift_JIS, under a
//! nonce CSP, and from jQuery UI's demos (tests/fixtures/third-party, MIT).

use std::path::PathBuf;

use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::page::ScreenshotParams;
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
                None => root
                    .join("third-party/jquery-ui")
                    .join(path.trim_start_matches('/')),
            };
            let Ok(mut bytes) = std::fs::read(&file)
                .map_err(|_| ())
                .and_then(|b| if path.contains("..") { Err(()) } else { Ok(b) })
            else {
                return Response::builder()
                    .status(404)
                    .body(full("not found"))
                    .unwrap();
            };
            if path.starts_with("/fidelity/") {
                // The page names its origin as the browser reached it.
                let up = format!("http://{}", req.headers()["host"].to_str().unwrap());
                bytes = memchr::memmem::find_iter(&bytes, b"UPSTREAM")
                    .collect::<Vec<_>>()
                    .iter()
                    .rev()
                    .fold(bytes.clone(), |mut b, &at| {
                        b.splice(at..at + 8, up.bytes());
                        b
                    });
            }
            let mut res = Response::builder();
            res = match path.rsplit('.').next() {
                Some("html") if path.ends_with("sjis.html") => {
                    res.header("content-type", "text/html; charset=Shift_JIS")
                }
                Some("html") => res.header("content-type", "text/html; charset=utf-8"),
                Some("css") => res.header("content-type", "text/css"),
                Some("js") => res.header("content-type", "text/javascript"),
                Some("json") => res.header("content-type", "application/json"),
                Some("svg") => res.header("content-type", "image/svg+xml"),
                Some("png") => res.header("content-type", "image/png"),
                _ => res.header("content-type", "application/octet-stream"),
            };
            if path.ends_with("csp.html") {
                res = res.header(
                    "content-security-policy",
                    "script-src 'nonce-site-nonce' 'strict-dynamic'; object-src 'none'",
                );
            }
            if path.ends_with("compressed.html") {
                use tokio::io::AsyncReadExt;
                let mut gz = Vec::new();
                async_compression::tokio::bufread::GzipEncoder::new(&bytes[..])
                    .read_to_end(&mut gz)
                    .await
                    .unwrap();
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

/// What a page looks like: its text and styles, the console errors it
/// caused, and its pixels.
struct Look {
    page: serde_json::Value,
    errors: Vec<String>,
    screenshot: Screenshot,
}

async fn look(tab: &Tab, url: &str, proxy: &Cobrowse) -> Look {
    let before = tab.console_log().len();
    tab.goto(url).await;
    // The agent builds its widget once the page is idle: wait for it, so
    // hiding it below hides what a person would see.
    until(tab, "the page to settle", "document.readyState === 'complete' && !document.body.innerText.includes('waiting for the script') && (!window.__cobrowse || !!document.querySelector('cobrowse-widget'))", &[tab], proxy).await;
    let errors = tab.console_log()[before..]
        .iter()
        .filter(|l| l.starts_with("uncaught") || l.starts_with("console.Error"))
        .cloned()
        .collect();
    let page = tab.eval(LOOK).await;
    // The idle widget is the agent's only visible mark; the page under it
    // must look the same.
    tab.eval("document.querySelectorAll('cobrowse-widget, cobrowse-overlay').forEach((e) => e.style.setProperty('display', 'none', 'important')); document.activeElement && document.activeElement.blur(); true").await;
    let png = tab
        .page
        .screenshot(
            ScreenshotParams::builder()
                .format(CaptureScreenshotFormat::Png)
                .build(),
        )
        .await
        .expect("a screenshot");
    Look {
        page,
        errors,
        screenshot: Screenshot::decode(&png),
    }
}

/// Decoded pixels of a PNG screenshot.
struct Screenshot {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Screenshot {
    fn decode(png_bytes: &[u8]) -> Screenshot {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .expect("a PNG");
        let mut pixels = vec![0; reader.output_buffer_size().expect("a bounded PNG")];
        let info = reader.next_frame(&mut pixels).expect("PNG pixels");
        pixels.truncate(info.buffer_size());
        Screenshot {
            width: info.width,
            height: info.height,
            pixels,
        }
    }

    /// The share of pixels that differ visibly (any channel by more than 16).
    fn difference(&self, other: &Screenshot) -> f64 {
        assert_eq!(
            (self.width, self.height),
            (other.width, other.height),
            "screenshots of different sizes"
        );
        let channels = self.pixels.len() / (self.width * self.height) as usize;
        let differing = self
            .pixels
            .chunks(channels)
            .zip(other.pixels.chunks(channels))
            .filter(|(a, b)| a.iter().zip(b.iter()).any(|(x, y)| x.abs_diff(*y) > 16))
            .count();
        differing as f64 / f64::from(self.width * self.height)
    }
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
        let direct = look(&tab, &format!("{}{path}", origin.url()), &proxy).await;
        let proxied = look(&tab, &proxy.url(path), &proxy).await;
        assert_eq!(
            direct.page,
            proxied.page,
            "{path} reads differently through the proxy\n{}",
            proxy.output()
        );
        let new: Vec<&String> = proxied
            .errors
            .iter()
            .filter(|e| !direct.errors.contains(e))
            .collect();
        assert!(
            new.is_empty(),
            "{path}: console errors only through the proxy: {new:#?}"
        );
        let differ = direct.screenshot.difference(&proxied.screenshot);
        assert!(
            differ < 0.005,
            "{path}: {:.2}% of the pixels differ through the proxy",
            differ * 100.0
        );
        let agent = tab
            .eval("!!document.querySelector('script[src*=\"/agent.js?v=\"]')")
            .await;
        assert_eq!(agent, serde_json::json!(true), "{path}: no agent");
    }
    // The pages' own checks, which only pass when mapping worked.
    tab.goto(&proxy.url("/fidelity/absolute.html")).await;
    let scripted = until(&tab, "the script's fetch", "document.getElementById('scripted').textContent.includes('(true)') && document.getElementById('scripted').textContent", &[&tab], &proxy).await;
    assert_eq!(
        scripted,
        "the script says: hello from the site's API (true)"
    );
    tab.goto(&proxy.url("/fidelity/csp.html")).await;
    let csp = tab.eval("[document.getElementById('out').textContent, document.getElementById('bad').textContent, !!window.__cobrowse]").await;
    assert_eq!(
        csp,
        serde_json::json!([
            "inline script with the site nonce ran",
            "blocked as the site asked",
            true
        ]),
        "the site's CSP still holds and the agent runs"
    );
}
