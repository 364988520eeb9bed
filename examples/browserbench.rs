//! Rows B7 and B8 of docs/performance.md, in headless Chromium:
//!
//! ```text
//! # B7: keystrokes in the customer's field until the operator's copy of
//! # the field has them, idle and (after `--`) while another command runs
//! cargo run --release --example browserbench -- keystroke \
//!     --site http://127.0.0.1:8080 --console http://127.0.0.1:8081 \
//!     --user demo --password demo --field '#q' --keys 200 \
//!     -- target/release/examples/load --addr 127.0.0.1:8080 ...
//!
//! # B8: what the agent costs a page, loaded direct and through the proxy,
//! # and the longest task on the customer's page when a call starts
//! cargo run --release --example browserbench -- agentcost \
//!     --direct http://127.0.0.1:18081/large-form.html \
//!     --proxied http://127.0.0.1:8080/large-form.html \
//!     --console http://127.0.0.1:8081 --user demo --password demo
//! ```
//!
//! B7's clock: each keystroke counts from its `keydown` event's time stamp
//! in the customer's page to the `input` event the operator's agent fires
//! on its copy of the field once it has set the value, both read as
//! `performance.timeOrigin + …` (one browser, one clock). The next key is
//! pressed once the previous one has arrived.
//!
//! B8's load cost is Chromium's own accounting (`Performance.getMetrics`:
//! `ScriptDuration`, `TaskDuration`) of a fresh browser context per load,
//! read once the page has been quiet for a second, proxied against direct.
//! The call's cost is every `longtask` (over 50 ms) the customer's page
//! reports from the click on "Call operator" until the operator sees the
//! page and a second more; with `--profile`, a sampling profile of that
//! time names the functions it was spent in, and one of a proxied load
//! (from the navigation until a second after `load`) those of the load.

#[path = "support/chromium.rs"]
mod chromium;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chromium::Chromium;
use chromiumoxide::Page;
use chromiumoxide::browser::Browser;
use chromiumoxide::cdp::browser_protocol::input::{
    DispatchKeyEventParams, DispatchKeyEventType, DispatchMouseEventParams, DispatchMouseEventType,
    MouseButton,
};
use chromiumoxide::cdp::browser_protocol::network;
use chromiumoxide::cdp::browser_protocol::performance as perf;
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use chromiumoxide::cdp::js_protocol::profiler;
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;

#[derive(Parser, Debug)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    #[arg(long, global = true, default_value = "/usr/bin/chromium")]
    chromium: String,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// B7: keystroke to the operator's field.
    Keystroke {
        /// The site through cobrowse, e.g. `http://127.0.0.1:8080`.
        #[arg(long)]
        site: String,
        /// The page to share, a path under `--site`, with the field.
        #[arg(long, default_value = "/")]
        path: String,
        /// A text field of that page.
        #[arg(long, default_value = "#q")]
        field: String,
        #[command(flatten)]
        operator: Operator,
        #[arg(long, default_value_t = 200)]
        keys: usize,
        /// Also print where each keystroke's time went, stage by stage
        /// (hooks in the pages that cost a few µs per key).
        #[arg(long)]
        stages: bool,
        /// A command to run during a second round of keys (B5's load):
        /// the round starts once it prints a line starting with `steady`.
        #[arg(last = true)]
        under: Vec<String>,
    },
    /// B8: the agent's main-thread cost on load and at call start.
    Agentcost {
        /// The page direct from the site.
        #[arg(long)]
        direct: String,
        /// The same page through cobrowse.
        #[arg(long)]
        proxied: String,
        #[command(flatten)]
        operator: Operator,
        /// Loads each way.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Calls started (each on a fresh load).
        #[arg(long, default_value_t = 3)]
        calls: usize,
        /// Print where the time of one proxied load and of each call went
        /// (sampling profiles).
        #[arg(long)]
        profile: bool,
    },
}

