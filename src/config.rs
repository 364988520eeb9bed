//! The configuration: `proxy.toml` read raw (unknown keys are errors), then
//! resolved and validated into [`Config`], the form the program uses.
//!
//! Every error names the field, and the line when it came from a file, so
//! `cobrowse check` can point at the mistake.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use url::Url;

/// Flags given on the command line; each overrides the file's value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub upstream: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the one listening port binds.
    pub listen: SocketAddr,
    /// The reserved path prefix for the proxy's own routes, with a leading
    /// and a trailing slash. Default `/__cobrowse/`.
    pub prefix: String,
    /// The sites fronted. A request's `Host` picks one; the first site is the
    /// fallback for hosts no site names.
    pub sites: Vec<Site>,
    /// Start the bundled demo site and front it (the default proxy.toml).
    pub demo: bool,
    pub tls: Option<Tls>,
    /// An extra PEM CA bundle trusted for upstream HTTPS, beside the system's
    /// and the webpki roots.
    pub upstream_ca: Option<PathBuf>,
    /// The origins browsers see the proxy at, `https://host[:port]`, each
    /// serialised as a browser sends it in `Origin`. Behind a load balancer
    /// that terminates TLS the request's own scheme and `Host` are not what
    /// the browser sees, so when this is set it replaces them in the Origin
    /// checks. Empty (the default): the request's own scheme and `Host`.
    pub public_origins: Vec<String>,
    /// The operator console's own origin (`[console]`).
    pub console: Console,
    pub operators: Vec<Operator>,
    pub privacy: Privacy,
    pub server: ServerLimits,
    pub hub: HubLimits,
    pub proxy: ProxyLimits,
    pub driver: DriverLimits,
    pub audit: Audit,
    /// Where sessions' difference commands are kept (`[store]`).
    pub store: Store,
    /// How nodes sharing a Redis store act as one (`[cluster]`); `Some`
    /// exactly when the store is Redis.
    pub cluster: Option<Cluster>,
}

/// `[cluster]`: nodes with the same Redis store act as one; one of them,
/// the leader, serves the shared sessions and the others forward to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// What a peer shows to be believed about the client it forwards for
    /// (`x-cobrowse-peer`); the same on every node, at least 32 characters.
    pub secret: String,
    /// `host:port` where peers reach this node's site door. `None`: the
    /// address `listen` is bound to (checked not to be unspecified).
    pub advertise: Option<String>,
    /// `host:port` where peers reach this node's console door. `None`: the
    /// address `[console] listen` is bound to.
    pub console_advertise: Option<String>,
    /// How long the leader's lease lasts unless renewed (a third of it
    /// between renewals). Default 3 s.
    pub lease: Duration,
}

pub const DEFAULT_CLUSTER_LEASE: Duration = Duration::from_millis(3000);
/// A cluster secret shorter than this is refused.
pub const MIN_CLUSTER_SECRET: usize = 32;

/// `[store]`: the command store. In memory (the default) or in Redis, where
/// several nodes with the same `[store]` share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    Memory,
    Redis(RedisStore),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStore {
    /// `redis://[user:password@]host[:port][/db]` or `redis+unix:///path`.
    pub url: String,
    /// Put before every key and channel name, so deployments can share one
    /// Redis. Default `cobrowse:`.
    pub prefix: String,
    /// A session's keys expire this long after it was last written or read,
    /// so a node that dies leaves nothing behind for good. Default 24 h.
    pub expire: Duration,
}

pub const DEFAULT_REDIS_PREFIX: &str = "cobrowse:";
pub const DEFAULT_REDIS_EXPIRE: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, Default)]
pub struct Audit {
    /// The JSON-lines file audit events are appended to. `None` (the
    /// default): they stay in the log under the target `audit`.
    pub path: Option<PathBuf>,
}

/// The operator console is served on a listener of its own, so it has an
/// origin of its own: the site's scripts, which run on the proxy's origin,
/// can neither read it nor act with the operator's login (the login, the
/// queue and operator WebSockets are accepted only from this origin).
#[derive(Debug, Clone)]
pub struct Console {
    /// Where the console's listener binds. Default: the address of `listen`
    /// with the next port (port 0, an ephemeral port, stays 0).
    pub listen: SocketAddr,
    /// The origin browsers see the console at, `https://host[:port]`, when a
    /// load balancer in front terminates TLS; replaces the request's own
    /// scheme and `Host` in the console's Origin checks, and is where the
    /// site's `{prefix}console` redirects. `None` (the default): the site's
    /// host name, its scheme, and the console listener's port.
    pub public_origin: Option<String>,
}

impl Console {
    /// The console's origin as seen beside a site reached at `site_origin`
    /// (`scheme://host[:port]`): the public origin when configured, else the
    /// same scheme and host name on the console's port.
    pub fn origin_beside(&self, site_origin: &str) -> Option<String> {
        if let Some(public) = &self.public_origin {
            return Some(public.clone());
        }
        let mut url = Url::parse(site_origin).ok()?;
        url.set_port(Some(self.listen.port())).ok()?;
        Some(url.origin().ascii_serialization())
    }
}

