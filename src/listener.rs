//! Accepting client connections and bounding what each may hold: a cap on
//! connections in total and per client address, the header-read and idle
//! timeouts, a TLS handshake timeout, accept errors that back off, and, on
//! shutdown, idle connections closed at once.
//!
//! Every listening port is served by [`serve`]; what a request gets is the
//! caller's [`Handler`].
//!
//! # A connection's states
//!
//! - **idle**: no request in progress and no byte since the connection
//!   opened or the last response ended; closed after `idle_timeout`, or at
//!   once on shutdown.
//! - **reading headers**: a byte arrived while idle; the request's headers
//!   must be complete within `header_read_timeout` (a client trickling its
//!   headers is closed), or at once on shutdown.
//! - **busy**: a request is in progress (its response not yet sent whole);
//!   not timed here (the proxy bounds its upstream), and on shutdown given
//!   the grace period.
//!
//! The timeouts are ours rather than hyper's: hyper's header-read timeout
//! does not cover the bytes read to tell HTTP/1.1 from HTTP/2, nor HTTP/2.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::body::Body;
use crate::config::ServerLimits;
use crate::lock::lock;
use crate::logging::once_per;
use crate::web::{Ctx, Door};

/// What answers a request on a connection.
pub type Handler = Arc<
    dyn Fn(Request<Incoming>, Ctx) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>
        + Send
        + Sync,
>;

/// Descriptors kept free of client connections: upstream connections, the
/// files and sockets the process opens itself.
const RESERVED_FILES: u64 = 64;

/// Accepts and serves connections from `listener` until `shutdown` is
/// cancelled; then stops accepting (connections already open are closed by
/// their own watch, see [`Connections::drained`]).
pub async fn serve(
    listener: TcpListener,
    door: Door,
    tls: Option<TlsAcceptor>,
    connections: Arc<Connections>,
    handler: Handler,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::default();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => {
                    backoff.reset();
                    conn
                }
                Err(e) => {
                    // Out of descriptors and the like: waiting is the only
                    // cure, and retrying at once would spin.
                    let pause = backoff.failed(&e);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => continue,
                        () = shutdown.cancelled() => break,
                    }
                }
            },
            () = shutdown.cancelled() => break,
        };
        let slot = match connections.take(remote.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                refused.answer(&stream, tls.is_some());
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = Ctx {
            remote,
            tls: tls.is_some(),
            door,
        };
        tokio::spawn(connection(
            stream,
            slot,
            tls.clone(),
            ctx,
            handler.clone(),
            shutdown.clone(),
        ));
    }
    debug!(addr = ?listener.local_addr().ok(), "stopped accepting");
}

/// One connection from accept to close.
async fn connection(
    stream: TcpStream,
    slot: Slot,
    tls: Option<TlsAcceptor>,
    ctx: Ctx,
    handler: Handler,
    shutdown: CancellationToken,
) {
    let limits = slot.connections.limits.clone();
    let activity = Arc::new(Activity::new());
    let io = Watched {
        inner: stream,
        activity: activity.clone(),
        _slot: slot,
    };
    let remote = ctx.remote;
    match tls {
        None => serve_http(io, ctx, handler, &limits, &activity, &shutdown).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(io));
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => return debug!(error = %e, %remote, "TLS handshake failed"),
                    Err(_) => {
                        closed("tls_handshake_timeout");
                        return debug!(%remote, "TLS handshake timed out");
                    }
                },
                () = shutdown.cancelled() => return,
            };
            activity.idle();
            serve_http(stream, ctx, handler, &limits, &activity, &shutdown).await;
        }
    }
}

/// HTTP/1.1 or HTTP/2 (and upgrades) on `io`, until the connection ends, a
/// timeout closes it, or shutdown finds it idle.
async fn serve_http<I>(
    io: I,
    ctx: Ctx,
    handler: Handler,
    limits: &ServerLimits,
    activity: &Arc<Activity>,
    shutdown: &CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tracked = activity.clone();
    let service = service_fn(move |req| {
        // Busy from the request's headers until its response is sent whole
        // (or dropped): the guard goes into the response body.
        let guard = Busy::start(tracked.clone());
        let answer = handler(req, ctx);
        async move {
            Ok::<_, Infallible>(answer.await.map(|body| {
                crate::body::boxed(Guarded {
                    inner: body,
                    _busy: guard,
                })
            }))
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    debug!(error = %e, remote = %ctx.remote, "connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                // HTTP/2 is told to go away; HTTP/1.1 closes after the
                // response in progress.
                conn.as_mut().graceful_shutdown();
            }
            why = activity.expired(limits, draining) => {
                closed(why);
                debug!(remote = %ctx.remote, why, "connection closed");
                return;
            }
        }
    }
}

fn closed(why: &'static str) {
    metrics::counter!(crate::telemetry::SERVER_CONNECTIONS_CLOSED, "reason" => why).increment(1);
}

// ---- connection state -----------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle { since: Instant },
    Reading { since: Instant },
    Busy { requests: usize },
}