#[derive(clap::Args, Debug)]
struct Operator {
    /// The operator console's origin, e.g. `http://127.0.0.1:8081`.
    #[arg(long)]
    console: String,
    #[arg(long)]
    user: String,
    #[arg(long)]
    password: String,
}

const WIDGET: &str = "document.querySelector('[data-cobrowse=\"widget\"]')?.shadowRoot";
const CONSOLE_STATUS: &str =
    "(document.querySelector('[data-cobrowse=\"status\"]')?.textContent || '')";

async fn eval(page: &Page, js: &str) -> Result<Value> {
    Ok(page
        .evaluate(js)
        .await
        .with_context(|| format!("evaluating {js}"))?
        .into_value()
        .unwrap_or(Value::Null))
}

/// Evaluates `js` in the console's content frame (the shared page, of the
/// site's origin: out of reach of the console's own scripts) once it has
/// an agent; null before.
async fn eval_shared(console: &Page, js: &str) -> Result<Value> {
    Ok(eval_in_content_frame(console, js, false)
        .await?
        .unwrap_or(Value::Null))
}

/// Evaluates `js`, a promise, in the console's content frame and waits
/// for its value.
async fn eval_shared_awaited(console: &Page, js: &str) -> Result<Value> {
    match eval_in_content_frame(console, js, true).await? {
        Some(v) => Ok(v),
        None => bail!("no content frame with an agent in the console"),
    }
}

/// `js`'s value (awaited if `awaited`) in the first of the console's
/// frames that has an agent and gives a value; `None` if none does.
async fn eval_in_content_frame(console: &Page, js: &str, awaited: bool) -> Result<Option<Value>> {
    let main = console.mainframe().await?;
    for id in console.frames().await? {
        if Some(&id) == main.as_ref() {
            continue;
        }
        let Some(context) = console.frame_execution_context(id).await? else {
            continue;
        };
        let params = EvaluateParams::builder()
            .expression(format!("window.__cobrowse ? ({js}) : null"))
            .context_id(context)
            .await_promise(awaited)
            .return_by_value(true)
            .build()
            .map_err(anyhow::Error::msg)?;
        if let Ok(r) = console.evaluate_expression(params).await
            && let Some(v) = r.value()
            && !v.is_null()
        {
            return Ok(Some(v.clone()));
        }
    }
    Ok(None)
}

/// Where `until` looks: the page's top document or the console's
/// content frame.
#[derive(Clone, Copy, PartialEq)]
enum In {
    Top,
    Shared,
}

/// Waits until `js` is truthy in `page`; fails naming `what` and the page.
async fn until(page: &Page, what: &str, js: &str, secs: u64) -> Result<Value> {
    until_in(page, In::Top, what, js, secs).await
}

