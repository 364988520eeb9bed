//! The peer headers: what a node forwarding a request says about the client
//! it forwards for. Only a peer may say it, so every request loses these
//! headers before anything reads them, and what they said counts only with
//! the cluster's secret.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue};
use tracing::warn;

use crate::logging::once_per;
use crate::telemetry;
use crate::web::Ctx;

/// The cluster's secret: the proof a request comes from a peer.
pub const PEER: &str = "x-cobrowse-peer";
/// The address of the client the peer forwards for.
pub const CLIENT: &str = "x-cobrowse-client";
/// `1` when that client reached the peer over TLS, else `0`.
pub const TLS: &str = "x-cobrowse-tls";

/// Who sent a request, once the peer headers are read and removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A client, as the connection says (the peer headers, if it sent any,
    /// are gone and changed nothing).
    Client,
    /// A peer with the secret, forwarding for the client now in `ctx`.
    Peer,
}

/// Removes the three peer headers from `headers` and returns the request's
/// context: the connection's own, or, when the headers carry `secret`, the
/// client's the peer names. Without a cluster (`secret` `None`) they are
/// removed all the same: a client's copy never reaches the site nor the hub.
pub fn admit(headers: &mut HeaderMap, ctx: Ctx, secret: Option<&str>) -> (Ctx, Sender) {
    let proof = take(headers, PEER);
    let client = take(headers, CLIENT);
    let tls = take(headers, TLS);
    let Some(proof) = proof else {
        return (ctx, Sender::Client);
    };
    let trusted = secret.is_some_and(|s| {
        proof
            .to_str()
            .is_ok_and(|p| crate::secret::same_secret(p, s))
    });
    if !trusted {
        metrics::counter!(telemetry::CLUSTER_PEER_REFUSED, "reason" => "secret").increment(1);
        // A client chooses how often: logged at most every 10 s.
        static LOGGED: Mutex<Option<Instant>> = Mutex::new(None);
        if once_per(&LOGGED, Duration::from_secs(10)) {
            warn!(remote = %ctx.remote, "peer headers without the cluster's secret: removed, the request is the connection's own (logged at most every 10 s)");
        }
        return (ctx, Sender::Client);
    }
    let Some(ip) = client
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<IpAddr>().ok())
    else {
        // A peer of ours always names the client; one that does not is
        // not believed about anything.
        metrics::counter!(telemetry::CLUSTER_PEER_REFUSED, "reason" => "client").increment(1);
        warn!(remote = %ctx.remote, client = ?client, "peer request without a client address: treated as the connection's own");
        return (ctx, Sender::Client);
    };
    let ctx = Ctx {
        remote: SocketAddr::new(ip, 0),
        tls: tls.as_ref().is_some_and(|v| v.as_bytes() == b"1"),
        door: ctx.door,
    };
    (ctx, Sender::Peer)
}

/// Sets the peer headers on a request this node forwards for `ctx`'s
/// client.
pub fn stamp(headers: &mut HeaderMap, ctx: &Ctx, secret: &str) {
    let pairs = [
        (PEER, HeaderValue::from_str(secret).ok()),
        (
            CLIENT,
            HeaderValue::from_str(&ctx.remote.ip().to_string()).ok(),
        ),
        (
            TLS,
            Some(HeaderValue::from_static(if ctx.tls { "1" } else { "0" })),
        ),
    ];
    for (name, value) in pairs {
        if let Some(value) = value {
            headers.insert(name, value);
        }
    }
}

/// Removes every line of header `name`, returning the first.
fn take(headers: &mut HeaderMap, name: &'static str) -> Option<HeaderValue> {
    match headers.entry(name) {
        http::header::Entry::Occupied(e) => e.remove_entry_mult().1.next(),
        http::header::Entry::Vacant(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::Door;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn ctx() -> Ctx {
        Ctx {
            remote: "192.0.2.7:4000".parse().unwrap(),
            tls: false,
            door: Door::Site,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_the_secret_makes_a_peer() {
        let claims = [(CLIENT, "203.0.113.9"), (TLS, "1")];
        for proof in [None, Some(""), Some("wrong"), Some(&SECRET[1..])] {
            let mut pairs = claims.to_vec();
            if let Some(p) = proof {
                pairs.push((PEER, p));
            }
            let mut h = headers(&pairs);
            h.insert("x-other", "kept".parse().unwrap());
            let (got, sender) = admit(&mut h, ctx(), Some(SECRET));
            assert_eq!(sender, Sender::Client, "{proof:?}");
            assert_eq!((got.remote, got.tls), (ctx().remote, false), "{proof:?}");
            assert!(
                [PEER, CLIENT, TLS].iter().all(|n| !h.contains_key(*n)),
                "{h:?}"
            );
            assert!(h.contains_key("x-other"));
        }
        let mut h = headers(&[(PEER, SECRET), (CLIENT, "203.0.113.9"), (TLS, "1")]);
        let (got, sender) = admit(&mut h, ctx(), Some(SECRET));
        assert_eq!(sender, Sender::Peer);
        assert_eq!(got.remote.ip().to_string(), "203.0.113.9");
        assert!(got.tls);
        assert!(h.is_empty(), "{h:?}");
        // No cluster: nobody is a peer, and the headers go all the same.
        let mut h = headers(&[(PEER, SECRET), (CLIENT, "203.0.113.9")]);
        assert_eq!(admit(&mut h, ctx(), None).1, Sender::Client);
        assert!(h.is_empty());
    }

    #[test]
    fn a_second_line_cannot_smuggle_a_claim() {
        // The secret on one line, a forged client on another: every line
        // goes, and the first client line is the one the peer set.
        let mut h = headers(&[
            (PEER, SECRET),
            (CLIENT, "198.51.100.1"),
            (CLIENT, "203.0.113.9"),
        ]);
        let (got, _) = admit(&mut h, ctx(), Some(SECRET));
        assert_eq!(got.remote.ip().to_string(), "198.51.100.1");
        assert!(h.is_empty());
        // A peer request naming no client is not believed.
        let mut h = headers(&[(PEER, SECRET), (CLIENT, "not an address")]);
        assert_eq!(admit(&mut h, ctx(), Some(SECRET)).1, Sender::Client);
    }

    #[test]
    fn stamping_names_the_client() {
        let mut h = HeaderMap::new();
        let mut c = ctx();
        c.tls = true;
        stamp(&mut h, &c, SECRET);
        assert_eq!(h[PEER], SECRET);
        assert_eq!(h[CLIENT], "192.0.2.7");
        assert_eq!(h[TLS], "1");
    }
}
