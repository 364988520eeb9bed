//! The HTML stream: the agent first in `<head>` whatever the page looks
//! like, charsets kept byte for byte, streaming, and the memory limit.

use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use rand::{Rng, SeedableRng};

use super::{fetch, get};
use crate::support::Cobrowse;
use crate::support::origin::{Origin, channel_body, chunked};

const AGENT: &str = "<script src=\"/__cobrowse/agent.js?v=";

/// The body with the injected tag (whose nonce differs per response) cut
/// out, and where it was.
fn without_agent(body: &[u8]) -> (Vec<u8>, Option<usize>) {
    let Some(at) = memchr::memmem::find(body, AGENT.as_bytes()) else {
        return (body.to_vec(), None);
    };
    let end = at + memchr::memmem::find(&body[at..], b"</script>").unwrap() + "</script>".len();
    ([&body[..at], &body[end..]].concat(), Some(at))
}

#[tokio::test]
async fn agent_is_injected_once_first_in_head_whatever_the_page_looks_like() {
    const PAGES: &[(&str, &str, &str)] = &[
        (
            "/full",
            "text/html",
            "<!doctype html><html><head><title>t</title><script>site()</script></head><body>x</body></html>",
        ),
        (
            "/no-head",
            "text/html",
            "<!doctype html><html><body><script>site()</script></body></html>",
        ),
        (
            "/no-html",
            "text/html",
            "<!DOCTYPE html><title>t</title><script>site()</script><p>x",
        ),
        (
            "/noscript-first",
            "text/html",
            "<noscript><link rel=stylesheet href=n.css></noscript><script>site()</script>",
        ),
        (
            "/template-first",
            "text/html",
            "<template><script>site()</script></template><p>x",
        ),
        (
            "/svg-first",
            "text/html",
            "<svg><script>site()</script></svg>",
        ),
        (
            "/comment-first",
            "text/html",
            "<!-- <head> --><meta charset=utf-8><script>site()</script>",
        ),
        // Comments end where a browser's tokenizer ends them: the agent
        // goes neither inside one nor after the site's script.
        (
            "/empty-comment",
            "text/html",
            "<!--><script>site()</script><p>x<!-- -->",
        ),
        (
            "/empty-comment-dash",
            "text/html",
            "<!---><script>site()</script><p>x<!-- -->",
        ),
        (
            "/bang-comment",
            "text/html",
            "<!-- a --!><script>site()</script><p>x<!-- -->",
        ),
        (
            "/bogus-comments",
            "text/html",
            "<!x><?x></ x></><script>site()</script><p>x",
        ),
        ("/text-only", "text/html; charset=utf-8", "just some text"),
        (
            "/uppercase",
            "TEXT/HTML",
            "<HTML><HEAD><SCRIPT>site()</SCRIPT></HEAD></HTML>",
        ),
    ];
    let origin = Origin::pages(PAGES).await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    for (path, _, page) in PAGES {
        let got = get(&proxy.url(path)).await;
        let body = got.text();
        assert_eq!(
            body.matches("/__cobrowse/agent.js").count(),
            1,
            "{path}: the agent must be there exactly once:\n{body}\n{}",
            proxy.output()
        );
        let (rest, at) = without_agent(&got.body);
        assert_eq!(
            String::from_utf8(rest).unwrap(),
            *page,
            "{path}: nothing but the agent may change"
        );
        let at = at.unwrap();
        let site_script = body
            .to_ascii_lowercase()
            .find("<script>")
            .unwrap_or(body.len());
        assert!(
            at < site_script,
            "{path}: the agent must come before the site's scripts:\n{body}"
        );
        for container in ["<noscript", "<template", "<svg"] {
            if let Some(c) = body.find(container) {
                assert!(
                    at < c,
                    "{path}: the agent must not be inside {container}:\n{body}"
                );
            }
        }
        // (The comment's `<head>` is text, not an element.)
        if let Some(head) = body
            .to_ascii_lowercase()
            .find("<head>")
            .filter(|_| !path.starts_with("/comment"))
        {
            assert_eq!(
                at,
                head + "<head>".len(),
                "{path}: first in <head>:\n{body}"
            );
        }
    }
}

