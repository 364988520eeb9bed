//! A load generator for the hub: `S` sessions, each a customer who calls,
//! an operator who responds, commands both ways at a steady rate (typing,
//! scrolling, pointer, drawing), a second customer tab that joins and
//! leaves, and a hang-up; then the customer calls again, for as long as
//! asked. Reports the delivery latency of commands (send to receipt at the
//! other participant) as percentiles.
//!
//! ```text
//! cargo run --release --example load -- --addr 127.0.0.1:8080 \
//!     --sessions 8 --rate 20 --cycle 30 --duration 300 \
//!     --operator-prefix load --password secret
//! ```
//!
//! Operators `{prefix}1` .. `{prefix}S` must exist in `proxy.toml` with
//! `--password` (see `benches/soak.sh`, which writes such a configuration).
//!
//! Across a cluster (nodes sharing Redis, docs/scale-out.md): customers go
//! to `--addr`, operators to `--console`, which may be another node's
//! console listener (`benches/run.sh`, row B10: customers on node 1,
//! operators on node 2).
//!
//! Two more modes serve the benchmarks (`benches/run.sh`):
//! - `--relay`: the same participants and commands against a plain room
//!   relay (`benches/relay/relay.js`, the TogetherJS hub's design): each
//!   session is the room `/hub/{n}`, with no call, login or hang-up, so the
//!   hub is compared with the floor of what relaying costs.
//! - `--late-join KEYS`: one customer stores `KEYS` distinct keys, then
//!   other tabs join `--joins` times; prints the time from `join` until the
//!   whole `replay` has arrived.
//!
//! On a loopback address each customer and operator connects from its own
//! source address (127.0.x.y), so the per-address limits of the hub (calls,
//! logins, sockets) count each simulated person once, as in production.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{WebSocketStream, client_async};

#[derive(Parser, Debug, Clone)]
struct Args {
    /// The proxy's address (the site's listener: customers).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The operator console's listener (operators log in and connect
    /// there); default: the next port after `--addr`, as `[console]` has.
    /// Another node's console puts the operators on that node.
    #[arg(long)]
    console: Option<SocketAddr>,
    /// Concurrent sessions (and operators).
    #[arg(long, default_value_t = 4)]
    sessions: usize,
    /// Commands per second each participant sends.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Seconds a session lasts before its customer hangs up and calls again.
    #[arg(long, default_value_t = 30)]
    cycle: u64,
    /// Seconds to run in all.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Operator accounts are this prefix followed by 1..=sessions.
    #[arg(long, default_value = "load")]
    operator_prefix: String,
    /// The operators' password (not needed with `--relay` or `--late-join`).
    #[arg(long, env = "LOAD_PASSWORD", default_value = "")]
    password: String,
    /// Drive a room relay at `--addr` instead of the hub.
    #[arg(long)]
    relay: bool,
    /// Measure the late join of a session holding this many keys instead.
    #[arg(long)]
    late_join: Option<usize>,
    /// Customers call this many milliseconds apart at the start, as calls
    /// arrive on a site, rather than all in the same instant.
    #[arg(long, default_value_t = 10)]
    ramp_ms: u64,
    /// How many tabs join in `--late-join`.
    #[arg(long, default_value_t = 20)]
    joins: usize,
}

/// Counters and latencies shared by every task.
#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    delivered: AtomicU64,
    calls: AtomicU64,
    joins: AtomicU64,
    hangups: AtomicU64,
    errors: AtomicU64,
    /// Commands that crossed a hang-up (`not_in_session`): expected races.
    late: AtomicU64,
    /// Delivery latencies, in microseconds.
    latencies: Mutex<Vec<u64>>,
    /// Participants in their session (or room) and sending, and how many
    /// there will be.
    ready: AtomicU64,
    participants: u64,
    /// When the last participant became ready (microseconds after the
    /// start, 0 before): the rate and the latencies count from there, not
    /// during the set-up (operators' logins hash passwords on the same
    /// cores).
    steady_at: AtomicU64,
    delivered_steady: AtomicU64,
}

