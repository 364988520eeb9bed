//! Link mapping in HTML on the byte stream. Handing every element to a
//! lol_html handler (or even matching attribute selectors against every
//! element) halves the rewrite's throughput; finding tags with memchr and
//! looking inside only those that name an upstream costs little. This scanner
//! knows just enough of HTML's tokenizer to tell tags from text: comments,
//! doctypes, quoted attribute values, and the raw-text elements (`script`,
//! `style`, `textarea`, `title`, ...) whose content is not markup. Text and
//! scripts are never touched; `<style>` content is mapped as CSS.
//!
//! Bytes it does not edit come out exactly as they went in, in any
//! ASCII-compatible charset.

use std::borrow::Cow;

use memchr::{memchr, memchr3, memmem};
use tracing::warn;

use super::csp;
use super::site::Mapper;
use crate::telemetry;

/// Attributes that hold URLs (or, for `style` and `srcdoc`, text with URLs).
pub const URL_ATTRIBUTES: &[&str] = &[
    "href",
    "src",
    "action",
    "formaction",
    "srcset",
    "imagesrcset",
    "poster",
    "data",
    "background",
    "ping",
    "cite",
    "style",
    "srcdoc",
    "xlink:href",
];

/// Elements whose content is text up to their end tag. [`kind`] matches on
/// these names (and the next list's); the lists are the rule, held to it by
/// a test.
#[cfg(test)]
const RAW_TEXT: &[&str] = &[
    "script",
    "style",
    "textarea",
    "title",
    "xmp",
    "iframe",
    "noembed",
    "noframes",
    "plaintext",
];

/// Without a `<head>` tag, the agent goes before the first of these: an
/// element the parser puts in the head it opens for it, or one that opens the
/// body. Before, never inside, noscript, template and foreign content.
#[cfg(test)]
pub(crate) const AGENT_BEFORE: &[&str] = &[
    "head", "body", "frameset", "title", "meta", "link", "base", "style", "script", "noscript",
    "template", "svg", "math",
];

/// What a start tag's name tells the scanner, from one lookup.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Kind {
    /// A raw-text element (`RAW_TEXT`): its name.
    raw: Option<&'static str>,
    /// One of `AGENT_BEFORE`.
    agent: bool,
    /// The element whose attributes [`Elements`] edits.
    edit: Option<Edit>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Edit {
    /// `<iframe srcdoc>`: the agent goes first in the frame's document.
    Srcdoc,
    /// `<link integrity>`: dropped from stylesheets, whose bytes the proxy
    /// may rewrite; scripts pass untouched and keep it.
    Integrity,
    /// `<meta http-equiv content>`: refresh mapped, CSP allowing the agent.
    Meta,
}

/// The [`Kind`] of the element `name` (any case): one match on the
/// lowercased name instead of a walk of each list.
fn kind(name: &[u8]) -> Kind {
    let mut lower = [0u8; 10];
    if name.len() > lower.len() {
        return Kind::default();
    }
    for (l, b) in lower.iter_mut().zip(name) {
        *l = b.to_ascii_lowercase();
    }
    let raw = |r: &'static str| Some(r);
    let (raw, agent, edit) = match &lower[..name.len()] {
        b"head" | b"body" | b"frameset" | b"meta" | b"link" | b"base" | b"noscript"
        | b"template" | b"svg" | b"math" => (None, true, None),
        b"title" => (raw("title"), true, None),
        b"style" => (raw("style"), true, None),
        b"script" => (raw("script"), true, None),
        b"textarea" => (raw("textarea"), false, None),
        b"xmp" => (raw("xmp"), false, None),
        b"iframe" => (raw("iframe"), false, Some(Edit::Srcdoc)),
        b"noembed" => (raw("noembed"), false, None),
        b"noframes" => (raw("noframes"), false, None),
        b"plaintext" => (raw("plaintext"), false, None),
        _ => (None, false, None),
    };
    let edit = match &lower[..name.len()] {
        b"link" => Some(Edit::Integrity),
        b"meta" => Some(Edit::Meta),
        _ => edit,
    };
    Kind { raw, agent, edit }
}

