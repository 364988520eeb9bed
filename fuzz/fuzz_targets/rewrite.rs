//! The HTML and CSS rewrites over any bytes, cut at any chunk boundaries,
//! for a customer and for a follower (with masking).
//!
//! Input: one byte of flags, one byte seeding the chunk sizes, then the
//! document. Checked, beside "no panic":
//! - the output does not depend on where the chunks were cut;
//! - CSS that names no upstream comes out byte for byte;
//! - a customer's document gets the agent at most once;
//! - a follower's document, read back as a browser's parser would, has no
//!   masked field that still carries a value, or the rewrite failed (the
//!   response is aborted; nothing unmasked is served).

#![no_main]

use std::sync::{Arc, Mutex};

use cobrowse::config::{Config, Overrides};
use cobrowse::proxy::mask;
use cobrowse::proxy::csp::Allowance;
use cobrowse::proxy::html::{Html, Options};
use cobrowse::proxy::site::{Mapper, Sites, StreamMapper};
use cobrowse::proxy::stream::Pipeline;
use libfuzzer_sys::fuzz_target;
use lol_html::html_content::Element;
use lol_html::{AsciiCompatibleEncoding, ElementContentHandlers, HtmlRewriter, Selector, Settings};

/// Selectors configured beside the ones always masked.
const CONFIGURED: [&str; 2] = [".secret", "#ssn"];

fn mapper() -> Mapper {
    static SITES: std::sync::OnceLock<Arc<Sites>> = std::sync::OnceLock::new();
    let sites = SITES.get_or_init(|| {
        let config = Config::parse(
            "[[sites]]\nhosts=[\"a.test\"]\nupstream=\"https://shop.example\"\n[[sites]]\nhosts=[\"b.test\"]\nupstream=\"http://127.0.0.1:9000\"\n",
            None,
            &Overrides::default(),
        )
        .expect("fuzz configuration");
        Arc::new(Sites::new(&config))
    });
    sites.mapper(0, "a.test:8080", false)
}

fn options(
    follower: bool,
    declared: Option<&'static encoding_rs::Encoding>,
    memory_limit: usize,
) -> Options {
    let configured: Vec<String> = CONFIGURED.iter().map(|s| s.to_string()).collect();
    Options {
        mapper: mapper(),
        agent: "/__cobrowse/agent.js".into(),
        nonce: "N0NCE".into(),
        csp: Allowance {
            origin: "http://a.test:8080".into(),
            prefix: "/__cobrowse/".into(),
            console: None,
        },
        memory_limit,
        declared,
        mask: if follower {
            mask::selectors(&configured)
        } else {
            Vec::new()
        },
        follower,
    }
}

/// Runs `input` through a fresh pipeline, cut where `sizes` says (cycled).
fn run(make: &dyn Fn() -> Pipeline, input: &[u8], sizes: &[usize]) -> Result<Vec<u8>, String> {
    let mut pipeline = make();
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        i += 1;
        out.extend(pipeline.push(&rest[..n]).map_err(|e| e.to_string())?);
        rest = &rest[n..];
    }
    out.extend(pipeline.finish().map_err(|e| e.to_string())?);
    Ok(out)
}

/// The masked fields that still carry a value in `document`, read as the
/// rewriter read it.
fn unmasked(document: &[u8], declared: Option<&'static encoding_rs::Encoding>) -> Vec<String> {
    let (encoding, from_meta) = match encoding_rs::Encoding::for_bom(document) {
        Some((bom, _)) => (bom, false),
        None => match declared {
            Some(d) => (d, false),
            None => (encoding_rs::WINDOWS_1252, true),
        },
    };
    let Some(encoding) = AsciiCompatibleEncoding::new(encoding) else {
        return vec!["a charset the rewriter cannot read was served".into()];
    };
    let found = Arc::new(Mutex::new(Vec::new()));
    let mut settings = Settings::new()
        .with_encoding(encoding)
        .with_strict(false)
        .with_adjust_charset_on_meta_tag(from_meta);
    let configured: Vec<String> = CONFIGURED.iter().map(|s| s.to_string()).collect();
    for selector in mask::selectors(&configured) {
        let parsed: Selector = selector.parse().expect("mask selectors parse");
        let found = found.clone();
        let handlers =
            ElementContentHandlers::default().element(move |el: &mut Element<'_, '_>| {
                let tag = el.tag_name();
                let kept = match tag.as_str() {
                    "input" => el.get_attribute("value").is_some(),
                    "option" => el.has_attribute("selected"),
                    _ => false,
                };
                if kept {
                    found
                        .lock()
                        .unwrap()
                        .push(format!("<{tag}> matching {selector}"));
                }
                Ok(())
            });
        settings =
            settings.append_element_content_handler((std::borrow::Cow::Owned(parsed), handlers));
    }
    let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
    let _ = rewriter.write(document).and_then(|()| rewriter.end());
    let found = found.lock().unwrap().clone();
    found
}

fuzz_target!(|data: &[u8]| {
    let [flags, seed, document @ ..] = data else {
        return;
    };
    let sizes: Vec<usize> = [1, 2, 3, 5, 7, 16, 64, 4096]
        .iter()
        .cycle()
        .skip(usize::from(seed & 7))
        .take(1 + usize::from(seed >> 3 & 7))
        .map(|s| s + usize::from(seed >> 6))
        .collect();
    let whole = [document.len().max(1)];

    if flags & 1 == 1 {
        let make = || Pipeline::default().then(StreamMapper::new(mapper()));
        let a = run(&make, document, &whole).expect("CSS mapping does not fail");
        let b = run(&make, document, &sizes).expect("CSS mapping does not fail");
        assert_eq!(a, b, "CSS output depends on the chunk boundaries {sizes:?}");
        if !mapper().mentions(document) {
            assert_eq!(a, document, "CSS naming no upstream changed");
        }
        return;
    }

    let follower = flags & 2 == 2;
    let declared = (flags & 4 == 4).then_some(encoding_rs::UTF_8);
    // A small limit makes the rewrite give up part way; then where it gives
    // up may depend on the chunks, and only the masking is checked.
    let small = flags & 8 == 8;
    let memory_limit = if small { 2048 } else { 1 << 20 };
    let make = || Pipeline::default().then(Html::new(options(follower, declared, memory_limit)));
    let chunked = run(&make, document, &sizes);
    if !small {
        let once = run(&make, document, &whole);
        assert_eq!(
            once, chunked,
            "HTML output depends on the chunk boundaries {sizes:?}"
        );
    }
    let Ok(out) = chunked else {
        assert!(follower, "a customer's rewrite failed: {chunked:?}");
        return;
    };
    if follower {
        let left = unmasked(&out, declared);
        assert!(
            left.is_empty(),
            "masked values served to a follower: {left:?}"
        );
    } else if !small
        && encoding_rs::Encoding::for_bom(document).is_none_or(|(e, _)| e.is_ascii_compatible())
        && memchr::memmem::find(document, b"agent.js").is_none()
    {
        let tag = options(false, None, 0).agent_tag();
        let n = memchr::memmem::find_iter(&out, tag.as_bytes()).count();
        // None when the document ends inside an unfinished tag.
        assert!(n <= 1, "the agent was injected {n} times");
    }
});