async fn until_in(page: &Page, place: In, what: &str, js: &str, secs: u64) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let js = format!("(() => {{ try {{ return {js}; }} catch (e) {{ return null; }} }})()");
        let v = match place {
            In::Top => eval(page, &js).await?,
            In::Shared => eval_shared(page, &js).await?,
        };
        if !matches!(v, Value::Null | Value::Bool(false)) {
            return Ok(v);
        }
        if Instant::now() > deadline {
            let text = eval(
                page,
                "location.href + ': ' + document.body?.innerText.slice(0, 500)",
            )
            .await?;
            bail!("{what}: not within {secs} s; the page: {text}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A real click (trusted events) on the element `js` names.
async fn click(page: &Page, what: &str, js: &str) -> Result<()> {
    let rect = until(
        page,
        what,
        &format!("(() => {{ const r = ({js}).getBoundingClientRect(); return r.width ? [r.x + r.width / 2, r.y + r.height / 2] : null; }})()"),
        30,
    )
    .await?;
    let (x, y) = (
        rect[0].as_f64().unwrap_or(0.0),
        rect[1].as_f64().unwrap_or(0.0),
    );
    for kind in [
        DispatchMouseEventType::MousePressed,
        DispatchMouseEventType::MouseReleased,
    ] {
        let e = DispatchMouseEventParams::builder()
            .r#type(kind)
            .x(x)
            .y(y)
            .button(MouseButton::Left)
            .click_count(1)
            .build()
            .map_err(anyhow::Error::msg)?;
        page.execute(e).await?;
    }
    Ok(())
}

async fn key(page: &Page, ch: char) -> Result<()> {
    let s = ch.to_string();
    let down = DispatchKeyEventParams::builder()
        .r#type(DispatchKeyEventType::KeyDown)
        .key(s.clone())
        .text(s.clone())
        .unmodified_text(s.clone())
        .build()
        .map_err(anyhow::Error::msg)?;
    page.execute(down).await?;
    let up = DispatchKeyEventParams::builder()
        .r#type(DispatchKeyEventType::KeyUp)
        .key(s)
        .build()
        .map_err(anyhow::Error::msg)?;
    page.execute(up).await?;
    Ok(())
}

/// A page in a browser context of its own (own cache, cookies, process).
async fn fresh_page(browser: &Browser) -> Result<Page> {
    let context = browser
        .create_browser_context(CreateBrowserContextParams::default())
        .await?;
    let params = CreateTargetParams::builder()
        .url("about:blank")
        .browser_context_id(context)
        .build()
        .map_err(anyhow::Error::msg)?;
    Ok(browser.new_page(params).await?)
}

/// An operator signed in to the console and waiting for calls.
async fn operator_waits(browser: &Browser, op: &Operator) -> Result<Page> {
    let page = fresh_page(browser).await?;
    page.goto(format!(
        "{}/__cobrowse/console",
        op.console.trim_end_matches('/')
    ))
    .await?;
    let form = "document.querySelector('form[data-cobrowse=\"login\"]')";
    until(&page, "the login form", form, 30).await?;
    eval(
        &page,
        &format!(
            "{form}.querySelector('input[name=\"user\"]').value = {}; {form}.querySelector('input[name=\"password\"]').value = {}; true",
            serde_json::to_string(&op.user)?,
            serde_json::to_string(&op.password)?
        ),
    )
    .await?;
    click(
        &page,
        "the sign-in button",
        &format!("{form}.querySelector('button[type=\"submit\"]')"),
    )
    .await?;
    until(
        &page,
        "the console to wait for calls",
        &format!("{CONSOLE_STATUS}.startsWith('Waiting for calls')"),
        60,
    )
    .await?;
    Ok(page)
}

/// The customer presses "Call operator", the operator responds; returns
/// once the operator's content frame shares the page.
async fn call(customer: &Page, operator: &Page) -> Result<()> {
    let button = format!("{WIDGET}.querySelector('[data-cobrowse=\"call\"]')");
    until(
        customer,
        "the call button",
        &format!("{button}.textContent === 'Call operator'"),
        30,
    )
    .await?;
    click(customer, "the call button", &button).await?;
    let respond = "document.querySelector('[data-cobrowse=\"respond\"]')";
    until(
        operator,
        "Respond to be enabled",
        &format!("!{respond}.disabled"),
        60,
    )
    .await?;
    click(operator, "Respond", respond).await?;
    until_in(
        operator,
        In::Shared,
        "the shared page in the console",
        "!!window.__cobrowse.engine",
        60,
    )
    .await?;
    until(customer, "the widget to say connected", &format!("{WIDGET}.querySelector('[data-cobrowse=\"status\"]').textContent.includes('Connected with')"), 60).await?;
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

// Stage marks for `--stages`, each `timeOrigin + now()` by value length
// (the n-th key makes the field n long): in the customer's page, the
// key's `keydown` and `input` running (the latter before the agent's
// listeners) and the agent's WebSocket send of the value;
// in the console, the WebSocket message read; in its content frame, the
// relayed message read. The hooks wrap `WebSocket.prototype.send` and
// `MessageEvent.prototype.data`, which the agent's code goes through.
const CUSTOMER_STAGES: &str = r#"(() => { if (window.__stages) return true; const S = window.__stages = {};
  const t = () => performance.timeOrigin + performance.now();
  const el = document.querySelector(SEL);
  el.addEventListener('keydown', () => { S['keydown ' + (el.value.length + 1)] = t(); }, true);
  window.addEventListener('input', (e) => { if (e.target === el) S['input ' + [...el.value].length] = t(); }, true);
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (d) {
    if (typeof d === 'string' && d.includes('"fn":"value"')) {
      try { const m = JSON.parse(d); const k = 'send ' + [...m.args[0]].length; if (!(k in S)) S[k] = t(); } catch (e) {}
    }
    return send.apply(this, arguments);
  };
  return true; })()"#;
const CONSOLE_STAGES: &str = r#"(() => { if (window.__stages) return true; const S = window.__stages = {};
  const t = () => performance.timeOrigin + performance.now();
  const D = Object.getOwnPropertyDescriptor(MessageEvent.prototype, 'data');
  Object.defineProperty(MessageEvent.prototype, 'data', { configurable: true, enumerable: D.enumerable, get() {
    const v = D.get.call(this);
    if (this.target instanceof WebSocket && typeof v === 'string' && v.includes('"fn":"value"')) {
      try { const k = 'ws ' + [...JSON.parse(v).args[0]].length; if (!(k in S)) S[k] = t(); } catch (e) {}
    }
    return v;
  } });
  return true; })()"#;