/// What the tag pass changes in the few elements whose attributes are
/// more than links: `<iframe srcdoc>`, `<link integrity>` and `<meta
/// http-equiv content>`. Done here, on the tags the scanner finds anyway,
/// rather than by selectors that lol_html would match against every
/// element of the document.
#[derive(Clone)]
pub struct Elements {
    /// The agent's tag put first in a `srcdoc` document (no quotes in it).
    pub srcdoc_agent: Vec<u8>,
    /// What a `<meta>` CSP is extended with.
    pub csp: csp::Allowance,
    pub nonce: String,
}

pub struct Links {
    mapper: Mapper,
    /// Element edits beside the links, when set.
    elements: Option<Elements>,
    /// The agent's tag until it is placed: it must run before any script of
    /// the site, so it goes first in `<head>` or before the first element of
    /// `AGENT_BEFORE`, and at the end of a document without either.
    agent: Option<Vec<u8>>,
    /// Bytes not yet scanned: an unfinished tag, comment, or end tag.
    carry: Vec<u8>,
    /// The document's byte before `carry`: CSS mapping needs the byte before
    /// a marker, wherever the chunk boundary fell.
    before: Option<u8>,
    /// Inside a raw-text element: its name.
    raw: Option<&'static str>,
    limit: usize,
    /// Past the limit everything passes through untouched.
    stopped: bool,
}

impl Links {
    pub fn new(mapper: Mapper, limit: usize) -> Links {
        Links {
            mapper,
            elements: None,
            agent: None,
            carry: Vec::new(),
            before: None,
            raw: None,
            limit,
            stopped: false,
        }
    }

    /// Places `tag` (the agent's) in the document, see [`Links::agent`].
    pub fn with_agent(mut self, tag: &[u8]) -> Links {
        self.agent = Some(tag.to_vec());
        self
    }

    /// Edits `<iframe srcdoc>`, `<link integrity>` and `<meta http-equiv>`
    /// as [`Elements`] says.
    pub fn with_elements(mut self, elements: Elements) -> Links {
        self.elements = Some(elements);
        self
    }

