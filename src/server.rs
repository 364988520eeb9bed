//! The listening ports: accepts plain or TLS connections, serves HTTP/1.1
//! and HTTP/2 on them, and routes each request.
//!
//! Two doors, one accept loop. The site's door: paths under the reserved
//! prefix (`/__cobrowse/` by default) are ours (the customer's hub link,
//! the agent, health and metrics); every other path belongs to the upstream
//! site. The console's door, a listener of its own so the console has an
//! origin of its own: the operator console, login and operator WebSockets,
//! and nothing of the site, so no script of the site can reach them.

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
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::assets::Assets;
use crate::body::{self, Body};
use crate::config::Config;
use crate::driver::{Driver, Sessions};
use crate::hub::Hub;
use crate::proxy::Proxy;

/// How long open connections get to finish after shutdown is asked for.
const GRACE: Duration = Duration::from_secs(10);

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// The proxied site's origin: pages, the agent, the customer's hub link.
    Site,
    /// The operator console's own origin: the console, login, operators'
    /// hub links.
    Console,
}

/// What a handler knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub remote: SocketAddr,
    /// The client reached us over TLS (so our own origin is https).
    pub tls: bool,
    pub door: Door,
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
    // Tests and scripts read these lines to find the ports.
    println!("cobrowse listening on {scheme}://{local}");
    println!("  customer:          {scheme}://{local}/");
    if config.console.public_origin.is_some() {
        println!("  console listener:  {scheme}://{}", config.console.listen);
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
    let app = Arc::new(App::new(config)?);
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
/// `shutdown` completes, then lets open connections finish for a bounded
/// grace period.
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
    let graceful = GracefulShutdown::new();
    let stop = CancellationToken::new();
    let asked = async {
        shutdown.await;
        stop.cancel();
    };
    tokio::join!(
        asked,
        accept(site, Door::Site, &app, tls.as_ref(), &graceful, &stop),
        accept(console, Door::Console, &app, tls.as_ref(), &graceful, &stop),
    );
    info!("shutting down: draining open connections");
    tokio::select! {
        () = graceful.shutdown() => info!("all connections closed"),
        () = tokio::time::sleep(GRACE) => warn!("grace period over, closing remaining connections"),
    }
    app.hub.shutdown();
    Ok(())
}

/// The one accept loop, for either door: serves connections from `listener`
/// until `stop` is cancelled.
async fn accept(
    listener: TcpListener,
    door: Door,
    app: &Arc<App>,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    graceful: &GracefulShutdown,
    stop: &CancellationToken,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
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
            () = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let ctx = Ctx {
            remote,
            tls: tls.is_some(),
            door,
        };
        let app = app.clone();
        let service = service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(route(&app, req, ctx).await) }
        });
        match tls {
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
}

/// Picks the handler for a request: ours under the prefix, the proxy's
/// otherwise; on the console's door, the console's routes only.
async fn route(app: &App, mut req: Request<Incoming>, ctx: Ctx) -> Response<Body> {
    if ctx.door == Door::Console {
        return route_console(app, req, ctx).await;
    }
    let rest = req
        .uri()
        .path()
        .strip_prefix(app.config.prefix.as_str())
        .map(str::to_string);
    let Some(rest) = rest else {
        // Cookies ignore ports: the console's login cookie reaches the
        // site's host too. It is ours, and never the upstream's.
        crate::driver::take_cookie(req.headers_mut(), crate::hub::auth::COOKIE);
        return app.proxy.handle(req, ctx).await;
    };
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
        // The address people know: the console lives on its own origin.
        "console" => {
            match site_origin(&req, ctx, &app.config).and_then(|o| console_home(&app.config, &o)) {
                Some(home) => redirect(&home),
                None => text(
                    StatusCode::BAD_REQUEST,
                    "the Host header does not name this proxy\n",
                ),
            }
        }
        "console.js" | "console.css" => text(StatusCode::NOT_FOUND, "not found\n"),
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

/// The console's door: the console page and its files, login, logout, `me`
/// and operators' hub links. Nothing of the site is served here.
async fn route_console(app: &App, req: Request<Incoming>, ctx: Ctx) -> Response<Body> {
    let prefix = app.config.prefix.as_str();
    let path = req.uri().path();
    if path == "/" {
        return redirect(&format!("{prefix}console"));
    }
    let Some(rest) = path.strip_prefix(prefix).map(str::to_string) else {
        return text(
            StatusCode::NOT_FOUND,
            "this is the operator console's origin: the site is not served here\n",
        );
    };
    match rest.as_str() {
        "healthz" => text(StatusCode::OK, "ok\n"),
        "console" | "console.js" | "console.css" => {
            let if_none_match = req.headers().get(header::IF_NONE_MATCH);
            let Some(mut response) = app.assets.serve(&rest, req.method(), if_none_match) else {
                return text(StatusCode::NOT_FOUND, "not found\n");
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
            .unwrap_or_else(|| text(StatusCode::NOT_FOUND, "not found\n")),
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
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(req.uri().authority().map(|a| a.as_str()))?;
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
            text(
                StatusCode::BAD_REQUEST,
                "the Host header does not name this proxy\n",
            )
        })
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
