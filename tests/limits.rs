//! The running binary under abuse and faults: slow and idle clients under a
//! low open-file limit, decompression bombs from the upstream, an upstream
//! that stalls mid-body, and shutdown with connections open.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::origin::{Origin, full};
use crate::support::{Cobrowse, wait_for};

/// A connection to `to` from the loopback address `from` (127.0.0.0/8 is
/// all loopback), so a test can play several clients.
async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    socket.connect(to).await
}

/// `GET path` on a fresh connection from `from`; the status line and how
/// long the whole exchange took.
async fn timed_get(from: &str, to: SocketAddr, path: &str) -> Result<(String, Duration), String> {
    let started = Instant::now();
    let exchange = async {
        let mut s = connect_from(from, to)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&raw).to_string();
        Ok::<_, String>(text.lines().next().unwrap_or("").to_string())
    };
    match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Ok(Ok(status)) => Ok((status, started.elapsed())),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("no answer in 5 s".into()),
    }
}

/// Whether the server closed `stream` (EOF or reset) within `timeout`.
async fn closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn idle_and_slow_clients_under_a_low_file_limit_leave_healthz_answering() {
    let config = Cobrowse::config_for(
        "http://127.0.0.1:9",
        "[server]\nheader_read_timeout_secs = 2\nidle_timeout_secs = 120\nmax_connections_per_address = 100\n",
    );
    let proxy = Cobrowse::with_config_and_file_limit(&config, 512).await;
    let addr = proxy.addr;

    // The attacker, from 127.0.0.2: more idle connections than the process
    // has descriptors, and slow ones sending a header byte every second.
    let mut idle = Vec::new();
    for _ in 0..420 {
        match connect_from("127.0.0.2", addr).await {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connecting: {e}"),
        }
    }
    let (stop_slow, _) = tokio::sync::watch::channel(false);
    let mut slow_tasks = Vec::new();
    for _ in 0..100 {
        let mut s = connect_from("127.0.0.2", addr).await.unwrap();
        let mut stop = stop_slow.subscribe();
        slow_tasks.push(tokio::spawn(async move {
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            {
                if s.write_all(&[*byte]).await.is_err() || *stop.borrow() {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => break,
                }
            }
        }));
    }

    // Someone else's health check still gets through, quickly, while the
    // attacker's connections are open.
    let mut seen = Vec::new();
    for _ in 0..5 {
        let got = timed_get("127.0.0.1", addr, "/__cobrowse/healthz").await;
        seen.push(format!("{got:?}"));
        match got {
            Ok((status, took)) => {
                assert!(
                    status.contains("200"),
                    "healthz answered {status}\nseen: {seen:?}\n{}",
                    proxy.output()
                );
                assert!(
                    took < Duration::from_secs(1),
                    "healthz took {took:?}\nseen: {seen:?}\n{}",
                    proxy.output()
                );
            }
            Err(e) => panic!(
                "healthz failed: {e}\nseen: {seen:?}\n{}",
                tail(&proxy.output())
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A client trickling its headers from its own address is closed by the
    // header-read timeout (2 s here), though it keeps sending.
    let mut trickling = Vec::new();
    for _ in 0..20 {
        let mut s = connect_from("127.0.0.3", addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        trickling.push(s);
    }
    let feeding = tokio::spawn(async move {
        let mut open = trickling;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            for s in &mut open {
                let _ = s.write_all(b"X").await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        open
    });
    let mut trickling = feeding.await.unwrap();
    let mut still_open = 0;
    for s in &mut trickling {
        if !closed_within(s, Duration::from_millis(100)).await {
            still_open += 1;
        }
    }
    assert_eq!(
        still_open,
        0,
        "{still_open} of 20 trickling clients still open after 15 s\n{}",
        tail(&proxy.output())
    );

    let _ = stop_slow.send(true);
    for t in slow_tasks {
        let _ = t.await;
    }
    drop(idle);
}

/// The last lines of the binary's output (a flood of log lines would bury
/// the failure).
fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    let n = lines.len();
    format!(
        "({n} lines; last 40)\n{}",
        lines[n.saturating_sub(40)..].join("\n")
    )
}

/// `data` gzipped.
async fn gzip(chunks: impl Iterator<Item = Bytes>) -> Vec<u8> {
    use async_compression::tokio::write::GzipEncoder;
    let mut encoder = GzipEncoder::new(Vec::new());
    for chunk in chunks {
        encoder.write_all(&chunk).await.unwrap();
    }
    encoder.shutdown().await.unwrap();
    encoder.into_inner()
}

/// A GET through the proxy with a plain client: the status, how many body
/// bytes arrived, and the body's error (`None` when it ended cleanly).
async fn fetch_counting(url: &str) -> (u16, u64, Option<String>) {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let res = client.get(url.parse().unwrap()).await.unwrap();
    let status = res.status().as_u16();
    let mut body = res.into_body();
    let mut n = 0;
    loop {
        match body.frame().await {
            None => return (status, n, None),
            Some(Ok(f)) => n += f.data_ref().map_or(0, |d| d.len() as u64),
            Some(Err(e)) => return (status, n, Some(format!("{e:?}"))),
        }
    }
}

#[tokio::test]
async fn decompression_bombs_from_the_upstream_keep_memory_bounded() {
    // 1 GiB of zeros gzipped is about 1 MB; gzipped again, about 2 KB.
    let zeros = Bytes::from(vec![0u8; 1024 * 1024]);
    let single = Bytes::from(gzip(std::iter::repeat_n(zeros, 1024)).await);
    let double = Bytes::from(gzip(std::iter::once(single.clone())).await);
    assert!(
        single.len() < 1_100_000 && double.len() < 4096,
        "{} and {} bytes",
        single.len(),
        double.len()
    );
    let origin = Origin::start(move |req| {
        let (single, double) = (single.clone(), double.clone());
        async move {
            let (encoding, body) = match req.uri().path() {
                "/single" => ("gzip", single),
                "/double" => ("gzip, gzip", double),
                _ => (
                    "identity",
                    Bytes::from_static(b"<html><head></head><body>warm</body></html>"),
                ),
            };
            Response::builder()
                .header("content-type", "text/html")
                .header("content-encoding", encoding)
                .body(full(body))
                .unwrap()
        }
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    // The first page settles what every request allocates anyway.
    let (status, _, error) = fetch_counting(&proxy.url("/warm")).await;
    assert_eq!((status, error), (200, None));
    let before = proxy.status_kib("VmHWM");
    for path in ["/single", "/double"] {
        let (status, received, error) = fetch_counting(&proxy.url(path)).await;
        let grown = proxy.status_kib("VmHWM").saturating_sub(before);
        println!(
            "{path}: status {status}, {received} bytes, error {error:?}, peak RSS grown by {grown} KiB"
        );
        assert!(
            grown < 64 * 1024,
            "{path}: peak RSS grew by {grown} KiB\n{}",
            tail(&proxy.output())
        );
        assert_eq!(status, 200, "{path}");
        assert!(
            error.is_some(),
            "{path}: {received} bytes passed off as the whole document"
        );
        // 32 MiB decoded at most; the rewrite may change the bytes, not their
        // order of magnitude.
        assert!(
            received <= 128 * 1024 * 1024,
            "{path}: {received} bytes past the decoded bound"
        );
    }
    wait_for(
        "the abort to be logged with its cause",
        Duration::from_secs(5),
        || async { proxy.output().contains("max_decoded_bytes").then_some(()) },
        || tail(&proxy.output()),
    )
    .await;
}

/// An upstream on a raw socket that sends its response headers and the
/// start of the body, then nothing, holding the connection open.
async fn stalling_upstream(
    head: &'static str,
    start: &'static str,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let mut buf = [0u8; 4096];
            let mut request = Vec::new();
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(start.as_bytes()).await;
            held.push(s);
        }
    });
    (addr, task)
}

/// The raw response to `GET path` on its own connection, read until the
/// proxy closes it (or `timeout`): the bytes and whether it closed.
async fn raw_get(proxy: &Cobrowse, path: &str, timeout: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", proxy.addr).as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + timeout;
    let closed = loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
        }
    };
    (String::from_utf8_lossy(&raw).to_string(), closed)
}

#[tokio::test]
async fn an_upstream_that_stalls_mid_body_is_cut_and_the_client_sees_it_incomplete() {
    let (plain, _p) = stalling_upstream(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n",
        "first bytes",
    )
    .await;
    let (page, _h) = stalling_upstream(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n",
        "20\r\n<html><head></head><body>start! \r\n",
    )
    .await;
    for (upstream, what) in [(plain, "passed-through body"), (page, "rewritten page")] {
        let proxy = Cobrowse::with_config(&Cobrowse::config_for(
            &format!("http://{upstream}"),
            "[proxy]\nbody_idle_timeout_secs = 2\n",
        ))
        .await;
        let started = Instant::now();
        let (raw, closed) = raw_get(&proxy, "/", Duration::from_secs(20)).await;
        let took = started.elapsed();
        assert!(
            closed,
            "{what}: still open after {took:?}; received:\n{raw}\n{}",
            tail(&proxy.output())
        );
        assert!(raw.starts_with("HTTP/1.1 200"), "{what}: {raw}");
        assert!(
            raw.contains("start") || raw.contains("first bytes"),
            "{what}: what the upstream sent arrived: {raw}"
        );
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            assert!(
                !body.ends_with("0\r\n\r\n"),
                "{what}: the chunked body was ended as complete: {raw:?}"
            );
        } else {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap();
            assert!(
                body.len() < length,
                "{what}: {} of {length} bytes",
                body.len()
            );
        }
        wait_for(
            "the cut to be logged",
            Duration::from_secs(5),
            || async { proxy.output().contains("body idle").then_some(()) },
            || format!("{what}\n{}", tail(&proxy.output())),
        )
        .await;
    }
}

