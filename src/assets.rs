//! The browser side (`inject/`), compiled into the binary and served under
//! the reserved prefix with ETags so browsers cache them. A request that
//! names a file's current version (`?v=<its content hash>`, as the agent's
//! tag in every document does) is served immutable: the synchronous agent
//! in `<head>` then costs a page load no revalidation round trip.

use http::{HeaderValue, Method, Response, StatusCode, header};

use crate::body::{self, Body};
use crate::config::Config;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: Vec<u8>,
    /// The content hash, in hex: the ETag (quoted) and the version in URLs.
    version: String,
    etag: String,
}

/// How long a versioned URL is kept: its content never changes.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub struct Assets {
    files: Vec<Asset>,
}

/// The parts of `agent.js`, in the order they run. The agent is one
/// synchronous script, first in `<head>`: the run-time URL patches and the
/// masking watch must be in place before the site's own scripts run.
const AGENT_PARTS: &[&str] = &[
    include_str!("../inject/patch-urls.js"),
    include_str!("../inject/mask.js"),
    include_str!("../inject/agent.js"),
];

/// The files of `inject/`, by the route they are served on. `share.js` is
/// the sharing engine, loaded by the agent only when a session starts, so
/// pages without a call carry only the small synchronous part.
/// The console's files are served on the console's own door, the others on
/// the site's (`frame` is the console's content frame's first page, on the
/// site's origin).
const FILES: &[(&str, &str, &str)] = &[
    (
        "console",
        "text/html; charset=utf-8",
        include_str!("../inject/console.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../inject/console.css"),
    ),
    (
        "share.js",
        "text/javascript; charset=utf-8",
        include_str!("../inject/share.js"),
    ),
    (
        "frame",
        "text/html; charset=utf-8",
        include_str!("../inject/frame.html"),
    ),
];

impl Assets {
    pub fn new(config: &Config) -> Assets {
        let agent = (
            "agent.js",
            "text/javascript; charset=utf-8",
            agent_source(config),
        );
        let console = (
            "console.js",
            "text/javascript; charset=utf-8",
            console_source(config),
        );
        let files = FILES
            .iter()
            .map(|&(name, content_type, text)| (name, content_type, text.to_string()))
            .chain([agent, console])
            .map(|(name, content_type, text)| {
                // The prefix is configurable: files refer to it as `/__cobrowse/`.
                let bytes = text.replace("/__cobrowse/", &config.prefix).into_bytes();
                let version = format!("{:016x}", fnv1a(&bytes));
                Asset {
                    name,
                    content_type,
                    bytes,
                    etag: format!("\"{version}\""),
                    version,
                }
            })
            .collect();
        Assets { files }
    }

    /// The agent's URL under `prefix`, named by its version: a changed
    /// agent (a new build, another configuration) gets a new URL.
    pub fn agent_url(&self, prefix: &str) -> String {
        let agent = self
            .files
            .iter()
            .find(|a| a.name == "agent.js")
            .expect("the agent is one of the assets");
        format!("{prefix}agent.js?v={}", agent.version)
    }

    /// Serves the asset called `name`, or `None` when there is none. A
    /// request whose `If-None-Match` names the current ETag gets `304`; one
    /// whose `query` names the current version (`v=…`) may be kept for
    /// good, any other revalidates (the unversioned URL, or an old version
    /// still in a page: it gets today's file, which must not stick).
    pub fn serve(
        &self,
        name: &str,
        query: Option<&str>,
        method: &Method,
        if_none_match: Option<&HeaderValue>,
    ) -> Option<Response<Body>> {
        let asset = self.files.iter().find(|a| a.name == name)?;
        if method != Method::GET && method != Method::HEAD {
            return Some(crate::web::text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n",
            ));
        }
        let fresh = if_none_match
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|tag| tag.trim() == asset.etag || tag.trim() == "*")
            });
        let current = query.and_then(|q| q.strip_prefix("v=")) == Some(asset.version.as_str());
        let builder = Response::builder()
            .header(header::ETAG, &asset.etag)
            .header(
                header::CACHE_CONTROL,
                if current { IMMUTABLE } else { "no-cache" },
            )
            .header("x-content-type-options", "nosniff");
        let response = if fresh {
            builder.status(StatusCode::NOT_MODIFIED).body(body::empty())
        } else {
            let bytes = if method == Method::HEAD {
                Vec::new()
            } else {
                asset.bytes.clone()
            };
            builder
                .header(header::CONTENT_TYPE, asset.content_type)
                .body(body::full(bytes))
        };
        Some(response.expect("static response parts are valid"))
    }
}

/// `agent.js`: its parts in one function scope, so the page gets no global
/// names but the one the agent chooses, with `CONFIG` (the prefix, the
/// upstream origins, the mask selectors) in scope.
fn agent_source(config: &Config) -> String {
    let upstreams: Vec<String> = config
        .sites
        .iter()
        .map(|s| s.upstream.origin().ascii_serialization())
        .collect();
    let agent_config = serde_json::json!({
        "prefix": config.prefix,
        "upstreams": upstreams,
        "mask": config.privacy.mask,
        // Where the operator console is, so its content frame's agent talks
        // to that origin only: the public origin, or this host on its port.
        "console": { "origin": config.console.public_origin, "port": config.console.listen.port() },
    });
    let mut source = format!("(function () {{\n'use strict';\nconst CONFIG = {agent_config};\n");
    for part in AGENT_PARTS {
        source.push_str(part);
        source.push('\n');
    }
    source.push_str("})();\n");
    source
}