#[derive(Debug, Clone)]
pub struct Site {
    /// Host names (without port) this site answers on; empty: any host.
    pub hosts: Vec<String>,
    /// The upstream origin, `http(s)://host[:port]`, no path.
    pub upstream: Url,
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Operator {
    pub user: String,
    /// An argon2id PHC string, as printed by `cobrowse hash-password`.
    pub password_hash: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct Privacy {
    /// CSS selectors whose fields are masked, beside passwords and payment
    /// fields, which always are.
    pub mask: Vec<String>,
    /// JSON object keys whose values are blanked in JSON served to
    /// followers, beside the built-in password, PIN, CVC and card-number
    /// keys; stored normalised (see [`normalise_key`]).
    pub json_keys: Vec<String>,
    /// Largest JSON body (decoded) masked for a follower; a larger one is
    /// refused to followers. Default 2 MiB.
    pub json_max_bytes: usize,
}

impl Default for Privacy {
    fn default() -> Self {
        Privacy {
            mask: Vec::new(),
            json_keys: Vec::new(),
            json_max_bytes: 2 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HubLimits {
    /// Largest WebSocket message accepted. Default 64 KiB.
    pub max_message_bytes: usize,
    /// Messages per second per connection (burst twice that). Default 200.
    pub messages_per_second: u32,
    /// Keys stored per session. Default 10,000.
    pub max_keys_per_session: usize,
    /// Bytes of stored commands per session. Default 8 MiB.
    pub max_bytes_per_session: usize,
    /// A session nobody is connected to ends after this. Default 30 min.
    pub idle_session: Duration,
    /// An offer not answered in this time goes to the next operator. Default 30 s.
    pub offer_timeout: Duration,
    /// How long a participant whose connection dropped stays in its session
    /// waiting to resume; the idle expiry caps it. Default 2 min.
    pub reconnect_grace: Duration,
    /// Sessions the hub holds at once; a call beyond is refused. Default 10,000.
    pub max_sessions: usize,
    /// Bytes of hub messages queued for one connection before it counts as
    /// not reading and is closed. Default 1 MiB.
    pub max_outbound_bytes: usize,
    /// Bytes of commands a session's live feed keeps for receivers that are
    /// behind; one further behind is resynchronised. Default 1 MiB.
    pub max_feed_bytes_per_session: usize,
    /// WebSockets open at once from one client address (an IPv6 /64).
    /// Default 500.
    pub max_sockets_per_address: usize,
    /// Calls from one client address in a burst. Default 100.
    pub call_burst_per_address: u32,
    /// Calls from one client address per minute once the burst is spent.
    /// Default 60.
    pub calls_per_minute_per_address: u32,
    /// Digits in a join code a customer reads out. Default 6 (6 to 12).
    pub code_length: usize,
    /// A join code not used within this is void. Default 10 min.
    pub code_expiry: Duration,
    /// Join-code lookups per operator account per minute (also the burst).
    /// Default 10.
    pub code_lookups_per_minute_per_operator: u32,
    /// Join-code lookups per client address per minute (also the burst).
    /// Default 30.
    pub code_lookups_per_minute_per_address: u32,
    /// Chat messages a session keeps for late joiners. Default 200.
    pub chat_max_messages: usize,
    /// Bytes of chat text (and sender names) a session keeps. Default 64 KiB.
    pub chat_max_bytes: usize,
    /// Characters in one chat message. Default 1000.
    pub chat_max_chars: usize,
}

/// What one client connection may hold, and for how long.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// From a connection's first byte (or the first byte after the previous
    /// response) to a request's complete headers. Default 10 s.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress and no byte received for
    /// this long is closed. Default 60 s.
    pub idle_timeout: Duration,
    /// A TLS handshake must complete within this. Default 10 s.
    pub tls_handshake_timeout: Duration,
    /// Client connections open at once (WebSockets included); the open-file
    /// limit may lower it. Default 4096.
    pub max_connections: usize,
    /// Client connections open at once from one address (an IPv6 /64 counts
    /// as one). Default 256.
    pub max_connections_per_address: usize,
    /// After SIGTERM, how long connections with a request in progress get to
    /// finish. Default 10 s.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct ProxyLimits {
    /// The HTML rewrite's memory per document (the tag or comment the link
    /// scanner holds, and lol_html's for a follower's document); past it the
    /// rest of the document passes through unmodified. Default 1 MiB.
    pub html_memory_limit: usize,
    /// Connecting to the upstream. Default 10 s.
    pub connect_timeout: Duration,
    /// Waiting for the upstream's response headers. Default 30 s.
    pub response_timeout: Duration,
    /// An upstream body that sends nothing for this long is abandoned and the
    /// client's response aborted. Default 60 s.
    pub body_idle_timeout: Duration,
    /// A rewritten document (HTML, CSS, a driver's JSON kept for followers)
    /// must arrive whole this long after its headers, else the client's
    /// response is aborted: an upstream that trickles is never idle.
    /// Default 120 s.
    pub document_timeout: Duration,
    /// The most a rewritten document (HTML or CSS) may decode to; past it the
    /// client's response is aborted. Default 32 MiB.
    pub max_decoded_bytes: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_connections_per_address: 256,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl Default for HubLimits {
    fn default() -> Self {
        HubLimits {
            max_message_bytes: 64 * 1024,
            messages_per_second: 200,
            max_keys_per_session: 10_000,
            max_bytes_per_session: 8 * 1024 * 1024,
            idle_session: Duration::from_secs(30 * 60),
            offer_timeout: Duration::from_secs(30),
            reconnect_grace: Duration::from_secs(120),
            max_sessions: 10_000,
            max_outbound_bytes: 1024 * 1024,
            max_feed_bytes_per_session: 1024 * 1024,
            max_sockets_per_address: 500,
            call_burst_per_address: 100,
            calls_per_minute_per_address: 60,
            code_length: 6,
            code_expiry: Duration::from_secs(10 * 60),
            code_lookups_per_minute_per_operator: 10,
            code_lookups_per_minute_per_address: 30,
            chat_max_messages: 200,
            chat_max_bytes: 64 * 1024,
            chat_max_chars: 1000,
        }
    }
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            html_memory_limit: 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            document_timeout: Duration::from_secs(120),
            max_decoded_bytes: 32 * 1024 * 1024,
        }
    }
}

impl Default for DriverLimits {
    fn default() -> Self {
        DriverLimits {
            documents_per_session: 32,
            bytes_per_session: 16 * 1024 * 1024,
            max_age: Duration::from_secs(10 * 60),
            follower_wait: Duration::from_secs(3),
        }
    }
}

/// Bounds on the driver's documents kept per session for its followers.
#[derive(Debug, Clone, Copy)]
pub struct DriverLimits {
    pub documents_per_session: usize,
    pub bytes_per_session: usize,
    pub max_age: Duration,
    /// How long a follower's read waits for the driver's response to the
    /// same request when the follower asks first.
    pub follower_wait: Duration,
}

/// A JSON key as masking compares it: lowercase ASCII letters and digits
/// only, so `cardNumber`, `card_number`, `card-number` and `CC-Number` are
/// one key each with their kin. Configured keys are stored this way.
pub fn normalise_key(key: &str) -> String {
    key.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Whether `selector` is one the document rewriter (lol_html) can match,
/// so a bad `privacy.mask` selector is refused at start.
fn check_selector(selector: &str) -> Result<(), String> {
    selector
        .parse::<lol_html::Selector>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_PREFIX: &str = "/__cobrowse/";

/// A configuration error: which field, where, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub field: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, _) => {}
        }
        write!(f, "`{}`: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

// ---- the raw file -------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    upstream: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    upstream_ca: Option<Spanned<String>>,
    #[serde(default)]
    public_origins: Vec<Spanned<String>>,
    #[serde(default)]
    sites: Vec<RawSite>,
    tls: Option<RawTls>,
    #[serde(default)]
    operators: Vec<RawOperator>,
    demo: Option<RawDemo>,
    privacy: Option<RawPrivacy>,
    server: Option<RawServer>,
    hub: Option<RawHub>,
    proxy: Option<RawProxy>,
    driver: Option<RawDriver>,
    audit: Option<RawAudit>,
    console: Option<RawConsole>,
    store: Option<RawStore>,
    cluster: Option<RawCluster>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    secret: Option<Spanned<String>>,
    advertise: Option<Spanned<String>>,
    console_advertise: Option<Spanned<String>>,
    lease_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    kind: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    expire_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    listen: Option<Spanned<String>>,
    public_origin: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDriver {
    documents_per_session: Option<Spanned<usize>>,
    bytes_per_session: Option<Spanned<usize>>,
    document_max_age_secs: Option<Spanned<u64>>,
    follower_wait_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    upstream: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Spanned<String>,
    key: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperator {
    user: Spanned<String>,
    password_hash: Spanned<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDemo {
    enabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrivacy {
    #[serde(default)]
    mask: Vec<Spanned<String>>,
    #[serde(default)]
    json_keys: Vec<Spanned<String>>,
    json_max_bytes: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHub {
    max_message_bytes: Option<Spanned<usize>>,
    messages_per_second: Option<Spanned<u32>>,
    max_keys_per_session: Option<Spanned<usize>>,
    max_bytes_per_session: Option<Spanned<usize>>,
    idle_session_secs: Option<Spanned<u64>>,
    offer_timeout_secs: Option<Spanned<u64>>,
    reconnect_grace_secs: Option<Spanned<u64>>,
    max_sessions: Option<Spanned<usize>>,
    max_outbound_bytes: Option<Spanned<usize>>,
    max_feed_bytes_per_session: Option<Spanned<usize>>,
    max_sockets_per_address: Option<Spanned<usize>>,
    call_burst_per_address: Option<Spanned<u32>>,
    calls_per_minute_per_address: Option<Spanned<u32>>,
    code_length: Option<Spanned<usize>>,
    code_expiry_secs: Option<Spanned<u64>>,
    code_lookups_per_minute_per_operator: Option<Spanned<u32>>,
    code_lookups_per_minute_per_address: Option<Spanned<u32>>,
    chat_max_messages: Option<Spanned<usize>>,
    chat_max_bytes: Option<Spanned<usize>>,
    chat_max_chars: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    header_read_timeout_secs: Option<Spanned<u64>>,
    idle_timeout_secs: Option<Spanned<u64>>,
    tls_handshake_timeout_secs: Option<Spanned<u64>>,
    max_connections: Option<Spanned<usize>>,
    max_connections_per_address: Option<Spanned<usize>>,
    shutdown_grace_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    html_memory_limit: Option<Spanned<usize>>,
    connect_timeout_secs: Option<Spanned<u64>>,
    response_timeout_secs: Option<Spanned<u64>>,
    body_idle_timeout_secs: Option<Spanned<u64>>,
    document_timeout_secs: Option<Spanned<u64>>,
    max_decoded_bytes: Option<Spanned<u64>>,
}

// ---- resolving ----------------------------------------------------------

/// Turns byte spans into line numbers and builds errors naming the field.
struct Source<'a> {
    file: Option<&'a Path>,
    text: &'a str,
}

impl Source<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error(
        &self,
        field: &str,
        span: Option<std::ops::Range<usize>>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.map(Path::to_path_buf),
            field: field.to_string(),
            line: span.map(|s| self.line_of(s.start)),
            message: message.into(),
        }
    }

    fn at<T>(&self, field: &str, value: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.error(field, Some(value.span()), message)
    }
}

impl Config {
    /// The configuration with no file: defaults, then the flags.
    pub fn from_overrides(overrides: &Overrides) -> Result<Config, ConfigError> {
        Self::parse("", None, overrides)
    }

    /// Reads and resolves a file, with the flags applied over it.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_path_buf()),
            field: "--config".into(),
            line: None,
            message: format!("cannot read the file: {e}"),
        })?;
        Self::parse(&text, Some(path), overrides)
    }

    /// Parses TOML text; `file` is only used in error messages.
    pub fn parse(
        text: &str,
        file: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let src = Source { file, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let field = toml_error_field(e.message())
                .or_else(|| e.span().and_then(|s| field_at(text, s.start)))
                .unwrap_or_else(|| "proxy.toml".to_string());
            src.error(&field, e.span(), e.message().trim().to_string())
        })?;
        resolve(raw, &src, overrides)
    }

    /// The site for a request's host (port stripped); the first site when
    /// no site names the host.
    pub fn site_for_host(&self, host: &str) -> Option<&Site> {
        let host = strip_port(host);
        self.sites
            .iter()
            .find(|s| s.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
            .or_else(|| self.sites.iter().find(|s| s.hosts.is_empty()))
            .or_else(|| self.sites.first())
    }

    /// The site's origin beside the console reached at `console_origin`:
    /// the first public origin behind a load balancer, else the same scheme
    /// and host name on the site's port.
    pub fn site_origin_beside(&self, console_origin: &str) -> Option<String> {
        if let Some(public) = self.public_origins.first() {
            return Some(public.clone());
        }
        let mut url = Url::parse(console_origin).ok()?;
        url.set_port(Some(self.listen.port())).ok()?;
        Some(url.origin().ascii_serialization())
    }

    /// Points the demo site (started by the binary) as the upstream.
    pub fn use_demo_upstream(&mut self, addr: SocketAddr) {
        let upstream =
            Url::parse(&format!("http://{addr}")).expect("a socket address is a valid URL host");
        self.sites = vec![Site {
            hosts: vec![],
            upstream,
        }];
    }
}

/// Host without its port; IPv6 literals keep their brackets.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// toml's messages name unknown and missing fields in backticks; pull the
/// name out so the error's field is right even for those.
fn toml_error_field(message: &str) -> Option<String> {
    for marker in ["unknown field `", "missing field `"] {
        if let Some(rest) = message.split(marker).nth(1)
            && let Some(name) = rest.split('`').next()
        {
            return Some(name.to_string());
        }
    }
    None
}

/// The dotted name of the `key = value` line holding `offset`, for errors
/// whose message names no field (a value of the wrong type): the key, after
/// the name of the table above it.
fn field_at(text: &str, offset: usize) -> Option<String> {
    let start = text
        .get(..offset.min(text.len()))?
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| {
            l.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

fn resolve(raw: RawConfig, src: &Source<'_>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let flag_error = |flag: &str, message: String| ConfigError {
        file: None,
        field: flag.to_string(),
        line: None,
        message,
    };

    let listen = match (&overrides.listen, &raw.listen) {
        (Some(flag), _) => flag.parse().map_err(|e| {
            flag_error("--listen", format!("`{flag}` is not an address:port ({e})"))
        })?,
        (None, Some(v)) => v.get_ref().parse().map_err(|e| {
            src.at(
                "listen",
                v,
                format!("`{}` is not an address:port ({e})", v.get_ref()),
            )
        })?,
        (None, None) => DEFAULT_LISTEN
            .parse()
            .expect("default listen address parses"),
    };

    let prefix = match &raw.prefix {
        Some(v) => {
            let p = v.get_ref();
            let valid = p.len() > 2
                && p.starts_with('/')
                && p.ends_with('/')
                && p[1..p.len() - 1]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-./".contains(&b))
                && !p.contains("//");
            if !valid {
                return Err(src.at("prefix", v, "must be a path like `/__cobrowse/`: a leading and trailing slash, letters, digits, `_`, `-`, `.` between"));
            }
            p.clone()
        }
        None => DEFAULT_PREFIX.to_string(),
    };

    let mut demo = raw.demo.as_ref().is_some_and(|d| d.enabled);
    let mut sites = Vec::new();
    if let Some(flag) = &overrides.upstream {
        // A flag fronts that upstream instead of whatever the file names.
        let upstream = parse_upstream(flag).map_err(|m| flag_error("--upstream", m))?;
        sites.push(Site {
            hosts: vec![],
            upstream,
        });
        demo = false;
    } else {
        if let Some(v) = &raw.upstream {
            let upstream = parse_upstream(v.get_ref()).map_err(|m| src.at("upstream", v, m))?;
            sites.push(Site {
                hosts: vec![],
                upstream,
            });
        }
        for (i, site) in raw.sites.iter().enumerate() {
            let field = format!("sites[{i}].upstream");
            let upstream = parse_upstream(site.upstream.get_ref())
                .map_err(|m| src.at(&field, &site.upstream, m))?;
            let mut hosts = Vec::new();
            for (j, h) in site.hosts.iter().enumerate() {
                let name = h.get_ref().trim().to_ascii_lowercase();
                if name.is_empty() || name.contains('/') || name.contains(' ') {
                    return Err(src.at(
                        &format!("sites[{i}].hosts[{j}]"),
                        h,
                        "must be a host name like `shop.example.com`",
                    ));
                }
                hosts.push(strip_port(&name).to_string());
            }
            sites.push(Site { hosts, upstream });
        }
        if demo && !sites.is_empty() {
            return Err(src.error("demo.enabled", None, "the demo site is the upstream when enabled: remove `upstream`/`sites`, or set `enabled = false`"));
        }
    }
    if sites.is_empty() && !demo {
        return Err(ConfigError {
            file: src.file.map(Path::to_path_buf),
            field: "upstream".into(),
            line: None,
            message: "no upstream: set `upstream = \"http://host:port\"` (or `[[sites]]`), pass --upstream, or enable `[demo]`".into(),
        });
    }

    let tls = raw.tls.as_ref().map(|t| Tls {
        cert: PathBuf::from(t.cert.get_ref()),
        key: PathBuf::from(t.key.get_ref()),
    });
    if let Some(t) = &raw.tls {
        for (field, v) in [("tls.cert", &t.cert), ("tls.key", &t.key)] {
            if !Path::new(v.get_ref()).is_file() {
                return Err(src.at(field, v, format!("no such file: `{}`", v.get_ref())));
            }
        }
    }
    let upstream_ca = match &raw.upstream_ca {
        Some(v) if !Path::new(v.get_ref()).is_file() => {
            return Err(src.at("upstream_ca", v, format!("no such file: `{}`", v.get_ref())));
        }
        Some(v) => Some(PathBuf::from(v.get_ref())),
        None => None,
    };

    let mut public_origins: Vec<String> = Vec::new();
    for (i, v) in raw.public_origins.iter().enumerate() {
        let origin = parse_public_origin(v.get_ref())
            .map_err(|m| src.at(&format!("public_origins[{i}]"), v, m))?;
        if !public_origins.contains(&origin) {
            public_origins.push(origin);
        }
    }

    let console = resolve_console(raw.console.as_ref(), src, listen)?;
    check_console_apart(&console, &public_origins, raw.console.as_ref(), src)?;

    let mut operators: Vec<Operator> = Vec::new();
    for (i, op) in raw.operators.iter().enumerate() {
        let user = op.user.get_ref().trim();
        if user.is_empty() {
            return Err(src.at(
                &format!("operators[{i}].user"),
                &op.user,
                "must not be empty",
            ));
        }
        if operators.iter().any(|o| o.user == user) {
            return Err(src.at(
                &format!("operators[{i}].user"),
                &op.user,
                format!("`{user}` is listed twice"),
            ));
        }
        let hash = op.password_hash.get_ref();
        if let Err(e) = crate::password::is_valid_hash(hash) {
            return Err(src.at(
                &format!("operators[{i}].password_hash"),
                &op.password_hash,
                format!("not a PHC hash string ({e}); make one with `cobrowse hash-password`"),
            ));
        }
        operators.push(Operator {
            user: user.to_string(),
            password_hash: hash.clone(),
            name: op.name.clone().unwrap_or_else(|| user.to_string()),
        });
    }

    let mut privacy = Privacy::default();
    if let Some(p) = &raw.privacy {
        for (i, sel) in p.mask.iter().enumerate() {
            let s = sel.get_ref().trim();
            if let Err(e) = check_selector(s).and_then(|()| {
                if s.contains(['{', '}', ';']) {
                    Err("not a selector".into())
                } else {
                    Ok(())
                }
            }) {
                return Err(src.at(
                    &format!("privacy.mask[{i}]"),
                    sel,
                    format!("must be a CSS selector like `#ssn` or `.secret` ({e})"),
                ));
            }
            privacy.mask.push(s.to_string());
        }
        for (i, key) in p.json_keys.iter().enumerate() {
            let normal = normalise_key(key.get_ref());
            if normal.is_empty() {
                return Err(src.at(
                    &format!("privacy.json_keys[{i}]"),
                    key,
                    "must be a JSON key name like `accountNumber`",
                ));
            }
            privacy.json_keys.push(normal);
        }
        positive(
            src,
            "privacy.json_max_bytes",
            &p.json_max_bytes,
            &mut privacy.json_max_bytes,
        )?;
    }

    let mut hub = HubLimits::default();
    if let Some(h) = &raw.hub {
        positive(
            src,
            "hub.max_message_bytes",
            &h.max_message_bytes,
            &mut hub.max_message_bytes,
        )?;
        positive(
            src,
            "hub.max_keys_per_session",
            &h.max_keys_per_session,
            &mut hub.max_keys_per_session,
        )?;
        positive(
            src,
            "hub.max_bytes_per_session",
            &h.max_bytes_per_session,
            &mut hub.max_bytes_per_session,
        )?;
        positive(
            src,
            "hub.max_sessions",
            &h.max_sessions,
            &mut hub.max_sessions,
        )?;
        positive(
            src,
            "hub.messages_per_second",
            &h.messages_per_second,
            &mut hub.messages_per_second,
        )?;
        positive(
            src,
            "hub.max_outbound_bytes",
            &h.max_outbound_bytes,
            &mut hub.max_outbound_bytes,
        )?;
        positive(
            src,
            "hub.max_feed_bytes_per_session",
            &h.max_feed_bytes_per_session,
            &mut hub.max_feed_bytes_per_session,
        )?;
        positive(
            src,
            "hub.max_sockets_per_address",
            &h.max_sockets_per_address,
            &mut hub.max_sockets_per_address,
        )?;
        positive(
            src,
            "hub.call_burst_per_address",
            &h.call_burst_per_address,
            &mut hub.call_burst_per_address,
        )?;
        positive(
            src,
            "hub.calls_per_minute_per_address",
            &h.calls_per_minute_per_address,
            &mut hub.calls_per_minute_per_address,
        )?;
        if let Some(v) = &h.idle_session_secs {
            hub.idle_session = secs(src, "hub.idle_session_secs", v)?;
        }
        if let Some(v) = &h.offer_timeout_secs {
            hub.offer_timeout = secs(src, "hub.offer_timeout_secs", v)?;
        }
        if let Some(v) = &h.reconnect_grace_secs {
            hub.reconnect_grace = secs(src, "hub.reconnect_grace_secs", v)?;
        }
        if let Some(v) = &h.code_length {
            // Fewer digits are guessed too easily, even rate-limited.
            if !(6..=12).contains(v.get_ref()) {
                return Err(src.at("hub.code_length", v, "must be from 6 to 12 digits"));
            }
            hub.code_length = *v.get_ref();
        }
        if let Some(v) = &h.code_expiry_secs {
            hub.code_expiry = secs(src, "hub.code_expiry_secs", v)?;
        }
        positive(
            src,
            "hub.code_lookups_per_minute_per_operator",
            &h.code_lookups_per_minute_per_operator,
            &mut hub.code_lookups_per_minute_per_operator,
        )?;
        positive(
            src,
            "hub.code_lookups_per_minute_per_address",
            &h.code_lookups_per_minute_per_address,
            &mut hub.code_lookups_per_minute_per_address,
        )?;
        positive(
            src,
            "hub.chat_max_messages",
            &h.chat_max_messages,
            &mut hub.chat_max_messages,
        )?;
        positive(
            src,
            "hub.chat_max_bytes",
            &h.chat_max_bytes,
            &mut hub.chat_max_bytes,
        )?;
        positive(
            src,
            "hub.chat_max_chars",
            &h.chat_max_chars,
            &mut hub.chat_max_chars,
        )?;
    }

    let mut server = ServerLimits::default();
    if let Some(v) = &raw.server {
        for (field, raw, slot) in [
            (
                "server.header_read_timeout_secs",
                &v.header_read_timeout_secs,
                &mut server.header_read_timeout,
            ),
            (
                "server.idle_timeout_secs",
                &v.idle_timeout_secs,
                &mut server.idle_timeout,
            ),
            (
                "server.tls_handshake_timeout_secs",
                &v.tls_handshake_timeout_secs,
                &mut server.tls_handshake_timeout,
            ),
            (
                "server.shutdown_grace_secs",
                &v.shutdown_grace_secs,
                &mut server.shutdown_grace,
            ),
        ] {
            if let Some(raw) = raw {
                *slot = secs(src, field, raw)?;
            }
        }
        positive(
            src,
            "server.max_connections",
            &v.max_connections,
            &mut server.max_connections,
        )?;
        positive(
            src,
            "server.max_connections_per_address",
            &v.max_connections_per_address,
            &mut server.max_connections_per_address,
        )?;
        match &v.max_connections_per_address {
            Some(at) if server.max_connections_per_address > server.max_connections => {
                return Err(src.at(
                    "server.max_connections_per_address",
                    at,
                    "must not be more than `server.max_connections`",
                ));
            }
            // Only the total given: the default per address follows it down.
            _ => {
                server.max_connections_per_address = server
                    .max_connections_per_address
                    .min(server.max_connections)
            }
        }
    }

    let mut proxy = ProxyLimits::default();
    if let Some(p) = &raw.proxy {
        if let Some(v) = &p.html_memory_limit {
            if *v.get_ref() < 1024 {
                return Err(src.at("proxy.html_memory_limit", v, "must be at least 1024 bytes"));
            }
            proxy.html_memory_limit = *v.get_ref();
        }
        if let Some(v) = &p.connect_timeout_secs {
            proxy.connect_timeout = secs(src, "proxy.connect_timeout_secs", v)?;
        }
        if let Some(v) = &p.response_timeout_secs {
            proxy.response_timeout = secs(src, "proxy.response_timeout_secs", v)?;
        }
        if let Some(v) = &p.body_idle_timeout_secs {
            proxy.body_idle_timeout = secs(src, "proxy.body_idle_timeout_secs", v)?;
        }
        if let Some(v) = &p.document_timeout_secs {
            proxy.document_timeout = secs(src, "proxy.document_timeout_secs", v)?;
        }
        if let Some(v) = &p.max_decoded_bytes {
            if *v.get_ref() < 65536 {
                return Err(src.at("proxy.max_decoded_bytes", v, "must be at least 65536 bytes"));
            }
            proxy.max_decoded_bytes = *v.get_ref();
        }
    }

    let mut driver = DriverLimits::default();
    if let Some(d) = &raw.driver {
        positive(
            src,
            "driver.documents_per_session",
            &d.documents_per_session,
            &mut driver.documents_per_session,
        )?;
        positive(
            src,
            "driver.bytes_per_session",
            &d.bytes_per_session,
            &mut driver.bytes_per_session,
        )?;
        if let Some(v) = &d.document_max_age_secs {
            driver.max_age = secs(src, "driver.document_max_age_secs", v)?;
        }
        if let Some(v) = &d.follower_wait_ms {
            if *v.get_ref() > 60_000 {
                return Err(src.at(
                    "driver.follower_wait_ms",
                    v,
                    "must be at most 60000 (a minute)",
                ));
            }
            driver.follower_wait = Duration::from_millis(*v.get_ref());
        }
    }

    let mut audit = Audit::default();
    if let Some(v) = raw.audit.as_ref().and_then(|a| a.path.as_ref()) {
        let path = Path::new(v.get_ref());
        if v.get_ref().trim().is_empty() || path.is_dir() {
            return Err(src.at(
                "audit.path",
                v,
                "must name a file, e.g. `/var/log/cobrowse/audit.jsonl`",
            ));
        }
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(src.at(
                "audit.path",
                v,
                format!("no such directory: `{}`", dir.display()),
            ));
        }
        audit.path = Some(path.to_path_buf());
    }

    let store = resolve_store(raw.store.as_ref(), src)?;
    let cluster = resolve_cluster(raw.cluster.as_ref(), &store, &tls, listen, &console, src)?;

    Ok(Config {
        listen,
        prefix,
        sites,
        demo,
        tls,
        upstream_ca,
        public_origins,
        console,
        operators,
        privacy,
        server,
        hub,
        proxy,
        driver,
        audit,
        store,
        cluster,
    })
}

/// `[cluster]`: required with a Redis store (its `secret` at least), refused
/// without one. Where peers reach this node defaults to where it listens,
/// unless that is an unspecified address (`0.0.0.0`), which no peer can dial.
fn resolve_cluster(
    raw: Option<&RawCluster>,
    store: &Store,
    tls: &Option<Tls>,
    listen: SocketAddr,
    console: &Console,
    src: &Source<'_>,
) -> Result<Option<Cluster>, ConfigError> {
    if *store == Store::Memory {
        if let Some(raw) = raw {
            let span = [
                raw.secret.as_ref().map(Spanned::span),
                raw.advertise.as_ref().map(Spanned::span),
                raw.console_advertise.as_ref().map(Spanned::span),
                raw.lease_ms.as_ref().map(Spanned::span),
            ]
            .into_iter()
            .flatten()
            .next();
            return Err(src.error(
                "cluster",
                span,
                "a cluster shares a Redis store: set `[store] kind = \"redis\"`, or remove `[cluster]`",
            ));
        }
        return Ok(None);
    }
    let Some(secret) = raw.and_then(|r| r.secret.as_ref()) else {
        return Err(src.error(
            "cluster.secret",
            None,
            format!(
                "a Redis store makes this node part of a cluster: set `[cluster] secret` to the same random string of at least {MIN_CLUSTER_SECRET} characters on every node"
            ),
        ));
    };
    let text = secret.get_ref();
    if text.chars().count() < MIN_CLUSTER_SECRET {
        return Err(src.at(
            "cluster.secret",
            secret,
            format!("must be at least {MIN_CLUSTER_SECRET} characters (it has {}); `openssl rand -hex 32` makes one", text.chars().count()),
        ));
    }
    if text.chars().any(|c| !c.is_ascii_graphic()) {
        return Err(src.at(
            "cluster.secret",
            secret,
            "must be printable ASCII without spaces (it is sent in a header)",
        ));
    }
    if tls.is_some() {
        return Err(src.error(
            "cluster",
            raw.and_then(|r| r.secret.as_ref()).map(Spanned::span),
            "nodes forward to each other over plain HTTP: terminate TLS at the load balancer (`public_origins`) and remove `[tls]`",
        ));
    }
    let advertise = |field: &str,
                     value: Option<&Spanned<String>>,
                     listen: SocketAddr,
                     listen_field: &str|
     -> Result<Option<String>, ConfigError> {
        match value {
            Some(v) => check_advertise(v.get_ref())
                .map(Some)
                .map_err(|m| src.at(field, v, m)),
            None if listen.ip().is_unspecified() => Err(src.error(
                field,
                None,
                format!(
                    "`{listen_field}` is {listen}, which no peer can dial: set `[cluster] {}` to `host:port` where the other nodes reach this one",
                    field.trim_start_matches("cluster.")
                ),
            )),
            None => Ok(None),
        }
    };
    let lease = match raw.and_then(|r| r.lease_ms.as_ref()) {
        Some(v) if !(300..=60_000).contains(v.get_ref()) => {
            return Err(src.at("cluster.lease_ms", v, "must be between 300 and 60000"));
        }
        Some(v) => Duration::from_millis(*v.get_ref()),
        None => DEFAULT_CLUSTER_LEASE,
    };
    Ok(Some(Cluster {
        secret: text.clone(),
        advertise: advertise(
            "cluster.advertise",
            raw.and_then(|r| r.advertise.as_ref()),
            listen,
            "listen",
        )?,
        console_advertise: advertise(
            "cluster.console_advertise",
            raw.and_then(|r| r.console_advertise.as_ref()),
            console.listen,
            "console.listen",
        )?,
        lease,
    }))
}

/// `host:port` with a port that is not 0: what a peer dials.
fn check_advertise(text: &str) -> Result<String, String> {
    let example = "`host:port` where the other nodes reach this node, e.g. `10.0.0.5:8080`";
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("`{text}` is not {example}"));
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host_ok = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => !ip.is_unspecified(),
        Err(_) => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        }
    };
    if !port_ok || !host_ok {
        return Err(format!("`{text}` is not {example}"));
    }
    Ok(text.to_string())
}