/// An upstream that answers a page with its head and then one byte every
/// 200 ms, forever: never idle, never done.
async fn trickling_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut request = Vec::new();
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100000\r\n\r\n<html><head></head><body>";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                // Bounded: a minute at most, whatever the proxy does.
                for _ in 0..300 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if s.write_all(b".").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_page_that_trickles_is_cut_at_its_deadline_and_the_client_sees_it_incomplete() {
    let (upstream, _task) = trickling_upstream().await;
    let proxy = Cobrowse::with_config(&Cobrowse::config_for(
        &format!("http://{upstream}"),
        "[proxy]\nbody_idle_timeout_secs = 2\ndocument_timeout_secs = 3\n",
    ))
    .await;
    let started = Instant::now();
    let (raw, closed) = raw_get(&proxy, "/", Duration::from_secs(20)).await;
    let took = started.elapsed();
    assert!(
        closed,
        "still open after {took:?} though the idle timeout never fires; received:\n{raw}\n{}",
        tail(&proxy.output())
    );
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "a rewritten page is chunked: {head}"
    );
    assert!(
        !body.ends_with("0\r\n\r\n"),
        "the chunked body was ended as complete: {raw:?}"
    );
    wait_for(
        "the cut to be logged",
        Duration::from_secs(5),
        || async { proxy.output().contains("not whole in time").then_some(()) },
        || tail(&proxy.output()),
    )
    .await;
}

