//! Several nodes on one Redis store acting as one (`[cluster]`).
//!
//! Every node serves the site; one node at a time, the leader, serves the
//! shared sessions: it holds the lease in Redis ([`lease`]) and runs the
//! hub as a single node does. The others forward to it ([`forward`]) what
//! belongs to shared sessions: the hub's routes (`ws`, `login`, `logout`,
//! `me`), `bind`, and every proxied request carrying the participant cookie
//! (the leader keeps the driver's documents). Everything else is served by
//! the node that got it. A forwarded request carries the peer headers
//! ([`peer`]), believed only with the cluster's secret, so the leader sees
//! the real client's address and scheme.
//!
//! Leadership changes reach the rest of the program through [`Leadership`]:
//! gaining it runs `take_over` (load the shared state) before this node
//! serves anything of the shared sessions; losing it runs `hand_over`.
//!
//! ```text
//!   start ──▶ (claim) ──▶ TakingOver ──take_over done──▶ Leading
//!                │              │                          │
//!                │      another node's id in the lease     │
//!                ▼              ▼                          ▼
//!           Following(leader) ◀──────── hand_over ─────────┘
//!                │ ▲
//!      lease free│ │ no record / no answer
//!                ▼ │
//!            (claim) / NoLeader
//! ```

pub mod forward;
pub mod lease;
pub mod peer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::body::Body;
use crate::config::Config;
use crate::telemetry;
use crate::web::{self, Ctx, Door};
use lease::{Lease, Record};
use peer::Sender;

/// What this node does when it gains or loses the leadership. Wired in
/// `server.rs`.
pub struct Leadership {
    /// Load the shared state (the hub's sessions, the driver's documents)
    /// from Redis; the node serves the shared sessions once it completes.
    pub take_over: Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>,
    /// Close every hub connection so clients resume through the new leader,
    /// and forget the in-memory state without ending any session.
    pub hand_over: Box<dyn Fn() + Send + Sync>,
}

/// Where this node stands in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// It holds the lease and serves the shared sessions.
    Leading,
    /// It holds the lease and is loading the shared state.
    TakingOver,
    /// Another node leads; `record` is where it is reached (`None`: it is
    /// not registered, so nothing can be forwarded to it).
    Following {
        node: String,
        record: Option<Record>,
    },
    /// No node is known to lead (at start, before Redis answers).
    NoLeader,
}

/// Why a request for the shared sessions was not served.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("no node of the cluster leads at the moment")]
    NoLeader,
    #[error("this node is taking over the shared sessions")]
    TakingOver,
    #[error(transparent)]
    Unreachable(forward::ForwardError),
    #[error("a peer forwarded a request to this node, which does not lead")]
    NotLeader,
}

