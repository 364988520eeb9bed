//! The listening ports: accepts plain or TLS connections (through
//! [`crate::listener`], which bounds them), serves HTTP/1.1 and HTTP/2 on
//! them, and routes each request.
//!
//! Two doors, one accept loop. The site's door: paths under the reserved
//! prefix (`/__cobrowse/` by default) are ours (the customer's hub link,
//! the agent, health and metrics); every other path belongs to the upstream
//! site. The console's door, a listener of its own so the console has an
//! origin of its own: the operator console, login and operator WebSockets,
//! and nothing of the site, so no script of the site can reach them.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use crate::assets::Assets;
use crate::body::{self, Body};
use crate::cluster::peer::{self, Sender};
use crate::cluster::{Cluster, Decision, Leadership};
use crate::config::Config;
use crate::driver::{Driver, Sessions};
use crate::hub::Hub;
use crate::listener::{self, Connections, Handler};
use crate::proxy::Proxy;
use crate::telemetry::{self, Telemetry};
use crate::web::{self, Ctx, Door};

/// Everything a request may need, shared by all connections.
pub struct App {
    pub config: Arc<Config>,
    pub proxy: Proxy,
    pub hub: Hub,
    /// Shared sessions as the proxy applies them (one driver).
    pub sessions: Sessions,
    pub assets: Assets,
    /// `None` when another recorder was installed first (a test process).
    pub metrics: Option<&'static Telemetry>,
    /// The cluster this node is part of (a Redis store), joined by
    /// [`launch`] once the ports are bound.
    pub(crate) cluster: Option<Cluster>,
}

impl App {
    pub fn new(config: Config) -> anyhow::Result<App> {
        let config = Arc::new(config);
        let hub = Hub::new(config.clone()).context("starting the command store ([store])")?;
        let driver = Driver::for_store(config.driver, &config.store)
            .context("starting the driver's write-behind ([store])")?;
        let sessions = Sessions::new(hub.clone(), driver);
        let assets = Assets::new(&config);
        Ok(App {
            proxy: Proxy::new(config.clone())
                .context("building the upstream client")?
                .with_policy(Arc::new(sessions.clone()))
                .with_agent(assets.agent_url(&config.prefix)),
            sessions,
            hub,
            assets,
            metrics: telemetry::install(),
            config,
            cluster: None,
        })
    }
}

