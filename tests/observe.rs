//! Operating it: every metric series is there from the start and moves under
//! load; log lines are JSON with `--log-format json`, and the lines of one
//! request or one hub connection share its id.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::proxy::get;
use crate::support::origin::Origin;
use crate::support::{Cobrowse, wait_for};
use cobrowse::telemetry::{METRICS, Metric};

const WAIT: Duration = Duration::from_secs(10);

/// An upstream nobody listens on.
const NO_UPSTREAM: &str = "http://127.0.0.1:9";

const PAGE: &str = "<!doctype html><html><head><title>t</title></head><body><a href=\"/next\">next</a><p>hello</p></body></html>";

async fn scrape(proxy: &Cobrowse) -> String {
    let got = get(&proxy.url("/__cobrowse/metrics")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    got.text()
}

/// The value of the sample `name{labels}` whose labels include all of
/// `labels`; `None` when no such line exists.
pub(crate) fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').map_or((series, ""), |(n, r)| (n, r));
        if n != name
            || !labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        {
            return None;
        }
        value.parse().ok()
    })
}

/// Every combination of a metric's label values.
fn combinations(m: &Metric) -> Vec<Vec<(&'static str, &'static str)>> {
    let mut sets = vec![Vec::new()];
    for (key, values) in m.labels {
        sets = sets
            .into_iter()
            .flat_map(|s: Vec<_>| {
                values
                    .iter()
                    .map(move |v| [s.clone(), vec![(*key, *v)]].concat())
            })
            .collect();
    }
    sets
}

