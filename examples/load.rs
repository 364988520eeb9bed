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
//! - `--capacity MS`: the highest offered rate at which the p99 of delivery
//!   stays within `MS` milliseconds and what is offered is delivered. Once
//!   every participant is in, the rate starts at `--rate` per participant and
//!   doubles each step of `--step` seconds until a step fails, then bisects
//!   between the last step that held and the first that did not. Each step
//!   prints a `step` line (with the server's CPU per delivered command when
//!   `--pid` names it); the last line is `capacity`.
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
    /// Find the highest offered rate whose delivery p99 is within this
    /// many milliseconds (instead of one run at `--rate`).
    #[arg(long)]
    capacity: Option<f64>,
    /// Seconds each step of `--capacity` measures (after a second to settle).
    #[arg(long, default_value_t = 3.0)]
    step: f64,
    /// Steps of `--capacity` at most.
    #[arg(long, default_value_t = 9)]
    steps: usize,
    /// The server's process (Linux): its CPU time per delivered command is
    /// reported for each step of `--capacity`. Several: "PID,PID".
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
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
    /// Commands per second each participant sends now (`f64` bits; 0:
    /// `--rate`): `--capacity` changes it from step to step.
    rate: AtomicU64,
    /// Set when `--capacity` has its answer: participants stop.
    done: std::sync::atomic::AtomicBool,
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

    /// The time between two commands of one participant now.
    fn period(&self, args: &Args) -> Duration {
        let rate = f64::from_bits(self.rate.load(Ordering::Relaxed));
        Duration::from_secs_f64(1.0 / if rate > 0.0 { rate } else { args.rate })
    }

    fn running(&self, end: Instant) -> bool {
        Instant::now() < end && !self.done.load(Ordering::Relaxed)
    }
}

/// A participant's sending clock, following the rate `--capacity` sets.
/// Each participant keeps its own phase within the period, so a new rate
/// does not line every participant up to send in the same instant.
struct Pace {
    period: Duration,
    /// Where in the period this participant sends, in [0, 1).
    phase: f64,
    tick: tokio::time::Interval,
}

impl Pace {
    /// The clock of participant `n` (customers even, operators odd).
    fn new(stats: &Stats, args: &Args, n: usize) -> Pace {
        // Spread evenly whatever the number of participants.
        let phase = (n as f64 * 0.618_033_988_75).fract();
        Pace::at(stats.period(args), phase)
    }

    fn at(period: Duration, phase: f64) -> Pace {
        let first = tokio::time::Instant::now() + period.mul_f64(phase);
        Pace {
            period,
            phase,
            tick: tokio::time::interval_at(first, period),
        }
    }