impl Stats {
    fn sent_one(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    fn ready_one(&self) {
        if self.ready.fetch_add(1, Ordering::Relaxed) + 1 == self.participants {
            self.steady_at.store(now_us().max(1), Ordering::Relaxed);
            // benches/run.sh reads the server's memory from here on.
            println!("steady: all {} participants in", self.participants);
        }
    }
}

type Ws = WebSocketStream<TcpStream>;

fn epoch() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// The source address of simulated person `n` of a `group` (customers 0,
/// operators 1, extra tabs 2): distinct on loopback, any elsewhere.
fn source(target: &SocketAddr, group: u8, n: usize) -> Option<IpAddr> {
    target.ip().is_loopback().then(|| {
        IpAddr::V4(Ipv4Addr::new(
            127,
            10 + group,
            (n / 250) as u8,
            (n % 250 + 2) as u8,
        ))
    })
}

async fn connect_tcp(target: SocketAddr, from: Option<IpAddr>) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    Ok(socket.connect(target).await?)
}

impl Args {
    /// Where operators go: the console's own listener.
    fn console(&self) -> SocketAddr {
        self.console.unwrap_or_else(|| {
            let mut console = self.addr;
            console.set_port(self.addr.port() + 1);
            console
        })
    }
}

/// Logs in on the console's listener, as the console's own page does (its
/// Origin), and returns the `Cookie` header value.
async fn login(args: &Args, user: &str, from: Option<IpAddr>) -> Result<String> {
    let body = serde_json::to_string(&json!({"user": user, "password": args.password}))?;
    let console = args.console();
    let mut stream = connect_tcp(console, from).await?;
    let req = format!(
        "POST /__cobrowse/login HTTP/1.1\r\nHost: {console}\r\nOrigin: http://{console}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    // Hundreds of logins at once hash their passwords on the same cores.
    tokio::time::timeout(Duration::from_secs(120), stream.read_to_end(&mut raw))
        .await
        .with_context(|| format!("no answer to the login of {user} within 120 s"))??;
    let text = String::from_utf8_lossy(&raw);
    if !text.starts_with("HTTP/1.1 204") {
        bail!(
            "login of {user} failed: {}",
            text.lines().next().unwrap_or("")
        );
    }
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("set-cookie")
                .then(|| v.trim().split(';').next().unwrap_or("").to_string())
        })
        .context("no cookie in the login answer")
}

/// A participant's WebSocket: customers on the site's listener, operators
/// on the console's, each from its own page's origin.
async fn open(args: &Args, role: &str, cookie: Option<&str>, from: Option<IpAddr>) -> Result<Ws> {
    let target = if role == "operator" {
        args.console()
    } else {
        args.addr
    };
    let mut req = format!("ws://{target}/__cobrowse/ws?role={role}").into_client_request()?;
    req.headers_mut()
        .insert("Origin", format!("http://{target}").parse()?);
    if let Some(c) = cookie {
        req.headers_mut().insert("Cookie", c.parse()?);
    }
    let stream = connect_tcp(target, from).await?;
    Ok(client_async(req, stream).await?.0)
}

async fn send(ws: &mut Ws, v: Value) -> Result<()> {
    ws.send(Message::text(v.to_string())).await?;
    Ok(())
}

/// What a received message means for the stats; returns it parsed.
fn note(stats: &Stats, text: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    match v["type"].as_str() {
        Some("command") => {
            if let Some(t) = v["args"].as_array().and_then(|a| a.last()?["t"].as_u64()) {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                if stats.steady_at.load(Ordering::Relaxed) != 0 {
                    stats.delivered_steady.fetch_add(1, Ordering::Relaxed);
                    let lat = now_us().saturating_sub(t);
                    stats.latencies.lock().unwrap().push(lat);
                }
            }
        }
        Some("error") if v["code"] == "not_in_session" => {
            stats.late.fetch_add(1, Ordering::Relaxed);
        }
        Some("error") => {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("hub error: {v}");
        }
        _ => {}
    }
    v
}

/// Waits for a message that satisfies `want`, noting everything seen.
async fn wait_for(
    ws: &mut Ws,
    stats: &Stats,
    what: &str,
    want: impl Fn(&Value) -> bool,
) -> Result<Value> {
    // Long enough for a set-up where hundreds of operators log in at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .with_context(|| format!("no {what} within 120 s"))?;
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v = note(stats, &t);
                if want(&v) {
                    return Ok(v);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("waiting for {what}: {e}"),
            None => bail!("connection closed waiting for {what}"),
        }
    }
}

/// One command of the mixed load, stamped with its send time.
fn command(key: &str, f: &str, mut args: Vec<Value>) -> Value {
    args.push(json!({"t": now_us()}));
    json!({"type": "command", "key": key, "attribute": "others", "fn": f, "args": args})
}

