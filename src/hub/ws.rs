//! The WebSocket handshake at `{prefix}ws`: checks the door, Origin, role
//! and the operator cookie, answers `101`, then hands the upgraded
//! connection to [`super::connection::serve`].
//!
//! Customers connect on the site's door from the site's origin; operators
//! on the console's door from the console's origin, and nowhere else, so a
//! site script in an operator's browser (whose cookie the browser would
//! send, cookies ignoring ports) cannot open the hub as that operator.

use std::sync::Arc;

use futures_util::StreamExt;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role as WsRole, WebSocketConfig};
use tracing::{Instrument, debug, info, warn};

use super::protocol::Role;
use super::state::Shared;
use crate::body::{self, Body};
use crate::web::{self, Ctx, Door};

/// Bytes of the read buffer each socket allocates up front. Messages
/// larger than it grow it for as long as they take; an idle socket costs
/// only this.
const READ_BUFFER: usize = 4 * 1024;

/// The socket's own bounds. Messages over `max_message_bytes` are refused
/// with `too_large` and the connection stays; a frame or message over four
/// times that ends the connection before it is buffered, which bounds what
/// one socket can make us hold while reading.
fn ws_config(max_message_bytes: usize) -> WebSocketConfig {
    let hard_limit = max_message_bytes.saturating_mul(4);
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(hard_limit))
        .max_frame_size(Some(hard_limit))
}

fn role_of(query: Option<&str>) -> Option<Role> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "role")
        .and_then(|(_, v)| match &*v {
            "customer" => Some(Role::Customer),
            "operator" => Some(Role::Operator),
            _ => None,
        })
}

pub fn upgrade(shared: &Arc<Shared>, mut req: Request<Incoming>, ctx: Ctx) -> Response<Body> {
    let headers = req.headers();
    if req.method() != Method::GET
        || !web::has_token(headers, header::UPGRADE, "websocket")
        || !web::has_token(headers, header::CONNECTION, "upgrade")
        || headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v != "13")
    {
        return web::text(
            StatusCode::BAD_REQUEST,
            "this is the hub's WebSocket: open it with a WebSocket (version 13) GET\n",
        );
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return web::text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    let host = web::host(&req);
    let Some(role) = role_of(req.uri().query()) else {
        return web::text(
            StatusCode::BAD_REQUEST,
            "say who you are: `?role=customer` or `?role=operator`\n",
        );
    };
    let config = &shared.config;
    let (door_ok, origins) = match role {
        Role::Customer => (ctx.door == Door::Site, config.public_origins.as_slice()),
        Role::Operator => (
            ctx.door == Door::Console,
            config.console.public_origin.as_slice(),
        ),
    };
    if !door_ok {
        info!(remote = %ctx.remote, role = role.as_str(), door = ?ctx.door, "WebSocket refused: wrong door for the role");
        metrics::counter!(crate::telemetry::HUB_OPERATOR_REFUSALS, "reason" => "door").increment(1);
        return web::text(
            StatusCode::FORBIDDEN,
            match role {
                Role::Operator => "operators connect from the operator console's own origin\n",
                Role::Customer => "customers connect on the site's origin, not the console's\n",
            },
        );
    }
    if !web::same_origin(headers, host, &ctx, origins) {
        info!(remote = %ctx.remote, origin = ?headers.get(header::ORIGIN), host, "WebSocket refused: foreign origin");
        return web::text(
            StatusCode::FORBIDDEN,
            "the Origin is not this proxy's own\n",
        );
    }
    let account = shared.logins.account(headers);
    if role == Role::Operator && account.is_none() {
        return web::text(StatusCode::UNAUTHORIZED, "operators log in first\n");
    }
    let account = if role == Role::Operator {
        account
    } else {
        None
    };
    let max = shared.config.hub.max_sockets_per_address;
    // Held for as long as the connection lives.
    let Some(slot) = shared.sockets.take(ctx.remote.ip(), max) else {
        warn!(remote = %ctx.remote, max, "WebSocket refused: its address holds hub.max_sockets_per_address sockets");
        metrics::counter!(crate::telemetry::HUB_SOCKETS_REFUSED, "reason" => "per_address")
            .increment(1);
        return web::text(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many WebSockets open from this address (hub.max_sockets_per_address = {max}); close one and try again\n"
            ),
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let shared = shared.clone();
    let ws_config = ws_config(shared.config.hub.max_message_bytes);
    // Every line about this connection carries its id; the handshake's own
    // request id is on the line that answered it.
    let span = tracing::info_span!(parent: None, "connection", id = %crate::logging::new_id(), role = role.as_str(), remote = %ctx.remote);
    let task = async move {
        let _slot = slot;
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    WsRole::Server,
                    Some(ws_config),
                )
                .await;
                let (sink, stream) = ws.split();
                let peer = super::connection::Peer {
                    remote: ctx.remote.ip(),
                    role,
                    account,
                };
                super::connection::serve(shared, sink, stream, peer).await;
            }
            Err(e) => debug!(error = %e, "WebSocket upgrade failed"),
        }
    };
    tokio::spawn(task.instrument(span));
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(body::empty())
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_comes_from_the_query() {
        assert_eq!(role_of(Some("role=operator")), Some(Role::Operator));
        assert_eq!(role_of(Some("x=1&role=customer")), Some(Role::Customer));
        assert_eq!(role_of(Some("role=admin")), None);
        assert_eq!(role_of(None), None);
    }
}
