//! Page load in Chromium through the proxy against direct (row B9 of
//! docs/performance.md): DOMContentLoaded and `load` of each page, with a
//! cold cache (a fresh browser context) and a warm one (the same context,
//! the page again), on loopback and with added round-trip delay.
//!
//! ```text
//! cargo run --release --example pageload -- \
//!     --direct http://127.0.0.1:18081 --proxied http://127.0.0.1:18083 \
//!     --pages pages.txt --runs 5 --rtt-ms 50
//! ```
//!
//! `--pages` lists paths (one a line) under both bases. With `--rtt-ms`,
//! both are reached through a relay in this process that holds every chunk
//! half the delay in each direction and a new connection's first bytes one
//! round trip more (its TCP handshake), as a distant server would.
//! Direct and proxied loads alternate, so both see the same moments of a
//! noisy machine. Prints per-page medians and, last, one line of ratios
//! (median over pages of proxied / direct) for `benches/run.sh`.

#[path = "support/chromium.rs"]
mod chromium;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chromium::Chromium;
use chromiumoxide::browser::Browser;
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

#[derive(Parser, Debug)]
struct Args {
    /// The site itself, e.g. `http://127.0.0.1:18081`.
    #[arg(long)]
    direct: String,
    /// The same site through cobrowse.
    #[arg(long)]
    proxied: String,
    /// A file listing the pages' paths, one a line.
    #[arg(long)]
    pages: String,
    /// Loads of each page, each way, cold and warm.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Added round-trip delay in milliseconds (0: plain loopback).
    #[arg(long, default_value_t = 0)]
    rtt_ms: u64,
    #[arg(long, default_value = "/usr/bin/chromium")]
    chromium: String,
    /// After each cold load, print to stderr when each resource was asked
    /// for and when it ended (resource timing, ms from the navigation's
    /// start): what waits for what.
    #[arg(long)]
    resources: bool,
}

/// JS: the document's response and each resource's start and end, ms from
/// the navigation's start.
const RESOURCES: &str = "(() => { const n = performance.getEntriesByType('navigation')[0]; \
    return [['document', Math.round(n.requestStart), Math.round(n.responseEnd)]].concat(performance.getEntriesByType('resource') \
    .map((e) => [e.name.split('?')[0].split('/').pop().slice(0, 40), Math.round(e.startTime), Math.round(e.responseEnd)])) \
    .map((r) => `${r[0]} ${r[1]}-${r[2]}`).join(', '); })()";

/// DOMContentLoaded and load, in milliseconds from the navigation's start.
#[derive(Clone, Copy, Default)]
struct Timing {
    dcl: f64,
    load: f64,
}

/// A cold load and a warm one of the same page.
type Loads = (Timing, Timing);

/// Forwards connections on a new loopback port to `target`, each chunk held
/// `rtt / 2` in each direction, a connection's first bytes one `rtt` more.
async fn delaying_relay(target: SocketAddr, rtt: Duration) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let accepted = Instant::now();
                let Ok(upstream) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (ur, uw) = upstream.into_split();
                // The handshake's round trip comes before the request.
                let up = pump(cr, uw, rtt / 2, accepted + rtt);
                let down = pump(ur, cw, rtt / 2, accepted);
                let _ = tokio::join!(up, down);
            });
        }
    });
    Ok(addr)
}