    /// Stops mapping: what is held and everything after passes untouched.
    pub fn stop(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.carry);
        self.stopped = true;
    }

    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.stopped {
            out.extend_from_slice(input);
            return;
        }
        let owned;
        let buf: &[u8] = if self.carry.is_empty() {
            input
        } else {
            self.carry.extend_from_slice(input);
            owned = std::mem::take(&mut self.carry);
            &owned
        };
        let consumed = self.scan(buf, false, out);
        if consumed > 0 {
            self.before = Some(buf[consumed - 1]);
        }
        self.carry = buf[consumed..].to_vec();
        if self.carry.len() > self.limit {
            warn!(
                held = self.carry.len(),
                reason = "memory",
                "HTML rewrite gave up (a tag or comment past the memory limit); the rest of the document passes through unmodified"
            );
            metrics::counter!(telemetry::HTML_PASSED_THROUGH, "reason" => "memory").increment(1);
            telemetry::limit_hit(telemetry::limit::HTML_MEMORY);
            self.stop(out);
        }
    }

    /// Whether the text so far ends inside an unfinished start or end tag.
    pub fn in_tag(&self) -> bool {
        !self.stopped
            && self.raw.is_none()
            && self.carry.first() == Some(&b'<')
            && self
                .carry
                .get(1)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'/')
            && tag_end(&self.carry).is_none()
    }

    /// Ends the document. An agent not placed yet (a document with no
    /// element that could start it: text only, or a bare `<html>`) comes at
    /// the end, unless the document ends inside an unfinished tag: the agent
    /// would become part of that tag and close it, with whatever value it
    /// carries (a browser drops a tag unfinished at the end).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.stopped {
            return;
        }
        let unfinished = self.in_tag();
        let buf = std::mem::take(&mut self.carry);
        let consumed = self.scan(&buf, true, out);
        out.extend_from_slice(&buf[consumed..]);
        if let Some(agent) = self.agent.take() {
            if unfinished {
                warn!("the document ends inside an unfinished tag; the agent is left out");
                metrics::counter!(telemetry::HTML_PASSED_THROUGH, "reason" => "unfinished")
                    .increment(1);
            } else {
                out.extend_from_slice(&agent);
            }
        }
    }

    /// Leaves the agent out, wherever the document goes on.
    pub fn drop_agent(&mut self) {
        self.agent = None;
    }

    /// Scans `buf`, writing what it can decide to `out`; returns how much of
    /// `buf` that covers (the rest is carried to the next chunk).
    fn scan(&mut self, buf: &[u8], last: bool, out: &mut Vec<u8>) -> usize {
        let mut at = 0;
        let mut written = 0;
        let hold = |out: &mut Vec<u8>, written: usize, upto: usize| {
            out.extend_from_slice(&buf[written..upto]);
            upto
        };
        loop {
            if let Some(name) = self.raw {
                match find_end_tag(buf, at, name) {
                    Some(end) => {
                        written = self.raw_text(name, buf, written, end, true, out);
                        at = end;
                        self.raw = None;
                    }
                    None if last => return self.raw_text(name, buf, written, buf.len(), true, out),
                    None => {
                        // Keep what could be the start of the end tag.
                        let safe = buf.len().saturating_sub(name.len() + 2).max(written);
                        return self.raw_text(name, buf, written, safe, false, out);
                    }
                }
            }
            let Some(lt) = memchr(b'<', &buf[at..]).map(|i| at + i) else {
                return hold(out, written, buf.len());
            };
            let rest = &buf[lt..];
            if rest.len() < 4 && !last {
                return hold(out, written, lt);
            }
            let end = if rest.starts_with(b"<!--") {
                comment_end(rest)
            } else {
                match rest.get(1) {
                    // `<!doctype ...>`, `<![CDATA[...>` outside foreign
                    // content, `<!x>`, `<?x>`: up to the first `>`.
                    Some(b'!' | b'?') => memchr(b'>', rest).map(|e| e + 1),
                    Some(b'/') if rest.get(2).is_some_and(u8::is_ascii_alphabetic) => tag_end(rest),
                    // `</>` is dropped by the tokenizer; `</` and anything
                    // else is a bogus comment up to the first `>`.
                    Some(b'/') => match rest.get(2) {
                        Some(b'>') => Some(3),
                        Some(_) => memchr(b'>', rest).map(|e| e + 1),
                        None => None,
                    },
                    Some(c) if c.is_ascii_alphabetic() => match tag_end(rest) {
                        Some(e) => {
                            let tag = &rest[..e];
                            out.extend_from_slice(&buf[written..lt]);
                            let name_len = tag[1..]
                                .iter()
                                .position(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b'>')
                                .unwrap_or(tag.len() - 1);
                            let name = &tag[1..1 + name_len];
                            let kind = kind(name);
                            self.start_tag(kind, name, tag, out);
                            written = lt + e;
                            at = written;
                            self.raw = kind.raw;
                            continue;
                        }
                        None => None,
                    },
                    _ => {
                        at = lt + 1;
                        continue;
                    }
                }
            };
            match end {
                Some(e) => at = lt + e,
                None if last => return hold(out, written, buf.len()),
                None => return hold(out, written, lt),
            }
        }
    }

    /// Writes a start tag named `name`, with the agent before it (or, for
    /// `<head>`, after it) when it is the first element that a head's
    /// content or the body can start with.
    fn start_tag(&mut self, kind: Kind, name: &[u8], tag: &[u8], out: &mut Vec<u8>) {
        let agent = self.agent.take_if(|_| kind.agent);
        match agent {
            Some(agent) if name.eq_ignore_ascii_case(b"head") => {
                self.tag(kind.edit, tag, out);
                out.extend_from_slice(&agent);
            }
            Some(agent) => {
                out.extend_from_slice(&agent);
                self.tag(kind.edit, tag, out);
            }
            None => self.tag(kind.edit, tag, out),
        }
    }
    /// Writes raw text `buf[from..to]`: mapped when it is CSS, as it is
    /// otherwise. Returns how far it wrote.
    fn raw_text(
        &self,
        name: &str,
        buf: &[u8],
        from: usize,
        to: usize,
        last: bool,
        out: &mut Vec<u8>,
    ) -> usize {
        if name != "style" {
            out.extend_from_slice(&buf[from..to]);
            return to;
        }
        // The byte before `from` is context: a marker right after it may sit
        // inside a path. At the start of `buf` it came in an earlier chunk.
        let with_before;
        let (text, shift) = match self.before.filter(|_| from == 0) {
            Some(b) => {
                with_before = [&[b][..], &buf[..to]].concat();
                (&with_before[..], 1)
            }
            None => (&buf[..to], 0),
        };
        match self.mapper.map_after(text, from + shift, out, last) {
            Some(n) => n - shift,
            None => {
                out.extend_from_slice(&buf[from..to]);
                to
            }
        }
    }

    /// Writes a start tag, with the URL attributes that name an upstream
    /// mapped and the element's own edits ([`Elements`]) made.
    fn tag(&self, edit: Option<Edit>, tag: &[u8], out: &mut Vec<u8>) {
        let edit = edit.zip(self.elements.as_ref());
        if edit.is_none() && !self.mapper.names_upstream(tag) {
            out.extend_from_slice(tag);
            return;
        }
        let attrs = attributes(tag);
        let mut changes =
            edit.map(|(edit, elements)| self.element_changes(edit, elements, tag, &attrs));
        let mut written = 0;
        for (i, attr) in attrs.iter().enumerate() {
            let change = changes.as_mut().and_then(|c| c[i].take());
            let change = change.or_else(|| {
                let name = &tag[attr.name.clone()];
                if !attr.valued
                    || !URL_ATTRIBUTES
                        .iter()
                        .any(|a| a.as_bytes().eq_ignore_ascii_case(name))
                {
                    return None;
                }
                map_value(&self.mapper, &tag[attr.value.clone()]).map(Change::Value)
            });
            match change {
                None => {}
                Some(Change::Remove) => {
                    // With the whitespace before it; what followed must not
                    // join what came before.
                    let mut from = attr.name.start;
                    while from > written && tag[from - 1].is_ascii_whitespace() {
                        from -= 1;
                    }
                    out.extend_from_slice(&tag[written..from]);
                    written = attr.end;
                    if !tag[written].is_ascii_whitespace() && !matches!(tag[written], b'/' | b'>') {
                        out.push(b' ');
                    }
                }
                Some(Change::Value(value)) if !attr.valued => {
                    out.extend_from_slice(&tag[written..attr.name.end]);
                    out.extend_from_slice(b"=\"");
                    out.extend_from_slice(&escape_quote(&value, b'"'));
                    out.push(b'"');
                    written = attr.end;
                }
                Some(Change::Value(value)) => {
                    out.extend_from_slice(&tag[written..attr.value.start]);
                    match attr.quote {
                        Some(q) => out.extend_from_slice(&escape_quote(&value, q)),
                        // An unquoted value is written quoted: mapping may add
                        // nothing that needs it, but decoding may have.
                        None => {
                            out.push(b'"');
                            out.extend_from_slice(&escape_quote(&value, b'"'));
                            out.push(b'"');
                        }
                    }
                    written = attr.value.end;
                }
            }
        }
        out.extend_from_slice(&tag[written..]);
    }

    /// The changes [`Elements`] makes to the attributes `attrs` of `tag`,
    /// one per attribute (the rest `None`). As a browser reads a repeated
    /// attribute, the first of a name counts.
    fn element_changes(
        &self,
        edit: Edit,
        elements: &Elements,
        tag: &[u8],
        attrs: &[Attribute],
    ) -> Vec<Option<Change>> {
        let mut changes: Vec<Option<Change>> = Vec::new();
        changes.resize_with(attrs.len(), || None);
        let first = |name: &str| {
            attrs
                .iter()
                .position(|a| tag[a.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
        };
        let value = |i: usize| &tag[attrs[i].value.clone()];
        match edit {
            Edit::Srcdoc => {
                let Some(i) = first("srcdoc") else {
                    return changes;
                };
                if memmem::find(value(i), &elements.srcdoc_agent).is_none() {
                    let doc = [&elements.srcdoc_agent[..], value(i)].concat();
                    let mapped = map_value(&self.mapper, &doc).unwrap_or(doc);
                    changes[i] = Some(Change::Value(mapped));
                }
            }
            Edit::Integrity => {
                if first("integrity").is_none() {
                    return changes;
                }
                let is_script = first("as")
                    .is_some_and(|i| value(i).eq_ignore_ascii_case(b"script"))
                    || first("rel").is_some_and(|i| {
                        memmem::find(&value(i).to_ascii_lowercase(), b"modulepreload").is_some()
                    });
                if !is_script {
                    for (a, change) in attrs.iter().zip(changes.iter_mut()) {
                        if tag[a.name.clone()].eq_ignore_ascii_case(b"integrity") {
                            *change = Some(Change::Remove);
                        }
                    }
                }
            }
            Edit::Meta => {
                let (Some(equiv), Some(i)) = (first("http-equiv"), first("content")) else {
                    return changes;
                };
                let content = value(i);
                let rewritten = match value(equiv).to_ascii_lowercase().as_slice() {
                    b"refresh" => map_value(&self.mapper, content),
                    b"content-security-policy" => {
                        let policy = String::from_utf8_lossy(content);
                        let policy = csp::rewrite(
                            &self.mapper.map_str(&decode_entities(&policy)),
                            &elements.csp,
                            &elements.nonce,
                            true,
                        );
                        Some(policy.into_bytes()).filter(|p| p != content)
                    }
                    _ => None,
                };
                changes[i] = rewritten.map(Change::Value);
            }
        }
        changes
    }
}

/// What the tag pass does to one attribute.
enum Change {
    /// Its value becomes this (unescaped for its quotes).
    Value(Vec<u8>),
    Remove,
}

fn map_value(mapper: &Mapper, raw: &[u8]) -> Option<Vec<u8>> {
    match std::str::from_utf8(raw) {
        Ok(text) => match map_attribute(mapper, text) {
            Cow::Borrowed(_) => None,
            Cow::Owned(m) => Some(m.into_bytes()),
        },
        // Not UTF-8 (another charset): mapped as bytes, entities and all.
        Err(_) => {
            let mut out = Vec::new();
            mapper.map_into(raw, &mut out, true).map(|_| out)
        }
    }
}

fn escape_quote(value: &[u8], quote: u8) -> Cow<'_, [u8]> {
    if memchr(quote, value).is_none() {
        return Cow::Borrowed(value);
    }
    let entity: &[u8] = if quote == b'"' { b"&quot;" } else { b"&#39;" };
    let mut out = Vec::with_capacity(value.len() + 8);
    for &b in value {
        if b == quote {
            out.extend_from_slice(entity);
        } else {
            out.push(b);
        }
    }
    Cow::Owned(out)
}