/// What gaining and losing the cluster's leadership does to this node:
/// taking over loads the hub's state, then the driver's documents (whose
/// sweep keeps only those of sessions the hub holds), from Redis; handing
/// over closes the hub's connections with 1012 and forgets both without
/// ending a session.
///
/// A take-over Redis does not answer is tried again, backing off up to 2 s,
/// until it succeeds or the lease is lost meanwhile (a hand-over since it
/// began); until it succeeds the hub's routes answer 503, so nobody is
/// served an empty state in place of the sessions Redis holds.
fn leadership(app: &App) -> Leadership {
    let (hub, driver) = (app.hub.clone(), app.sessions.driver.clone());
    let handovers = Arc::new(AtomicU64::new(0));
    let (gained, lost) = ((hub.clone(), driver.clone()), (hub, driver));
    let seen = handovers.clone();
    Leadership {
        take_over: Box::new(move || {
            let (hub, driver) = gained.clone();
            let handovers = seen.clone();
            Box::pin(async move {
                let began = handovers.load(Ordering::Acquire);
                let still_leading = || handovers.load(Ordering::Acquire) == began;
                let mut pause = Duration::from_millis(100);
                let hub_sessions = loop {
                    match hub.take_over().await {
                        Ok(n) => break n,
                        Err(e) if still_leading() => {
                            warn!(error = %e, retry_in = ?pause, "cluster: taking over the hub's sessions failed; trying again");
                        }
                        Err(e) => {
                            warn!(error = %e, "cluster: taking over the hub's sessions failed, and the lease is lost meanwhile");
                            return;
                        }
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                };
                let driver_sessions = match driver.take_over().await {
                    Ok(n) => n,
                    Err(e) => {
                        // Followers' pages fall back to the site until the
                        // driver's pages are kept again: the sessions go on.
                        warn!(error = %e, "cluster: loading the driver's kept documents failed");
                        0
                    }
                };
                if !still_leading() {
                    // Lost while loading: forget it again.
                    hub.hand_over();
                    driver.hand_over();
                    return;
                }
                info!(
                    sessions = hub_sessions,
                    driver_sessions, "cluster: took over the shared sessions"
                );
            })
        }),
        hand_over: Box::new(move || {
            handovers.fetch_add(1, Ordering::AcqRel);
            lost.0.hand_over();
            lost.1.hand_over();
        }),
    }
}

/// Binds, starts the demo site when configured, prints where to go, and
/// serves until `shutdown` completes.
pub async fn launch(mut config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let console = TcpListener::bind(config.console.listen)
        .await
        .with_context(|| {
            format!(
                "binding the operator console's listener {} ([console] listen)",
                config.console.listen
            )
        })?;
    if config.demo {
        let demo_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the demo site")?;
        let addr = demo_listener.local_addr()?;
        tokio::spawn(crate::demo::serve(demo_listener));
        config.use_demo_upstream(addr);
        info!(%addr, "demo site started");
    }
    let local = listener.local_addr()?;
    // The ports actually bound (0 picks one): the browser side is told them.
    config.listen = local;
    config.console.listen = console.local_addr()?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let console_home =
        console_home(&config, &format!("{scheme}://{local}")).context("the console's address")?;
    let mut app = App::new(config)?;
    // Joined before the ports are announced and served: a single node
    // leads before its first request.
    app.cluster = Cluster::start(&app.config, leadership(&app))
        .await
        .context("joining the cluster ([cluster])")?;
    if let Some(cluster) = &app.cluster {
        // A leader cut off from Redis while another took over must not
        // write its stale state over the new leader's once it reaches
        // Redis again.
        let (lease, node) = cluster.lease();
        app.hub.fence_checkpoint(lease, node);
    }
    let config = &app.config;
    // Tests and scripts read these lines to find the ports.
    println!("cobrowse listening on {scheme}://{local}");
    println!("  customer:          {scheme}://{local}/");
    if config.console.public_origin.is_some() {
        println!("  console listener:  {scheme}://{}", config.console.listen);
    }
    if let Some(cluster) = &app.cluster {
        println!("  cluster:           {}", cluster.health());
    }
    println!("  operator console:  {console_home}");
    if config.demo {
        println!(
            "  demo operator:     user `demo`, password `demo` (demo account from proxy.toml)"
        );
    }
    for site in &config.sites {
        let hosts = if site.hosts.is_empty() {
            "*".to_string()
        } else {
            site.hosts.join(", ")
        };
        println!("  fronting:          {hosts} -> {}", site.upstream);
    }
    let app = Arc::new(app);
    run(listener, console, app, shutdown).await
}

/// The console's home page beside the site reached at `site_origin`.
fn console_home(config: &Config, site_origin: &str) -> Option<String> {
    Some(format!(
        "{}{}console",
        config.console.origin_beside(site_origin)?,
        config.prefix
    ))
}

/// Serves connections from the site's listener and the console's until
/// `shutdown` completes. Then it stops accepting, closes idle connections at once, sends every hub
/// participant `1001` and lets requests in progress finish, all within the
/// grace period (`server.shutdown_grace_secs`).
pub async fn run(
    site: TcpListener,
    console: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let tls = match &app.config.tls {
        Some(t) => Some(crate::tls::acceptor(t)?),
        None => None,
    };
    let connections = Connections::new(&app.config.server);
    info!(
        max_connections = connections.max(),
        per_address = app.config.server.max_connections_per_address,
        "connection limits"
    );
    let stop = CancellationToken::new();
    let handler: Handler = {
        let app = app.clone();
        Arc::new(move |req, ctx| {
            let app = app.clone();
            Box::pin(async move { route(&app, req, ctx).await })
        })
    };
    // Both doors share one set of connection caps.
    let accepting = [(site, Door::Site), (console, Door::Console)].map(|(listener, door)| {
        tokio::spawn(listener::serve(
            listener,
            door,
            tls.clone(),
            connections.clone(),
            handler.clone(),
            stop.clone(),
        ))
    });
    shutdown.await;
    stop.cancel();
    for task in accepting {
        let _ = task.await;
    }
    info!(
        open = connections.count(),
        "shutting down: idle connections closed, requests in progress may finish"
    );
    // In a cluster, `Hub::shutdown` hands the sessions over rather than
    // ending them. The close frames are only queued here; the wait below is what lets
    // each participant's writer deliver and flush them (and, with a Redis
    // store, the hub write its last changes to the checkpoint). The lease
    // goes once those are written, so the node that takes over at once
    // loads them.
    let checkpointed = app.hub.shutdown();
    let (cluster, driver) = (app.cluster.clone(), app.sessions.driver.clone());
    let grace = app.config.server.shutdown_grace;
    let handed_over = async move {
        checkpointed.await;
        // With a Redis store, the ends of the sessions (and what was kept
        // just before) reach Redis within the grace period.
        if !driver.flush(grace).await {
            warn!(
                ?grace,
                "grace period over before the driver's kept documents were written to Redis; they expire there on their own"
            );
        }
        if let Some(cluster) = cluster {
            cluster.stop().await;
        }
    };
    tokio::select! {
        _ = async { tokio::join!(connections.drained(), handed_over) } => info!("all connections closed"),
        () = tokio::time::sleep(grace) => warn!(open = connections.count(), ?grace, "grace period over, closing remaining connections"),
    }
    Ok(())
}

/// Answers one request inside a span carrying the request's id, so every log
/// line about it can be found together; counts it, times it until its
/// headers, and counts its body's bytes as they are sent.
async fn route(app: &App, mut req: Request<Incoming>, ctx: Ctx) -> Response<Body> {
    let started = Instant::now();
    // Before anything reads the request: only a peer with the secret may
    // say who the client is.
    let secret = app.cluster.as_ref().map(Cluster::secret);
    let (ctx, sender) = peer::admit(req.headers_mut(), ctx, secret);
    let name = route_name(&app.config.prefix, req.uri().path());
    // The path only: queries may carry what the site considers private.
    let span = tracing::info_span!("request", id = %crate::logging::new_id(), method = %req.method(), path = req.uri().path(), remote = %ctx.remote);
    async move {
        let response = dispatch(app, req, ctx, sender).await;
        let elapsed = started.elapsed();
        telemetry::request_done(name, response.status(), elapsed);
        info!(
            route = name,
            status = response.status().as_u16(),
            ms = elapsed.as_secs_f64() * 1000.0,
            "answered"
        );
        let (parts, body) = response.into_parts();
        let counter = metrics::counter!(telemetry::HTTP_RESPONSE_BYTES, "route" => name);
        Response::from_parts(parts, telemetry::count_bytes(body, counter))
    }
    .instrument(span)
    .await
}

/// The `route` label of a request (see [`telemetry::ROUTES`]).
fn route_name(prefix: &str, path: &str) -> &'static str {
    match path.strip_prefix(prefix) {
        None => "proxy",
        Some("healthz") => "healthz",
        Some("metrics") => "metrics",
        Some("bind") => "bind",
        Some(rest) if crate::hub::ROUTES.contains(&rest) => "hub",
        Some(_) => "assets",
    }
}

