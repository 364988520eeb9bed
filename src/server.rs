//! The one listening port: accepts plain or TLS connections, serves HTTP/1.1
//! and HTTP/2 on them, and routes each request. Paths under the reserved
//! prefix (`/__cobrowse/` by default) are ours: the hub, login, the assets,
//! health and metrics. Every other path belongs to the upstream site.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::assets::Assets;
use crate::body::{self, Body};
use crate::config::Config;
use crate::driver::{Driver, Sessions};
use crate::hub::Hub;
use crate::proxy::Proxy;

/// How long open connections get to finish after shutdown is asked for.
const GRACE: Duration = Duration::from_secs(10);

/// What a handler knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub remote: SocketAddr,
    /// The client reached us over TLS (so our own origin is https).
    pub tls: bool,
}

impl Ctx {
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// Everything a request may need, shared by all connections.
pub struct App {
    pub config: Arc<Config>,
    pub proxy: Proxy,
    pub hub: Hub,
    /// Shared sessions as the proxy applies them (one driver).
    pub sessions: Sessions,
    pub assets: Assets,
    pub metrics: Option<PrometheusHandle>,
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
            metrics: install_metrics(),
            config,
        })
    }
}

/// The process-wide metrics recorder; `None` when one is installed already
/// (several servers in one test process).
fn install_metrics() -> Option<PrometheusHandle> {
    PrometheusBuilder::new().install_recorder().ok()
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

/// Serves connections from `listener` until `shutdown` completes, then lets
/// open connections finish for a bounded grace period.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let tls = match &app.config.tls {
        Some(t) => Some(crate::tls::acceptor(t)?),
        None => None,
    };
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off, don't spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let ctx = Ctx {
            remote,
            tls: tls.is_some(),
        };
        let app = app.clone();
        let service = service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(route(&app, req, ctx).await) }
        });
        match &tls {
            None => {
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        debug!(error = %e, %remote, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(
                        Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => return debug!(error = %e, %remote, "TLS handshake failed"),
                        Err(_) => return debug!(%remote, "TLS handshake timed out"),
                    };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        debug!(error = %e, %remote, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    info!("shutting down: draining open connections");
    tokio::select! {
        () = graceful.shutdown() => info!("all connections closed"),
        () = tokio::time::sleep(GRACE) => warn!("grace period over, closing remaining connections"),
    }
    app.hub.shutdown();
    Ok(())
}

/// Picks the handler for a request: ours under the prefix, the proxy's
/// otherwise.
async fn route(app: &App, req: Request<Incoming>, ctx: Ctx) -> Response<Body> {
    let Some(rest) = req.uri().path().strip_prefix(app.config.prefix.as_str()) else {
        return app.proxy.handle(req, ctx).await;
    };
    let rest = rest.to_string();
    if !crate::driver::is_safe(req.method())
        && let Some(why) = crate::hub::ws::foreign_page(&req, &ctx, &app.config.public_origins)
    {
        // One rule for every route of ours that may change state: only our
        // own pages ask for it (cross-site request forgery).
        metrics::counter!("cobrowse_hub_foreign_requests_refused_total", "route" => route_label(&rest)).increment(1);
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
            Some(handle) => Response::builder()
                .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
                .body(body::full(handle.render()))
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

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    info!("shutdown requested");
}
