//! The integration tests: one binary, sharing the fixtures in `support/`.
//! Each module starts the real `cobrowse` binary on an ephemeral port, with
//! real upstream servers, real WebSocket clients and real Chromium.

mod support;

mod browser;
mod cli;
mod hub;
mod layers;
mod limits;
mod observe;
mod proxy;