/// Picks the handler for a request: ours under the prefix, the proxy's
/// otherwise; on the console's door, the console's routes only.
async fn dispatch(app: &App, req: Request<Incoming>, ctx: Ctx, sender: Sender) -> Response<Body> {
    let rest = req
        .uri()
        .path()
        .strip_prefix(app.config.prefix.as_str())
        .map(str::to_string);
    // The shared sessions are the leader's: another node forwards them.
    let mut req = match (
        &app.cluster,
        crate::cluster::shared_route(rest.as_deref(), &req, ctx.door),
    ) {
        (Some(cluster), Some(shared)) => match cluster.decide(shared, req, ctx, sender).await {
            Decision::Serve(req) => req,
            Decision::Answered(response) => return response,
        },
        _ => req,
    };
    let Some(rest) = rest else {
        if ctx.door == Door::Console {
            return route_console(app, req, ctx, None).await;
        }
        // Cookies ignore ports: the console's login cookie reaches the
        // site's host too. It is ours, and never the upstream's.
        web::take_cookie(req.headers_mut(), crate::hub::auth::COOKIE);
        return app.proxy.handle(req, ctx).await;
    };
    if !crate::driver::is_safe(req.method())
        && let Some(why) = web::foreign_page(&req, &ctx, public_origins(&app.config, ctx.door))
    {
        // One rule for every route of ours that may change state: only our
        // own pages ask for it (cross-site request forgery).
        metrics::counter!(telemetry::FOREIGN_REQUESTS_REFUSED, "route" => route_label(&rest))
            .increment(1);
        warn!(route = %rest, method = %req.method(), origin = ?req.headers().get(header::ORIGIN),
            sec_fetch_site = ?req.headers().get("sec-fetch-site"), remote = %ctx.remote, why = %why, "refused a request from a foreign page");
        return web::json_error(
            StatusCode::FORBIDDEN,
            &format!("refused: {why}; this request must come from this proxy's own pages"),
        );
    }
    if ctx.door == Door::Console {
        return route_console(app, req, ctx, Some(rest)).await;
    }
    match rest.as_str() {
        "healthz" => healthz(app),
        "bind" => crate::driver::bind(&app.sessions, req, ctx, &app.config.public_origins).await,
        "metrics" => match &app.metrics {
            Some(telemetry) => {
                // Read at each scrape: the store keeps its health current.
                let up = app.hub.store_health().down.is_none();
                metrics::gauge!(telemetry::STORE_UP).set(if up { 1.0 } else { 0.0 });
                Response::builder()
                    .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
                    .body(body::full(telemetry.render()))
                    .expect("static response parts are valid")
            }
            None => web::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "metrics recorder not installed in this process\n",
            ),
        },
        // The address people know: the console lives on its own origin.
        "console" => {
            match site_origin(&req, ctx, &app.config).and_then(|o| console_home(&app.config, &o)) {
                Some(home) => redirect(&home),
                None => web::text(
                    StatusCode::BAD_REQUEST,
                    "the Host header does not name this proxy\n",
                ),
            }
        }
        "console.js" | "console.css" => web::text(StatusCode::NOT_FOUND, "not found\n"),
        _ => {
            let method = req.method().clone();
            let query = req.uri().query().map(str::to_owned);
            let headers = req.headers().clone();
            if let Some(response) = app.hub.handle(&rest, req, ctx).await {
                return response;
            }
            // Remaining routes are the assets, read-only.
            app.assets
                .serve(&rest, query.as_deref(), &method, &headers)
                .unwrap_or_else(|| web::text(StatusCode::NOT_FOUND, "not found\n"))
        }
    }
}