impl Refusal {
    fn reason(&self) -> &'static str {
        match self {
            Refusal::NoLeader => "no_leader",
            Refusal::TakingOver => "taking_over",
            Refusal::Unreachable(_) => "unreachable",
            Refusal::NotLeader => "not_leader",
        }
    }

    /// 503 with a readable text and `Retry-After: 1`: the agent and the
    /// console reconnect with a back-off, and a leader is found within a
    /// lease. Counted and logged.
    pub fn response(self, route: &'static str, ctx: &Ctx) -> Response<Body> {
        metrics::counter!(telemetry::CLUSTER_UNSERVED, "reason" => self.reason()).increment(1);
        // Every client retries while no leader answers: one line a second.
        static LOGGED: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
        if crate::logging::once_per(&LOGGED, Duration::from_secs(1)) {
            warn!(route, remote = %ctx.remote, reason = %self, "cluster: a request for the shared sessions was not served (logged at most once a second; all are counted in cobrowse_cluster_unserved_total)");
        }
        let text = match self {
            Refusal::NotLeader => "this node no longer leads the cluster; try again\n".to_string(),
            _ => format!("the shared sessions are unavailable for a moment ({self}); try again\n"),
        };
        let mut response = web::text(StatusCode::SERVICE_UNAVAILABLE, text);
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// What to do with a request for the shared sessions.
pub enum Decision {
    /// This node leads: serve it.
    Serve(Request<Incoming>),
    /// Forwarded to the leader or refused: the answer for the client.
    Answered(Response<Body>),
}

/// The cluster as this node takes part in it: a cloneable handle.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    /// This node's id, new at every start.
    node: String,
    secret: String,
    lease: Lease,
    lease_time: Duration,
    record: Record,
    forwarder: forward::Forwarder,
    standing: watch::Sender<Standing>,
    leadership: Leadership,
    /// Counts take-overs, so one that completes after the lease was lost
    /// (and maybe won again) does not make the node lead.
    epoch: AtomicU64,
    /// Whether the last request to Redis failed (logged once per outage).
    failing: AtomicBool,
    /// Whether the last beat found the lease free (and left it).
    seen_free: AtomicBool,
    stop: CancellationToken,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
#[error("the cluster's Redis ([store] url): {0}")]
pub struct StartError(String);

impl Cluster {
    /// Joins the cluster on `[store]`'s Redis when the store is Redis
    /// (`None` otherwise), with `config`'s addresses as bound. Waits, at
    /// most two leases and two seconds, until this node leads or knows the
    /// leader, so a single node serves nothing before it leads.
    pub async fn start(
        config: &Config,
        leadership: Leadership,
    ) -> Result<Option<Cluster>, StartError> {
        let (crate::config::Store::Redis(store), Some(cluster)) = (&config.store, &config.cluster)
        else {
            return Ok(None);
        };
        let node = crate::secret::new_secret()[..12].to_string();
        let lease = Lease::new(&store.url, &store.prefix, &node, cluster.lease)
            .map_err(|e| StartError(e.to_string()))?;
        let record = Record {
            site: cluster
                .advertise
                .clone()
                .unwrap_or_else(|| config.listen.to_string()),
            console: cluster
                .console_advertise
                .clone()
                .unwrap_or_else(|| config.console.listen.to_string()),
        };
        let (standing, mut seen) = watch::channel(Standing::NoLeader);
        let inner = Arc::new(Inner {
            node,
            secret: cluster.secret.clone(),
            lease,
            lease_time: cluster.lease,
            record,
            // What the leader may wait for itself before it answers.
            forwarder: forward::Forwarder::new(
                config.proxy.connect_timeout
                    + config.proxy.response_timeout
                    + config.driver.follower_wait
                    + Duration::from_secs(5),
            ),
            standing,
            leadership,
            epoch: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            seen_free: AtomicBool::new(false),
            stop: CancellationToken::new(),
            task: std::sync::Mutex::new(None),
        });
        info!(node = %inner.node, site = %inner.record.site, console = %inner.record.console,
            lease_ms = inner.lease_time.as_millis() as u64, "cluster: joining");
        let task = tokio::spawn(beat(
            Arc::downgrade(&inner),
            inner.stop.clone(),
            inner.lease_time / 3,
        ));
        *crate::lock::lock(&inner.task) = Some(task);
        let bound = cluster.lease * 2 + Duration::from_secs(2);
        let ready = tokio::time::timeout(
            bound,
            seen.wait_for(|s| {
                matches!(
                    s,
                    Standing::Leading
                        | Standing::Following {
                            record: Some(_),
                            ..
                        }
                )
            }),
        )
        .await;
        if ready.is_err() {
            warn!(waited = ?bound, "cluster: no leader known yet; serving the site, the shared sessions answer 503 until one is");
        }
        Ok(Some(Cluster { inner }))
    }

    /// The lease's Redis key and this node's id, which the key holds while
    /// this node leads: the hub's checkpoint writes only while it does
    /// (`Hub::fence_checkpoint`).
    pub fn lease(&self) -> (&str, &str) {
        (self.inner.lease.key(), &self.inner.node)
    }

    /// The cluster's secret, for reading the peer headers.
    pub fn secret(&self) -> &str {
        &self.inner.secret
    }

    pub fn standing(&self) -> Standing {
        self.inner.standing.borrow().clone()
    }

    /// The `cluster:` line of `healthz`.
    pub fn health(&self) -> String {
        match self.standing() {
            Standing::Leading => format!("leading (node {})", self.inner.node),
            Standing::TakingOver => format!("taking over (node {})", self.inner.node),
            Standing::Following {
                node,
                record: Some(_),
            } => format!("following {node} (node {})", self.inner.node),
            Standing::Following { record: None, .. } | Standing::NoLeader => {
                format!("no leader (node {})", self.inner.node)
            }
        }
    }

    /// Serves, forwards or refuses a request for the shared sessions
    /// (`route` is its metric label, from [`shared_route`]).
    pub async fn decide(
        &self,
        route: &'static str,
        req: Request<Incoming>,
        ctx: Ctx,
        sender: Sender,
    ) -> Decision {
        let refuse = |r: Refusal| Decision::Answered(r.response(route, &ctx));
        match self.standing() {
            Standing::Leading => Decision::Serve(req),
            // Never forwarded twice: the peer finds the leader itself.
            _ if sender == Sender::Peer => refuse(Refusal::NotLeader),
            Standing::TakingOver => refuse(Refusal::TakingOver),
            Standing::Following {
                record: Some(record),
                ..
            } => {
                let to = match ctx.door {
                    Door::Site => &record.site,
                    Door::Console => &record.console,
                };
                match self
                    .inner
                    .forwarder
                    .forward(to, req, &ctx, &self.inner.secret)
                    .await
                {
                    Ok(response) => {
                        metrics::counter!(telemetry::CLUSTER_FORWARDED, "route" => route)
                            .increment(1);
                        Decision::Answered(response)
                    }
                    Err(e) => refuse(Refusal::Unreachable(e)),
                }
            }
            Standing::Following { record: None, .. } | Standing::NoLeader => {
                refuse(Refusal::NoLeader)
            }
        }
    }

    /// A graceful stop: stops renewing, and releases the lease when it is
    /// this node's so another node takes over at once. The caller hands the
    /// shared state over first.
    pub async fn stop(&self) {
        let inner = &self.inner;
        inner.stop.cancel();
        let task = crate::lock::lock(&inner.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let was = inner.standing.send_replace(Standing::NoLeader);
        metrics::gauge!(telemetry::CLUSTER_LEADING).set(0.0);
        match tokio::time::timeout(Duration::from_secs(2), inner.lease.release()).await {
            Ok(Ok(true)) => {
                info!(node = %inner.node, "cluster: released the lease; another node takes over")
            }
            Ok(Ok(false)) => {
                info!(node = %inner.node, standing = ?was, "cluster: left (this node did not lead)")
            }
            Ok(Err(e)) => {
                warn!(error = %e, "cluster: could not release the lease; another node takes over when it expires")
            }
            Err(_) => warn!(
                "cluster: Redis did not answer the release; another node takes over when the lease expires"
            ),
        }
    }
}

/// The metric label of a request that belongs to the shared sessions and
/// so goes to the leader, or `None` for one any node serves. `rest` is the
/// path under the prefix, `None` for a path of the site.
pub fn shared_route<B>(rest: Option<&str>, req: &Request<B>, door: Door) -> Option<&'static str> {
    match rest {
        Some(r) if crate::hub::ROUTES.contains(&r) => Some("hub"),
        Some("bind") if door == Door::Site => Some("bind"),
        Some(_) => None,
        // Driver and follower page traffic: the leader keeps the documents.
        // A target that is no path (`*`, CONNECT) is answered where it came.
        None if door == Door::Site
            && req.uri().path().starts_with('/')
            && web::cookie(req.headers(), crate::driver::PARTICIPANT_COOKIE).is_some() =>
        {
            Some("proxy")
        }
        None => None,
    }
}

/// Renews the lease and the record every third of a lease until stopped
/// (or the cluster's handle is gone).
async fn beat(inner: std::sync::Weak<Inner>, stop: CancellationToken, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        tokio::select! {
            () = stop.cancelled() => return,
            () = step(&inner) => {}
        }
    }
}