const FRAME_STAGES: &str = r#"(() => { if (window.__stages) return true; const S = window.__stages = {};
  const t = () => performance.timeOrigin + performance.now();
  const D = Object.getOwnPropertyDescriptor(MessageEvent.prototype, 'data');
  Object.defineProperty(MessageEvent.prototype, 'data', { configurable: true, enumerable: D.enumerable, get() {
    const v = D.get.call(this);
    const c = v && v.cobrowse === 'console' && v.type === 'command' && v.command;
    if (c && c.fn === 'value' && typeof c.args[0] === 'string') {
      const k = 'message ' + [...c.args[0]].length; if (!(k in S)) S[k] = t();
    }
    return v;
  } });
  return true; })()"#;

/// The time (ms, the browser's monotonic clock) of each value command's
/// WebSocket frame in `events`, by the value's length, as they come.
type Frames = std::sync::Arc<std::sync::Mutex<HashMap<usize, f64>>>;
fn frames(
    mut events: impl futures_util::Stream<Item = (f64, String)> + Unpin + Send + 'static,
) -> Frames {
    let seen = Frames::default();
    let into = seen.clone();
    tokio::spawn(async move {
        while let Some((at, payload)) = events.next().await {
            let Ok(m) = serde_json::from_str::<Value>(&payload) else {
                continue;
            };
            if m["fn"] != "value" {
                continue;
            }
            if let Some(v) = m["args"][0].as_str() {
                into.lock()
                    .expect("frames")
                    .entry(v.chars().count())
                    .or_insert(at);
            }
        }
    });
    seen
}

