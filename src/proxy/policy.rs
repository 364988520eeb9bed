//! The hook per-session rules plug into the proxy's phases with: the proxy
//! asks a [`Policy`] before a request goes upstream, records through it what
//! the driver received, and has it mask or refuse what a follower is sent.
//! The driver (`crate::driver`) implements it; the proxy knows nothing of
//! sessions, so the arrow runs from the driver to the proxy only.

use futures_util::future::BoxFuture;
use http::{HeaderMap, Response, StatusCode};

use super::error::Unmaskable;
use super::stage::Stage;
use crate::body::Body;
use crate::config::Privacy;

/// What the proxy does with a request, decided before it goes upstream.
pub enum Decision {
    /// Send it upstream. `record` names the session whose driver is reading
    /// (a document, or a GET of its scripts), so the response is kept for
    /// followers; `follower` is set when the response goes to a follower.
    Forward {
        record: Option<String>,
        follower: Option<Follower>,
    },
    /// Answer it here: a kept response for a follower, or a refusal.
    Answer(Response<Body>),
}

/// A follower's read that goes upstream: its response is masked, fails
/// closed, and never sets the site's cookies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    pub session: String,
    /// Made with the driver's cookies (the page the driver was on when it
    /// was bound); otherwise made with no credentials at all.
    pub as_driver: bool,
}

/// The session rules, as the proxy's phases call them.
pub trait Policy: Send + Sync {
    /// Whether the request's browser is surely bound to no session: it
    /// carries no binding although it would have sent one (the request is
    /// not cross-site). Asked before [`Policy::before_upstream`] takes the
    /// binding out. The agent of a document so marked knows no session of
    /// its tab can resume (see `html::Options::unbound`).
    fn unbound(&self, headers: &HeaderMap) -> bool;

    /// Phase 1b, before the request is readdressed: where the request
    /// stands in a shared session (our own cookie is taken out of `parts`
    /// either way). A follower's request may be answered here and never
    /// reach upstream.
    fn before_upstream<'a>(
        &'a self,
        parts: &'a mut http::request::Parts,
        privacy: &'a Privacy,
    ) -> BoxFuture<'a, Decision>;

    /// Phase 5: the stage that keeps the driver's response to `target` for
    /// the followers of `session`.
    fn recorder(
        &self,
        session: String,
        target: String,
        status: StatusCode,
        headers: &HeaderMap,
        decoded: bool,
    ) -> Box<dyn Stage>;

    /// Phase 5: a JSON body for a follower with its masked keys masked, or
    /// why it cannot be (the proxy then refuses it: [`super::error::Error::Unmaskable`]).
    fn mask_json<'a>(
        &'a self,
        headers: &'a mut HeaderMap,
        status: StatusCode,
        body: Body,
        privacy: &'a Privacy,
    ) -> BoxFuture<'a, Result<Body, Unmaskable>>;
}
