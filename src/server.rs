//! The one listening port: accepts plain or TLS connections (through
//! [`crate::listener`], which bounds them), serves HTTP/1.1 and HTTP/2 on
//! them, and routes each request. Paths under the reserved
//! prefix (`/__cobrowse/` by default) are ours: the hub, login, the assets,
//! health and metrics. Every other path belongs to the upstream site.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use crate::assets::Assets;
use crate::body::{self, Body};
use crate::config::Config;
use crate::driver::{Driver, Sessions};
use crate::hub::Hub;
use crate::listener::{self, Connections, Handler};
use crate::proxy::Proxy;
use crate::telemetry::{self, Telemetry};

pub use crate::listener::Ctx;

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
}

impl App {
    pub fn new(config: Config) -> anyhow::Result<App> {
        let config = Arc::new(config);
        let hub = Hub::new(config.clone());
        let sessions = Sessions::new(hub.clone(), Driver::new(config.driver));
        Ok(App {
            proxy: Proxy::new(config.clone())
                .context("building the upstream client")?
                .with_sessions(sessions.clone()),
            sessions,
            hub,
            assets: Assets::new(&config),
            metrics: telemetry::install(),
            config,
        })
    }
}

/// Binds, starts the demo site when configured, prints where to go, and
/// serves until `shutdown` completes.
pub async fn launch(mut config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
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
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // Tests and scripts read these lines to find the port.
    println!("cobrowse listening on {scheme}://{local}");
    println!("  customer:          {scheme}://{local}/");
    println!(
        "  operator console:  {scheme}://{local}{}console",
        config.prefix
    );
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
    let app = Arc::new(App::new(config)?);
    run(listener, app, shutdown).await
}

/// Serves connections from `listener` until `shutdown` completes. Then it
/// stops accepting, closes idle connections at once, sends every hub
/// participant `1001` and lets requests in progress finish, all within the
/// grace period (`server.shutdown_grace_secs`).
pub async fn run(
    listener: TcpListener,
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
    let accepting = tokio::spawn(listener::serve(
        listener,
        tls,
        connections.clone(),
        handler,
        stop.clone(),
    ));
    shutdown.await;
    stop.cancel();
    let _ = accepting.await;
    info!(
        open = connections.count(),
        "shutting down: idle connections closed, requests in progress may finish"
    );
    // The close frames are only queued here; the wait below is what lets
    // each participant's writer deliver and flush them.
    app.hub.shutdown();
    let grace = app.config.server.shutdown_grace;
    tokio::select! {
        () = connections.drained() => info!("all connections closed"),
        () = tokio::time::sleep(grace) => warn!(open = connections.count(), ?grace, "grace period over, closing remaining connections"),
    }
    Ok(())
}

/// Answers one request inside a span carrying the request's id, so every log
/// line about it can be found together; counts it, times it until its
/// headers, and counts its body's bytes as they are sent.
async fn route(app: &App, req: Request<Incoming>, ctx: Ctx) -> Response<Body> {
    let started = Instant::now();
    let name = route_name(&app.config.prefix, req.uri().path());
    // The path only: queries may carry what the site considers private.
    let span = tracing::info_span!("request", id = %crate::logging::new_id(), method = %req.method(), path = req.uri().path(), remote = %ctx.remote);
    async move {
        let response = dispatch(app, req, ctx).await;
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
/// otherwise.
async fn dispatch(app: &App, req: Request<Incoming>, ctx: Ctx) -> Response<Body> {
    let Some(rest) = req.uri().path().strip_prefix(app.config.prefix.as_str()) else {
        return app.proxy.handle(req, ctx).await;
    };
    let rest = rest.to_string();
    if !crate::driver::is_safe(req.method())
        && let Some(why) = crate::hub::ws::foreign_page(&req, &ctx, &app.config.public_origins)
    {
        // One rule for every route of ours that may change state: only our
        // own pages ask for it (cross-site request forgery).
        metrics::counter!(telemetry::FOREIGN_REQUESTS_REFUSED, "route" => route_label(&rest)).increment(1);
        warn!(route = %rest, method = %req.method(), origin = ?req.headers().get(header::ORIGIN),
            sec_fetch_site = ?req.headers().get("sec-fetch-site"), remote = %ctx.remote, why, "refused a request from a foreign page");
        let body = serde_json::json!({ "error": format!("refused: {why}; this request must come from this proxy's own pages") });
        return Response::builder()
            .status(StatusCode::FORBIDDEN)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-store")
            .body(body::full(body.to_string()))
            .expect("static response parts are valid");
    }
    match rest.as_str() {
        "healthz" => text(StatusCode::OK, "ok\n"),
        "bind" => crate::driver::bind(&app.sessions, req, ctx, &app.config.public_origins).await,
        "metrics" => match &app.metrics {
            Some(telemetry) => Response::builder()
                .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
                .body(body::full(telemetry.render()))
                .expect("static response parts are valid"),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "metrics recorder not installed in this process\n",
            ),
        },
        _ => {
            let method = req.method().clone();
            let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
            if let Some(response) = app.hub.handle(&rest, req, ctx).await {
                return response;
            }
            // Remaining routes are the assets, read-only.
            app.assets
                .serve(&rest, &method, if_none_match.as_ref())
                .unwrap_or_else(|| text(StatusCode::NOT_FOUND, "not found\n"))
        }
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

pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body::full(body))
        .expect("static response parts are valid")
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
