//! Content-Encoding, lengths, HEAD, 304, ranges, and large bodies both ways.

use std::time::Duration;

use async_compression::tokio::bufread as codec;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use tokio::io::AsyncReadExt;

use super::{fetch, get};
use crate::support::Cobrowse;
use crate::support::origin::{Origin, channel_body, full};

async fn encode(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => codec::GzipEncoder::new(data).read_to_end(&mut out).await,
        "deflate" => codec::ZlibEncoder::new(data).read_to_end(&mut out).await,
        "br" => codec::BrotliEncoder::new(data).read_to_end(&mut out).await,
        "zstd" => codec::ZstdEncoder::new(data).read_to_end(&mut out).await,
        other => panic!("{other}"),
    }
    .unwrap();
    out
}

async fn decode(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => codec::GzipDecoder::new(data).read_to_end(&mut out).await,
        "deflate" => codec::ZlibDecoder::new(data).read_to_end(&mut out).await,
        "br" => codec::BrotliDecoder::new(data).read_to_end(&mut out).await,
        "zstd" => codec::ZstdDecoder::new(data).read_to_end(&mut out).await,
        "" => return data.to_vec(),
        other => panic!("{other}"),
    }
    .unwrap_or_else(|e| panic!("the body is not valid {coding}: {e}"));
    out
}

const PAGE: &str =
    "<html><head><title>zipped</title></head><body><a href=\"URL/p\">p</a></body></html>";