/// The length of the comment starting at `rest[0..4] == b"<!--"`, up to
/// and including its end, as the tokenizer ends it: `<!-->` and `<!--->` are
/// whole empty comments, and a comment ends at the first `-->` or `--!>`
/// after its `<!--`. `None` when it does not end in `rest`.
fn comment_end(rest: &[u8]) -> Option<usize> {
    match &rest[4..] {
        [b'>', ..] => return Some(5),
        [b'-', b'>', ..] => return Some(6),
        [] | [b'-'] => return None,
        _ => {}
    }
    let mut from = 4;
    while let Some(i) = memmem::find(&rest[from..], b"--") {
        let after = from + i + 2;
        match rest.get(after..) {
            Some([b'>', ..]) => return Some(after + 1),
            Some([b'!', b'>', ..]) => return Some(after + 2),
            Some([] | [b'!']) => return None,
            _ => from += i + 1,
        }
    }
    None
}

/// The length of the tag starting at `rest[0] == b'<'`, up to and including
/// its `>`; `None` when it does not end in `rest`. Quotes only delimit a
/// value after `=`, as in the tokenizer.
fn tag_end(rest: &[u8]) -> Option<usize> {
    let mut i = 1;
    loop {
        // Only `>` and quotes decide: jump between them.
        i += memchr3(b'>', b'"', b'\'', &rest[i..])?;
        let q = rest[i];
        if q == b'>' {
            return Some(i + 1);
        }
        let after_eq = rest[..i]
            .iter()
            .rev()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'=');
        if after_eq {
            i += 1 + memchr(q, &rest[i + 1..])?;
        }
        i += 1;
    }
}