/// `[store]`: `kind = "memory"` needs nothing else; `kind = "redis"` needs
/// a `url` the Redis client accepts.
fn resolve_store(raw: Option<&RawStore>, src: &Source<'_>) -> Result<Store, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Store::Memory);
    };
    let redis = match &raw.kind {
        None => false,
        Some(k) => match k.get_ref().as_str() {
            "memory" => false,
            "redis" => true,
            other => {
                return Err(src.at(
                    "store.kind",
                    k,
                    format!("`{other}` is not a store: use `memory` or `redis`"),
                ));
            }
        },
    };
    if !redis {
        for (field, set) in [
            ("store.url", raw.url.as_ref().map(Spanned::span)),
            ("store.prefix", raw.prefix.as_ref().map(Spanned::span)),
            (
                "store.expire_secs",
                raw.expire_secs.as_ref().map(Spanned::span),
            ),
        ] {
            if let Some(span) = set {
                return Err(src.error(
                    field,
                    Some(span),
                    "only a Redis store takes it: set `kind = \"redis\"`, or remove it",
                ));
            }
        }
        return Ok(Store::Memory);
    }
    let Some(url) = &raw.url else {
        return Err(src.error(
            "store.url",
            raw.kind.as_ref().map(Spanned::span),
            "a Redis store needs `url = \"redis://host:port/db\"`",
        ));
    };
    check_redis_url(url.get_ref()).map_err(|m| src.at("store.url", url, m))?;
    let prefix = match &raw.prefix {
        Some(p)
            if p.get_ref()
                .chars()
                .any(|c| c.is_whitespace() || c.is_control()) =>
        {
            return Err(src.at(
                "store.prefix",
                p,
                "must not hold spaces or control characters",
            ));
        }
        Some(p) => p.get_ref().clone(),
        None => DEFAULT_REDIS_PREFIX.to_string(),
    };
    let expire = match &raw.expire_secs {
        Some(v) => secs(src, "store.expire_secs", v)?,
        None => DEFAULT_REDIS_EXPIRE,
    };
    Ok(Store::Redis(RedisStore {
        url: url.get_ref().clone(),
        prefix,
        expire,
    }))
}