#[tokio::test]
async fn charsets_come_out_byte_for_byte() {
    fn page(enc: &'static encoding_rs::Encoding, head: &str, text: &str) -> Bytes {
        let html = format!(
            "<html><head>{head}<title>{text}</title></head><body><p>{text}</p><a href=\"/x?q={text}\">{text}</a></body></html>"
        );
        Bytes::from(enc.encode(&html).0.into_owned())
    }
    let cases: Vec<(&str, String, Bytes)> = vec![
        (
            "/cp1252",
            "text/html".into(),
            page(
                encoding_rs::WINDOWS_1252,
                "<meta charset=windows-1252>",
                "Café € “naïve”",
            ),
        ),
        (
            "/sjis",
            "text/html; charset=Shift_JIS".into(),
            page(encoding_rs::SHIFT_JIS, "", "日本語のページ 表示"),
        ),
        (
            "/euckr",
            "text/html".into(),
            page(
                encoding_rs::EUC_KR,
                "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=euc-kr\">",
                "한국어 페이지",
            ),
        ),
        (
            "/utf8-bom",
            "text/html".into(),
            Bytes::from(
                [
                    &b"\xef\xbb\xbf"[..],
                    &page(encoding_rs::UTF_8, "", "ünïcödé ✓ 😀"),
                ]
                .concat(),
            ),
        ),
        (
            "/utf8",
            "text/html; charset=utf-8".into(),
            page(encoding_rs::UTF_8, "<meta charset=utf-8>", "ünïcödé ✓ 😀"),
        ),
    ];
    let served = cases.clone();
    let origin = Origin::start(move |req| {
        let (_, ct, body) = served
            .iter()
            .find(|(p, _, _)| *p == req.uri().path())
            .unwrap()
            .clone();
        async move {
            // One byte per chunk: every multi-byte character is cut.
            let chunks = body.iter().map(|b| Bytes::from(vec![*b])).collect();
            Response::builder()
                .header("content-type", ct)
                .body(chunked(chunks))
                .unwrap()
        }
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    for (path, _, body) in &cases {
        let got = get(&proxy.url(path)).await;
        let (rest, at) = without_agent(&got.body);
        assert!(at.is_some(), "{path}: no agent\n{}", proxy.output());
        assert!(
            rest == body.as_ref(),
            "{path}: bytes changed:\n sent {:?}\n  got {:?}",
            body,
            rest
        );
        let head = memchr::memmem::find(&got.body, b"<head>").unwrap() + 6;
        assert_eq!(at, Some(head), "{path}: agent not first in head");
    }
}

#[tokio::test]
async fn a_page_streams_through_as_the_upstream_sends_it() {
    let (tx, body) = channel_body();
    let body = std::sync::Mutex::new(Some(body));
    let origin = Origin::start(move |_| {
        let body = body.lock().unwrap().take().unwrap();
        async move {
            Response::builder()
                .header("content-type", "text/html")
                .body(body)
                .unwrap()
        }
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    tx.send(Bytes::from_static(
        b"<html><head><title>first part</title></head><body><p>first</p>",
    ))
    .unwrap();

    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let res = client.get(proxy.url("/").parse().unwrap()).await.unwrap();
    let mut body = res.into_body();
    let mut seen = Vec::new();
    // The rest has not been sent: everything before it must arrive anyway.
    tokio::time::timeout(Duration::from_secs(30), async {
        while !String::from_utf8_lossy(&seen).contains("<p>first</p>") {
            let frame = body.frame().await.expect("body ended early").unwrap();
            seen.extend_from_slice(frame.data_ref().unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the first part did not come through before the rest was sent; got {:?}\n{}",
            String::from_utf8_lossy(&seen),
            proxy.output()
        )
    });
    tx.send(Bytes::from_static(b"<p>second</p></body></html>"))
        .unwrap();
    drop(tx);
    let rest = body.collect().await.unwrap().to_bytes();
    seen.extend_from_slice(&rest);
    assert!(String::from_utf8_lossy(&seen).ends_with("<p>first</p><p>second</p></body></html>"));
}

#[tokio::test]
async fn rewriter_fed_at_random_chunk_boundaries_gives_the_same_page() {
    static PAGE: &[u8] = include_bytes!("../fixtures/proxy/catalogue.html");
    let seed: u64 = std::env::var("CHUNK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let origin = Origin::start(move |req| async move {
        let size: usize = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("size="))
            .map_or(PAGE.len(), |s| s.parse().unwrap());
        let chunks = PAGE.chunks(size).map(Bytes::from_static).collect();
        Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(chunked(chunks))
            .unwrap()
    })
    .await;
    let config = Cobrowse::config_for(&origin.url(), "");
    let proxy = Cobrowse::with_config(&config).await;
    let whole = without_agent(&get(&proxy.url("/")).await.body).0;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for _ in 0..12 {
        let size = rng.random_range(1..=700);
        let got = without_agent(&get(&proxy.url(&format!("/?size={size}"))).await.body).0;
        assert!(
            got == whole,
            "the page differs when the upstream sends it in {size}-byte chunks (CHUNK_SEED={seed})"
        );
    }
}

#[tokio::test]
async fn past_the_memory_limit_the_rest_passes_through_and_is_counted() {
    let huge = "x".repeat(300_000);
    let page: &'static str = Box::leak(
        format!("<html><head><title>t</title></head><body><div data-blob=\"{huge}\">after</div><a href=\"/next\">next</a></body></html>").into_boxed_str(),
    );
    let origin = Origin::start(move |_| async move {
        let chunks = page
            .as_bytes()
            .chunks(8192)
            .map(Bytes::from_static)
            .collect();
        Response::builder()
            .header("content-type", "text/html")
            .body(chunked(chunks))
            .unwrap()
    })
    .await;
    let proxy = Cobrowse::with_config(&Cobrowse::config_for(
        &origin.url(),
        "[proxy]\nhtml_memory_limit = 65536\n",
    ))
    .await;
    let got = get(&proxy.url("/")).await;
    let (rest, at) = without_agent(&got.body);
    assert!(
        at.is_some(),
        "the agent is injected before the limit is reached"
    );
    assert!(
        rest == page.as_bytes(),
        "the document must come through whole and unmodified\n{}",
        proxy.output()
    );
    let metrics = fetch("GET", &proxy.url("/__cobrowse/metrics"), &[])
        .await
        .text();
    assert!(
        metrics.contains("cobrowse_proxy_html_passed_through_total{reason=\"memory\"} 1"),
        "not counted:\n{metrics}"
    );
    assert!(
        proxy.output().contains("HTML rewrite gave up"),
        "not logged:\n{}",
        proxy.output()
    );
}