/// Where the end tag `</name` (followed by whitespace, `/` or `>`) starts,
/// searching from `from`.
fn find_end_tag(buf: &[u8], from: usize, name: &str) -> Option<usize> {
    let mut at = from;
    while let Some(i) = memchr(b'<', &buf[at..]) {
        let p = at + i;
        let rest = &buf[p..];
        if rest.len() >= name.len() + 3
            && rest[1] == b'/'
            && rest[2..2 + name.len()].eq_ignore_ascii_case(name.as_bytes())
            && matches!(
                rest[2 + name.len()],
                b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0c'
            )
        {
            return Some(p);
        }
        at = p + 1;
    }
    None
}

struct Attribute {
    name: std::ops::Range<usize>,
    /// The value without its quotes (empty, at the name's end, without one).
    value: std::ops::Range<usize>,
    quote: Option<u8>,
    /// Written with `=` and a value.
    valued: bool,
    /// Where the attribute ends: after its closing quote, its value or its
    /// name.
    end: usize,
}

/// The attributes of a complete start tag.
fn attributes(tag: &[u8]) -> Vec<Attribute> {
    let mut found = Vec::new();
    let end = tag.len() - 1;
    let mut i = 1 + tag[1..]
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b'>')
        .unwrap_or(end);
    loop {
        while i < end && (tag[i].is_ascii_whitespace() || tag[i] == b'/') {
            i += 1;
        }
        if i >= end {
            return found;
        }
        let start = i;
        i += 1;
        while i < end && !(tag[i].is_ascii_whitespace() || tag[i] == b'/' || tag[i] == b'=') {
            i += 1;
        }
        let name = start..i;
        while i < end && tag[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= end || tag[i] != b'=' {
            found.push(Attribute {
                value: name.end..name.end,
                end: name.end,
                name,
                quote: None,
                valued: false,
            });
            continue;
        }
        i += 1;
        while i < end && tag[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= end {
            // `name=` and the tag's end: an empty value.
            found.push(Attribute {
                value: i..i,
                end: i,
                name,
                quote: None,
                valued: true,
            });
            return found;
        }
        match tag[i] {
            q @ (b'"' | b'\'') => {
                let close = i + 1 + memchr(q, &tag[i + 1..]).unwrap_or(end - i - 1);
                found.push(Attribute {
                    name,
                    value: i + 1..close,
                    quote: Some(q),
                    valued: true,
                    end: (close + 1).min(end),
                });
                i = close + 1;
            }
            _ => {
                let v = i;
                while i < end && !tag[i].is_ascii_whitespace() {
                    i += 1;
                }
                found.push(Attribute {
                    name,
                    value: v..i,
                    quote: None,
                    valued: true,
                    end: i,
                });
            }
        }
    }
}

/// Maps the URLs in one attribute value as the browser would see it:
/// character references are decoded first, so `https:&#x2F;&#x2F;host` is
/// found too, and `&` is escaped again after.
pub(crate) fn map_attribute<'a>(mapper: &Mapper, raw: &'a str) -> Cow<'a, str> {
    let scheme = raw.trim_start().get(..11).unwrap_or(raw).as_bytes();
    if ["data:", "blob:", "javascript:"].iter().any(|s| {
        scheme
            .get(..s.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(s.as_bytes()))
    }) {
        return Cow::Borrowed(raw);
    }
    if !raw.contains('&') {
        return mapper.map_str(raw);
    }
    let decoded = decode_entities(raw);
    match mapper.map_str(&decoded) {
        Cow::Borrowed(_) => Cow::Borrowed(raw),
        Cow::Owned(mapped) => Cow::Owned(mapped.replace('&', "&amp;")),
    }
}