/// An operator: ready, responds to every offer, sends pointer and drawing
/// while in a session, until `end`.
async fn operator(
    args: Arc<Args>,
    stats: Arc<Stats>,
    n: usize,
    cookie: String,
    end: Instant,
) -> Result<()> {
    let from = source(&args.addr, 1, n);
    let user = format!("{}{}", args.operator_prefix, n + 1);
    let mut ws = open(&args, "operator", Some(&cookie), from).await?;
    send(&mut ws, json!({"type": "ready"})).await?;
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut tick = tokio::time::interval(period);
    let mut in_session = false;
    let mut ever_joined = false;
    let mut i: u64 = 0;
    while Instant::now() < end {
        tokio::select! {
            msg = ws.next() => {
                let Some(msg) = msg else { bail!("{user}: the hub closed the connection") };
                let Message::Text(t) = msg? else { continue };
                let v = note(&stats, &t);
                match v["type"].as_str() {
                    Some("offer") => {
                        send(&mut ws, json!({"type": "respond", "session": v["session"]})).await?;
                    }
                    Some("joined") => {
                        if !std::mem::replace(&mut ever_joined, true) {
                            stats.ready_one();
                        }
                        in_session = true;
                    }
                    Some("ended") | Some("left") => in_session = false,
                    _ => {}
                }
            }
            _ = tick.tick(), if in_session => {
                i += 1;
                send(&mut ws, mixed_command(false, i, &mut String::new())).await?;
                stats.sent_one();
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// A customer: calls, waits for an operator, grants control, types,
/// scrolls and points; half-way a second tab joins then closes; after
/// `--cycle` seconds hangs up and calls again, until `end`.
async fn customer(args: Arc<Args>, stats: Arc<Stats>, n: usize, end: Instant) -> Result<()> {
    let from = source(&args.addr, 0, n);
    let period = Duration::from_secs_f64(1.0 / args.rate);
    tokio::time::sleep(Duration::from_millis(args.ramp_ms * n as u64)).await;
    let mut cycle = 0usize;
    while Instant::now() < end {
        let mut ws = open(&args, "customer", None, from).await?;
        send(&mut ws, json!({"type": "call"})).await?;
        let joined = wait_for(&mut ws, &stats, "joined", |v| v["type"] == "joined").await?;
        stats.calls.fetch_add(1, Ordering::Relaxed);
        let (session, resume) = (joined["session"].clone(), joined["resume"].clone());
        wait_for(&mut ws, &stats, "an operator", |v| {
            v["type"] == "status" && v["state"] == "connected"
        })
        .await?;
        if cycle == 0 {
            stats.ready_one();
        }
        send(&mut ws, json!({"type": "control", "granted": true})).await?;
        send(&mut ws, command("top", "navigate", vec![json!("/")])).await?;
        let cycle_end = (Instant::now() + Duration::from_secs(args.cycle)).min(end);
        let join_at = Instant::now() + Duration::from_secs(args.cycle) / 2;
        let mut tab_joined = false;
        let mut tick = tokio::time::interval(period);
        let mut typed = String::new();
        let mut i: u64 = 0;
        while Instant::now() < cycle_end {
            tokio::select! {
                msg = ws.next() => {
                    let Some(msg) = msg else { bail!("customer {n}: the hub closed the connection") };
                    if let Message::Text(t) = msg? {
                        note(&stats, &t);
                    }
                }
                _ = tick.tick() => {
                    i += 1;
                    send(&mut ws, mixed_command(true, i, &mut typed)).await?;
                    stats.sent_one();
                    if !tab_joined && Instant::now() >= join_at {
                        // Another tab of the customer joins, gets its
                        // replay, and is closed again.
                        let mut tab = open(&args, "customer", None, source(&args.addr, 2, n)).await?;
                        send(&mut tab, json!({"type": "join", "session": session, "resume": resume})).await?;
                        wait_for(&mut tab, &stats, "the joining tab's replay", |v| v["type"] == "replay").await?;
                        stats.joins.fetch_add(1, Ordering::Relaxed);
                        let _ = tab.close(None).await;
                        tab_joined = true;
                    }
                }
            }
        }
        send(&mut ws, json!({"type": "hangup"})).await?;
        wait_for(&mut ws, &stats, "ended", |v| v["type"] == "ended").await?;
        stats.hangups.fetch_add(1, Ordering::Relaxed);
        let _ = ws.close(None).await;
        cycle += 1;
        // Calls from one address are limited (a burst, then one per 2 s).
        if cycle > 20 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    Ok(())
}

/// The commands a customer (`true`) or an operator sends, in turn.
fn mixed_command(customer: bool, i: u64, typed: &mut String) -> Value {
    if customer {
        match i % 4 {
            0 => {
                if typed.len() > 40 {
                    typed.clear();
                }
                typed.push(char::from(b'a' + (i % 26) as u8));
                command("top/form#search/input[name=q]", "value", vec![json!(typed)])
            }
            1 => command("top", "scroll", vec![json!(0), json!((i * 40) % 4000)]),
            _ => command(
                "top/pointer/c",
                "pointer",
                vec![json!(i % 800), json!(i % 600)],
            ),
        }
    } else {
        let (x, y) = ((i * 7 % 800) as i64, (i * 13 % 600) as i64);
        match i % 10 {
            0 => command("top/draw/op", "clear", vec![]),
            1..=4 => command("top/draw/op", "draw", vec![json!([[x, y], [x + 5, y + 3]])]),
            _ => command("top/pointer/op", "pointer", vec![json!(x), json!(y)]),
        }
    }
}

/// `--relay`: one participant of room `n`, sending the same commands as on
/// the hub at the same rate and noting what the others send, until `end`.
async fn relay_participant(
    args: Arc<Args>,
    stats: Arc<Stats>,
    n: usize,
    customer: bool,
    end: Instant,
) -> Result<()> {
    let from = source(&args.addr, u8::from(!customer), n);
    let target = args.addr;
    let req = format!("ws://{target}/hub/{n}").into_client_request()?;
    let stream = connect_tcp(target, from).await?;
    let mut ws = client_async(req, stream).await?.0;
    stats.ready_one();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    let (mut i, mut typed) = (0u64, String::new());
    while Instant::now() < end {
        tokio::select! {
            msg = ws.next() => {
                let Some(msg) = msg else { bail!("room {n}: the relay closed the connection") };
                if let Message::Text(t) = msg? {
                    note(&stats, &t);
                }
            }
            _ = tick.tick() => {
                i += 1;
                send(&mut ws, mixed_command(customer, i, &mut typed)).await?;
                stats.sent_one();
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// One timed join of `--late-join`.
struct Joined {
    /// From `join` until the whole `replay` is parsed.
    took: Duration,
    /// The client's parse of the `replay` alone.
    parse: Duration,
    /// The `replay` message's length.
    size: usize,
    /// Commands the `replay` held.
    held: usize,
}

/// `--late-join KEYS`: a customer calls and stores `KEYS` distinct keys
/// (typing into that many fields); once a joining tab's replay holds them
/// all, `--joins` more tabs join one after the other, each timed from its
/// `join` until its whole `replay` has arrived and been parsed.
async fn late_join(args: &Args, keys: usize) -> Result<()> {
    let stats = Stats::default();
    let from = source(&args.addr, 0, 0);
    let mut ws = open(args, "customer", None, from).await?;
    send(&mut ws, json!({"type": "call"})).await?;
    let joined = wait_for(&mut ws, &stats, "joined", |v| v["type"] == "joined").await?;
    let (session, resume) = (joined["session"].clone(), joined["resume"].clone());
    for i in 0..keys {
        let key = format!("top/form#f/input[name=field{i}]");
        send(
            &mut ws,
            command(&key, "value", vec![json!(format!("value {i}"))]),
        )
        .await?;
    }
    let join = |n: usize| {
        let (session, resume) = (session.clone(), resume.clone());
        async move {
            let mut tab = open(args, "customer", None, source(&args.addr, 2, n)).await?;
            let start = Instant::now();
            send(
                &mut tab,
                json!({"type": "join", "session": session, "resume": resume}),
            )
            .await?;
            // Until the replay has arrived and been parsed; its parse is
            // timed on its own as well, to tell the client's share.
            let (replay, parse, size) = loop {
                let msg = tokio::time::timeout(Duration::from_secs(120), tab.next())
                    .await
                    .context("no replay within 120 s")?;
                match msg {
                    Some(Ok(Message::Text(t))) => {
                        let parsing = Instant::now();
                        let v = note(&Stats::default(), &t);
                        if v["type"] == "replay" {
                            break (v, parsing.elapsed(), t.len());
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => bail!("waiting for the replay: {e}"),
                    None => bail!("connection closed waiting for the replay"),
                }
            };
            let took = start.elapsed();
            let _ = tab.close(None).await;
            let held = replay["commands"].as_array().map_or(0, Vec::len);
            anyhow::Ok(Joined {
                took,
                parse,
                size,
                held,
            })
        }
    };
    // The customer's commands are stored in the order they came: wait
    // until a replay holds all of them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held = join(0).await?.held;
        if held >= keys {
            break;
        }
        if Instant::now() > deadline {
            bail!("the session holds {held} of {keys} keys after 60 s (hub.max_keys_per_session?)");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut times, mut parses, mut size) = (Vec::new(), Vec::new(), 0);
    for n in 1..=args.joins {
        let joined = join(n).await?;
        if joined.held < keys {
            bail!("a late joiner's replay held {} of {keys} keys", joined.held);
        }
        times.push(joined.took.as_micros() as u64);
        parses.push(joined.parse.as_micros() as u64);
        size = joined.size;
    }
    times.sort_unstable();
    parses.sort_unstable();
    println!(
        "late-join keys {keys} joins {} replay ms p50 {:.2} min {:.2} max {:.2} parse median ms {:.2} bytes {size}",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.0),
        percentile(&times, 1.0),
        percentile(&parses, 0.5),
    );
    let _ = ws.close(None).await;
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn report(stats: &Stats, elapsed: Duration, last: bool) {
    let mut lat = if last {
        std::mem::take(&mut *stats.latencies.lock().unwrap())
    } else {
        stats.latencies.lock().unwrap().clone()
    };
    lat.sort_unstable();
    let steady = stats.steady_at.load(Ordering::Relaxed);
    let sending = elapsed.as_secs_f64() - steady as f64 / 1e6;
    let rate = if steady == 0 || sending <= 0.0 {
        0.0
    } else {
        stats.delivered_steady.load(Ordering::Relaxed) as f64 / sending
    };
    println!(
        "{}{:>5}s sent {} delivered {} ({:.0}/s) calls {} joins {} hangups {} errors {} late {} | latency ms p50 {:.1} p90 {:.1} p99 {:.1} p999 {:.1} max {:.1}",
        if last { "total " } else { "" },
        elapsed.as_secs(),
        stats.sent.load(Ordering::Relaxed),
        stats.delivered.load(Ordering::Relaxed),
        rate,
        stats.calls.load(Ordering::Relaxed),
        stats.joins.load(Ordering::Relaxed),
        stats.hangups.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed),
        stats.late.load(Ordering::Relaxed),
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        percentile(&lat, 1.0),
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    if args.rate <= 0.0 || args.sessions == 0 {
        bail!("--rate and --sessions must be positive");
    }
    let start = epoch();
    if let Some(keys) = args.late_join {
        return late_join(&args, keys).await;
    }
    // Operators log in first, all at once: the run's duration counts from
    // when they are in, not from the password hashing of hundreds of
    // logins on the same cores.
    let mut cookies = vec![String::new(); args.sessions];
    if !args.relay {
        let mut logins = tokio::task::JoinSet::new();
        for n in 0..args.sessions {
            let args = args.clone();
            logins.spawn(async move {
                let user = format!("{}{}", args.operator_prefix, n + 1);
                (n, login(&args, &user, source(&args.addr, 1, n)).await)
            });
        }
        while let Some(done) = logins.join_next().await {
            let (n, cookie) = done?;
            cookies[n] = cookie?;
        }
    }
    // benches/run.sh reads the server's CPU time and memory from here on.
    println!(
        "logged in: {} operators",
        if args.relay { 0 } else { args.sessions }
    );
    let end = Instant::now() + Duration::from_secs(args.duration);
    let stats = Arc::new(Stats {
        participants: 2 * args.sessions as u64,
        ..Stats::default()
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (n, cookie) in cookies.into_iter().enumerate() {
        if args.relay {
            tasks.spawn(relay_participant(
                args.clone(),
                stats.clone(),
                n,
                false,
                end,
            ));
        } else {
            tasks.spawn(operator(args.clone(), stats.clone(), n, cookie, end));
        }
    }
    for n in 0..args.sessions {
        if args.relay {
            tasks.spawn(relay_participant(args.clone(), stats.clone(), n, true, end));
        } else {
            tasks.spawn(customer(args.clone(), stats.clone(), n, end));
        }
    }
    let reporter = {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.tick().await;
            loop {
                tick.tick().await;
                report(&stats, start.elapsed(), false);
            }
        })
    };
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.map_err(anyhow::Error::from).and_then(|r| r) {
            failed += 1;
            eprintln!("a participant stopped: {e:#}");
        }
    }
    reporter.abort();
    report(&stats, start.elapsed(), true);
    if failed > 0 {
        bail!("{failed} participants stopped early");
    }
    Ok(())
}
