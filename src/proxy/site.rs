//! Sites and URL mapping: which upstream a request is for, and how absolute
//! URLs that name a configured upstream are turned into URLs of the proxy
//! (and, for `Origin`/`Referer`, back again).
//!
//! Mapping is byte work, not parsing: an upstream is recognised by its
//! `//host[:port]` marker, found with memchr's memmem, optionally preceded by
//! a scheme (`http:`, `https:`, `ws:`, `wss:`). The same [`Mapper`] serves
//! attribute values, headers, and CSS streams (see [`StreamMapper`]), and it
//! never touches a byte outside the origins it replaces, so text in any
//! ASCII-compatible charset comes out exactly as it went in.

use std::borrow::Cow;
use std::sync::Arc;

use memchr::memmem::Finder;

use crate::config::{Config, strip_port};

/// The schemes recognised in front of a marker, longest first.
const SCHEMES: [&[u8]; 4] = [b"https:", b"http:", b"wss:", b"ws:"];
const LONGEST_SCHEME: usize = 6;

/// One configured upstream, ready for matching.
pub struct Upstream {
    /// `http://host:port` as configured.
    pub origin: url::Url,
    /// `host` or `host:port` (default ports omitted).
    pub authority: String,
    /// `//authority`, what is searched for in text.
    marker: Finder<'static>,
    marker_len: usize,
    /// `authority` alone: also found in `https:&#x2F;&#x2F;host`.
    host: Finder<'static>,
    /// Host names the proxy answers on for this site; empty: any.
    pub hosts: Vec<String>,
}

/// All the configured upstreams, built once.
pub struct Sites {
    pub upstreams: Vec<Upstream>,
}

impl Sites {
    pub fn new(config: &Config) -> Sites {
        let upstreams = config
            .sites
            .iter()
            .map(|s| {
                let authority = authority_of(&s.upstream);
                let marker = format!("//{authority}").into_bytes();
                Upstream {
                    origin: s.upstream.clone(),
                    marker_len: marker.len(),
                    marker: Finder::new(&marker).into_owned(),
                    host: Finder::new(authority.as_bytes()).into_owned(),
                    authority,
                    hosts: s.hosts.clone(),
                }
            })
            .collect();
        Sites { upstreams }
    }

    /// The site a request's `Host` picks (same rule as the config's).
    pub fn for_host(&self, host: &str) -> Option<usize> {
        let name = strip_port(host);
        self.upstreams
            .iter()
            .position(|u| u.hosts.iter().any(|h| h.eq_ignore_ascii_case(name)))
            .or_else(|| self.upstreams.iter().position(|u| u.hosts.is_empty()))
            .or(if self.upstreams.is_empty() {
                None
            } else {
                Some(0)
            })
    }

    /// The mapper for one request: upstreams to the proxy's own origins as
    /// the client reached it (`tls`, `host` from the request).
    pub fn mapper(self: &Arc<Self>, current: usize, host: &str, tls: bool) -> Mapper {
        let port = host.strip_prefix(strip_port(host)).unwrap_or("");
        let targets = self
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| {
                if i == current {
                    Some(host.to_string())
                } else {
                    // Another site is reached through its first host name on
                    // the same port; a catch-all site other than the current
                    // one has no name to reach it by, so its links stay.
                    u.hosts.first().map(|h| format!("{h}{port}"))
                }
            })
            .collect();
        Mapper {
            sites: self.clone(),
            targets,
            tls,
        }
    }
}