/// `{prefix}healthz`, on both doors: 200 while the node can take calls, 503
/// with the reason while its command store does not answer (a load balancer
/// takes the node out until it does). Cheap under load: the store's health
/// is kept current by the store itself, never asked for here.
fn healthz(app: &App) -> Response<Body> {
    let health = app.hub.store_health();
    let (status, mut text) = match &health.down {
        None => (
            StatusCode::OK,
            format!("ok\nstore: {} answers\n", health.kind),
        ),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "unavailable\nstore: {}: {why}; calls and commands are refused until it answers\n",
                health.kind
            ),
        ),
    };
    // Which node serves the shared sessions: the rest of the site is served
    // by every node whatever this line says.
    if let Some(cluster) = &app.cluster {
        text.push_str(&format!("cluster: {}\n", cluster.health()));
    }
    let mut response = web::text(status, text);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

/// The origins a browser may reach a door at besides its own `Host`
/// (behind a load balancer that terminates TLS).
fn public_origins(config: &Config, door: Door) -> &[String] {
    match door {
        Door::Site => &config.public_origins,
        Door::Console => config.console.public_origin.as_slice(),
    }
}

/// A metric label for a route under the prefix: known names only, so a
/// client cannot grow the label set.
fn route_label(route: &str) -> &'static str {
    match route {
        "bind" => "bind",
        "login" => "login",
        "logout" => "logout",
        _ => "other",
    }
}

