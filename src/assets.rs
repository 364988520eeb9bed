//! The browser side (`inject/`), compiled into the binary and served under
//! the reserved prefix with ETags so browsers cache them. A request that
//! names a file's current version (`?v=<its content hash>`, as the agent's
//! tag in every document does) is served immutable: the synchronous agent
//! in `<head>` then costs a page load no revalidation round trip.

use std::io::Write;

use http::{HeaderMap, Method, Response, StatusCode, header};

use crate::body::{self, Body};
use crate::config::Config;
use crate::hub::protocol;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: Vec<u8>,
    /// The content hash, in hex: the ETag (quoted) and the version in URLs.
    version: String,
    etag: String,
    /// The same bytes compressed once at start, each with its own ETag
    /// (another representation of the same version).
    coded: [Coded; 2],
}

/// One precompressed representation of an asset.
struct Coded {
    coding: &'static str,
    bytes: Vec<u8>,
    etag: String,
}

/// How long a versioned URL is kept: its content never changes.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub struct Assets {
    files: Vec<Asset>,
}

/// The hub as the browser side knows it (the store's rule, the navigation
/// rule, binding, the WebSocket link), joined into `agent.js`, `share.js`
/// and `console.js` after the generated `VOCABULARY` ([`vocabulary_part`]).
const HUB_PART: &str = include_str!("../inject/hub.js");

/// The parts of `agent.js`, in the order they run. The agent is one
/// synchronous script, first in `<head>`: the run-time URL patches and the
/// masking watch must be in place before the site's own scripts run. What
/// only a call needs is in `call.js` and `share.js`, loaded on need.
const AGENT_PARTS: &[&str] = &[
    include_str!("../inject/patch-urls.js"),
    include_str!("../inject/mask.js"),
    HUB_PART,
    include_str!("../inject/agent.js"),
];

/// The parts of `share.js`, the sharing engine, in the order they are
/// joined: one function scope, the body of `engineFactory(ROOT, link)`
/// (`ROOT` the root window of the shared page tree, `link` the link to the
/// hub). Declarations first; `engine.js`, last, builds the `engine` the
/// factory returns and attaches the frames already known. The agent loads
/// it only when a session starts, so pages without a call carry only the
/// small synchronous part.
const SHARE_PARTS: &[&str] = &[
    include_str!("../inject/share/keys.js"),
    include_str!("../inject/share/page.js"),
    include_str!("../inject/share/detectors.js"),
    include_str!("../inject/share/appliers.js"),
    include_str!("../inject/share/overlay.js"),
    include_str!("../inject/share/engine.js"),
];

/// The parts of `call.js`: the customer's call (the link to the hub, the
/// widget's behaviour), which the agent loads in the customer's top window
/// when the customer calls or a session resumes.
const CALL_PARTS: &[&str] = &[HUB_PART, include_str!("../inject/call.js")];

/// The files of `inject/` served as they are, by the route they are served
/// on. The console's files are served on the console's own door, the others on
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
        "frame",
        "text/html; charset=utf-8",
        include_str!("../inject/frame.html"),
    ),
];

impl Assets {
    pub fn new(config: &Config) -> Assets {
        const JS: &str = "text/javascript; charset=utf-8";
        let asset = |name, content_type, text: String| Asset::new(name, content_type, text, config);
        // The scripts the agent loads on need go first: the agent names
        // them by their versions, so a new version of either is a new agent.
        let share = asset("share.js", JS, share_source());
        let call = asset("call.js", JS, call_source(config));
        let scripts = serde_json::json!({
            "share.js": share.url(&config.prefix),
            "call.js": call.url(&config.prefix),
        });
        let agent = asset("agent.js", JS, agent_source(config, &scripts));
        let console = asset("console.js", JS, console_source(config));
        let files = FILES
            .iter()
            .map(|&(name, content_type, text)| asset(name, content_type, text.to_string()))
            .chain([agent, share, call, console])
            .collect();
        Assets { files }
    }