/// `host[:port]`, the port only when it isn't the scheme's default.
pub fn authority_of(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// Maps upstream URLs to the proxy for one request.
#[derive(Clone)]
pub struct Mapper {
    sites: Arc<Sites>,
    /// Per upstream, the proxy authority that stands for it.
    targets: Vec<Option<String>>,
    /// The client reached the proxy over TLS.
    pub tls: bool,
}

/// One occurrence of an upstream in text.
struct Hit {
    /// Where the replaced span starts (the scheme, when there is one).
    start: usize,
    /// Where the marker ends.
    end: usize,
    upstream: usize,
    scheme: Option<&'static [u8]>,
}

impl Mapper {
    /// The proxy origin (`http://host:port`) this request came to.
    pub fn proxy_origin(&self, upstream: usize) -> Option<String> {
        let scheme = if self.tls { "https" } else { "http" };
        self.targets
            .get(upstream)?
            .as_ref()
            .map(|a| format!("{scheme}://{a}"))
    }

    pub fn upstreams(&self) -> &[Upstream] {
        &self.sites.upstreams
    }

    /// The longest span a match can need, for streaming callers' carried tail.
    pub fn window(&self) -> usize {
        self.sites
            .upstreams
            .iter()
            .map(|u| u.marker_len)
            .max()
            .unwrap_or(0)
            + LONGEST_SCHEME
            + 1
    }

    /// Whether `text` mentions an upstream at all (cheap pre-check).
    pub fn mentions(&self, text: &[u8]) -> bool {
        self.sites
            .upstreams
            .iter()
            .any(|u| u.marker.find(text).is_some())
    }

    /// Whether `text` names an upstream's host at all, however its URL is
    /// written (cheap pre-check for attribute values).
    pub fn names_upstream(&self, text: &[u8]) -> bool {
        self.sites
            .upstreams
            .iter()
            .any(|u| u.host.find(text).is_some())
    }

    /// Replaces every upstream origin in `text`.
    pub fn map_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Vec::new();
        match self.map_into(text.as_bytes(), &mut out, true) {
            None => Cow::Borrowed(text),
            // Only ASCII was replaced at ASCII positions.
            Some(_) => Cow::Owned(String::from_utf8(out).expect("mapping keeps UTF-8 valid")),
        }
    }

    /// Maps `text` into `out`. With `last == false` the result stops short
    /// of a possible match cut by the end of `text`: returns how far it
    /// consumed, or `None` when `last` and nothing was replaced (then `out`
    /// is untouched).
    pub fn map_into(&self, text: &[u8], out: &mut Vec<u8>, last: bool) -> Option<usize> {
        self.map_after(text, 0, out, last)
    }

    /// [`Mapper::map_into`] for `text[from..]`, with `text[..from]` (already
    /// written) as context: whether a marker starts a URL depends on the
    /// byte before it. Returns the position in `text` consumed up to.
    pub fn map_after(
        &self,
        text: &[u8],
        from: usize,
        out: &mut Vec<u8>,
        last: bool,
    ) -> Option<usize> {
        let limit = if last {
            text.len()
        } else {
            text.len().saturating_sub(self.window())
        };
        let mut pos = from;
        let mut search = from;
        let mut replaced = false;
        let mut stop = limit;
        while let Some(hit) = self.next_hit(text, search) {
            if hit.start >= stop {
                break;
            }
            if hit.end >= text.len() && !last {
                // The byte after the marker decides; wait for it.
                stop = hit.start;
                break;
            }
            search = hit.end - self.sites.upstreams[hit.upstream].marker_len + 1;
            if !self.accepts(text, &hit) {
                continue;
            }
            let Some(target) = &self.targets[hit.upstream] else {
                continue;
            };
            out.extend_from_slice(&text[pos..hit.start]);
            if let Some(scheme) = hit.scheme {
                let secure = if scheme.len() >= 4 && scheme[..2].eq_ignore_ascii_case(b"ws") {
                    "wss:"
                } else {
                    "https:"
                };
                let plain = if scheme[..2].eq_ignore_ascii_case(b"ws") {
                    "ws:"
                } else {
                    "http:"
                };
                out.extend_from_slice(if self.tls { secure } else { plain }.as_bytes());
            }
            out.extend_from_slice(b"//");
            out.extend_from_slice(target.as_bytes());
            pos = hit.end;
            search = hit.end;
            replaced = true;
        }
        if last && !replaced {
            return None;
        }
        let consumed = stop.max(pos);
        out.extend_from_slice(&text[pos..consumed]);
        Some(consumed)
    }

    fn next_hit(&self, text: &[u8], from: usize) -> Option<Hit> {
        let hay = text.get(from..)?;
        let (upstream, at) = self
            .sites
            .upstreams
            .iter()
            .enumerate()
            .filter_map(|(i, u)| u.marker.find(hay).map(|p| (i, p + from)))
            .min_by_key(|&(_, p)| p)?;
        let end = at + self.sites.upstreams[upstream].marker_len;
        let scheme = SCHEMES
            .iter()
            .copied()
            .find(|s| at >= s.len() && text[at - s.len()..at].eq_ignore_ascii_case(s));
        Some(Hit {
            start: at - scheme.map_or(0, <[u8]>::len),
            end,
            upstream,
            scheme,
        })
    }

    /// A marker counts when it ends the authority (`//a.test` must not match
    /// `//a.test.evil` or `//a.test:81`) and, without a scheme, when it
    /// starts a protocol-relative URL rather than sitting inside a path.
    fn accepts(&self, text: &[u8], hit: &Hit) -> bool {
        let ends_authority = text
            .get(hit.end)
            .is_none_or(|&b| !(b.is_ascii_alphanumeric() || b"-.:_@".contains(&b)));
        let starts_url = hit.scheme.is_some()
            || hit.start == 0
            || !(text[hit.start - 1].is_ascii_alphanumeric()
                || b"+-./:%".contains(&text[hit.start - 1]));
        ends_authority && starts_url
    }

    /// For the way up: a proxy URL of the current site (as in `Origin` or
    /// `Referer`) back to the upstream's; `None` when it isn't one.
    pub fn to_upstream(&self, current: usize, value: &str) -> Option<String> {
        let proxy = self.proxy_origin(current)?;
        let rest = value.strip_prefix(proxy.as_str())?;
        if !(rest.is_empty()
            || rest.starts_with('/')
            || rest.starts_with('?')
            || rest.starts_with('#'))
        {
            return None;
        }
        let upstream = self.sites.upstreams[current]
            .origin
            .origin()
            .ascii_serialization();
        Some(format!("{upstream}{rest}"))
    }
}