/// One round of `keys` keystrokes; their latencies in ms, sorted.
async fn keystrokes(
    customer: &Page,
    operator: &Page,
    field: &str,
    keys: usize,
    stages: Option<&str>,
) -> Result<Vec<f64>> {
    let sel = serde_json::to_string(field)?;
    // With `--stages`, the browser's network stack says when each value's
    // WebSocket frame left the customer's browser and reached the
    // console's: the hub's share of the hop between them.
    let mut wire = None;
    if stages.is_some() {
        eval(customer, &CUSTOMER_STAGES.replace("SEL", &sel)).await?;
        eval(operator, CONSOLE_STAGES).await?;
        eval_shared(operator, FRAME_STAGES).await?;
        for page in [customer, operator] {
            page.execute(network::EnableParams::default()).await?;
        }
        let sent = frames(
            customer
                .event_listener::<network::EventWebSocketFrameSent>()
                .await?
                .map(|e| {
                    (
                        e.timestamp.inner() * 1000.0,
                        e.response.payload_data.clone(),
                    )
                }),
        );
        let received = frames(
            operator
                .event_listener::<network::EventWebSocketFrameReceived>()
                .await?
                .map(|e| {
                    (
                        e.timestamp.inner() * 1000.0,
                        e.response.payload_data.clone(),
                    )
                }),
        );
        wire = Some((sent, received));
    }
    // The operator's copy of the field records each value the agent sets
    // (one listener on each side for every round).
    // `__benchArrived(n)` resolves with the time the field was n long, so
    // the wait for each key is one call that the page answers, not a poll
    // that keeps the operator's renderer and the browser busy meanwhile.
    let hooked = eval_shared(operator, &format!(
        "(() => {{ const el = document.querySelector({sel}); if (!window.__bench) {{ \
         el.addEventListener('input', () => {{ const at = performance.timeOrigin + performance.now(); window.__bench.push([el.value, at]); \
         const n = [...el.value].length; for (const w of window.__benchWaits.filter((w) => w[0] === n)) w[1](at); }}); \
         window.__benchArrived = (n) => new Promise((resolve) => {{ const r = window.__bench.find((r) => [...r[0]].length === n); \
         if (r) resolve(r[1]); else window.__benchWaits.push([n, resolve]); }}); }} \
         window.__bench = []; window.__benchWaits = []; return true; }})()"
    )).await?;
    if hooked != Value::Bool(true) {
        bail!("no field {field} in the operator's copy of the page");
    }
    eval(customer, &format!(
        "(() => {{ if (!window.__bench) document.querySelector({sel}).addEventListener('keydown', (e) => \
         window.__bench.push(performance.timeOrigin + e.timeStamp), true); window.__bench = []; return true; }})()"
    )).await?;
    click(
        customer,
        "the field",
        &format!("document.querySelector({sel})"),
    )
    .await?;
    let start = eval(
        customer,
        &format!("document.querySelector({sel}).value.length"),
    )
    .await?
    .as_u64()
    .unwrap_or(0) as usize;
    // With `--stages`, the console's own main-thread time over the round
    // (Chromium's accounting of its tasks; the content frame, of another
    // origin, is a process of its own and not in it).
    let console_before = match stages {
        Some(_) => {
            operator.execute(perf::EnableParams::default()).await?;
            Some(metrics(operator).await?)
        }
        None => None,
    };
    let mut out = Vec::with_capacity(keys);
    for i in 0..keys {
        let ch = (b'a' + (i % 26) as u8) as char;
        key(customer, ch).await?;
        let n = start + i + 1;
        let arrived = match tokio::time::timeout(
            Duration::from_secs(10),
            eval_shared_awaited(operator, &format!("window.__benchArrived({n})")),
        )
        .await
        {
            Ok(arrived) => arrived?,
            Err(_) => {
                let seen =
                    eval_shared(operator, "JSON.stringify(window.__bench.slice(-3))").await?;
                bail!(
                    "keystroke {} did not reach the operator's side within 10 s; the last values there: {seen}",
                    i + 1
                );
            }
        };
        let sent = eval(customer, &format!("window.__bench[{i}]")).await?;
        out.push(arrived.as_f64().unwrap_or(f64::NAN) - sent.as_f64().unwrap_or(f64::NAN));
    }
    if let Some(row) = stages {
        let pressed = eval(customer, "window.__bench").await?;
        let customer_at = eval(customer, "window.__stages").await?;
        let console_at = eval(operator, "window.__stages").await?;
        let frame_at = eval_shared(operator, "window.__stages").await?;
        let applied = eval_shared(operator, "window.__bench").await?;
        let at = |v: &Value, k: String| v.get(&k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        // Per stage, the time from the mark before it.
        let (sent, received) = wire.take().expect("listening with --stages");
        let (sent, received) = (
            sent.lock().expect("frames").clone(),
            received.lock().expect("frames").clone(),
        );
        let names = [
            "key event to the customer's page",
            "the browser's text input to the field's `input` event",
            "customer's agent to its WebSocket send",
            "network, hub and the console's page",
            "console to its content frame",
            "content frame's agent applies",
        ];
        let mut spans: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        for i in 0..keys {
            let n = start + i + 1;
            let marks = [
                pressed.get(i).and_then(Value::as_f64).unwrap_or(f64::NAN),
                at(&customer_at, format!("keydown {n}")),
                at(&customer_at, format!("input {n}")),
                at(&customer_at, format!("send {n}")),
                at(&console_at, format!("ws {n}")),
                at(&frame_at, format!("message {n}")),
                applied
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .find(|r| r[0].as_str().map(|v| v.chars().count()) == Some(n))
                    })
                    .and_then(|r| r[1].as_f64())
                    .unwrap_or(f64::NAN),
            ];
            for (s, w) in spans.iter_mut().zip(marks.windows(2)) {
                s.push(w[1] - w[0]);
            }
        }
        let mut hub: Vec<f64> = (0..keys)
            .map(|i| {
                let n = start + i + 1;
                match (sent.get(&n), received.get(&n)) {
                    (Some(a), Some(b)) => b - a,
                    _ => f64::NAN,
                }
            })
            .collect();
        for (name, mut s) in names.iter().zip(spans) {
            s.sort_by(f64::total_cmp);
            report(&format!("stage ({row}) {name}:"), &s);
        }
        if let Some(before) = console_before {
            let after = metrics(operator).await?;
            let per_key = |k: &str| {
                (after.get(k).unwrap_or(&0.0) - before.get(k).unwrap_or(&0.0)) / keys as f64
            };
            println!(
                "stage ({row}) the console's main thread per key: tasks {:.2} ms, script {:.2}, style {:.2}, layout {:.2}",
                per_key("TaskDuration"),
                per_key("ScriptDuration"),
                per_key("RecalcStyleDuration"),
                per_key("LayoutDuration")
            );
        }
        hub.sort_by(f64::total_cmp);
        report(
            &format!(
                "stage ({row})   of which the hub and loopback, frame sent to frame received:"
            ),
            &hub,
        );
    }
    // Fresh for the next round.
    eval(
        customer,
        &format!(
            "(() => {{ const el = document.querySelector({sel}); el.blur(); return true; }})()"
        ),
    )
    .await?;
    out.sort_by(f64::total_cmp);
    Ok(out)
}