/// Where a connection stands (see the module's state list).
struct Activity {
    phase: Mutex<Phase>,
    /// A change that moves a deadline nearer or ends being busy.
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            phase: Mutex::new(Phase::Idle {
                since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        lock(&self.phase)
    }

    /// Bytes arrived.
    fn read(&self) {
        let mut phase = self.phase();
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Reading {
                since: Instant::now(),
            };
            self.changed.notify_one();
        }
    }

    /// Nothing is in progress any more (a handshake done).
    fn idle(&self) {
        *self.phase() = Phase::Idle {
            since: Instant::now(),
        };
        self.changed.notify_one();
    }

    fn begin(&self) {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            _ => Phase::Busy { requests: 1 },
        };
    }

    fn end(&self) {
        let mut phase = self.phase();
        if let Phase::Busy { requests } = *phase {
            *phase = if requests > 1 {
                Phase::Busy {
                    requests: requests - 1,
                }
            } else {
                Phase::Idle {
                    since: Instant::now(),
                }
            };
        }
        self.changed.notify_one();
    }

    /// Completes, naming why, when the connection is to be closed: a
    /// timeout, or shutdown (`draining`) while nothing is in progress.
    async fn expired(&self, limits: &ServerLimits, draining: bool) -> &'static str {
        loop {
            let changed = self.changed.notified();
            let deadline = match *self.phase() {
                Phase::Busy { .. } => None,
                _ if draining => return "shutdown",
                Phase::Idle { since } => Some((since + limits.idle_timeout, "idle_timeout")),
                Phase::Reading { since } => {
                    Some((since + limits.header_read_timeout, "header_read_timeout"))
                }
            };
            match deadline {
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// A request in progress; dropped with its response body (or with the
/// handler, when the client goes away first).
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: Arc<Activity>) -> Busy {
        activity.begin();
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end();
    }
}

struct Guarded {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The client's socket, telling its [`Activity`] when bytes arrive, and
/// holding the connection's [`Slot`] for as long as the socket lives (a
/// WebSocket included).
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    _slot: Slot,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

// ---- the caps -------------------------------------------------------------

/// The connections open on every listening port, counted in total and by
/// client address.
pub struct Connections {
    limits: ServerLimits,
    /// `max_connections`, lowered to what the open-file limit allows.
    max: usize,
    open: Mutex<Open>,
    /// Signalled when the last connection closes.
    none_open: Notify,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    Address,
}

impl Connections {
    pub fn new(limits: &ServerLimits) -> Arc<Connections> {
        let mut max = limits.max_connections;
        if let Some(files) = open_file_limit() {
            // Each client connection may need an upstream one too.
            let allowed = (files.saturating_sub(RESERVED_FILES) / 2).max(1) as usize;
            if allowed < max {
                warn!(
                    max_connections = max,
                    open_file_limit = files,
                    allowed,
                    "the open-file limit allows fewer connections than server.max_connections; using {allowed} (raise the limit, e.g. LimitNOFILE or ulimit -n, to allow more)"
                );
                max = allowed;
            }
        }
        let limits = ServerLimits {
            max_connections_per_address: limits.max_connections_per_address.min(max),
            ..limits.clone()
        };
        Arc::new(Connections {
            limits,
            max,
            open: Mutex::new(Open::default()),
            none_open: Notify::new(),
        })
    }

    /// The most connections taken at once.
    pub fn max(&self) -> usize {
        self.max
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        lock(&self.open)
    }

    /// Connections open now.
    pub fn count(&self) -> usize {
        self.open().total
    }

    fn take(self: &Arc<Self>, remote: IpAddr) -> Result<Slot, Refused> {
        let address = address_key(remote);
        let mut open = self.open();
        if open.total >= self.max {
            return Err(Refused::Total);
        }
        let from = open.by_address.entry(address).or_default();
        if *from >= self.limits.max_connections_per_address {
            return Err(Refused::Address);
        }
        *from += 1;
        open.total += 1;
        metrics::gauge!(crate::telemetry::SERVER_CONNECTIONS).set(open.total as f64);
        Ok(Slot {
            connections: self.clone(),
            address,
        })
    }

