//! Operator login: accounts from the config, checked against their argon2id
//! hashes, a random token in an HttpOnly SameSite=Strict cookie, and login
//! attempts rate-limited per account and per address.
//!
//! Login, logout and `me` answer only on the console's door and only to the
//! console's own pages: the site's scripts run on another origin, and the
//! operator's authority must be out of their reach.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use tracing::{info, warn};

use crate::body::{self, Body};
use crate::config::Config;
use crate::lock::lock;
use crate::telemetry;
use crate::web::{self, Ctx, Door};

pub const COOKIE: &str = "cobrowse_operator";

/// How long a login lasts.
pub const LOGIN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The largest login body read.
const MAX_LOGIN_BODY: usize = 8 * 1024;
/// Attempts per account: a burst of 10, then one every 6 s.
const PER_ACCOUNT_BURST: u32 = 10;
const PER_ACCOUNT_EVERY: Duration = Duration::from_secs(6);
/// Attempts per client address: a burst of 30, then one every 2 s.
const PER_ADDRESS_BURST: u32 = 30;
const PER_ADDRESS_EVERY: Duration = Duration::from_secs(2);

/// A logged-in operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub name: String,
}

/// Called with a login's token whenever it is issued or revoked.
type ChangeHook = Box<dyn Fn(&str) + Send + Sync>;

pub struct Logins {
    /// Each login's account and when it lapses.
    tokens: Mutex<HashMap<String, (Account, Instant)>>,
    per_account: DefaultKeyedRateLimiter<String>,
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    /// Told of every login issued or revoked (the hub's checkpoint, so a
    /// node that takes over accepts the same cookies).
    changed: OnceLock<ChangeHook>,
}

fn quota(burst: u32, every: Duration) -> Quota {
    Quota::with_period(every)
        .expect("a non-zero period")
        .allow_burst(NonZeroU32::new(burst).expect("a non-zero burst"))
}

impl Default for Logins {
    fn default() -> Self {
        Self::new()
    }
}

impl Logins {
    pub fn new() -> Logins {
        Logins {
            tokens: Mutex::new(HashMap::new()),
            per_account: RateLimiter::keyed(quota(PER_ACCOUNT_BURST, PER_ACCOUNT_EVERY)),
            per_address: RateLimiter::keyed(quota(PER_ADDRESS_BURST, PER_ADDRESS_EVERY)),
            changed: OnceLock::new(),
        }
    }

    /// Calls `hook` with the token of every login issued or revoked from
    /// now on (once; later hooks are ignored).
    pub fn on_change(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.changed.set(Box::new(hook));
    }

    fn tell(&self, token: &str) {
        if let Some(hook) = self.changed.get() {
            hook(token);
        }
    }

    /// The operator a request's cookie belongs to.
    pub fn account(&self, headers: &HeaderMap) -> Option<Account> {
        let token = web::cookie(headers, COOKIE)?;
        self.get(token).map(|(account, _)| account)
    }

    /// The login `token` names and how long it has left, if it is live.
    pub fn get(&self, token: &str) -> Option<(Account, Duration)> {
        let tokens = lock(&self.tokens);
        let (account, until) = tokens.get(token)?;
        let left = until.checked_duration_since(Instant::now())?;
        (!left.is_zero()).then(|| (account.clone(), left))
    }

    /// Takes up a login issued elsewhere (by the node this one takes over
    /// from) with the time it has left, capped at a login's lifetime.
    pub fn restore(&self, token: String, account: Account, left: Duration) {
        let left = left.min(LOGIN_LIFETIME);
        if left.is_zero() {
            return;
        }
        lock(&self.tokens).insert(token, (account, Instant::now() + left));
    }

    /// Forgets every login without revoking any: this node hands them over
    /// (they stay in the checkpoint for the node that takes over).
    pub fn forget_all(&self) {
        lock(&self.tokens).clear();
    }

    /// Drops expired logins and forgotten rate-limit entries.
    pub fn tidy(&self) {
        let now = Instant::now();
        let mut lapsed = Vec::new();
        lock(&self.tokens).retain(|token, (_, until)| {
            let live = *until > now;
            if !live {
                lapsed.push(token.clone());
            }
            live
        });
        for token in &lapsed {
            self.tell(token);
        }
        self.per_account.retain_recent();
        self.per_address.retain_recent();
    }