fn report(row: &str, lat: &[f64]) {
    println!(
        "{row} n {} p50 {:.1} p95 {:.1} p99 {:.1} max {:.1}",
        lat.len(),
        percentile(lat, 0.50),
        percentile(lat, 0.95),
        percentile(lat, 0.99),
        percentile(lat, 1.0)
    );
}

/// B7 on the page at `url` (the site's, through cobrowse).
async fn keystroke(
    browser: &Browser,
    url: &str,
    field: &str,
    op: &Operator,
    keys: usize,
    stages: bool,
    under: &[String],
) -> Result<()> {
    let operator = operator_waits(browser, op).await?;
    let customer = fresh_page(browser).await?;
    customer.goto(url).await?;
    call(&customer, &operator).await?;
    let idle = keystrokes(
        &customer,
        &operator,
        field,
        keys,
        stages.then_some("B7 idle"),
    )
    .await?;
    report("B7 idle", &idle);
    if let Some((cmd, args)) = under.split_first() {
        let mut child = tokio::process::Command::new(cmd)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {cmd}"))?;
        let mut lines = BufReader::new(child.stdout.take().context("its stdout")?).lines();
        loop {
            match lines.next_line().await? {
                Some(l) if l.starts_with("steady") => break,
                Some(_) => {}
                None => bail!("{cmd} ended before it was steady"),
            }
        }
        // Its output keeps flowing while we measure.
        let drain = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let loaded = keystrokes(
            &customer,
            &operator,
            field,
            keys,
            stages.then_some("B7 load"),
        )
        .await;
        let still_running = child.try_wait()?.is_none();
        let _ = child.kill().await;
        drain.abort();
        let loaded = loaded?;
        if !still_running {
            bail!("{cmd} ended during the round under load");
        }
        report("B7 load", &loaded);
    }
    Ok(())
}

