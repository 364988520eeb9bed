//! Several sites, HTTPS and HTTP/2 on both sides, WebSockets and
//! server-sent events, and what the browser sees when an upstream fails.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_tungstenite::tungstenite::Message;

use super::{fetch, get};
use crate::support::origin::{Origin, channel_body, full, self_signed};
use crate::support::{Cobrowse, TempDir};

#[tokio::test]
async fn the_host_picks_the_site_and_links_between_sites_follow() {
    let b = Origin::pages(&[(
        "/",
        "text/html",
        "<html><head></head><body>site B</body></html>",
    )])
    .await;
    let b_url = b.url();
    let a = Origin::start(move |_| {
        let b_url = b_url.clone();
        async move {
            Response::builder()
                .header("content-type", "text/html")
                .body(full(format!(
                    "<html><head></head><body>site A <a href=\"{b_url}/x\">to B</a></body></html>"
                )))
                .unwrap()
        }
    })
    .await;
    let config = format!(
        "[[sites]]\nhosts = [\"a.test\"]\nupstream = \"{}\"\n[[sites]]\nhosts = [\"b.test\"]\nupstream = \"{}\"\n",
        a.url(),
        b.url()
    );
    let proxy = Cobrowse::with_config(&config).await;
    let port = proxy.addr.port();
    let on_a = fetch(
        "GET",
        &proxy.url("/"),
        &[("host", &format!("a.test:{port}"))],
    )
    .await
    .text();
    assert!(on_a.contains("site A"), "{on_a}\n{}", proxy.output());
    assert!(
        on_a.contains(&format!("<a href=\"http://b.test:{port}/x\">")),
        "a link to site B goes to B's host on the proxy: {on_a}"
    );
    let on_b = fetch(
        "GET",
        &proxy.url("/"),
        &[("host", &format!("b.test:{port}"))],
    )
    .await
    .text();
    assert!(on_b.contains("site B"), "{on_b}");
    assert_eq!((a.requests(), b.requests()), (1, 1));
}

#[tokio::test]
async fn https_and_http2_upstream_with_an_extra_ca() {
    let (cert, key) = self_signed();
    let origin = Origin::start_tls(&cert, &key, |req| async move {
        Response::builder()
            .header("content-type", "text/html")
            .body(full(format!(
                "<html><head></head><body>over {:?}</body></html>",
                req.version()
            )))
            .unwrap()
    })
    .await;
    let dir = TempDir::new();
    let ca = dir.path.join("ca.pem");
    std::fs::write(&ca, &cert).unwrap();

    let trusted = Cobrowse::with_config(&format!(
        "upstream = \"{}\"\nupstream_ca = \"{}\"\n",
        origin.https_url(),
        ca.display()
    ))
    .await;
    let got = get(&trusted.url("/")).await;
    assert!(
        got.text().contains("over HTTP/2.0"),
        "{}\n{}",
        got.text(),
        trusted.output()
    );
    assert!(got.text().contains("/__cobrowse/agent.js"));

    // Without the CA the certificate is not trusted: a readable 502.
    let untrusted = Cobrowse::start(&["--upstream", &origin.https_url()]).await;
    let got = get(&untrusted.url("/")).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert!(
        got.text().contains("could not be reached"),
        "{}",
        got.text()
    );
}

#[tokio::test]
async fn listener_tls_speaks_http2_by_alpn() {
    let origin = Origin::pages(&[(
        "/",
        "text/html",
        "<html><head></head><body>hello</body></html>",
    )])
    .await;
    let (cert, key) = self_signed();
    let dir = TempDir::new();
    std::fs::write(dir.path.join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.path.join("key.pem"), &key).unwrap();
    let config = format!(
        "upstream = \"{}\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        origin.url(),
        dir.path.join("cert.pem").display(),
        dir.path.join("key.pem").display()
    );
    let proxy = Cobrowse::with_config(&config).await;

    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert.as_bytes()).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http2()
        .build();
    let client: hyper_util::client::legacy::Client<_, Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
    let res = client
        .get(
            format!("https://localhost:{}/", proxy.addr.port())
                .parse()
                .unwrap(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", proxy.output()));
    assert_eq!(res.version(), Version::HTTP_2);
    let body =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(
        body.contains("/__cobrowse/agent.js") && body.contains("hello"),
        "{body}"
    );
}

#[tokio::test]
async fn site_websockets_are_tunnelled_both_ways() {
    let origin = Origin::start(|mut req: Request<hyper::body::Incoming>| async move {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .unwrap()
            .as_bytes()
            .to_vec();
        let host = req.headers()["host"].to_str().unwrap().to_string();
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let upgraded = on.await.unwrap();
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            ws.send(Message::text(format!("hello from {host}")))
                .await
                .unwrap();
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_text() {
                    ws.send(Message::text(format!("echo {}", msg.to_text().unwrap())))
                        .await
                        .unwrap();
                }
            }
        });
        Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header(
                "sec-websocket-accept",
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key),
            )
            .body(full(""))
            .unwrap()
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async(proxy.ws_url("/live")),
    )
    .await
    .expect("handshake timed out")
    .unwrap_or_else(|e| panic!("{e}\n{}", proxy.output()));
    let hello = ws.next().await.unwrap().unwrap();
    assert_eq!(
        hello.to_text().unwrap(),
        format!("hello from {}", origin.addr),
        "the upstream sees its own host"
    );
    for i in 0..3 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echo.to_text().unwrap(), format!("echo m{i}"));
    }
}