    pub(super) fn issue(&self, account: Account) -> String {
        let token = crate::secret::new_secret();
        lock(&self.tokens).insert(token.clone(), (account, Instant::now() + LOGIN_LIFETIME));
        self.tell(&token);
        token
    }

    fn revoke(&self, headers: &HeaderMap) {
        if let Some(token) = web::cookie(headers, COOKIE) {
            let gone = lock(&self.tokens).remove(token).is_some();
            if gone {
                self.tell(token);
            }
        }
    }
}

#[derive(Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

fn cookie_header(config: &Config, secure: bool, value: &str, max_age: Option<u64>) -> String {
    let mut c = format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path={}",
        config.prefix
    );
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

/// Why a login request carries no credentials this module can read: the
/// client's fault, answered 400 with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum BadLogin {
    #[error("the login body is unreadable or too large")]
    Body,
    #[error("expected a JSON object with string fields `user` and `password`")]
    Json,
    #[error("expected form fields `user` and `password`")]
    Form,
}

async fn credentials(req: Request<Incoming>) -> Result<Credentials, BadLogin> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let bytes = Limited::new(req.into_body(), MAX_LOGIN_BODY)
        .collect()
        .await
        .map_err(|_| BadLogin::Body)?
        .to_bytes();
    if is_json {
        return serde_json::from_slice(&bytes).map_err(|_| BadLogin::Json);
    }
    let mut user = None;
    let mut password = None;
    for (k, v) in url::form_urlencoded::parse(&bytes) {
        match &*k {
            "user" => user = Some(v.into_owned()),
            "password" => password = Some(v.into_owned()),
            _ => {}
        }
    }
    match (user, password) {
        (Some(user), Some(password)) => Ok(Credentials { user, password }),
        _ => Err(BadLogin::Form),
    }
}

/// Whether a request comes from the console's own pages: it came in on the
/// console's door, and a browser that says where it comes from names the
/// console's origin. A foreign page must not log an operator in or out
/// (login CSRF), and the site's pages (the same host on another port, so
/// the cookie reaches them) must not use the login. Clients that send
/// neither `Origin` nor `Sec-Fetch-Site` (scripts, tests) are not browsers
/// on a foreign page.
pub fn from_the_console<B>(req: &Request<B>, ctx: &Ctx, config: &Config) -> bool {
    if ctx.door != Door::Console {
        return false;
    }
    let headers = req.headers();
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|s| s != "same-origin" && s != "none") {
        return false;
    }
    if !headers.contains_key(header::ORIGIN) {
        return true;
    }
    web::same_origin(
        headers,
        web::host(req),
        ctx,
        config.console.public_origin.as_slice(),
    )
}

/// The answer to operator routes asked for elsewhere than the console.
fn not_from_the_console(req: &Request<Incoming>, ctx: &Ctx) -> Response<Body> {
    warn!(remote = %ctx.remote, path = req.uri().path(), origin = ?req.headers().get(header::ORIGIN), "operator route refused: not from the console's origin");
    metrics::counter!(telemetry::HUB_OPERATOR_REFUSALS, "reason" => "origin").increment(1);
    web::json_error(
        StatusCode::FORBIDDEN,
        "operators sign in on the operator console's own origin, not from the site's pages",
    )
}

