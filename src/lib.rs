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
//! - [`listener`]: accepting connections, with caps in total and per
//!   address, header-read, idle and handshake timeouts, and shutdown.
//! - [`proxy`]: the upstream client, the header phases, the streaming HTML
//!   rewrite that injects the agent.
//! - [`hub`]: WebSocket sessions, difference commands and their store, the
//!   call and operator allocation, operator login.
//! - [`assets`]: the browser side (`inject/`) compiled into the binary.
//! - [`demo`]: the bundled demo site the default `proxy.toml` fronts.
//! - [`telemetry`]: every metric's name, kind and help; registered at start.
//! - [`logging`]: text or JSON log lines, request and connection ids;
//!   [`audit`]: the audit log's own file.
//! - [`tls`], [`password`], [`body`]: support.

pub mod assets;
pub mod audit;
pub mod body;
pub mod cli;
pub mod config;
pub mod demo;
pub mod driver;
pub mod hub;
pub mod listener;
pub mod logging;
pub mod password;
pub mod proxy;
pub mod secret;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod web;
