//! cobrowse: a reverse proxy that puts a co-browsing agent into every page of
//! an unmodified website, and the hub that shares those pages live between a
//! customer and operators.
//!
//! # Layout
//!
//! - [`cli`], [`config`]: the command line and `proxy.toml`, read raw then
//!   resolved into [`config::Config`].
//! - [`server`]: the listeners, the site's and the operator console's (plain or
//!   TLS, HTTP/1.1 and HTTP/2);
//!   routes the reserved prefix (`/__cobrowse/`) to the hub and the assets,
//!   everything else to the proxy. Graceful shutdown.
//! - [`cluster`]: nodes on one Redis store acting as one: the leader's
//!   lease, forwarding the shared sessions' requests to the leader, the
//!   peer headers.
//! - [`listener`]: accepting connections, with caps in total and per
//!   address, header-read, idle and handshake timeouts, and shutdown.
//! - [`driver`]: one driver per shared session; what followers may ask
//!   for and are served, masked; with a Redis store, what it keeps written
//!   behind to Redis for a node that takes over.
//! - [`proxy`]: the upstream client, the header phases, the streaming HTML
//!   rewrite that injects the agent.
//! - [`hub`]: WebSocket sessions, difference commands and their store, the
//!   call and operator allocation, operator login.
//! - [`assets`]: the browser side (`inject/`) compiled into the binary.
//! - [`demo`]: the bundled demo site the default `proxy.toml` fronts.
//! - [`web`]: the connection a request came on and the small HTTP helpers
//!   (host, Origin rules, https, tokens, cookies, body kind, our own
//!   responses), one of each.
//! - [`telemetry`]: every metric's name, kind and help; registered at start.
//! - [`logging`]: text or JSON log lines, request and connection ids;
//!   [`audit`]: the audit log's own file.
//! - [`tls`], [`password`], [`secret`], [`body`]: support; [`lock`]: the one
//!   policy for a poisoned lock (recover and keep serving, counted);
//!   [`allocator`]: what the process gives back to the system.
//!
//! ## Layers
//!
//! Imports run one way, down this list: a module imports only modules of
//! its own layer or of a layer below, and no files import each other in a
//! cycle. `tests/layers.rs` reads this list and every `use` of `src/`, and
//! holds both rules.
//!
//! 1. entry: `main`, `cli`
//! 2. server: `server`, `listener`
//! 3. cluster: `cluster`
//! 4. driver: `driver`
//! 5. parts: `proxy`, `hub`, `assets`, `demo`
//! 6. leaves: `config`, `web`, `body`, `secret`, `telemetry`, `logging`, `audit`, `password`, `tls`, `lock`, `allocator`
//!
//! ## Visibility
//!
//! Only what the binary (`main.rs`) and the benchmarks use is public:
//! `server`, `cli`, `config`, `logging`, `audit`, `password`, `telemetry`,
//! `allocator`,
//! and `proxy` (its rewrite stages are benchmarked and fuzzed). The hub's
//! message parser is re-exported for its fuzz target (`fuzz/`). Everything
//! else is `pub(crate)`.

pub mod allocator;
pub(crate) mod assets;
pub mod audit;
pub(crate) mod body;
pub mod cli;
pub(crate) mod cluster;
pub mod config;
pub(crate) mod demo;
pub(crate) mod driver;
pub(crate) mod hub;
pub(crate) mod listener;
pub(crate) mod lock;
pub mod logging;
pub mod password;
pub mod proxy;
pub(crate) mod secret;
pub mod server;
pub mod telemetry;
pub(crate) mod tls;
pub(crate) mod web;

/// The hub's message parser, for the fuzz target over it (`fuzz/`).
pub use hub::protocol::{ClientMessage, parse as parse_hub_message};