/// Maps a byte stream (CSS, or any text) chunk by chunk, carrying the tail
/// that could hold a match cut by a chunk boundary.
pub struct StreamMapper {
    mapper: Mapper,
    /// `carry[..written]` has been written already and is kept as context
    /// (at most one byte: whether a marker starts a URL depends on the byte
    /// before it, wherever the chunk boundary fell); the rest is pending.
    carry: Vec<u8>,
    written: usize,
}

impl StreamMapper {
    pub fn new(mapper: Mapper) -> StreamMapper {
        StreamMapper {
            mapper,
            carry: Vec::new(),
            written: 0,
        }
    }

    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.carry.extend_from_slice(input);
        let consumed = if !self.mapper.mentions(&self.carry[self.written..]) {
            // The common case: nothing to map; keep only the tail, which
            // may hold the start of a marker the next chunk completes.
            let keep = (self.carry.len() - self.written).min(self.mapper.window());
            let end = self.carry.len() - keep;
            out.extend_from_slice(&self.carry[self.written..end]);
            end
        } else {
            self.mapper
                .map_after(&self.carry, self.written, out, false)
                .unwrap_or(self.written)
        };
        let drop = consumed.saturating_sub(1);
        self.carry.drain(..drop);
        self.written = consumed - drop;
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let carry = std::mem::take(&mut self.carry);
        let from = std::mem::take(&mut self.written);
        if self.mapper.map_after(&carry, from, out, true).is_none() {
            out.extend_from_slice(&carry[from..]);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_marker_inside_a_path_stays_wherever_the_chunks_are_cut() {
        // `p//127.0.0.1:9000` is a path, not a URL: the byte before the
        // marker decides, even when an earlier chunk carried it.
        let css = b"url(shop.examp//127.0.0.1:9000/i.png) url(//127.0.0.1:9000/j.png)";
        let whole = mapper(false)
            .map_str(std::str::from_utf8(css).unwrap())
            .into_owned();
        assert_eq!(
            whole,
            "url(shop.examp//127.0.0.1:9000/i.png) url(//b.test:8080/j.png)"
        );
        for size in 1..=css.len() {
            let mut s = StreamMapper::new(mapper(false));
            let mut out = Vec::new();
            for chunk in css.chunks(size) {
                s.push(chunk, &mut out);
            }
            s.finish(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), whole, "chunk size {size}");
        }
    }