/// What the Redis client would refuse at start, refused now with the
/// reason. The URL may carry a password: messages do not repeat it.
fn check_redis_url(url: &str) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    if !matches!(scheme, "redis" | "redis+unix" | "unix") {
        return Err(format!(
            "not a Redis URL (scheme `{scheme}`): use `redis://host:port/db` (or `redis+unix:///path`; TLS to Redis is not built in)"
        ));
    }
    redis::Client::open(url).map(|_| ()).map_err(|e| {
        format!(
            "not a usable Redis URL ({})",
            e.detail().unwrap_or(e.category())
        )
    })
}

/// `[console]`: its listener defaults to the next port after `listen`, so
/// `cargo run --release` serves the site on 8080 and the console on 8081.
fn resolve_console(
    raw: Option<&RawConsole>,
    src: &Source<'_>,
    listen: SocketAddr,
) -> Result<Console, ConfigError> {
    let console_listen = match raw.and_then(|c| c.listen.as_ref()) {
        Some(v) => v.get_ref().parse::<SocketAddr>().map_err(|e| {
            src.at(
                "console.listen",
                v,
                format!("`{}` is not an address:port ({e})", v.get_ref()),
            )
        })?,
        None => {
            let port = match listen.port() {
                0 => Some(0),
                p => p.checked_add(1),
            };
            let Some(port) = port else {
                return Err(src.error(
                    "console.listen",
                    None,
                    format!(
                        "`listen` uses the last port, {}: set `[console] listen` to a free one",
                        listen.port()
                    ),
                ));
            };
            SocketAddr::new(listen.ip(), port)
        }
    };
    if console_listen.port() != 0 && console_listen == listen {
        let span = raw.and_then(|c| c.listen.as_ref()).map(|v| v.span());
        return Err(src.error(
            "console.listen",
            span,
            format!(
                "`{console_listen}` is `listen` itself: the console needs an origin of its own"
            ),
        ));
    }
    let public_origin = match raw.and_then(|c| c.public_origin.as_ref()) {
        Some(v) => Some(
            parse_public_origin(v.get_ref()).map_err(|m| src.at("console.public_origin", v, m))?,
        ),
        None => None,
    };
    Ok(Console {
        listen: console_listen,
        public_origin,
    })
}