/// One beat: refresh, claim, and act on who holds the lease.
///
/// A node that follows a leader takes a free lease only when it found it
/// free on the beat before too: a Redis that restarted empty (or lost the
/// key) gives the leader a beat to take its lease back before another node
/// does, so leadership does not move for nothing. The leader, and a node
/// that knows no leader, take it at once.
async fn step(inner: &Arc<Inner>) {
    let take = match &*inner.standing.borrow() {
        Standing::Following {
            record: Some(_), ..
        } => inner.seen_free.load(Ordering::Relaxed),
        _ => true,
    };
    let result = inner.lease.step(&inner.record, take).await;
    if result.is_ok() && inner.failing.swap(false, Ordering::Relaxed) {
        info!("cluster: Redis answers again");
    }
    let holder = match result {
        Ok(Some(holder)) => {
            inner.seen_free.store(false, Ordering::Relaxed);
            holder
        }
        Ok(None) => {
            inner.seen_free.store(true, Ordering::Relaxed);
            return;
        }
        Err(e) => {
            inner.seen_free.store(false, Ordering::Relaxed);
            // Nobody can take the lease while Redis does not answer: the
            // leader keeps leading, the others the leader they know.
            if !inner.failing.swap(true, Ordering::Relaxed) {
                warn!(error = %e, standing = ?*inner.standing.borrow(), "cluster: Redis does not answer; leadership stays as it is until it does");
            }
            return;
        }
    };
    if holder == inner.node {
        let before = inner.standing.borrow().clone();
        if matches!(before, Standing::Leading | Standing::TakingOver) {
            return;
        }
        change(inner, Standing::TakingOver);
        let epoch = inner.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let inner = inner.clone();
        info!(node = %inner.node, "cluster: this node holds the lease; taking over the shared sessions");
        tokio::spawn(async move {
            (inner.leadership.take_over)().await;
            let led = inner.standing.send_if_modified(|s| {
                let current = inner.epoch.load(Ordering::SeqCst) == epoch;
                if current && *s == Standing::TakingOver {
                    *s = Standing::Leading;
                    true
                } else {
                    false
                }
            });
            if led {
                metrics::gauge!(telemetry::CLUSTER_LEADING).set(1.0);
                info!(node = %inner.node, "cluster: this node leads");
            }
        });
        return;
    }
    let record = match inner.lease.record(&holder).await {
        Ok(record) => record,
        // The leader is the same one: keep where it was reached.
        Err(_) => match &*inner.standing.borrow() {
            Standing::Following { node, record } if *node == holder => record.clone(),
            _ => None,
        },
    };
    let before = change(
        inner,
        Standing::Following {
            node: holder.clone(),
            record,
        },
    );
    if matches!(before, Standing::Leading | Standing::TakingOver) {
        metrics::gauge!(telemetry::CLUSTER_LEADING).set(0.0);
        warn!(node = %inner.node, leader = %holder, "cluster: another node holds the lease; handing over");
        (inner.leadership.hand_over)();
    }
}