#[tokio::test]
async fn compressed_html_is_decoded_rewritten_and_encoded_for_the_client() {
    let origin = Origin::start(|req| async move {
        let coding = req.uri().path().trim_start_matches('/').to_string();
        let host = req.headers()["host"].to_str().unwrap().to_string();
        let page = PAGE.replace("URL", &format!("http://{host}"));
        let body = encode(&coding, page.as_bytes()).await;
        let len = body.len();
        Response::builder()
            .header("content-type", "text/html")
            .header("content-encoding", coding)
            .header("content-length", len)
            .header("etag", "\"v1\"")
            .body(full(body))
            .unwrap()
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    for upstream in ["gzip", "deflate", "br", "zstd"] {
        for (accept, expected) in [
            ("", ""),
            ("gzip", "gzip"),
            // gzip before br: br costs the proxy far more CPU.
            ("gzip, deflate, br", "gzip"),
            ("br", "br"),
            ("gzip, br, zstd", "zstd"),
            ("identity", ""),
        ] {
            let got = fetch(
                "GET",
                &proxy.url(&format!("/{upstream}")),
                &[("accept-encoding", accept)],
            )
            .await;
            assert_eq!(got.status, StatusCode::OK, "{}", proxy.output());
            assert_eq!(
                got.header("content-encoding"),
                expected,
                "upstream {upstream}, client accepts {accept:?}"
            );
            assert!(
                got.headers.get("content-length").is_none(),
                "the body changed: no Content-Length"
            );
            assert_eq!(got.header("etag"), "W/\"v1\"");
            assert!(
                got.header("vary")
                    .to_ascii_lowercase()
                    .contains("accept-encoding")
            );
            let html = String::from_utf8(decode(expected, &got.body).await).unwrap();
            assert!(
                html.contains("/__cobrowse/agent.js"),
                "upstream {upstream}, accept {accept:?}: {html}"
            );
            assert!(
                html.contains(&format!("<a href=\"http://{}/p\">", proxy.addr)),
                "link not mapped: {html}"
            );
        }
    }
}

#[tokio::test]
async fn other_bodies_pass_with_their_encoding_and_length_untouched() {
    let script: Vec<u8> = (0..5000)
        .flat_map(|i| format!("var a{i} = 'http://upstream.invalid/{i}';\n").into_bytes())
        .collect();
    let gz = Bytes::from(encode("gzip", &script).await);
    let served = gz.clone();
    let origin = Origin::start(move |_| {
        let body = served.clone();
        async move {
            Response::builder()
                .header("content-type", "application/javascript")
                .header("content-encoding", "gzip")
                .header("content-length", body.len())
                .body(full(body))
                .unwrap()
        }
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    let got = fetch("GET", &proxy.url("/app.js"), &[("accept-encoding", "br")]).await;
    assert_eq!(got.header("content-encoding"), "gzip");
    assert_eq!(got.header("content-length"), gz.len().to_string());
    assert!(got.body == gz, "a script's bytes must not change");
}

#[tokio::test]
async fn head_not_modified_and_ranges_pass_through() {
    static BLOB: std::sync::LazyLock<Vec<u8>> =
        std::sync::LazyLock::new(|| (0..100_000u32).map(|i| (i % 251) as u8).collect());
    let origin = Origin::start(|req| async move {
        if req
            .headers()
            .get("if-none-match")
            .is_some_and(|v| v == "\"e\"")
        {
            return Response::builder()
                .status(304)
                .header("etag", "\"e\"")
                .body(full(""))
                .unwrap();
        }
        if req.uri().path() == "/page" {
            let page = "<html><head></head><body>page</body></html>";
            return Response::builder()
                .header("content-type", "text/html")
                .header("content-length", page.len())
                .header("etag", "\"e\"")
                .body(full(page))
                .unwrap();
        }
        match req
            .headers()
            .get("range")
            .and_then(|r| r.to_str().ok())
            .and_then(|r| r.strip_prefix("bytes="))
        {
            Some(range) => {
                let (a, b) = range.split_once('-').unwrap();
                let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                Response::builder()
                    .status(206)
                    .header("content-type", "application/octet-stream")
                    .header("content-range", format!("bytes {a}-{b}/{}", BLOB.len()))
                    .body(full(BLOB[a..=b].to_vec()))
                    .unwrap()
            }
            None => Response::builder()
                .header("content-type", "application/octet-stream")
                .body(full(BLOB.clone()))
                .unwrap(),
        }
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;

    let head = fetch("HEAD", &proxy.url("/page"), &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    let not_modified = fetch("GET", &proxy.url("/page"), &[("if-none-match", "\"e\"")]).await;
    assert_eq!(
        not_modified.status,
        StatusCode::NOT_MODIFIED,
        "{}",
        proxy.output()
    );
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), "\"e\"");

    let part = fetch("GET", &proxy.url("/blob"), &[("range", "bytes=1000-1999")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.header("content-range"), "bytes 1000-1999/100000");
    assert!(part.body == BLOB[1000..2000], "range bytes differ");
    let whole = get(&proxy.url("/blob")).await;
    assert!(whole.body == *BLOB);
}

#[tokio::test]
async fn downloads_and_uploads_stream_without_being_held() {
    // The download: the client sees the first megabyte before the upstream
    // has sent the second.
    let (tx, body) = channel_body();
    let body = std::sync::Mutex::new(Some(body));
    let origin = Origin::start(move |req| {
        let body = body.lock().unwrap().take();
        async move {
            if req.method() == http::Method::POST {
                // Answers after the first chunk of the upload, before the
                // client has sent the rest.
                let mut incoming = req.into_body();
                let first = incoming
                    .frame()
                    .await
                    .unwrap()
                    .unwrap()
                    .into_data()
                    .unwrap();
                // The rest is still read, so the exchange ends cleanly
                // whenever the client finishes.
                tokio::spawn(async move { while let Some(Ok(_)) = incoming.frame().await {} });
                return Response::builder()
                    .body(full(format!("first chunk {} bytes", first.len())))
                    .unwrap();
            }
            Response::builder()
                .header("content-type", "application/octet-stream")
                .body(body.unwrap())
                .unwrap()
        }
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    let megabyte = Bytes::from(vec![7u8; 1 << 20]);
    tx.send(megabyte.clone()).unwrap();
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let res = client
        .get(proxy.url("/big").parse().unwrap())
        .await
        .unwrap();
    let mut body = res.into_body();
    let mut seen = 0;
    tokio::time::timeout(Duration::from_secs(30), async {
        while seen < megabyte.len() {
            seen += body
                .frame()
                .await
                .unwrap()
                .unwrap()
                .into_data()
                .unwrap()
                .len();
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "only {seen} bytes came through before the upstream sent more\n{}",
            proxy.output()
        )
    });
    tx.send(megabyte.clone()).unwrap();
    drop(tx);
    seen += body.collect().await.unwrap().to_bytes().len();
    assert_eq!(seen, 2 << 20);

    let (up_tx, mut up_rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let stream = futures_util::stream::poll_fn(move |cx| {
        up_rx
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b))))
    });
    let upload: hyper_util::client::legacy::Client<_, StreamBody<_>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    up_tx.send(Bytes::from(vec![1u8; 65536])).unwrap();
    let req = Request::post(proxy.url("/upload"))
        .body(StreamBody::new(stream))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(30), upload.request(req))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the upload was held by the proxy instead of streamed\n{}",
                proxy.output()
            )
        })
        .unwrap();
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&text).starts_with("first chunk "),
        "{text:?}"
    );
    drop(up_tx);
}