#[tokio::test]
async fn a_fresh_process_shows_every_series() {
    let proxy = Cobrowse::start(&["--upstream", NO_UPSTREAM]).await;
    let text = scrape(&proxy).await;
    let mut missing = Vec::new();
    for m in METRICS {
        assert!(
            text.contains(&format!("# HELP {} ", m.name)),
            "{} has no help text:\n{text}",
            m.name
        );
        for labels in combinations(m) {
            let name = match m.kind {
                cobrowse::telemetry::Kind::Histogram => format!("{}_count", m.name),
                _ => m.name.to_string(),
            };
            if sample(&text, &name, &labels).is_none() {
                missing.push(format!("{name}{labels:?}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "series missing on a fresh process: {missing:#?}\n{text}"
    );
    for process in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
    ] {
        assert!(
            sample(&text, process, &[]).is_some_and(|v| v > 0.0),
            "{process} missing or zero:\n{text}"
        );
    }
    assert!(
        sample(&text, "process_cpu_seconds_total", &[]).is_some(),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "cobrowse_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0),
        "{text}"
    );
    // Nothing has happened yet.
    assert_eq!(
        sample(
            &text,
            "cobrowse_http_requests_total",
            &[("route", "proxy"), ("status", "2xx")]
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn under_load_counters_move_and_histograms_fill() {
    let origin = Origin::pages(&[
        ("/", "text/html; charset=utf-8", PAGE),
        ("/style.css", "text/css", "a { color: red }"),
    ])
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    let before = scrape(&proxy).await;
    const N: usize = 40;
    let mut pages = Vec::new();
    for _ in 0..N {
        let url = proxy.url("/");
        pages.push(tokio::spawn(async move { get(&url).await }));
    }
    for p in pages {
        assert_eq!(p.await.unwrap().status, 200);
    }
    assert_eq!(get(&proxy.url("/missing")).await.status, 404);
    assert_eq!(get(&proxy.url("/__cobrowse/agent.js")).await.status, 200);
    // A hub connection and a call.
    let mut req = proxy
        .ws_url("/__cobrowse/ws?role=customer")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", format!("http://{}", proxy.addr).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text(r#"{"type":"call"}"#)).await.unwrap();
    ws.send(Message::text("not json")).await.unwrap();

    let text = wait_for(
        "the call and the refusal to be counted",
        WAIT,
        || async {
            let text = scrape(&proxy).await;
            (sample(&text, "cobrowse_hub_calls_total", &[]) == Some(1.0)
                && sample(&text, "cobrowse_hub_errors_total", &[("code", "bad_json")]) == Some(1.0))
            .then_some(text)
        },
        || proxy.output(),
    )
    .await;
    let at_least = |name: &str, labels: &[(&str, &str)], min: f64| {
        let v = sample(&text, name, labels)
            .unwrap_or_else(|| panic!("{name}{labels:?} missing:\n{text}"));
        assert!(
            v >= min,
            "{name}{labels:?} is {v}, expected at least {min}\nbefore:\n{before}\nafter:\n{text}"
        );
    };
    at_least(
        "cobrowse_http_requests_total",
        &[("route", "proxy"), ("status", "2xx")],
        N as f64,
    );
    at_least(
        "cobrowse_http_requests_total",
        &[("route", "proxy"), ("status", "4xx")],
        1.0,
    );
    at_least(
        "cobrowse_http_requests_total",
        &[("route", "assets"), ("status", "2xx")],
        1.0,
    );
    at_least(
        "cobrowse_http_requests_total",
        &[("route", "hub"), ("status", "1xx")],
        1.0,
    );
    at_least(
        "cobrowse_http_request_duration_seconds_count",
        &[("route", "proxy")],
        N as f64 + 1.0,
    );
    at_least(
        "cobrowse_http_request_duration_seconds_bucket",
        &[("route", "proxy"), ("le", "+Inf")],
        N as f64 + 1.0,
    );
    at_least(
        "cobrowse_http_response_bytes_total",
        &[("route", "proxy")],
        (N * PAGE.len()) as f64,
    );
    at_least(
        "cobrowse_proxy_upstream_bytes_total",
        &[("direction", "received")],
        (N * PAGE.len()) as f64,
    );
    at_least("cobrowse_proxy_rewrite_seconds_count", &[], N as f64);
    at_least("cobrowse_hub_connections", &[], 1.0);
    at_least("cobrowse_hub_sessions", &[], 1.0);
    at_least("cobrowse_hub_queued_calls", &[], 1.0);
    assert!(
        sample(&text, "cobrowse_proxy_rewrite_seconds_sum", &[]).is_some_and(|s| s > 0.0),
        "{text}"
    );
}

/// The stderr lines as JSON; panics naming the first line that is not.
fn json_lines(proxy: &Cobrowse) -> Vec<Value> {
    proxy
        .stderr()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!("a log line is not JSON ({e}): {l}\n---\n{}", proxy.stderr())
            })
        })
        .collect()
}

/// The `id` of the span named `span` a log line was written in.
fn span_id<'a>(line: &'a Value, span: &str) -> Option<&'a str> {
    line["spans"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == span)?["id"]
        .as_str()
}

#[tokio::test]
async fn json_logs_carry_request_and_connection_ids() {
    let proxy = Cobrowse::start(&["--upstream", NO_UPSTREAM, "--log-format", "json"]).await;
    // Two requests that fail upstream: each logs the failure and its answer.
    for path in ["/first", "/second"] {
        assert_eq!(get(&proxy.url(path)).await.status, 502);
    }
    let mut req = proxy
        .ws_url("/__cobrowse/ws?role=customer")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", format!("http://{}", proxy.addr).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text("not json")).await.unwrap();
    let refused = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("an answer")
        .unwrap()
        .unwrap();
    assert!(
        refused.to_text().unwrap().contains("bad_json"),
        "{refused:?}"
    );
    drop(ws);

    wait_for(
        "the hub connection's close to be logged",
        WAIT,
        || async {
            let lines: Vec<Value> = proxy
                .stderr()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            lines
                .iter()
                .any(|l| l["fields"]["message"] == "hub connection closed")
                .then_some(())
        },
        || proxy.stderr(),
    )
    .await;
    let lines = json_lines(&proxy);

    // Lines by request id, and which path each id answered.
    let mut by_request: HashMap<&str, Vec<&Value>> = HashMap::new();
    for l in &lines {
        if let Some(id) = span_id(l, "request") {
            by_request.entry(id).or_default().push(l);
        }
    }
    for path in ["/first", "/second"] {
        let (id, of_request) = by_request
            .iter()
            .find(|(_, ls)| ls.iter().any(|l| l["spans"][0]["path"] == path))
            .unwrap_or_else(|| panic!("no request span for {path}:\n{}", proxy.stderr()));
        let messages: Vec<&str> = of_request
            .iter()
            .filter_map(|l| l["fields"]["message"].as_str())
            .collect();
        assert!(
            messages.contains(&"upstream request failed") && messages.contains(&"answered"),
            "{path} ({id}): {messages:?}\n{}",
            proxy.stderr()
        );
        assert!(
            of_request.iter().all(|l| l["spans"][0]["path"] == path),
            "request id {id} shared by another request:\n{}",
            proxy.stderr()
        );
    }
    assert_eq!(
        by_request.keys().filter(|id| id.len() == 16).count(),
        by_request.len(),
        "ids are 16 hex digits: {:?}",
        by_request.keys()
    );

    // The hub connection's lines share its own id.
    let of_connection: Vec<&Value> = lines
        .iter()
        .filter(|l| span_id(l, "connection").is_some())
        .collect();
    let ids: std::collections::HashSet<&str> = of_connection
        .iter()
        .filter_map(|l| span_id(l, "connection"))
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "one connection, one id: {ids:?}\n{}",
        proxy.stderr()
    );
    let messages: Vec<&str> = of_connection
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    for expected in [
        "hub connection opened",
        "message refused",
        "hub connection closed",
    ] {
        assert!(
            messages.contains(&expected),
            "`{expected}` not in the connection's span: {messages:?}\n{}",
            proxy.stderr()
        );
    }
}

#[tokio::test]
async fn logs_are_human_readable_by_default() {
    let proxy = Cobrowse::start(&["--upstream", NO_UPSTREAM]).await;
    assert_eq!(get(&proxy.url("/x")).await.status, 502);
    let text = wait_for(
        "the answer to be logged",
        WAIT,
        || async { proxy.stderr().contains("answered").then(|| proxy.stderr()) },
        || proxy.output(),
    )
    .await;
    let line = text.lines().find(|l| l.contains("answered")).unwrap();
    assert!(
        !line.trim_start().starts_with('{') && line.contains("request{id="),
        "{line}"
    );
}