/// Copies `from` to `to`, each chunk released `delay` after it arrived (and
/// not before `ready`), in order.
async fn pump(
    mut from: impl AsyncReadExt + Unpin + Send + 'static,
    mut to: impl AsyncWriteExt + Unpin + Send + 'static,
    delay: Duration,
    ready: Instant,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let at = Instant::now().max(ready) + delay;
                    if tx.send((at, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    while let Some((at, bytes)) = rx.recv().await {
        tokio::time::sleep_until(at).await;
        if to.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    reader.abort();
}

/// The base URL as reached through a delaying relay, or as it is.
async fn reach(base: &str, rtt: Duration) -> Result<String> {
    if rtt.is_zero() {
        return Ok(base.trim_end_matches('/').to_string());
    }
    let url = url::Url::parse(base).context("a base URL")?;
    let target: SocketAddr = format!(
        "{}:{}",
        url.host_str().context("a host")?,
        url.port_or_known_default().context("a port")?
    )
    .parse()
    .context("the base must be an IP address and port")?;
    let relay = delaying_relay(target, rtt).await?;
    Ok(format!("http://{relay}"))
}

/// Loads `url` in `page` and reads the navigation timing once `load` has
/// ended.
async fn load(page: &chromiumoxide::Page, url: &str) -> Result<Timing> {
    page.goto(url)
        .await
        .with_context(|| format!("loading {url}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: serde_json::Value = page
            .evaluate(
                "(() => { const n = performance.getEntriesByType('navigation')[0]; \
                 return n && n.loadEventEnd > 0 ? [n.domContentLoadedEventEnd - n.startTime, n.loadEventEnd - n.startTime, location.href] : null; })()",
            )
            .await?
            .into_value()
            .unwrap_or(serde_json::Value::Null);
        if let Some(a) = v.as_array() {
            let href = a[2].as_str().unwrap_or("");
            if href != url {
                bail!("{url} ended at {href}");
            }
            return Ok(Timing {
                dcl: a[0].as_f64().unwrap_or(0.0),
                load: a[1].as_f64().unwrap_or(0.0),
            });
        }
        if Instant::now() > deadline {
            bail!("{url}: no load event within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A cold load (a fresh browser context: empty cache, no connections) and
/// a warm one (the same page again in that context, after `about:blank`).
async fn cold_and_warm(browser: &Browser, url: &str, resources: bool) -> Result<Loads> {
    let context = browser
        .create_browser_context(CreateBrowserContextParams::default())
        .await?;
    let params = CreateTargetParams::builder()
        .url("about:blank")
        .browser_context_id(context.clone())
        .build()
        .map_err(anyhow::Error::msg)?;
    let page = browser.new_page(params).await?;
    let cold = load(&page, url).await?;
    if resources {
        let list = page.evaluate(RESOURCES).await?.into_value::<String>()?;
        eprintln!("{url} cold: load {:.0}: {list}", cold.load);
    }
    page.goto("about:blank").await?;
    let warm = load(&page, url).await?;
    let _ = page.close().await;
    let _ = browser.dispose_browser_context(context).await;
    Ok((cold, warm))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let pages: Vec<String> = std::fs::read_to_string(&args.pages)
        .with_context(|| format!("reading {}", args.pages))?
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if pages.is_empty() || args.runs == 0 {
        bail!("no pages in {}, or --runs 0", args.pages);
    }
    let rtt = Duration::from_millis(args.rtt_ms);
    let direct = reach(&args.direct, rtt).await?;
    let proxied = reach(&args.proxied, rtt).await?;
    let chromium = Chromium::launch(&args.chromium, "pageload", &[]).await?;
    let browser = &chromium.browser;

    // Ratios per page: [cold dcl, cold load, warm dcl, warm load].
    let mut ratios: [Vec<f64>; 4] = Default::default();
    let mut totals: [Vec<f64>; 8] = Default::default();
    for path in &pages {
        let (mut d, mut p): (Vec<Loads>, Vec<Loads>) = (vec![], vec![]);
        // One load of each first, not counted: the servers' own first-use
        // costs (connections to the upstream, files read from disk).
        cold_and_warm(browser, &format!("{direct}/{path}"), false).await?;
        cold_and_warm(browser, &format!("{proxied}/{path}"), false).await?;
        for _ in 0..args.runs {
            let show = args.resources;
            d.push(cold_and_warm(browser, &format!("{direct}/{path}"), show).await?);
            p.push(cold_and_warm(browser, &format!("{proxied}/{path}"), show).await?);
        }
        let pick = |v: &[Loads], f: fn(&Loads) -> f64| median(v.iter().map(f).collect());
        let getters: [fn(&Loads) -> f64; 4] =
            [|t| t.0.dcl, |t| t.0.load, |t| t.1.dcl, |t| t.1.load];
        let mut line = format!("{path:<60}");
        for (i, get) in getters.iter().enumerate() {
            let (dm, pm) = (pick(&d, *get), pick(&p, *get));
            ratios[i].push(pm / dm.max(0.01));
            totals[2 * i].push(dm);
            totals[2 * i + 1].push(pm);
            line.push_str(&format!(" {dm:7.1}/{pm:7.1}"));
        }
        println!("{line}");
    }
    let names = ["cold DCL", "cold load", "warm DCL", "warm load"];
    println!(
        "{} pages, {} runs each way, added RTT {} ms; median over pages, direct / proxied ms (ratio):",
        pages.len(),
        args.runs,
        args.rtt_ms
    );
    for (i, name) in names.iter().enumerate() {
        println!(
            "  {name:<10} {:8.1} / {:8.1}  ({:.2}x)",
            median(totals[2 * i].clone()),
            median(totals[2 * i + 1].clone()),
            median(ratios[i].clone())
        );
    }
    println!(
        "B9 rtt {} cold_dcl {:.3} cold_load {:.3} warm_dcl {:.3} warm_load {:.3} direct_cold_load {:.1} proxied_cold_load {:.1} direct_warm_load {:.1} proxied_warm_load {:.1}",
        args.rtt_ms,
        median(ratios[0].clone()),
        median(ratios[1].clone()),
        median(ratios[2].clone()),
        median(ratios[3].clone()),
        median(totals[2].clone()),
        median(totals[3].clone()),
        median(totals[6].clone()),
        median(totals[7].clone()),
    );
    chromium.close().await;
    Ok(())
}