    /// The agent's URL under `prefix`, named by its version: a changed
    /// agent (a new build, another configuration) gets a new URL.
    pub fn agent_url(&self, prefix: &str) -> String {
        self.files
            .iter()
            .find(|a| a.name == "agent.js")
            .expect("the agent is one of the assets")
            .url(prefix)
    }

    /// Serves the asset called `name`, or `None` when there is none. A
    /// request whose `If-None-Match` names the current ETag gets `304`; one
    /// whose `query` names the current version (`v=…`) may be kept for
    /// good, any other revalidates (the unversioned URL, or an old version
    /// still in a page: it gets today's file, which must not stick). The
    /// body is brotli or gzip where `Accept-Encoding` takes them (compressed
    /// once, at start), else as it is; the answer varies by that header.
    pub fn serve(
        &self,
        name: &str,
        query: Option<&str>,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<Response<Body>> {
        let asset = self.files.iter().find(|a| a.name == name)?;
        if method != Method::GET && method != Method::HEAD {
            return Some(crate::web::text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n",
            ));
        }
        let accepts = headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        // The coding the client ranks highest; brotli (listed first) on a tie.
        let coded = asset
            .coded
            .iter()
            .map(|c| (c, coding_quality(&accepts, c.coding)))
            .filter(|&(_, q)| q > 0.0)
            .fold(None, |best: Option<(&Coded, f32)>, (c, q)| match best {
                Some((_, b)) if b >= q => best,
                _ => Some((c, q)),
            })
            .map(|(c, _)| c);
        let (etag, bytes) = coded.map_or((&asset.etag, &asset.bytes), |c| (&c.etag, &c.bytes));
        // Any representation of the current version is fresh: the client
        // holds the one it names (and could decode it when it got it).
        let all_etags = || std::iter::once(&asset.etag).chain(asset.coded.iter().map(|c| &c.etag));
        let fresh = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',').map(str::trim).find_map(|tag| {
                    if tag == "*" {
                        Some(etag)
                    } else {
                        all_etags().find(|e| e.as_str() == tag)
                    }
                })
            });
        let current = query.and_then(|q| q.strip_prefix("v=")) == Some(asset.version.as_str());
        let builder = Response::builder()
            .header(header::ETAG, fresh.unwrap_or(etag))
            .header(
                header::CACHE_CONTROL,
                if current { IMMUTABLE } else { "no-cache" },
            )
            .header(header::VARY, "Accept-Encoding")
            .header("x-content-type-options", "nosniff");
        let response = if fresh.is_some() {
            builder.status(StatusCode::NOT_MODIFIED).body(body::empty())
        } else {
            let builder = match coded {
                Some(c) => builder.header(header::CONTENT_ENCODING, c.coding),
                None => builder,
            };
            let body = if method == Method::HEAD {
                Vec::new()
            } else {
                bytes.clone()
            };
            builder
                .header(header::CONTENT_TYPE, asset.content_type)
                .body(body::full(body))
        };
        Some(response.expect("static response parts are valid"))
    }
}

impl Asset {
    fn new(name: &'static str, content_type: &'static str, text: String, config: &Config) -> Asset {
        // The prefix is configurable: files refer to it as `/__cobrowse/`.
        let bytes = text.replace("/__cobrowse/", &config.prefix).into_bytes();
        let version = format!("{:016x}", fnv1a(&bytes));
        let coded = [
            Coded {
                coding: "br",
                bytes: brotli(&bytes),
                etag: format!("\"{version}-br\""),
            },
            Coded {
                coding: "gzip",
                bytes: gzip(&bytes),
                etag: format!("\"{version}-gz\""),
            },
        ];
        Asset {
            name,
            content_type,
            bytes,
            etag: format!("\"{version}\""),
            version,
            coded,
        }
    }

    /// The asset's URL under `prefix`, named by its version (served
    /// immutable).
    fn url(&self, prefix: &str) -> String {
        format!("{prefix}{}?v={}", self.name, self.version)
    }
}