/// The console's public origin must not be one of the site's: an origin of
/// its own is the whole point.
fn check_console_apart(
    console: &Console,
    public_origins: &[String],
    raw: Option<&RawConsole>,
    src: &Source<'_>,
) -> Result<(), ConfigError> {
    match (
        &console.public_origin,
        raw.and_then(|c| c.public_origin.as_ref()),
    ) {
        (Some(o), Some(v)) if public_origins.contains(o) => Err(src.at(
            "console.public_origin",
            v,
            format!("`{o}` is one of `public_origins`: the console needs an origin of its own"),
        )),
        _ => Ok(()),
    }
}

/// Sets `slot` from a count that must not be zero, when the file gives one.
fn positive<T: Copy + Default + PartialEq>(
    src: &Source<'_>,
    field: &str,
    v: &Option<Spanned<T>>,
    slot: &mut T,
) -> Result<(), ConfigError> {
    if let Some(v) = v {
        if *v.get_ref() == T::default() {
            return Err(src.at(field, v, "must be greater than 0"));
        }
        *slot = *v.get_ref();
    }
    Ok(())
}

fn secs(src: &Source<'_>, field: &str, v: &Spanned<u64>) -> Result<Duration, ConfigError> {
    match *v.get_ref() {
        0 => Err(src.at(field, v, "must be greater than 0")),
        n => Ok(Duration::from_secs(n)),
    }
}