#[tokio::test]
async fn server_sent_events_arrive_one_by_one() {
    let (tx, body) = channel_body();
    let body = std::sync::Mutex::new(Some(body));
    let origin = Origin::start(move |_| {
        let body = body.lock().unwrap().take().unwrap();
        async move {
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(body)
                .unwrap()
        }
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    let client: hyper_util::client::legacy::Client<_, Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let req = Request::get(proxy.url("/events"))
        .header("accept-encoding", "gzip, br")
        .body(Empty::new())
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert!(
        res.headers().get("content-encoding").is_none(),
        "events are not compressed (held in a codec)"
    );
    let mut body = res.into_body();
    for i in 0..3 {
        let event = format!("data: event {i}\n\n");
        tx.send(Bytes::from(event.clone())).unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(30), body.frame())
            .await
            .unwrap_or_else(|_| panic!("event {i} was held back\n{}", proxy.output()))
            .unwrap()
            .unwrap();
        assert_eq!(frame.data_ref().unwrap().as_ref(), event.as_bytes());
    }
}

#[tokio::test]
async fn upstream_failures_get_a_readable_page_never_a_hang() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let proxy = Cobrowse::start(&["--upstream", &format!("http://{closed}")]).await;
    let got = tokio::time::timeout(Duration::from_secs(15), get(&proxy.url("/")))
        .await
        .expect("hung");
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert_eq!(got.header("content-type"), "text/html; charset=utf-8");
    assert!(
        got.text().contains("502 Bad Gateway") && got.text().contains("could not be reached"),
        "{}",
        got.text()
    );
    // The upstream's address is internal: the log has it, the page does not.
    assert!(
        !got.text().contains(&closed.port().to_string()),
        "the 502 page names the upstream: {}",
        got.text()
    );
    assert!(
        proxy.output().contains(&closed.to_string()),
        "{}",
        proxy.output()
    );

    let silent = Origin::start(|_| std::future::pending::<Response<_>>()).await;
    let proxy = Cobrowse::with_config(&Cobrowse::config_for(
        &silent.url(),
        "[proxy]\nresponse_timeout_secs = 1\n",
    ))
    .await;
    let got = tokio::time::timeout(Duration::from_secs(15), get(&proxy.url("/")))
        .await
        .expect("hung");
    assert_eq!(got.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        got.text().contains("did not answer in time"),
        "{}",
        got.text()
    );
    assert!(
        !got.text().contains(&silent.addr.port().to_string()),
        "the 504 page names the upstream: {}",
        got.text()
    );
    assert!(
        proxy.output().contains("upstream response timed out"),
        "{}",
        proxy.output()
    );
}

/// One raw HTTP/1.1 request (`request_line` and the Host header) on its own
/// connection: status line, headers and body as text.
async fn raw(proxy: &Cobrowse, request_line: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let req = format!(
        "{request_line}\r\nHost: {}\r\nConnection: close\r\n\r\n",
        proxy.addr
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut out))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_request_target_star_and_connect_never_go_upstream() {
    let origin = Origin::pages(&[("/", "text/plain", "home")]).await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;

    // About the server itself: answered here.
    let got = raw(&proxy, "OPTIONS * HTTP/1.1").await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}\n{}", proxy.output());
    let allow = got
        .lines()
        .find_map(|l| {
            l.strip_prefix("allow: ")
                .or_else(|| l.strip_prefix("Allow: "))
        })
        .unwrap_or_default();
    assert!(allow.contains("GET") && allow.contains("OPTIONS"), "{got}");
    // Any other method with `*`: not a request for anything.
    for method in ["GET", "POST", "HEAD", "DELETE"] {
        let got = raw(&proxy, &format!("{method} * HTTP/1.1")).await;
        assert!(
            got.starts_with("HTTP/1.1 400"),
            "{method} *: {got}\n{}",
            proxy.output()
        );
    }
    // Nor is this a forward proxy's tunnel to a host of the client's choosing.
    let got = raw(&proxy, "CONNECT example.com:443 HTTP/1.1").await;
    assert!(
        got.starts_with("HTTP/1.1 405"),
        "CONNECT: {got}\n{}",
        proxy.output()
    );
    assert_eq!(
        origin.requests(),
        0,
        "a `*` or CONNECT request reached the upstream"
    );
    assert!(
        !proxy.output().contains("upstream request failed"),
        "a `*` request was sent somewhere:\n{}",
        proxy.output()
    );
    // Ordinary paths still go through.
    assert!(raw(&proxy, "GET / HTTP/1.1").await.ends_with("home"));
    assert_eq!(origin.requests(), 1);
}