/// Chromium's counters of the page, in ms.
async fn metrics(page: &Page) -> Result<HashMap<String, f64>> {
    let m = page.execute(perf::GetMetricsParams::default()).await?;
    Ok(m.result
        .metrics
        .iter()
        .map(|m| (m.name.clone(), m.value * 1000.0))
        .collect())
}

/// Loads `url` in `page` and waits for its `load` event and a second more,
/// for the work a page does after it.
async fn load_and_settle(page: &Page, url: &str) -> Result<()> {
    page.goto(url).await?;
    until(
        page,
        "the load event",
        "performance.getEntriesByType('navigation')[0]?.loadEventEnd > 0",
        60,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

/// Loads `url` in a fresh context and reads its counters once it is quiet.
async fn load_cost(browser: &Browser, url: &str) -> Result<(f64, f64)> {
    let page = fresh_page(browser).await?;
    page.execute(perf::EnableParams::default()).await?;
    load_and_settle(&page, url).await?;
    let m = metrics(&page).await?;
    let _ = page.close().await;
    Ok((
        m.get("ScriptDuration").copied().unwrap_or(f64::NAN),
        m.get("TaskDuration").copied().unwrap_or(f64::NAN),
    ))
}

/// A sampling profile of one load of `url` in a fresh context. The
/// profiler starts on a page of the same origin without the agent (the
/// proxy's health check), so the load stays in the profiled renderer.
async fn load_profile(browser: &Browser, url: &str) -> Result<()> {
    let page = fresh_page(browser).await?;
    let origin = url::Url::parse(url)?.origin().ascii_serialization();
    page.goto(format!("{origin}/__cobrowse/healthz")).await?;
    page.execute(profiler::EnableParams::default()).await?;
    page.execute(profiler::SetSamplingIntervalParams::new(100))
        .await?;
    page.execute(profiler::StartParams::default()).await?;
    load_and_settle(&page, url).await?;
    let p = page
        .execute(profiler::StopParams::default())
        .await?
        .result
        .profile;
    println!("load profile:");
    print_profile(&p);
    let _ = page.close().await;
    Ok(())
}

async fn agentcost(
    browser: &Browser,
    direct: &str,
    proxied: &str,
    op: &Operator,
    runs: usize,
    calls: usize,
    profile: bool,
) -> Result<()> {
    if profile {
        load_profile(browser, proxied).await?;
    }
    let (mut ds, mut dt, mut ps, mut pt) = (vec![], vec![], vec![], vec![]);
    // One of each first, not counted: the servers' first use.
    load_cost(browser, direct).await?;
    load_cost(browser, proxied).await?;
    for _ in 0..runs {
        let (s, t) = load_cost(browser, direct).await?;
        ds.push(s);
        dt.push(t);
        let (s, t) = load_cost(browser, proxied).await?;
        ps.push(s);
        pt.push(t);
        println!(
            "load direct script {:.1} task {:.1}  proxied script {s:.1} task {t:.1}",
            ds[ds.len() - 1],
            dt[dt.len() - 1]
        );
    }
    let (ds, dt, ps, pt) = (median(ds), median(dt), median(ps), median(pt));
    println!(
        "B8 load direct_script {ds:.1} proxied_script {ps:.1} script_cost {:.1} direct_task {dt:.1} proxied_task {pt:.1} task_cost {:.1}",
        ps - ds,
        pt - dt
    );

    let mut longest = vec![];
    for _ in 0..calls {
        let operator = operator_waits(browser, op).await?;
        let customer = fresh_page(browser).await?;
        customer.goto(proxied).await?;
        until(
            &customer,
            "the load event",
            "performance.getEntriesByType('navigation')[0]?.loadEventEnd > 0",
            60,
        )
        .await?;
        let elements = eval(&customer, "document.querySelectorAll('*').length").await?;
        eval(&customer, "(() => { window.__bench = []; new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__bench.push(e.duration); }).observe({ type: 'longtask' }); return true; })()").await?;
        if profile {
            customer.execute(profiler::EnableParams::default()).await?;
            customer
                .execute(profiler::SetSamplingIntervalParams::new(200))
                .await?;
            customer.execute(profiler::StartParams::default()).await?;
        }
        let t0 = Instant::now();
        call(&customer, &operator).await?;
        let connected = t0.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let tasks = eval(&customer, "window.__bench").await?;
        let tasks: Vec<f64> = tasks
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let max = tasks.iter().copied().fold(0.0, f64::max);
        println!(
            "call: {elements} elements, connected in {} ms, long tasks {tasks:?}",
            connected.as_millis()
        );
        longest.push(max);
        if profile {
            let p = customer
                .execute(profiler::StopParams::default())
                .await?
                .result
                .profile;
            print_profile(&p);
        }
        let _ = customer.close().await;
        let _ = operator.close().await;
    }
    let worst = longest.iter().copied().fold(0.0, f64::max);
    println!(
        "B8 call longest_task {:.1} worst {worst:.1} calls {calls}",
        median(longest)
    );
    Ok(())
}

/// The functions with the most samples of their own, in ms.
fn print_profile(p: &profiler::Profile) {
    let dt = if p.samples.as_ref().is_some_and(|s| !s.is_empty()) {
        (p.end_time - p.start_time) / p.samples.as_ref().map_or(1, Vec::len) as f64 / 1000.0
    } else {
        0.0
    };
    let name_of = |n: &profiler::ProfileNode| {
        let f = &n.call_frame;
        let name = if f.function_name.is_empty() {
            "(anonymous)"
        } else {
            &f.function_name
        };
        format!(
            "{name} {}:{}",
            f.url.rsplit('/').next().unwrap_or(""),
            f.line_number + 1
        )
    };
    let by_id: HashMap<i64, &profiler::ProfileNode> = p.nodes.iter().map(|n| (n.id, n)).collect();
    let parent: HashMap<i64, i64> = p
        .nodes
        .iter()
        .flat_map(|n| n.children.iter().flatten().map(move |c| (*c, n.id)))
        .collect();
    let mut own: HashMap<String, f64> = HashMap::new();
    for n in &p.nodes {
        let mut name = name_of(n);
        // A built-in (no script of its own) is named with its caller.
        if n.call_frame.url.is_empty()
            && let Some(caller) = parent.get(&n.id).and_then(|id| by_id.get(id))
        {
            name = format!("{name} from {}", name_of(caller));
        }
        *own.entry(name).or_default() += n.hit_count.unwrap_or(0) as f64 * dt;
    }
    let mut top: Vec<_> = own
        .into_iter()
        .filter(|(k, _)| !k.starts_with("(idle)") && !k.starts_with("(program)"))
        .collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (name, ms) in top.iter().take(12) {
        println!("  profile {ms:7.1} ms  {name}");
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let chromium = Chromium::launch(
        &args.chromium,
        "browserbench",
        &[
            // Tabs in the background still run at full speed.
            "disable-background-timer-throttling",
            "disable-renderer-backgrounding",
            "disable-backgrounding-occluded-windows",
        ],
    )
    .await?;
    let browser = &chromium.browser;
    let result = match &args.mode {
        Mode::Keystroke {
            site,
            path,
            field,
            operator,
            keys,
            stages,
            under,
        } => {
            let url = format!("{}{path}", site.trim_end_matches('/'));
            keystroke(browser, &url, field, operator, *keys, *stages, under).await
        }
        Mode::Agentcost {
            direct,
            proxied,
            operator,
            runs,
            calls,
            profile,
        } => agentcost(browser, direct, proxied, operator, *runs, *calls, *profile).await,
    };
    chromium.close().await;
    result
}