/// Decodes numeric character references and the named ones that can occur
/// in URLs. Others are left as they are (and then escaped, which a browser
/// reads back as the same text only for the decoded ones: good enough for
/// the URLs this is used on).
pub fn decode_entities(raw: &str) -> Cow<'_, str> {
    if !raw.contains('&') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .map_or(rest.len(), |e| e + 1);
        let name = &rest[1..end];
        let decoded = if let Some(num) = name.strip_prefix('#') {
            let n = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => num.parse().ok(),
            };
            n.and_then(char::from_u32)
        } else {
            match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "sol" => Some('/'),
                "colon" => Some(':'),
                "period" => Some('.'),
                "quest" => Some('?'),
                "equals" => Some('='),
                "num" => Some('#'),
                _ => None,
            }
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end..];
                rest = rest.strip_prefix(';').unwrap_or(rest);
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::site::tests::mapper;

    fn run(input: &[u8], size: usize) -> Vec<u8> {
        let mut links = Links::new(mapper(false), 1 << 20);
        let mut out = Vec::new();
        for chunk in input.chunks(size) {
            links.push(chunk, &mut out);
        }
        links.finish(&mut out);
        out
    }

    #[test]
    fn tags_are_mapped_text_scripts_and_comments_are_not() {
        let input = concat!(
            "<!doctype html><!-- <a href=\"https://shop.example/c\"> --><a HREF=https://shop.example/u title=\"https://shop.example/t\">https://shop.example/text</a>",
            "<script>if (a<b) x = '<a href=\"https://shop.example/s\">'</script>",
            "<textarea><img src=https://shop.example/ta></textarea><title>https://shop.example/</title>",
            "<style>p{background:url(https://shop.example/p.png)} </style >",
            "<img alt='a>b' src='https://shop.example/q.png?a=\"1\"' srcset=\"https://shop.example/1x.png 1x, //127.0.0.1:9000/2x.png 2x\">",
            "<iframe srcdoc=\"&lt;a href=&quot;https://shop.example/in&quot;&gt;\"></iframe><p>a < b and c<d</p>",
        );
        let expected = concat!(
            "<!doctype html><!-- <a href=\"https://shop.example/c\"> --><a HREF=\"http://a.test:8080/u\" title=\"https://shop.example/t\">https://shop.example/text</a>",
            "<script>if (a<b) x = '<a href=\"https://shop.example/s\">'</script>",
            "<textarea><img src=https://shop.example/ta></textarea><title>https://shop.example/</title>",
            "<style>p{background:url(http://a.test:8080/p.png)} </style >",
            "<img alt='a>b' src='http://a.test:8080/q.png?a=\"1\"' srcset=\"http://a.test:8080/1x.png 1x, //b.test:8080/2x.png 2x\">",
            "<iframe srcdoc=\"<a href=&quot;http://a.test:8080/in&quot;>\"></iframe><p>a < b and c<d</p>",
        );
        for size in 1..=input.len() {
            assert_eq!(
                String::from_utf8(run(input.as_bytes(), size)).unwrap(),
                expected,
                "chunk size {size}"
            );
        }
    }

    const LINK: &str = "<a href=\"https://shop.example/x\">";
    const MAPPED: &str = "<a href=\"http://a.test:8080/x\">";

    /// Checks at every chunk size that `input` comes out as `expected`,
    /// where `{L}` stands for the link before and `{M}` for it mapped.
    fn check(input: &str, expected: &str) {
        let input = input.replace("{L}", LINK);
        let expected = expected.replace("{L}", LINK).replace("{M}", MAPPED);
        for size in 1..=input.len() {
            assert_eq!(
                String::from_utf8(run(input.as_bytes(), size)).unwrap(),
                expected,
                "input {input:?}, chunk size {size}"
            );
        }
    }

    #[test]
    fn empty_comments_end_at_once() {
        // abrupt-closing-of-empty-comment: a browser reads both as whole
        // comments, and what follows as markup.
        check("<!-->{L}<!-- {L} -->", "<!-->{M}<!-- {L} -->");
        check("<!--->{L}<!-- {L} -->", "<!--->{M}<!-- {L} -->");
        check("<!---->{L}", "<!---->{M}");
        check("<!-- -- ->{L} --->{L}", "<!-- -- ->{L} --->{M}");
    }

    #[test]
    fn a_comment_ends_at_dash_dash_bang_gt() {
        check("<!-- x --!>{L}", "<!-- x --!>{M}");
        check("<!-- x --!x {L} -->{L}", "<!-- x --!x {L} -->{M}");
        check("<!-- x --! {L} --!>{L}", "<!-- x --! {L} --!>{M}");
    }

    #[test]
    fn bogus_comments_end_at_the_first_gt() {
        check("<!x>{L}", "<!x>{M}");
        check("<![CDATA[ x ]]>{L}", "<![CDATA[ x ]]>{M}");
        check("<?x>{L}", "<?x>{M}");
        check("<?x {L}{L}", "<?x {L}{M}");
        check("</ x>{L}", "</ x>{M}");
        check("</ {L}{L}", "</ {L}{M}");
        check("</1{L}{L}", "</1{L}{M}");
        check("</>{L}", "</>{M}");
        check("<!doctype html>{L}", "<!doctype html>{M}");
        // Unfinished at the end: a comment to the end of the document.
        check("{L}<!-- {L}", "{M}<!-- {L}");
        check("{L}</ {L", "{M}</ {L");
        check("{L}<? {L", "{M}<? {L");
    }

    fn placed(input: &str, size: usize) -> String {
        let mut links = Links::new(mapper(false), 1 << 20).with_agent(b"[A]");
        let mut out = Vec::new();
        for chunk in input.as_bytes().chunks(size) {
            links.push(chunk, &mut out);
        }
        links.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_agent_goes_first_in_head_or_before_what_would_open_it() {
        let cases = [
            (
                "<html><HEAD lang=en><title>t</title>",
                "<html><HEAD lang=en>[A]<title>t</title>",
            ),
            (
                "<html><body><script>1</script>",
                "<html>[A]<body><script>1</script>",
            ),
            (
                "<p>x<div><SCRIPT>1</script>",
                "<p>x<div>[A]<SCRIPT>1</script>",
            ),
            (
                "<svg><script>1</script></svg>",
                "[A]<svg><script>1</script></svg>",
            ),
            (
                "<textarea><script>1</script></textarea><p>",
                "<textarea><script>1</script></textarea><p>[A]",
            ),
            // Comments and bogus comments end where a browser ends them: the
            // agent neither lands inside one nor after the site's script.
            ("<!--><script>1</script>", "<!-->[A]<script>1</script>"),
            ("<!---><script>1</script>", "<!--->[A]<script>1</script>"),
            (
                "<!-- --!><script>1</script>",
                "<!-- --!>[A]<script>1</script>",
            ),
            (
                "<!-- <head> --><script>1</script>",
                "<!-- <head> -->[A]<script>1</script>",
            ),
            (
                "<!x <head>><script>1</script>",
                "<!x <head>>[A]<script>1</script>",
            ),
            (
                "<? <script>><script>1</script>",
                "<? <script>>[A]<script>1</script>",
            ),
            (
                "</ <script>><script>1</script>",
                "</ <script>>[A]<script>1</script>",
            ),
            ("</><script>1</script>", "</>[A]<script>1</script>"),
            // Nothing that opens a head or body: at the end, unless that is
            // inside an unfinished tag.
            ("<html>text", "<html>text[A]"),
            ("text <!-- c", "text <!-- c[A]"),
            ("text <p title='x", "text <p title='x"),
        ];
        for (input, expected) in cases {
            for size in 1..=input.len() {
                assert_eq!(
                    placed(input, size),
                    expected,
                    "input {input:?}, chunk size {size}"
                );
            }
        }
    }

    #[test]
    fn one_lookup_knows_the_lists() {
        for name in RAW_TEXT
            .iter()
            .chain(AGENT_BEFORE)
            .chain(&["a", "div", "iframe", "x"])
        {
            for name in [name.to_string(), name.to_ascii_uppercase()] {
                let k = kind(name.as_bytes());
                let lower = name.to_ascii_lowercase();
                assert_eq!(
                    k.raw,
                    RAW_TEXT.iter().copied().find(|r| *r == lower),
                    "{name}"
                );
                assert_eq!(k.agent, AGENT_BEFORE.contains(&lower.as_str()), "{name}");
            }
        }
        assert_eq!(kind(b"IFRAME").edit, Some(Edit::Srcdoc));
        assert_eq!(kind(b"Link").edit, Some(Edit::Integrity));
        assert_eq!(kind(b"meta").edit, Some(Edit::Meta));
        assert_eq!(kind(b"metadata"), Kind::default());
        assert_eq!(kind(b"plaintextx"), Kind::default());
    }

    #[test]
    fn an_endless_tag_stops_mapping_at_the_limit() {
        let mut links = Links::new(mapper(false), 1000);
        let mut out = Vec::new();
        let input = format!(
            "<a href=\"https://shop.example/x\">a</a><div data-x=\"{}\"><a href=\"https://shop.example/y\">",
            "x".repeat(5000)
        );
        for chunk in input.as_bytes().chunks(100) {
            links.push(chunk, &mut out);
        }
        links.finish(&mut out);
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with("<a href=\"http://a.test:8080/x\">a</a><div data-x=\"xxx"),
            "{}",
            &out[..80]
        );
        assert!(
            out.ends_with("<a href=\"https://shop.example/y\">"),
            "after the limit nothing is changed"
        );
        assert_eq!(
            out.len(),
            input.len() - "https://shop.example".len() + "http://a.test:8080".len()
        );
    }
}