/// The console's door: the console page and its files, login, logout, `me`
/// and operators' hub links. Nothing of the site is served here.
async fn route_console(
    app: &App,
    req: Request<Incoming>,
    ctx: Ctx,
    rest: Option<String>,
) -> Response<Body> {
    let Some(rest) = rest else {
        if req.uri().path() == "/" {
            return redirect(&format!("{}console", app.config.prefix));
        }
        return web::text(
            StatusCode::NOT_FOUND,
            "this is the operator console's origin: the site is not served here\n",
        );
    };
    match rest.as_str() {
        "healthz" => healthz(app),
        "console" | "console.js" | "console.css" => {
            let Some(mut response) =
                app.assets
                    .serve(&rest, req.uri().query(), req.method(), req.headers())
            else {
                return web::text(StatusCode::NOT_FOUND, "not found\n");
            };
            if rest == "console" {
                let site = console_origin(&req, ctx, &app.config)
                    .and_then(|c| app.config.site_origin_beside(&c));
                console_page_headers(response.headers_mut(), site.as_deref());
            }
            response
        }
        _ => app
            .hub
            .handle(&rest, req, ctx)
            .await
            .unwrap_or_else(|| web::text(StatusCode::NOT_FOUND, "not found\n")),
    }
}

/// The console is framed by nobody and opened by nobody else's window (a
/// site page that opens it gets no handle on it); it frames only the site.
fn console_page_headers(headers: &mut http::HeaderMap, site: Option<&str>) {
    let frame_src = site.unwrap_or("'none'");
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
         frame-src {frame_src}; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
    );
    let pairs = [
        (header::CONTENT_SECURITY_POLICY, policy),
        (header::X_FRAME_OPTIONS, "DENY".to_string()),
        (
            http::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin".to_string(),
        ),
        (header::REFERRER_POLICY, "no-referrer".to_string()),
    ];
    for (name, value) in pairs {
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
}

/// The origin the browser reached us at: the request's scheme and `Host`.
fn request_origin<B>(req: &Request<B>, ctx: Ctx) -> Option<String> {
    let host = web::host(req)?;
    let url = url::Url::parse(&format!("{}://{host}", ctx.scheme())).ok()?;
    Some(url.origin().ascii_serialization())
}

/// The site's origin a request on the site's door was made to: the first
/// public origin behind a load balancer, else the request's own.
fn site_origin<B>(req: &Request<B>, ctx: Ctx, config: &Config) -> Option<String> {
    config
        .public_origins
        .first()
        .cloned()
        .or_else(|| request_origin(req, ctx))
}

/// The console's origin a request on the console's door was made to.
fn console_origin<B>(req: &Request<B>, ctx: Ctx, config: &Config) -> Option<String> {
    config
        .console
        .public_origin
        .clone()
        .or_else(|| request_origin(req, ctx))
}

fn redirect(location: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, location)
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body::full(format!(
            "The operator console is at {location}\n"
        )))
        .unwrap_or_else(|_| {
            web::text(
                StatusCode::BAD_REQUEST,
                "the Host header does not name this proxy\n",
            )
        })
}

/// Completes on Ctrl-C or SIGTERM. The signals are caught from the call
/// on, not from the first poll: a SIGTERM while the server is still starting
/// is a shutdown too, not the default action's abrupt exit. Call it inside
/// the runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let (int, term) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            async fn recv(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = recv(int) => {},
                () = recv(term) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        info!("shutdown requested");
    }
}