    fn give_back(&self, address: IpAddr) {
        let mut open = self.open();
        open.total -= 1;
        if let Some(n) = open.by_address.get_mut(&address) {
            *n -= 1;
            if *n == 0 {
                open.by_address.remove(&address);
            }
        }
        metrics::gauge!(crate::telemetry::SERVER_CONNECTIONS).set(open.total as f64);
        if open.total == 0 {
            self.none_open.notify_waiters();
        }
    }

    /// Completes when no connection is open.
    pub async fn drained(&self) {
        loop {
            let notified = self.none_open.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One open connection's place under the caps, given back on drop.
struct Slot {
    connections: Arc<Connections>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.give_back(self.address);
    }
}

impl Refused {
    fn reason(self) -> &'static str {
        match self {
            Refused::Total => "max_connections",
            Refused::Address => "max_connections_per_address",
        }
    }

    /// Tells a plain-HTTP client why, without waiting on it, and closes.
    fn answer(self, stream: &TcpStream, tls: bool) {
        metrics::counter!(crate::telemetry::SERVER_CONNECTIONS_REFUSED, "reason" => self.reason())
            .increment(1);
        static LOGGED: Mutex<Option<std::time::Instant>> = Mutex::new(None);
        if once_per(&LOGGED, Duration::from_secs(10)) {
            warn!(
                limit = self.reason(),
                "connection refused: server.{} reached (logged at most every 10 s)",
                self.reason()
            );
        }
        if !tls {
            let body = "Too many connections; try again shortly.\n";
            let response = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nretry-after: 5\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.try_write(response.as_bytes());
        }
    }
}

/// Client addresses as counted: IPv6 by /64, since one host holds a whole
/// /64 and could rotate through it.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// The soft limit on open files, where the platform tells it.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Accept failures: a pause doubling from 5 ms to 1 s, logged once per 10 s
/// with how many failed since.
#[derive(Default)]
struct Backoff {
    pause: Duration,
    failures: u64,
    logged: Mutex<Option<std::time::Instant>>,
}

impl Backoff {
    fn failed(&mut self, e: &io::Error) -> Duration {
        self.failures += 1;
        metrics::counter!(crate::telemetry::SERVER_ACCEPT_ERRORS).increment(1);
        if once_per(&self.logged, Duration::from_secs(10)) {
            warn!(error = %e, failures = self.failures, "accept failed; backing off (logged at most every 10 s)");
            self.failures = 0;
        }
        self.pause = (self.pause * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
        self.pause
    }

    fn reset(&mut self) {
        if self.pause > Duration::ZERO {
            info!("accepting connections again");
        }
        self.pause = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_address: usize) -> ServerLimits {
        ServerLimits {
            max_connections: total,
            max_connections_per_address: per_address,
            ..ServerLimits::default()
        }
    }

    #[test]
    fn caps_in_total_and_per_address() {
        let c = Connections::new(&limits(3, 2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = c.take(a).unwrap();
        let _s2 = c.take(a).unwrap();
        assert_eq!(c.take(a).err(), Some(Refused::Address));
        let _s3 = c.take(b).unwrap();
        assert_eq!(c.take(b).err(), Some(Refused::Total));
        drop(s1);
        assert!(c.take(a).is_ok(), "a slot given back is free again");
    }

    #[test]
    fn an_ipv6_64_is_one_address() {
        let c = Connections::new(&limits(10, 1));
        let _s = c.take("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            c.take("2001:db8::ffff:2".parse().unwrap()).err(),
            Some(Refused::Address)
        );
        assert!(c.take("2001:db8:0:1::1".parse().unwrap()).is_ok());
        let _v4 = c.take("::ffff:192.0.2.9".parse().unwrap()).unwrap();
        assert_eq!(
            c.take("192.0.2.9".parse().unwrap()).err(),
            Some(Refused::Address),
            "an IPv4-mapped address is the IPv4 one"
        );
    }

    #[test]
    fn backoff_doubles_to_a_bound() {
        let mut b = Backoff::default();
        let e = io::Error::other("EMFILE");
        let pauses: Vec<Duration> = (0..12).map(|_| b.failed(&e)).collect();
        assert_eq!(pauses[0], Duration::from_millis(5));
        assert_eq!(pauses[1], Duration::from_millis(10));
        assert_eq!(*pauses.last().unwrap(), Duration::from_secs(1));
        b.reset();
        assert_eq!(b.failed(&e), Duration::from_millis(5));
    }
}