/// How much an `Accept-Encoding` value wants `coding` (0: not at all): its
/// q-value where it is named, else that of `*`.
fn coding_quality(accepts: &str, coding: &str) -> f32 {
    let mut named = None;
    let mut any = None;
    for item in accepts.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let token = parts.next().unwrap_or("");
        let q = parts
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| v.trim().parse::<f32>().ok())?
            })
            .unwrap_or(1.0);
        if token.eq_ignore_ascii_case(coding) {
            named = Some(q);
        } else if token == "*" {
            any = Some(q);
        }
    }
    named.or(any).unwrap_or(0.0)
}

/// `bytes` as brotli at its highest quality: done once per asset, at start.
fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 11, 22);
        w.write_all(bytes).expect("writing to memory");
    }
    out
}

/// `bytes` as gzip at its highest level: done once per asset, at start.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    w.write_all(bytes).expect("writing to memory");
    w.finish().expect("writing to memory")
}

/// `agent.js`: its parts in one function scope, so the page gets no global
/// names but the one the agent chooses, with `CONFIG` (the prefix, the
/// upstream origins, the mask selectors, the versioned URLs of the scripts
/// it loads on need) in scope.
fn agent_source(config: &Config, scripts: &serde_json::Value) -> String {
    let mut agent_config = agent_config(config);
    agent_config["scripts"] = scripts.clone();
    let head = format!(
        "(function () {{\n'use strict';\nconst CONFIG = {agent_config};\n{}",
        vocabulary_part()
    );
    joined(head, AGENT_PARTS, "})();\n")
}

/// `call.js`: its parts in one function scope with the agent's `CONFIG`
/// (without the scripts' URLs) and the vocabulary.
fn call_source(config: &Config) -> String {
    let head = format!(
        "(function call() {{\n'use strict';\nconst CONFIG = {};\n{}",
        agent_config(config),
        vocabulary_part()
    );
    joined(head, CALL_PARTS, "})();\n")
}

/// What the agent and the customer's call know of the configuration.
fn agent_config(config: &Config) -> serde_json::Value {
    let upstreams: Vec<String> = config
        .sites
        .iter()
        .map(|s| s.upstream.origin().ascii_serialization())
        .collect();
    let agent_config = serde_json::json!({
        "prefix": config.prefix,
        "upstreams": upstreams,
        "mask": config.privacy.mask,
        // The hub's limit on messages per second per connection, which the
        // customer's publication of a large page stays under.
        "rate": config.hub.messages_per_second,
        // Where the operator console is, so its content frame's agent talks
        // to that origin only: the public origin, or this host on its port.
        "console": { "origin": config.console.public_origin, "port": config.console.listen.port() },
    });
    agent_config
}

/// `share.js`: its parts in the body of the engine factory the agent calls
/// when a session starts (`CB.engineFactory`), defined once per window, in a
/// scope with the vocabulary and the hub's rules.
fn share_source() -> String {
    let head = format!(
        "(function share() {{\n'use strict';\n{}{HUB_PART}\nconst CB = window.__cobrowse;\nif (!CB || CB.engineFactory) return;\nCB.engineFactory = function engineFactory(ROOT, link) {{\n",
        vocabulary_part()
    );
    joined(head, SHARE_PARTS, "return engine;\n};\n})();\n")
}

/// `console.js` in a scope with `SITE`: where the site is, the one origin
/// whose pages the console frames and listens to (the first public origin,
/// or the console's host on the site's port).
fn console_source(config: &Config) -> String {
    let site = serde_json::json!({ "origin": config.public_origins.first(), "port": config.listen.port() });
    let head = format!(
        "(function () {{\n'use strict';\nconst SITE = {site};\n{}",
        vocabulary_part()
    );
    joined(
        head,
        &[HUB_PART, include_str!("../inject/console.js")],
        "})();\n",
    )
}

/// A script: `head`, each part on lines of its own, then `tail`.
fn joined(head: String, parts: &[&str], tail: &str) -> String {
    let mut source = head;
    for part in parts {
        source.push_str(part);
        source.push('\n');
    }
    source.push_str(tail);
    source
}