    /// The next time to send; a new rate takes effect from here.
    async fn next(&mut self, stats: &Stats, args: &Args) {
        let period = stats.period(args);
        if period != self.period {
            *self = Pace::at(period, self.phase);
        }
        self.tick.tick().await;
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
    let mut pace = Pace::new(&stats, &args, 2 * n + 1);
    let mut in_session = false;
    let mut ever_joined = false;
    let mut i: u64 = 0;
    while stats.running(end) {
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
            _ = pace.next(&stats, &args), if in_session => {
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
    tokio::time::sleep(Duration::from_millis(args.ramp_ms * n as u64)).await;
    let mut cycle = 0usize;
    while stats.running(end) {
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
        let mut pace = Pace::new(&stats, &args, 2 * n);
        let mut typed = String::new();
        let mut i: u64 = 0;
        while Instant::now() < cycle_end && stats.running(end) {
            tokio::select! {
                msg = ws.next() => {
                    let Some(msg) = msg else { bail!("customer {n}: the hub closed the connection") };
                    if let Message::Text(t) = msg? {
                        note(&stats, &t);
                    }
                }
                _ = pace.next(&stats, &args) => {
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
    let mut pace = Pace::new(&stats, &args, 2 * n + usize::from(!customer));
    let (mut i, mut typed) = (0u64, String::new());
    while stats.running(end) {
        tokio::select! {
            msg = ws.next() => {
                let Some(msg) = msg else { bail!("room {n}: the relay closed the connection") };
                if let Message::Text(t) = msg? {
                    note(&stats, &t);
                }
            }
            _ = pace.next(&stats, &args) => {
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
    // The call ends here: left waiting, it would be the first offered to
    // the next operator who signs in (B7's, on the same hub).
    send(&mut ws, json!({"type": "hangup"})).await?;
    wait_for(&mut ws, &stats, "ended", |v| v["type"] == "ended").await?;
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

/// The CPU time the processes `pids` have used so far (Linux's `/proc`),
/// `None` without pids or `/proc`.
fn cpu_time(pids: &[u32]) -> Option<Duration> {
    static TICKS: OnceLock<f64> = OnceLock::new();
    let per_second = *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    });
    if pids.is_empty() {
        return None;
    }
    let mut ticks = 0u64;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command's name in parentheses: state is field 3, utime
        // and stime fields 14 and 15.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ticks += fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    }
    Some(Duration::from_secs_f64(ticks as f64 / per_second))
}

/// One step of `--capacity`: what was offered and delivered in it, and how.
struct Step {
    offered: f64,
    delivered: f64,
    p50: f64,
    p99: f64,
    /// The server's CPU microseconds per delivered command, with `--pid`.
    cpu_us: Option<f64>,
}

/// Offers `offered` commands per second in all for a second to settle, then
/// measures `--step` seconds of it.
async fn measure(args: &Args, stats: &Stats, offered: f64) -> Step {
    let per_participant = offered / stats.participants as f64;
    stats
        .rate
        .store(per_participant.to_bits(), Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stats.latencies.lock().unwrap().clear();
    let (d0, c0, t0) = (
        stats.delivered_steady.load(Ordering::Relaxed),
        cpu_time(&args.pid),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs_f64(args.step)).await;
    let mut lat = std::mem::take(&mut *stats.latencies.lock().unwrap());
    let delivered = stats.delivered_steady.load(Ordering::Relaxed) - d0;
    let (c1, took) = (cpu_time(&args.pid), t0.elapsed());
    lat.sort_unstable();
    Step {
        offered,
        delivered: delivered as f64 / took.as_secs_f64(),
        p50: percentile(&lat, 0.5),
        // Nothing delivered is no latency to boast of.
        p99: if lat.is_empty() {
            f64::INFINITY
        } else {
            percentile(&lat, 0.99)
        },
        cpu_us: c0
            .zip(c1)
            .filter(|_| delivered > 0)
            .map(|(a, b)| (b - a).as_secs_f64() * 1e6 / delivered as f64),
    }
}

/// `--capacity`: doubles the offered rate from `--rate` until a step's p99
/// is over `bound_ms` or it delivers less than 95% of what it offers, then
/// bisects between the last step that held and the first that did not,
/// until they are within 10% of each other or `--steps` are done.
async fn capacity(args: Arc<Args>, stats: Arc<Stats>, bound_ms: f64, end: Instant) {
    while stats.steady_at.load(Ordering::Relaxed) == 0 {
        if Instant::now() > end {
            println!("capacity none: the participants were not all in before the end");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut offered = args.rate * stats.participants as f64;
    let (mut held, mut over): (Option<Step>, Option<f64>) = (None, None);
    for n in 1..=args.steps {
        let step = measure(&args, &stats, offered).await;
        let holds = step.p99 <= bound_ms && step.delivered >= 0.95 * step.offered;
        println!(
            "step {n} offered {:.0}/s delivered {:.0}/s p50 {:.1} p99 {:.1} ms cpu {} us/command {}",
            step.offered,
            step.delivered,
            step.p50,
            step.p99,
            step.cpu_us.map_or("-".to_string(), |c| format!("{c:.1}")),
            if holds { "held" } else { "over" },
        );
        if holds {
            held = Some(step);
        } else {
            over = Some(offered);
        }
        let low = held.as_ref().map_or(0.0, |s| s.offered);
        offered = match over {
            None => offered * 2.0,
            Some(high) if low > 0.0 && high / low <= 1.1 => break,
            Some(high) => (low + high) / 2.0,
        };
        // Below a command per participant every half step, a step measures
        // too few to say anything.
        if offered / (stats.participants as f64) < 2.0 / args.step {
            break;
        }
    }
    match held {
        Some(s) => println!(
            "capacity {:.0}/s delivered {:.0}/s p50 {:.1} p99 {:.1} ms cpu {} us/command within p99 {bound_ms} ms",
            s.offered,
            s.delivered,
            s.p50,
            s.p99,
            s.cpu_us.map_or("-".to_string(), |c| format!("{c:.1}")),
        ),
        None => println!("capacity 0/s: no step held p99 {bound_ms} ms"),
    }
    stats.done.store(true, Ordering::Relaxed);
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
    let controller = args
        .capacity
        .map(|bound| tokio::spawn(capacity(args.clone(), stats.clone(), bound, end)));
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
    if let Some(c) = controller {
        c.abort();
    }
    report(&stats, start.elapsed(), true);
    if failed > 0 {
        bail!("{failed} participants stopped early");
    }
    Ok(())
}