/// Sets the standing, counting a change of leader; returns the one before.
fn change(inner: &Inner, standing: Standing) -> Standing {
    let leader = |s: &Standing| match s {
        Standing::Leading | Standing::TakingOver => Some(inner.node.clone()),
        Standing::Following { node, .. } => Some(node.clone()),
        Standing::NoLeader => None,
    };
    let before = inner.standing.send_replace(standing.clone());
    if leader(&before) != leader(&standing) {
        metrics::counter!(telemetry::CLUSTER_LEADER_CHANGES).increment(1);
        info!(node = %inner.node, leader = ?leader(&standing), "cluster: the leader changed");
    }
    before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cookie: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri("/shop");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn what_belongs_to_the_shared_sessions_goes_to_the_leader() {
        let plain = request(None);
        let participant = request(Some("a=1; cobrowse_participant=s.r"));
        for route in ["ws", "login", "logout", "me"] {
            for door in [Door::Site, Door::Console] {
                assert_eq!(shared_route(Some(route), &plain, door), Some("hub"));
            }
        }
        assert_eq!(shared_route(Some("bind"), &plain, Door::Site), Some("bind"));
        assert_eq!(shared_route(None, &participant, Door::Site), Some("proxy"));
        // Served by whichever node got it: the site for everyone else, our
        // own files, health and metrics, and nothing of the site on the
        // console's door.
        for rest in ["agent.js", "healthz", "metrics", "console", "console.js"] {
            assert_eq!(shared_route(Some(rest), &participant, Door::Site), None);
        }
        assert_eq!(shared_route(None, &plain, Door::Site), None);
        assert_eq!(
            shared_route(None, &request(Some("cobrowse_participantx=1")), Door::Site),
            None
        );
        assert_eq!(shared_route(None, &participant, Door::Console), None);
        let star = Request::builder()
            .method(http::Method::OPTIONS)
            .uri("*")
            .header(header::COOKIE, "cobrowse_participant=s.r")
            .body(())
            .unwrap();
        assert_eq!(shared_route(None, &star, Door::Site), None);
        assert_eq!(shared_route(Some("bind"), &plain, Door::Console), None);
    }
}