/// An origin as browsers serialise it in `Origin`: lowercase scheme and
/// host, no default port, no trailing slash.
fn parse_public_origin(text: &str) -> Result<String, String> {
    let example = "an origin like `https://support.example.com`";
    let url = Url::parse(text.trim()).map_err(|e| format!("`{text}` is not {example} ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{text}`: a public origin is http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}` has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{text}`: a public origin has no user or password"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{text}` is not {example}: no path, query or fragment"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

fn parse_upstream(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`{text}`: the upstream must be http:// or https://"
        ));
    }
    if url.host_str().is_none() {
        return Err(format!("`{text}` has no host"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{text}`: an upstream is an origin, without a path, query or fragment"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Some(Path::new("proxy.toml")), &Overrides::default())
    }

    /// Each `(text, field, line)`: `text` after an upstream line is refused,
    /// naming `field` at `line`.
    fn assert_refused(cases: &[(&str, &str, usize)]) {
        for &(text, field, line) in cases {
            let e = parse(&format!("upstream = \"http://a\"\n{text}")).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.line),
                (field, Some(line)),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn single_site_needs_only_upstream() {
        let c = parse("upstream = \"http://127.0.0.1:9000\"").unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.prefix, DEFAULT_PREFIX);
        assert_eq!(c.sites[0].upstream.as_str(), "http://127.0.0.1:9000/");
    }

    #[test]
    fn unknown_key_names_field_and_line() {
        let e = parse("upstream = \"http://a\"\n\n[hub]\nmax_mesage_bytes = 3\n").unwrap_err();
        assert_eq!(e.field, "max_mesage_bytes");
        assert_eq!(e.line, Some(4));
        assert!(e.to_string().starts_with("proxy.toml:4: "), "{e}");
    }

    #[test]
    fn bad_upstream_names_field_and_line() {
        let e = parse(
            "listen = \"127.0.0.1:1\"\n[[sites]]\nhosts = [\"a.test\"]\nupstream = \"ftp://x\"\n",
        )
        .unwrap_err();
        assert_eq!(e.field, "sites[0].upstream");
        assert_eq!(e.line, Some(4));
    }

    #[test]
    fn flags_override_file() {
        let text = "upstream = \"http://a.test\"\nlisten = \"127.0.0.1:1\"\n";
        let o = Overrides {
            listen: Some("127.0.0.1:9999".into()),
            upstream: Some("http://127.0.0.1:9000".into()),
        };
        let c = Config::parse(text, None, &o).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9999");
        assert_eq!(c.sites.len(), 1);
        assert_eq!(c.sites[0].upstream.as_str(), "http://127.0.0.1:9000/");
    }

    #[test]
    fn upstream_flag_replaces_demo() {
        let o = Overrides {
            listen: None,
            upstream: Some("http://127.0.0.1:9000".into()),
        };
        let c = Config::parse("[demo]\nenabled = true\n", None, &o).unwrap();
        assert!(!c.demo);
    }

    #[test]
    fn bad_password_hash_is_refused() {
        let e = parse(
            "upstream = \"http://a\"\n[[operators]]\nuser = \"x\"\npassword_hash = \"plain\"\n",
        )
        .unwrap_err();
        assert_eq!(e.field, "operators[0].password_hash");
        assert_eq!(e.line, Some(4));
    }

    #[test]
    fn audit_path_must_be_a_file_in_a_directory_that_exists() {
        assert_eq!(parse("upstream = \"http://a\"").unwrap().audit.path, None);
        let dir = std::env::temp_dir();
        let ok = parse(&format!(
            "upstream = \"http://a\"\n[audit]\npath = \"{}/audit.jsonl\"\n",
            dir.display()
        ))
        .unwrap();
        assert_eq!(ok.audit.path, Some(dir.join("audit.jsonl")));
        for bad in ["/no/such/dir/audit.jsonl", "", "."] {
            let e = parse(&format!(
                "upstream = \"http://a\"\n[audit]\npath = \"{bad}\"\n"
            ))
            .unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.line),
                ("audit.path", Some(3)),
                "{bad}: {e}"
            );
        }
        let e = parse("upstream = \"http://a\"\n[audit]\nfile = \"a\"\n").unwrap_err();
        assert_eq!(e.field, "file");
    }

    #[test]
    fn bad_mask_selector_is_refused() {
        let e = parse("upstream = \"http://a\"\n[privacy]\nmask = [\"#ok\", \"input[\"]\n")
            .unwrap_err();
        assert_eq!(e.field, "privacy.mask[1]");
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn driver_limits() {
        let c = parse("upstream = \"http://a\"\n[driver]\ndocuments_per_session = 4\n").unwrap();
        assert_eq!(c.driver.documents_per_session, 4);
        assert_eq!(
            parse("upstream = \"http://a\"\n[driver]\nbytes_per_session = 0\n")
                .unwrap_err()
                .field,
            "driver.bytes_per_session"
        );
        assert_eq!(c.driver.follower_wait, Duration::from_secs(3));
        let c = parse("upstream = \"http://a\"\n[driver]\nfollower_wait_ms = 0\n").unwrap();
        assert_eq!(c.driver.follower_wait, Duration::ZERO);
        assert_eq!(
            parse("upstream = \"http://a\"\n[driver]\nfollower_wait_ms = 600000\n")
                .unwrap_err()
                .field,
            "driver.follower_wait_ms"
        );
    }

    #[test]
    fn privacy_json_keys() {
        let c = parse(
            "upstream = \"http://a\"\n[privacy]\njson_keys = [\"Account-Number\", \"iban\"]\n",
        )
        .unwrap();
        assert_eq!(c.privacy.json_keys, ["accountnumber", "iban"]);
        assert_eq!(c.privacy.json_max_bytes, 2 * 1024 * 1024);
        let e = parse("upstream = \"http://a\"\n[privacy]\njson_keys = [\"ok\", \"_-\"]\n")
            .unwrap_err();
        assert_eq!(e.field, "privacy.json_keys[1]");
        assert_eq!(e.line, Some(3));
        assert_eq!(
            parse("upstream = \"http://a\"\n[privacy]\njson_max_bytes = 0\n")
                .unwrap_err()
                .field,
            "privacy.json_max_bytes"
        );
    }

    #[test]
    fn public_origins_are_exact_origins() {
        assert!(
            parse("upstream = \"http://a\"\n")
                .unwrap()
                .public_origins
                .is_empty()
        );
        let c = parse("upstream = \"http://a\"\npublic_origins = [\"https://Support.Example.com:443/\", \"http://b.test:8080\"]\n").unwrap();
        assert_eq!(
            c.public_origins,
            ["https://support.example.com", "http://b.test:8080"]
        );
        for bad in [
            "support.example.com",
            "wss://a.test",
            "https://a.test/console",
            "https://a.test?x=1",
            "https://u:p@a.test",
            "null",
            "",
        ] {
            let text = format!(
                "upstream = \"http://a\"\n\npublic_origins = [\n  \"https://ok.test\",\n  \"{bad}\",\n]\n"
            );
            let e = parse(&text).unwrap_err();
            assert_eq!(e.field, "public_origins[1]", "{bad}: {e}");
            assert_eq!(e.line, Some(5), "{bad}: {e}");
        }
        // A key of the top level: inside a table it is unknown there.
        assert_eq!(
            parse("upstream = \"http://a\"\n[hub]\npublic_origins = []\n")
                .unwrap_err()
                .field,
            "public_origins"
        );
    }

    /// What every Redis store needs beside it.
    const CLUSTER: &str = "[cluster]\nsecret = \"0123456789abcdef0123456789abcdef\"\n";

    #[test]
    fn a_redis_store_makes_a_cluster_with_a_secret() {
        let redis = "upstream = \"http://a\"\n[store]\nkind = \"redis\"\nurl = \"redis://r\"\n";
        let c = parse(&format!("{redis}{CLUSTER}")).unwrap();
        assert_eq!(
            c.cluster,
            Some(Cluster {
                secret: "0123456789abcdef0123456789abcdef".into(),
                advertise: None,
                console_advertise: None,
                lease: DEFAULT_CLUSTER_LEASE,
            })
        );
        let c = parse(&format!(
            "{redis}{CLUSTER}advertise = \"node1.internal:8080\"\nconsole_advertise = \"10.0.0.5:8081\"\nlease_ms = 1500\n"
        ))
        .unwrap();
        let cluster = c.cluster.unwrap();
        assert_eq!(cluster.advertise.as_deref(), Some("node1.internal:8080"));
        assert_eq!(cluster.console_advertise.as_deref(), Some("10.0.0.5:8081"));
        assert_eq!(cluster.lease, Duration::from_millis(1500));
        assert_eq!(parse("upstream = \"http://a\"\n").unwrap().cluster, None);

        let short = "[cluster]\nsecret = \"short\"\n";
        for (text, field, says) in [
            (redis.to_string(), "cluster.secret", "at least 32"),
            (format!("{redis}{short}"), "cluster.secret", "it has 5"),
            (
                format!("{redis}[cluster]\nsecret = \"0123456789abcdef 123456789abcdef\"\n"),
                "cluster.secret",
                "printable",
            ),
            (
                format!("upstream = \"http://a\"\n{CLUSTER}"),
                "cluster",
                "Redis store",
            ),
            (
                format!("{redis}{CLUSTER}advertise = \"node1\"\n"),
                "cluster.advertise",
                "host:port",
            ),
            (
                format!("{redis}{CLUSTER}advertise = \"0.0.0.0:8080\"\n"),
                "cluster.advertise",
                "host:port",
            ),
            (
                format!("{redis}{CLUSTER}console_advertise = \"a:0\"\n"),
                "cluster.console_advertise",
                "host:port",
            ),
            (
                format!("{redis}{CLUSTER}lease_ms = 100\n"),
                "cluster.lease_ms",
                "between",
            ),
            (
                format!("listen = \"0.0.0.0:8080\"\n{redis}{CLUSTER}"),
                "cluster.advertise",
                "no peer can dial",
            ),
            (
                format!(
                    "listen = \"0.0.0.0:8080\"\n{redis}{CLUSTER}advertise = \"10.0.0.5:8080\"\n"
                ),
                "cluster.console_advertise",
                "no peer can dial",
            ),
            (
                format!("{redis}[tls]\ncert = \"Cargo.toml\"\nkey = \"Cargo.toml\"\n{CLUSTER}"),
                "cluster",
                "plain HTTP",
            ),
            (format!("{redis}{CLUSTER}node = \"x\"\n"), "node", ""),
        ] {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
            assert!(e.message.contains(says), "{text}: {e}");
        }
        // With an address to give, `0.0.0.0` is fine.
        let c = parse(&format!(
            "listen = \"0.0.0.0:8080\"\n{redis}{CLUSTER}advertise = \"10.0.0.5:8080\"\nconsole_advertise = \"10.0.0.5:8081\"\n"
        ))
        .unwrap();
        assert!(c.cluster.is_some());
    }

    #[test]
    fn store_is_memory_unless_redis_is_named() {
        let c = parse("upstream = \"http://a\"\n").unwrap();
        assert_eq!(c.store, Store::Memory);
        let c = parse("upstream = \"http://a\"\n[store]\nkind = \"memory\"\n").unwrap();
        assert_eq!(c.store, Store::Memory);
        let c = parse(&format!(
            "upstream = \"http://a\"\n[store]\nkind = \"redis\"\nurl = \"redis://:pw@127.0.0.1:6380/2\"\n{CLUSTER}",
        ))
        .unwrap();
        assert_eq!(
            c.store,
            Store::Redis(RedisStore {
                url: "redis://:pw@127.0.0.1:6380/2".into(),
                prefix: DEFAULT_REDIS_PREFIX.into(),
                expire: DEFAULT_REDIS_EXPIRE,
            })
        );
        let c = parse(&format!("upstream = \"http://a\"\n[store]\nkind = \"redis\"\nurl = \"redis://r\"\nprefix = \"shop:\"\nexpire_secs = 60\n{CLUSTER}")).unwrap();
        assert!(
            matches!(c.store, Store::Redis(ref r) if r.prefix == "shop:" && r.expire == Duration::from_secs(60))
        );
        for (text, field, says) in [
            ("kind = \"postgres\"\n", "store.kind", "memory"),
            ("kind = \"redis\"\n", "store.url", "needs"),
            (
                "kind = \"redis\"\nurl = \"http://:secret@r\"\n",
                "store.url",
                "scheme",
            ),
            (
                "kind = \"redis\"\nurl = \"redis://:secret@[zz\"\n",
                "store.url",
                "usable",
            ),
            ("url = \"redis://r\"\n", "store.url", "only a Redis store"),
            (
                "kind = \"memory\"\nexpire_secs = 5\n",
                "store.expire_secs",
                "only a Redis store",
            ),
            (
                "kind = \"redis\"\nurl = \"redis://r\"\nexpire_secs = 0\n",
                "store.expire_secs",
                "greater than 0",
            ),
            (
                "kind = \"redis\"\nurl = \"redis://r\"\nprefix = \"a b\"\n",
                "store.prefix",
                "spaces",
            ),
            ("kind = \"redis\"\nhost = \"r\"\n", "host", ""),
        ] {
            let e = parse(&format!("upstream = \"http://a\"\n[store]\n{text}")).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
            assert!(e.message.contains(says), "{text}: {e}");
            // A password in the URL is never repeated.
            assert!(!e.to_string().contains("secret"), "{text}: {e}");
            assert!(e.line.is_some(), "{text}: {e}");
        }
    }

    #[test]
    fn join_codes_and_chat() {
        let c = parse("upstream = \"http://a\"\n").unwrap();
        assert_eq!(
            (c.hub.code_length, c.hub.code_expiry),
            (6, Duration::from_secs(600))
        );
        assert_eq!(
            (
                c.hub.chat_max_messages,
                c.hub.chat_max_bytes,
                c.hub.chat_max_chars
            ),
            (200, 64 * 1024, 1000)
        );
        let c = parse("upstream = \"http://a\"\n[hub]\ncode_length = 8\ncode_expiry_secs = 60\nchat_max_chars = 20\n").unwrap();
        assert_eq!(
            (c.hub.code_length, c.hub.code_expiry, c.hub.chat_max_chars),
            (8, Duration::from_secs(60), 20)
        );
        for (text, field) in [
            ("[hub]\ncode_length = 4\n", "hub.code_length"),
            ("[hub]\ncode_length = 13\n", "hub.code_length"),
            ("[hub]\ncode_expiry_secs = 0\n", "hub.code_expiry_secs"),
            (
                "[hub]\ncode_lookups_per_minute_per_operator = 0\n",
                "hub.code_lookups_per_minute_per_operator",
            ),
            ("[hub]\nchat_max_messages = 0\n", "hub.chat_max_messages"),
            ("[hub]\nchat_max_bytes = 0\n", "hub.chat_max_bytes"),
        ] {
            let e = parse(&format!("upstream = \"http://a\"\n{text}")).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }

    #[test]
    fn hub_sessions_and_reconnect_grace() {
        let c = parse("upstream = \"http://a\"\n").unwrap();
        assert_eq!(c.hub.reconnect_grace, Duration::from_secs(120));
        assert_eq!(c.hub.max_sessions, 10_000);
        assert_eq!(
            (c.hub.max_outbound_bytes, c.hub.max_feed_bytes_per_session),
            (1 << 20, 1 << 20)
        );
        assert_eq!(
            (
                c.hub.max_sockets_per_address,
                c.hub.call_burst_per_address,
                c.hub.calls_per_minute_per_address
            ),
            (500, 100, 60)
        );
        let c = parse("upstream = \"http://a\"\n[hub]\nreconnect_grace_secs = 15\nmax_sessions = 3\nmax_sockets_per_address = 7\ncalls_per_minute_per_address = 600\n").unwrap();
        assert_eq!(c.hub.reconnect_grace, Duration::from_secs(15));
        assert_eq!(c.hub.max_sessions, 3);
        assert_eq!(
            (
                c.hub.max_sockets_per_address,
                c.hub.calls_per_minute_per_address
            ),
            (7, 600)
        );
        assert_refused(&[
            (
                "[hub]\nreconnect_grace_secs = 0\n",
                "hub.reconnect_grace_secs",
                3,
            ),
            ("[hub]\n\nmax_sessions = 0\n", "hub.max_sessions", 4),
            ("[hub]\nmax_sessions = -1\n", "hub.max_sessions", 3),
            (
                "[hub]\nreconnect_grace_secs = \"2m\"\n",
                "hub.reconnect_grace_secs",
                3,
            ),
            (
                "[hub]\nmax_sockets_per_address = 0\n",
                "hub.max_sockets_per_address",
                3,
            ),
            (
                "[hub]\n\nmax_outbound_bytes = 0\n",
                "hub.max_outbound_bytes",
                4,
            ),
            (
                "[hub]\nmax_feed_bytes_per_session = 0\n",
                "hub.max_feed_bytes_per_session",
                3,
            ),
            (
                "[hub]\ncall_burst_per_address = 0\n",
                "hub.call_burst_per_address",
                3,
            ),
            (
                "[hub]\ncalls_per_minute_per_address = -1\n",
                "hub.calls_per_minute_per_address",
                3,
            ),
        ]);
    }

    #[test]
    fn server_and_proxy_limits() {
        let c = parse("upstream = \"http://a\"\n").unwrap();
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(
            (
                c.server.max_connections,
                c.server.max_connections_per_address
            ),
            (4096, 256)
        );
        assert_eq!(c.proxy.max_decoded_bytes, 32 * 1024 * 1024);
        let c = parse("upstream = \"http://a\"\n[server]\nheader_read_timeout_secs = 2\nmax_connections = 50\nmax_connections_per_address = 5\n[proxy]\nbody_idle_timeout_secs = 3\n").unwrap();
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(2));
        assert_eq!(
            (
                c.server.max_connections,
                c.server.max_connections_per_address
            ),
            (50, 5)
        );
        assert_eq!(c.proxy.body_idle_timeout, Duration::from_secs(3));
        assert_eq!(
            parse("upstream = \"http://a\"\n[server]\nmax_connections = 10\n")
                .unwrap()
                .server
                .max_connections_per_address,
            10
        );
        assert_refused(&[
            (
                "[server]\nidle_timeout_secs = 0\n",
                "server.idle_timeout_secs",
                3,
            ),
            (
                "[server]\nmax_connections = 10\n\nmax_connections_per_address = 11\n",
                "server.max_connections_per_address",
                5,
            ),
            ("[server]\nmax_conections = 10\n", "max_conections", 3),
            (
                "[proxy]\nmax_decoded_bytes = 100\n",
                "proxy.max_decoded_bytes",
                3,
            ),
        ]);
    }

    #[test]
    fn the_console_listens_on_the_next_port_by_default() {
        let c = parse("upstream = \"http://a\"\nlisten = \"127.0.0.1:8080\"\n").unwrap();
        assert_eq!(c.console.listen.to_string(), "127.0.0.1:8081");
        assert_eq!(c.console.public_origin, None);
        assert_eq!(
            c.console.origin_beside("http://shop.test:8080").as_deref(),
            Some("http://shop.test:8081")
        );
        assert_eq!(
            c.console.origin_beside("https://shop.test").as_deref(),
            Some("https://shop.test:8081")
        );
        let c = parse("upstream = \"http://a\"\nlisten = \"127.0.0.1:0\"\n").unwrap();
        assert_eq!(c.console.listen.port(), 0);
        let c = parse("upstream = \"http://a\"\n[console]\nlisten = \"0.0.0.0:9000\"\npublic_origin = \"https://Console.Example.com/\"\n").unwrap();
        assert_eq!(c.console.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(
            c.console
                .origin_beside("https://shop.example.com")
                .as_deref(),
            Some("https://console.example.com")
        );
        for (text, field) in [
            ("listen = \"127.0.0.1:65535\"\n", "console.listen"),
            (
                "listen = \"127.0.0.1:80\"\n[console]\nlisten = \"127.0.0.1:80\"\n",
                "console.listen",
            ),
            ("[console]\nlisten = \"nowhere\"\n", "console.listen"),
            (
                "[console]\npublic_origin = \"https://c.test/path\"\n",
                "console.public_origin",
            ),
            (
                "public_origins = [\"https://c.test\"]\n[console]\npublic_origin = \"https://c.test\"\n",
                "console.public_origin",
            ),
            ("[console]\nport = 1\n", "port"),
        ] {
            let e = parse(&format!("upstream = \"http://a\"\n{text}")).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }

    #[test]
    fn no_upstream_is_an_error() {
        assert_eq!(parse("").unwrap_err().field, "upstream");
    }

    #[test]
    fn host_picks_site() {
        let c = parse("[[sites]]\nhosts=[\"a.test\"]\nupstream=\"http://a:1\"\n[[sites]]\nhosts=[\"b.test\"]\nupstream=\"http://b:2\"\n").unwrap();
        assert_eq!(
            c.site_for_host("b.test:8080").unwrap().upstream.as_str(),
            "http://b:2/"
        );
        assert_eq!(
            c.site_for_host("zzz").unwrap().upstream.as_str(),
            "http://a:1/"
        );
    }

    #[test]
    fn selector_check() {
        assert!(check_selector("#a .b > input[name=x]").is_ok());
        assert!(check_selector("a[").is_err());
    }
}