/// `const VOCABULARY = {…};`: the command vocabulary and close codes as
/// `src/hub/protocol.rs` defines them, so the browser side spells none of
/// them by hand.
fn vocabulary_part() -> String {
    format!("const VOCABULARY = {};\n", protocol::browser_vocabulary())
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

    /// Request headers with `If-None-Match: etag`, where given.
    fn inm(etag: Option<&http::HeaderValue>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(e) = etag {
            h.insert(header::IF_NONE_MATCH, e.clone());
        }
        h
    }

    /// The served text of the asset called `name`.
    fn text_of(a: &Assets, name: &str) -> String {
        let file = a.files.iter().find(|f| f.name == name).expect(name);
        String::from_utf8(file.bytes.clone()).expect("assets are text")
    }

    #[test]
    fn a_matching_if_none_match_gets_not_modified() {
        let a = assets();
        for name in [
            "agent.js",
            "share.js",
            "call.js",
            "console",
            "console.js",
            "console.css",
            "frame",
        ] {
            let first = a
                .serve(name, None, &Method::GET, &HeaderMap::new())
                .expect(name);
            assert_eq!(first.status(), StatusCode::OK, "{name}");
            let etag = first.headers()[header::ETAG].clone();
            let again = a
                .serve(name, None, &Method::GET, &inm(Some(&etag)))
                .unwrap();
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{name}");
            assert_eq!(again.headers()[header::ETAG], etag);
            let listed =
                http::HeaderValue::from_str(&format!("\"other\", {}", etag.to_str().unwrap()))
                    .unwrap();
            assert_eq!(
                a.serve(name, None, &Method::GET, &inm(Some(&listed)))
                    .unwrap()
                    .status(),
                StatusCode::NOT_MODIFIED
            );
            let stale = http::HeaderValue::from_static("\"0000000000000000\"");
            assert_eq!(
                a.serve(name, None, &Method::GET, &inm(Some(&stale)))
                    .unwrap()
                    .status(),
                StatusCode::OK
            );
        }
        assert!(
            a.serve("nothing.js", None, &Method::GET, &HeaderMap::new())
                .is_none()
        );
        assert_eq!(
            a.serve("agent.js", None, &Method::POST, &HeaderMap::new())
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
            a.serve("agent.js", query, &Method::GET, &HeaderMap::new())
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
        let text = text_of(&assets(), "agent.js");
        assert!(text.starts_with("(function () {\n'use strict';\nconst CONFIG = {"));
        assert!(text.trim_end().ends_with("})();"));
        assert!(text.contains("\"upstreams\":[\"http://127.0.0.1:9\"]"));
        assert!(
            text.contains("\"console\":{\"origin\":null,\"port\":8081}"),
            "the agent knows the console's port"
        );
    }

    /// The scripts the agent loads on need are named in it by their
    /// current versions, which are served immutable: a page of a call in
    /// progress finds them in the cache, and a new version is a new agent.
    #[test]
    fn the_agent_names_the_scripts_it_loads_by_their_versions() {
        let a = assets();
        let agent = text_of(&a, "agent.js");
        for name in ["share.js", "call.js"] {
            let file = a.files.iter().find(|f| f.name == name).expect(name);
            let url = file.url("/__cobrowse/");
            assert!(agent.contains(&format!("\"{name}\":\"{url}\"")), "{name}");
            let query = url.split_once('?').map(|(_, q)| q);
            let served = a
                .serve(name, query, &Method::GET, &HeaderMap::new())
                .unwrap();
            assert_eq!(served.headers()[header::CACHE_CONTROL], IMMUTABLE, "{name}");
        }
        // The call's script carries the configuration, not the agent's
        // URLs (which would make each name the other's version).
        let call = text_of(&a, "call.js");
        assert!(call.starts_with("(function call() {\n'use strict';\nconst CONFIG = {"));
        assert!(!call.contains("share.js?v="));
    }

    #[test]
    fn the_sharing_engine_is_its_parts_in_one_factory() {
        let text = text_of(&assets(), "share.js");
        assert!(text.starts_with("(function share() {\n'use strict';\n"));
        assert!(text.trim_end().ends_with("return engine;\n};\n})();"));
        let mut at = 0;
        for part in SHARE_PARTS {
            let found = text[at..].find(part.trim()).expect("every part, in order");
            at += found + part.trim().len();
        }
    }

    /// Each quoted word that follows `marker` in `text`.
    fn quoted_after<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
        text.match_indices(marker)
            .map(|(i, _)| {
                let rest = &text[i + marker.len()..];
                &rest[..rest.find('\'').expect("a closing quote")]
            })
            .collect()
    }

    /// The engine's `send(key, fn, …)` calls: the key as written and the
    /// function (a literal, or the vocabulary's `navigate`); calls whose
    /// function is a variable (a control's described state) are left out.
    fn sends(text: &str) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        for line in text.lines() {
            let Some(at) = line.find("send(") else {
                continue;
            };
            if line[..at].ends_with('.') || line[..at].ends_with("function ") {
                continue; // the link's or the hub's send, or the definition
            }
            // Keys are names or template strings without commas: the
            // function is what follows the first one.
            let call = &line[at + "send(".len()..];
            let Some(comma) = call.find(", ") else {
                continue;
            };
            let (key, function) = (&call[..comma], &call[comma + 2..]);
            if let Some(literal) = function.strip_prefix('\'') {
                out.push((key, &literal[..literal.find('\'').unwrap()]));
            } else if function.starts_with("VOCABULARY.navigate") {
                out.push((key, protocol::NAVIGATE));
            }
        }
        out
    }

    /// The browser side speaks the vocabulary of `src/hub/protocol.rs`, all
    /// of it and nothing else: every function the engine or the console
    /// sends, or the engine applies, is in it, with the aspect its key ends
    /// in, and every function in it is sent by some part and applied, by
    /// its name or its aspect.
    #[test]
    fn the_engine_speaks_the_vocabulary_and_all_of_it() {
        let vocabulary: std::collections::HashMap<&str, Option<&str>> =
            protocol::FUNCTIONS.iter().copied().collect();
        let share = SHARE_PARTS.concat();
        let appliers = include_str!("../inject/share/appliers.js");

        let mut sent: Vec<&str> = quoted_after(&share, "fn: '");
        for (key, function) in sends(&share) {
            let aspect = vocabulary
                .get(function)
                .unwrap_or_else(|| panic!("`{function}` is sent but not in the vocabulary"));
            match (key.find('@'), aspect) {
                (Some(i), Some(aspect)) => {
                    let written = key[i..].split(['/', '`', '\'']).next().unwrap();
                    assert_eq!(written, *aspect, "`{function}` is sent under {key}");
                }
                (Some(_), None) => panic!("`{function}` is sent under an aspect: {key}"),
                (None, Some(aspect)) if key.contains(['`', '\'']) => {
                    panic!("`{function}` is sent without its aspect {aspect}: {key}")
                }
                _ => {}
            }
            sent.push(function);
        }
        // The console sends commands of its own (the address bar's `go`),
        // each written whole on one line with a literal key and function
        // (it also relays the content frame's, which the engine sent).
        let console = include_str!("../inject/console.js");
        let own = |l: &&str| l.contains("type: 'command'") && l.contains("fn: '");
        for line in console.lines().filter(own) {
            let (keys, functions) = (quoted_after(line, "key: '"), quoted_after(line, "fn: '"));
            let ([key], [function]) = (keys.as_slice(), functions.as_slice()) else {
                panic!("a console command without a literal key and function: {line}");
            };
            let aspect = vocabulary
                .get(function)
                .unwrap_or_else(|| panic!("the console sends `{function}`, not in the vocabulary"));
            let written = key.find('@').map(|i| key[i..].split('/').next().unwrap());
            assert_eq!(
                written, *aspect,
                "the console sends `{function}` under {key}"
            );
            sent.push(function);
        }
        let mut applied = quoted_after(appliers, ".fn === '");
        applied.extend(quoted_after(appliers, "case '"));
        if appliers.contains(".fn === VOCABULARY.navigate") {
            applied.push(protocol::NAVIGATE);
        }
        let aspects = quoted_after(appliers, "aspect === '");
        for function in sent.iter().chain(&applied) {
            assert!(
                vocabulary.contains_key(function),
                "`{function}` is used by the engine but not in the vocabulary"
            );
        }
        for (&function, aspect) in &vocabulary {
            assert!(sent.contains(&function), "`{function}` is never sent");
            let by_aspect = aspect.is_some_and(|a| aspects.contains(&a));
            assert!(
                applied.contains(&function) || by_aspect,
                "`{function}` is never applied"
            );
        }
        for aspect in aspects {
            assert!(
                vocabulary.values().any(|a| *a == Some(aspect)),
                "the appliers handle {aspect}, which no function is keyed under"
            );
        }
    }

    /// docs/protocol.md's table of functions lists the vocabulary, each
    /// under the key its aspect names.
    #[test]
    fn the_protocol_documents_the_vocabulary() {
        let doc = include_str!("../docs/protocol.md");
        let table = &doc[doc
            .find("**Functions and their arguments.**")
            .expect("the table")..];
        let mut documented = Vec::new();
        for row in table
            .lines()
            .skip_while(|l| !l.starts_with("| fn |"))
            .skip(2)
        {
            if !row.starts_with("| `") {
                break;
            }
            let cells: Vec<&str> = row.split(" | ").collect();
            let function = cells[0].trim_start_matches("| ").trim_matches('`');
            let aspect = protocol::FUNCTIONS
                .iter()
                .find(|f| f.0 == function)
                .unwrap_or_else(|| panic!("`{function}` is documented but not in the vocabulary"))
                .1;
            if let Some(aspect) = aspect {
                assert!(cells[1].contains(aspect), "`{function}`: {}", cells[1]);
            }
            documented.push(function);
        }
        for (function, _) in protocol::FUNCTIONS {
            assert!(
                documented.contains(function),
                "`{function}` is not documented"
            );
        }
    }

    #[test]
    fn a_coding_is_taken_by_name_or_by_star_unless_refused() {
        for (accepts, br, gzip) in [
            ("", 0.0, 0.0),
            ("gzip, deflate, br", 1.0, 1.0),
            ("GZIP;Q=0.5", 0.0, 0.5),
            ("br;q=0, *", 0.0, 1.0),
            ("*;q=0.3, gzip;q=0", 0.3, 0.0),
            ("identity", 0.0, 0.0),
            ("br;q=bad", 1.0, 0.0),
        ] {
            assert_eq!(coding_quality(accepts, "br"), br, "{accepts}");
            assert_eq!(coding_quality(accepts, "gzip"), gzip, "{accepts}");
        }
    }

    #[test]
    fn every_script_gets_the_vocabulary_and_the_hub_part() {
        let a = assets();
        let vocabulary = format!("const VOCABULARY = {};", protocol::browser_vocabulary());
        for name in ["agent.js", "share.js", "call.js", "console.js"] {
            let text = text_of(&a, name);
            assert_eq!(text.matches(&vocabulary).count(), 1, "{name}");
            assert_eq!(text.matches("function hubLink(").count(), 1, "{name}");
            assert!(
                text.find(&vocabulary) < text.find("function hubLink("),
                "{name}"
            );
        }
    }

    #[test]
    fn the_console_knows_the_one_site_it_frames() {
        let toml = "upstream = \"http://127.0.0.1:9\"\npublic_origins = [\"https://shop.example\"]\n[console]\npublic_origin = \"https://console.example\"\n";
        let config = Config::parse(toml, None, &Default::default()).expect("a valid config");
        let a = Assets::new(&config);
        let text = |name: &str| text_of(&a, name);
        assert!(text("console.js").starts_with("(function () {\n'use strict';\nconst SITE = {\"origin\":\"https://shop.example\",\"port\":8080};"));
        assert!(
            text("agent.js")
                .contains("\"console\":{\"origin\":\"https://console.example\",\"port\":8081}")
        );
    }
}
