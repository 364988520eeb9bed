//! The sharing hub: WebSocket participants, sessions, difference commands and
//! their store, the call and operator allocation, operator login.
//!
//! The protocol is written down in `docs/protocol.md`.

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::Body;
use crate::config::Config;
use crate::server::Ctx;

pub struct Hub {
    #[allow(dead_code)]
    config: Arc<Config>,
}

impl Hub {
    pub fn new(config: Arc<Config>) -> Hub {
        Hub { config }
    }

    /// Handles the hub's routes under the prefix (`ws`, `login`, `logout`,
    /// `me`); `None` for any other route.
    pub async fn handle(&self, _route: &str, _req: Request<Incoming>, _ctx: Ctx) -> Option<Response<Body>> {
        None
    }

    /// Tells every participant the server is going away.
    pub fn shutdown(&self) {}
}