#[tokio::test]
async fn sigterm_sends_1001_to_hub_sockets_and_does_not_wait_on_idle_connections() {
    let mut proxy = Cobrowse::with_config(&Cobrowse::config_for(
        "http://127.0.0.1:9",
        "[server]\nshutdown_grace_secs = 30\nheader_read_timeout_secs = 30\n",
    ))
    .await;
    let mut request = proxy
        .ws_url("/__cobrowse/ws?role=customer")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", format!("http://{}", proxy.addr).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("hub socket");

    // An idle keep-alive connection (one request answered), and one that
    // sent half its headers.
    let mut keep_alive = TcpStream::connect(proxy.addr).await.unwrap();
    keep_alive
        .write_all(
            format!(
                "GET /__cobrowse/healthz HTTP/1.1\r\nHost: {}\r\n\r\n",
                proxy.addr
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = keep_alive.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let mut half = TcpStream::connect(proxy.addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();

    let started = Instant::now();
    proxy.terminate();
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(frame)) => return Ok(frame),
                Ok(_) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("the hub socket ended without a close frame".to_string())
    })
    .await;
    let frame = match close {
        Ok(Ok(frame)) => frame,
        other => panic!("no close frame ({other:?})\n{}", proxy.output()),
    };
    assert_eq!(
        frame.map(|f| u16::from(f.code)),
        Some(1001),
        "{}",
        proxy.output()
    );
    // Well within the grace period and the header-read timeout (30 s each):
    // nothing waits on the idle and the half-sent connection.
    let exited = proxy.exited_within(Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(
        exited.is_some(),
        "still running {took:?} after SIGTERM (grace 30 s)\n{}",
        proxy.output()
    );
    assert!(
        closed_within(&mut keep_alive, Duration::from_secs(1)).await
            && closed_within(&mut half, Duration::from_secs(1)).await
    );
}

#[tokio::test]
async fn a_tls_handshake_that_never_completes_is_closed() {
    let (cert, key) = crate::support::origin::self_signed();
    let dir = crate::support::TempDir::new();
    std::fs::write(dir.path.join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.path.join("key.pem"), &key).unwrap();
    let config = Cobrowse::config_for(
        "http://127.0.0.1:9",
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n[server]\ntls_handshake_timeout_secs = 1\nheader_read_timeout_secs = 60\nidle_timeout_secs = 60\n",
            dir.path.join("cert.pem").display(),
            dir.path.join("key.pem").display()
        ),
    );
    let proxy = Cobrowse::with_config(&config).await;
    // One client says nothing, one sends the start of a ClientHello and
    // stops: both are closed by the handshake timeout (1 s), not the others.
    let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
    let mut partial = TcpStream::connect(proxy.addr).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let started = Instant::now();
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        "silent client still open\n{}",
        tail(&proxy.output())
    );
    assert!(
        closed_within(&mut partial, Duration::from_secs(1)).await,
        "half a ClientHello still open\n{}",
        tail(&proxy.output())
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
}