/// `console.js` in a scope with `SITE`: where the site is, the one origin
/// whose pages the console frames and listens to (the first public origin,
/// or the console's host on the site's port).
fn console_source(config: &Config) -> String {
    let site = serde_json::json!({ "origin": config.public_origins.first(), "port": config.listen.port() });
    format!(
        "(function () {{\n'use strict';\nconst SITE = {site};\n{}\n}})();\n",
        include_str!("../inject/console.js")
    )
}

/// A content hash for ETags; not cryptographic, only needs to change when the
/// file does.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assets() -> Assets {
        let config = Config::parse(
            "upstream = \"http://127.0.0.1:9\"\n",
            None,
            &Default::default(),
        )
        .expect("a valid config");
        Assets::new(&config)
    }

    #[test]
    fn a_matching_if_none_match_gets_not_modified() {
        let a = assets();
        for name in [
            "agent.js",
            "share.js",
            "console",
            "console.js",
            "console.css",
            "frame",
        ] {
            let first = a.serve(name, None, &Method::GET, None).expect(name);
            assert_eq!(first.status(), StatusCode::OK, "{name}");
            let etag = first.headers()[header::ETAG].clone();
            let again = a.serve(name, None, &Method::GET, Some(&etag)).unwrap();
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{name}");
            assert_eq!(again.headers()[header::ETAG], etag);
            let listed =
                HeaderValue::from_str(&format!("\"other\", {}", etag.to_str().unwrap())).unwrap();
            assert_eq!(
                a.serve(name, None, &Method::GET, Some(&listed))
                    .unwrap()
                    .status(),
                StatusCode::NOT_MODIFIED
            );
            let stale = HeaderValue::from_static("\"0000000000000000\"");
            assert_eq!(
                a.serve(name, None, &Method::GET, Some(&stale))
                    .unwrap()
                    .status(),
                StatusCode::OK
            );
        }
        assert!(a.serve("nothing.js", None, &Method::GET, None).is_none());
        assert_eq!(
            a.serve("agent.js", None, &Method::POST, None)
                .unwrap()
                .status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn the_agent_url_names_its_version_which_is_kept_for_good() {
        let a = assets();
        let url = a.agent_url("/p/");
        let version = url.strip_prefix("/p/agent.js?v=").expect(&url);
        assert_eq!(version.len(), 16, "{url}");
        let agent = &a.files.iter().find(|f| f.name == "agent.js").unwrap();
        assert_eq!(version, format!("{:016x}", fnv1a(&agent.bytes)));
        let cache = |query: Option<&str>| {
            a.serve("agent.js", query, &Method::GET, None)
                .unwrap()
                .headers()[header::CACHE_CONTROL]
                .clone()
        };
        assert_eq!(cache(Some(&format!("v={version}"))), IMMUTABLE);
        // The old URL and an old version still work, and revalidate.
        assert_eq!(cache(None), "no-cache");
        assert_eq!(cache(Some("v=0000000000000000")), "no-cache");
        assert_eq!(cache(Some(&format!("v={version}&x"))), "no-cache");
        // Another configuration is another agent, at another URL.
        let config = Config::parse(
            "upstream = \"http://127.0.0.1:9\"\n[privacy]\nmask = [\".other\"]\n",
            None,
            &Default::default(),
        )
        .expect("a valid config");
        assert_ne!(Assets::new(&config).agent_url("/p/"), url);
    }

    #[test]
    fn the_agent_is_one_scope_with_its_config() {
        let a = assets();
        let agent = &a.files.iter().find(|f| f.name == "agent.js").unwrap().bytes;
        let text = std::str::from_utf8(agent).unwrap();
        assert!(text.starts_with("(function () {\n'use strict';\nconst CONFIG = {"));
        assert!(text.trim_end().ends_with("})();"));
        assert!(text.contains("\"upstreams\":[\"http://127.0.0.1:9\"]"));
        assert!(
            text.contains("\"console\":{\"origin\":null,\"port\":8081}"),
            "the agent knows the console's port"
        );
    }

    #[test]
    fn the_console_knows_the_one_site_it_frames() {
        let toml = "upstream = \"http://127.0.0.1:9\"\npublic_origins = [\"https://shop.example\"]\n[console]\npublic_origin = \"https://console.example\"\n";
        let config = Config::parse(toml, None, &Default::default()).expect("a valid config");
        let a = Assets::new(&config);
        let text = |name: &str| {
            String::from_utf8(
                a.files
                    .iter()
                    .find(|f| f.name == name)
                    .unwrap()
                    .bytes
                    .clone(),
            )
            .unwrap()
        };
        assert!(text("console.js").starts_with("(function () {\n'use strict';\nconst SITE = {\"origin\":\"https://shop.example\",\"port\":8080};"));
        assert!(
            text("agent.js")
                .contains("\"console\":{\"origin\":\"https://console.example\",\"port\":8081}")
        );
    }
}