/// `POST {prefix}login`. Only the console's own pages may ask: the Origin
/// rule for every state-changing route (in `server::dispatch`), then this
/// door's own check. No login CSRF.
pub async fn login(
    config: &Config,
    logins: &Logins,
    req: Request<Incoming>,
    ctx: Ctx,
) -> Response<Body> {
    if req.method() != Method::POST {
        return web::json_error(StatusCode::METHOD_NOT_ALLOWED, "log in with POST");
    }
    if !from_the_console(&req, &ctx, config) {
        return not_from_the_console(&req, &ctx);
    }
    let secure = web::browser_on_https(
        &ctx,
        web::Named::Origin(req.headers()),
        config.console.public_origin.as_slice(),
    );
    let creds = match credentials(req).await {
        Ok(c) => c,
        Err(e) => return web::json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let addr = ctx.remote.ip();
    let clock = DefaultClock::default();
    let limited = logins
        .per_address
        .check_key(&addr)
        .and_then(|_| logins.per_account.check_key(&creds.user))
        .err()
        .map(|not_until| not_until.wait_time_from(clock.now()));
    if let Some(wait) = limited {
        warn!(user = %creds.user, %addr, "login rate-limited");
        info!(target: "audit", event = "login_failed", user = %creds.user, %addr, reason = "rate_limited");
        metrics::counter!(telemetry::HUB_LOGINS, "outcome" => "rate_limited").increment(1);
        telemetry::limit_hit(telemetry::limit::LOGIN_RATE);
        let secs = wait.as_secs() + 1;
        let mut r = web::json_error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("too many login attempts; try again in {secs} s"),
        );
        r.headers_mut().insert(header::RETRY_AFTER, secs.into());
        return r;
    }
    let operator = config
        .operators
        .iter()
        .find(|o| o.user == creds.user)
        .cloned();
    // An unknown user costs the same hash as a known one, so response times
    // do not tell which accounts exist.
    let hash = operator.as_ref().map(|o| o.password_hash.clone());
    let password = creds.password;
    // One hash at a time per spare core: each takes argon2's 19 MiB and a
    // core for tens of milliseconds, so a crowd of logins would otherwise
    // take the memory of all of them at once and starve the threads that
    // serve pages, the hub and the cluster's lease. The others wait here;
    // the permit goes with the hash, so a client that gives up waiting
    // does not free it before the hash is done.
    let matches = match HASHING.clone().acquire_owned().await {
        Ok(permit) => tokio::task::spawn_blocking(move || {
            let _permit = permit;
            crate::password::verify(&password, hash.as_deref().unwrap_or(&DUMMY_HASH))
        })
        .await
        .unwrap_or(false),
        Err(_) => false,
    };
    match operator {
        Some(o) if matches => {
            info!(target: "audit", event = "login", user = %o.user, %addr);
            metrics::counter!(telemetry::HUB_LOGINS, "outcome" => "ok").increment(1);
            let token = logins.issue(Account {
                user: o.user.clone(),
                name: o.name.clone(),
            });
            let mut r = Response::builder()
                .status(StatusCode::NO_CONTENT)
                .header(header::CACHE_CONTROL, "no-store")
                .body(body::empty())
                .expect("static response parts are valid");
            let c = cookie_header(config, secure, &token, None);
            r.headers_mut()
                .insert(header::SET_COOKIE, c.parse().expect("the cookie is ASCII"));
            r
        }
        _ => {
            info!(target: "audit", event = "login_failed", user = %creds.user, %addr, reason = "bad_credentials");
            metrics::counter!(telemetry::HUB_LOGINS, "outcome" => "bad_credentials").increment(1);
            web::json_error(StatusCode::UNAUTHORIZED, "wrong user or password")
        }
    }
}

/// `POST {prefix}logout`.
pub fn logout(
    config: &Config,
    logins: &Logins,
    req: &Request<Incoming>,
    ctx: Ctx,
) -> Response<Body> {
    if req.method() != Method::POST {
        return web::json_error(StatusCode::METHOD_NOT_ALLOWED, "log out with POST");
    }
    if !from_the_console(req, &ctx, config) {
        return not_from_the_console(req, &ctx);
    }
    if let Some(a) = logins.account(req.headers()) {
        info!(target: "audit", event = "logout", user = %a.user);
    }
    logins.revoke(req.headers());
    let mut r = Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(body::empty())
        .expect("static response parts are valid");
    let secure = web::browser_on_https(
        &ctx,
        web::Named::Origin(req.headers()),
        config.console.public_origin.as_slice(),
    );
    let c = cookie_header(config, secure, "", Some(0));
    r.headers_mut()
        .insert(header::SET_COOKIE, c.parse().expect("the cookie is ASCII"));
    r
}

/// `GET {prefix}me`.
pub fn me(config: &Config, logins: &Logins, req: &Request<Incoming>, ctx: Ctx) -> Response<Body> {
    if !from_the_console(req, &ctx, config) {
        return not_from_the_console(req, &ctx);
    }
    match logins.account(req.headers()) {
        Some(a) => web::json(
            StatusCode::OK,
            serde_json::json!({ "user": a.user, "name": a.name }).to_string(),
        ),
        None => web::json_error(StatusCode::UNAUTHORIZED, "not logged in"),
    }
}

/// Password hashes computed at once: one per core but one, at least one.
static HASHING: LazyLock<Arc<tokio::sync::Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    Arc::new(tokio::sync::Semaphore::new(cores.saturating_sub(1).max(1)))
});

/// argon2id of a random password nobody knows, with the default parameters.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    crate::password::hash(&crate::secret::new_secret()).expect("hashing a fresh secret succeeds")
});