/// A crowd of logins at once hashes a few at a time: the process never
/// holds the password hash's working memory (19 MiB each) for all of them,
/// and the threads that serve everything else keep a core.
#[tokio::test]
async fn a_crowd_of_logins_is_hashed_a_few_at_a_time() {
    use crate::support::OPERATOR_USER;
    let proxy = Cobrowse::with_config(&Cobrowse::config_for("http://127.0.0.1:9", "")).await;
    let proxy = &proxy;
    let login = |user: String| async move { login_status(proxy, &user).await };
    assert_eq!(
        login(OPERATOR_USER.to_string()).await,
        204,
        "{}",
        proxy.output()
    );
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let at_once = cores.saturating_sub(1).max(1) as u64;
    let crowd = 4 * (at_once + 2);
    let peak_before = proxy.status_kib("VmHWM");
    // Unknown users, each from the same address: the per-address limit
    // lets a burst of 30 through, more than the crowd.
    let statuses =
        futures_util::future::join_all((0..crowd.min(24)).map(|i| login(format!("nobody-{i}"))))
            .await;
    assert!(
        statuses.iter().all(|s| *s == 401),
        "{statuses:?}\n{}",
        proxy.output()
    );
    let peak_grew = proxy.status_kib("VmHWM").saturating_sub(peak_before);
    println!(
        "peak resident memory grew by {peak_grew} KiB over {} logins at once, {at_once} hashed at a time",
        crowd.min(24)
    );
    assert!(
        peak_grew < (at_once + 1) * 20 * 1024,
        "peak resident memory grew by {peak_grew} KiB: more than {at_once} hashes at once\n{}",
        tail(&proxy.output())
    );
}

/// Checking a password takes argon2's 19 MiB of working memory. Logins that
/// have come and gone must give it back: a login flood must not leave the
/// process holding a copy per thread that ever hashed.
#[tokio::test]
async fn logins_give_back_the_password_hashs_memory() {
    use crate::support::OPERATOR_USER;
    let proxy = Cobrowse::with_config(&Cobrowse::config_for("http://127.0.0.1:9", "")).await;
    let login = |user: &'static str| login_status(&proxy, user);
    // The first login settles what any login allocates anyway.
    assert_eq!(login(OPERATOR_USER).await, 204, "{}", proxy.output());
    let before = proxy.status_kib("VmRSS");
    // Known and unknown users cost the same hash; several at once run on
    // several threads.
    for _ in 0..3 {
        let statuses = futures_util::future::join_all(
            ["op", "nobody-1", "nobody-2", "nobody-3", "op", "nobody-4"].map(login),
        )
        .await;
        assert!(
            statuses.iter().all(|s| [204, 401].contains(s)),
            "{statuses:?}\n{}",
            proxy.output()
        );
    }
    let grown = proxy.status_kib("VmRSS").saturating_sub(before);
    println!("resident memory grew by {grown} KiB after 18 logins");
    assert!(
        grown < 16 * 1024,
        "resident memory grew by {grown} KiB after the logins ended\n{}",
        tail(&proxy.output())
    );
}

/// The status of a login on the console's door with the operators' test
/// password.
async fn login_status(proxy: &Cobrowse, user: &str) -> u16 {
    let origin = format!("http://{}", proxy.console_addr);
    let headers = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", origin.as_str()),
    ];
    let body = format!("user={user}&password={}", crate::support::OPERATOR_PASSWORD);
    crate::hub::console_http(proxy, "POST", "/__cobrowse/login", &headers, &body)
        .await
        .0
}