    pub fn mapper(tls: bool) -> Mapper {
        let config = Config::parse(
            "[[sites]]\nhosts=[\"a.test\"]\nupstream=\"https://shop.example\"\n[[sites]]\nhosts=[\"b.test\"]\nupstream=\"http://127.0.0.1:9000\"\n",
            None,
            &Default::default(),
        )
        .unwrap();
        Arc::new(Sites::new(&config)).mapper(0, "a.test:8080", tls)
    }

    #[test]
    fn maps_absolute_and_protocol_relative_urls_of_every_site() {
        let m = mapper(false);
        assert_eq!(
            m.map_str("https://shop.example/a?b#c"),
            "http://a.test:8080/a?b#c"
        );
        assert_eq!(m.map_str("//shop.example/x"), "//a.test:8080/x");
        assert_eq!(m.map_str("HTTP://shop.example"), "http://a.test:8080");
        assert_eq!(m.map_str("wss://shop.example/ws"), "ws://a.test:8080/ws");
        assert_eq!(
            m.map_str("url(http://127.0.0.1:9000/i.png) url('https://shop.example/j')"),
            "url(http://b.test:8080/i.png) url('http://a.test:8080/j')"
        );
        assert_eq!(
            mapper(true).map_str("http://shop.example/"),
            "https://a.test:8080/"
        );
    }

    #[test]
    fn leaves_other_origins_alone() {
        let m = mapper(false);
        for s in [
            "https://shop.example.evil/x",
            "https://shop.example:444/x",
            "https://cdn.test/shop.example/x",
            "/a//shop.example/b",
            "https://user@shop.example/",
            "http://127.0.0.1:90001/",
            "relative/path",
        ] {
            assert!(
                matches!(m.map_str(s), Cow::Borrowed(_)),
                "{s} was changed to {}",
                m.map_str(s)
            );
        }
    }

    #[test]
    fn origin_and_referer_go_back_to_the_upstream() {
        let m = mapper(false);
        assert_eq!(
            m.to_upstream(0, "http://a.test:8080").as_deref(),
            Some("https://shop.example")
        );
        assert_eq!(
            m.to_upstream(0, "http://a.test:8080/p?q").as_deref(),
            Some("https://shop.example/p?q")
        );
        assert_eq!(m.to_upstream(0, "http://a.test:80800/"), None);
        assert_eq!(m.to_upstream(0, "https://elsewhere/"), None);
    }

    #[test]
    fn stream_mapper_at_every_chunk_boundary() {
        let m = mapper(false);
        let input = b"a{background:url(https://shop.example/x.png)} b{x:url(//127.0.0.1:9000/y)} @import 'http://shop.example.evil/z';".to_vec();
        let expected = m.map_str(std::str::from_utf8(&input).unwrap()).into_owned();
        for size in 1..input.len() {
            let mut s = StreamMapper::new(m.clone());
            let mut out = Vec::new();
            for chunk in input.chunks(size) {
                s.push(chunk, &mut out);
            }
            s.finish(&mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                expected,
                "chunk size {size}"
            );
        }
    }
}