#[tokio::test]
async fn an_upload_slower_than_the_response_timeout_still_goes_through() {
    let origin = Origin::start(|req| async move {
        let n = req.into_body().collect().await.unwrap().to_bytes().len();
        Response::builder()
            .body(full(format!("received {n} bytes")))
            .unwrap()
    })
    .await;
    let proxy = Cobrowse::with_config(&Cobrowse::config_for(
        &origin.url(),
        "[proxy]\nresponse_timeout_secs = 1\n",
    ))
    .await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|b| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b))))
    });
    let client: hyper_util::client::legacy::Client<_, StreamBody<_>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = Request::post(proxy.url("/upload"))
        .body(StreamBody::new(stream))
        .unwrap();
    let sending = tokio::spawn(async move {
        for _ in 0..3 {
            tx.send(Bytes::from(vec![0u8; 1000])).unwrap();
            // Deliberately slower than the response timeout in total.
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
    });
    let res = client.request(req).await.unwrap();
    sending.await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{}", proxy.output());
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "received 3000 bytes"
    );
}

/// The synchronous agent is on every page's critical path: it goes out
/// compressed to a browser that takes brotli or gzip (the same script once
/// decoded), as it is to a client that names no coding, and every answer
/// says it varies by `Accept-Encoding`, so no cache hands one client's
/// coding to another.
#[tokio::test]
async fn the_agent_is_served_compressed_to_whoever_takes_it() {
    let origin = Origin::start(|_req| async move {
        Response::builder()
            .header("content-type", "text/html")
            .body(full("<html><head></head><body>hi</body></html>"))
            .unwrap()
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    let src = super::headers::agent_src(&get(&proxy.url("/")).await.text());
    let url = proxy.url(&src);

    let plain = get(&url).await;
    assert_eq!(plain.status, StatusCode::OK, "{}", proxy.output());
    assert_eq!(
        plain.header("content-encoding"),
        "",
        "no Accept-Encoding: identity"
    );
    assert_eq!(plain.header("vary"), "Accept-Encoding");
    assert!(
        plain.text().starts_with("(function () {"),
        "{}",
        plain.text()
    );

    for (accept, coding) in [
        ("gzip, deflate, br, zstd", "br"),
        ("br", "br"),
        ("gzip", "gzip"),
        ("gzip;q=1, br;q=0.5", "gzip"),
        ("br;q=0, gzip", "gzip"),
        ("*", "br"),
        ("*;q=0", ""),
        ("identity", ""),
        ("deflate", ""),
    ] {
        let got = fetch("GET", &url, &[("accept-encoding", accept)]).await;
        assert_eq!(got.status, StatusCode::OK, "{accept}");
        assert_eq!(
            got.header("content-encoding"),
            coding,
            "Accept-Encoding: {accept}"
        );
        assert_eq!(got.header("vary"), "Accept-Encoding", "{accept}");
        assert_eq!(
            got.header("cache-control"),
            "public, max-age=31536000, immutable",
            "{accept}"
        );
        assert_eq!(
            got.header("content-length"),
            got.body.len().to_string(),
            "{accept}"
        );
        if !coding.is_empty() {
            assert!(
                got.body.len() * 3 < plain.body.len(),
                "{coding}: {} of {} bytes",
                got.body.len(),
                plain.body.len()
            );
        }
        assert!(
            decode(coding, &got.body).await == plain.body,
            "Accept-Encoding: {accept}: the decoded body is not the script"
        );
        // A revalidation names the representation it holds.
        let etag = got.header("etag").to_string();
        let again = fetch(
            "GET",
            &url,
            &[("accept-encoding", accept), ("if-none-match", &etag)],
        )
        .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{accept}");
        assert_eq!(again.header("etag"), etag, "{accept}");
        assert_eq!(again.header("vary"), "Accept-Encoding", "{accept}");
    }
    // HEAD says what GET would send.
    let head = fetch("HEAD", &url, &[("accept-encoding", "gzip")]).await;
    assert_eq!(head.header("content-encoding"), "gzip");
    assert!(head.body.is_empty());
}
