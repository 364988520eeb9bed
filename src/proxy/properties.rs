//! Property tests of the document rewrites: whatever the document and
//! wherever the chunks are cut, the output is the input with only the
//! intended edits (the agent injected once, upstream origins mapped, masked
//! values blanked for a follower), and a masked value never reaches a
//! follower. The fuzz targets in `fuzz/` check the same on arbitrary bytes.

use proptest::prelude::*;

use super::csp::Allowance;
use super::html::{Html, Options};
use super::site::StreamMapper;
use super::site::tests::mapper;
use super::stream::Pipeline;
use crate::proxy::mask;

/// Selectors configured beside the ones always masked.
const CONFIGURED: [&str; 2] = [".secret", "#ssn"];

/// Every masked value starts so; no other piece can contain it.
const SECRET: &str = "s3cr3t";

fn options(follower: bool) -> Options {
    let configured: Vec<String> = CONFIGURED.iter().map(|s| s.to_string()).collect();
    Options {
        mapper: mapper(false),
        agent: "/__cobrowse/agent.js".into(),
        nonce: "N0NCE".into(),
        csp: Allowance {
            origin: "http://a.test:8080".into(),
            prefix: "/__cobrowse/".into(),
            console: None,
        },
        memory_limit: 1 << 20,
        declared: None,
        mask: if follower {
            mask::selectors(&configured)
        } else {
            Vec::new()
        },
        follower,
        unbound: false,
    }
}

/// One piece of a generated document: what goes in, what a customer gets
/// and what a follower gets.
#[derive(Debug, Clone)]
struct Piece {
    input: String,
    customer: String,
    follower: String,
}

fn same(s: String) -> Piece {
    Piece {
        input: s.clone(),
        customer: s.clone(),
        follower: s,
    }
}

fn piece() -> impl Strategy<Value = Piece> {
    // Text cannot spell the secret marker (no digits).
    let text = "[a-z ,.]{0,24}";
    let path = "[a-z]{0,8}";
    let secret = "[A-Za-z0-9]{1,12}".prop_map(|s| format!("{SECRET}{s}"));
    prop_oneof![
        text.prop_map(same),
        prop::sample::select(vec![
            "<!doctype html>",
            "<html>",
            "<head>",
            "</head>",
            "<title>t</title>",
            "<body>",
            "<p>",
            "</p>",
            "<div class=x>",
            "</div>",
            "<br>",
            "<!-- c -->",
            "<style>p{color:red}</style>",
            "<script>var a = 1 < 2;</script>",
            "<input name=q value=\"shoes\">",
            "<select><option selected>blue</option></select>",
        ])
        .prop_map(|s| same(s.to_string())),
        path.prop_map(|p| Piece {
            input: format!("<a href=\"https://shop.example/{p}\">l</a>"),
            customer: format!("<a href=\"http://a.test:8080/{p}\">l</a>"),
            follower: format!("<a href=\"http://a.test:8080/{p}\">l</a>"),
        }),
        path.prop_map(|p| same(format!("<a href=\"https://other.test/{p}\">o</a>"))),
        path.prop_map(|p| Piece {
            input: format!("<img src=\"//127.0.0.1:9000/{p}.png\">"),
            customer: format!("<img src=\"//b.test:8080/{p}.png\">"),
            follower: format!("<img src=\"//b.test:8080/{p}.png\">"),
        }),
        secret.clone().prop_map(|s| Piece {
            input: format!("<input type=password name=pw value=\"{s}\">"),
            customer: format!("<input type=password name=pw value=\"{s}\">"),
            follower: "<input type=password name=pw>".into(),
        }),
        secret.clone().prop_map(|s| Piece {
            input: format!("<input autocomplete=\"billing cc-number\" value={s}>"),
            customer: format!("<input autocomplete=\"billing cc-number\" value={s}>"),
            follower: "<input autocomplete=\"billing cc-number\">".into(),
        }),
        secret.clone().prop_map(|s| Piece {
            input: format!("<input id=\"ssn\" value='{s}'>"),
            customer: format!("<input id=\"ssn\" value='{s}'>"),
            follower: "<input id=\"ssn\">".into(),
        }),
        (secret.clone(), secret).prop_map(|(a, b)| Piece {
            input: format!(
                "<div class=\"secret\"><input value=\"{a}\"><textarea>{b}</textarea><select><option selected>c</option></select></div>"
            ),
            customer: format!(
                "<div class=\"secret\"><input value=\"{a}\"><textarea>{b}</textarea><select><option selected>c</option></select></div>"
            ),
            follower: "<div class=\"secret\"><input><textarea></textarea><select><option>c</option></select></div>".into(),
        }),
    ]
}

/// Runs `input` through `make()`, cut into chunks of `sizes` (cycled).
fn run(make: &dyn Fn() -> Pipeline, input: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut pipeline = make();
    let mut out = Vec::new();
    let mut rest = input;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let n = (*size).clamp(1, rest.len());
        out.extend(pipeline.push(&rest[..n]).unwrap());
        rest = &rest[n..];
    }
    out.extend(pipeline.finish().unwrap());
    out
}

/// `out` without the one agent tag it must hold.
fn without_agent(out: &str) -> Result<String, TestCaseError> {
    let tag = options(false).agent_tag();
    prop_assert_eq!(out.matches(&tag).count(), 1, "the agent once in {}", out);
    Ok(out.replacen(&tag, "", 1))
}

fn check_document(
    pieces: Vec<Piece>,
    sizes: Vec<usize>,
    follower: bool,
) -> Result<(), TestCaseError> {
    let input: String = pieces.iter().map(|p| p.input.as_str()).collect();
    let expected: String = pieces
        .iter()
        .map(|p| if follower { &p.follower } else { &p.customer }.as_str())
        .collect();
    let make = || Pipeline::default().then(Html::new(options(follower)));
    let whole = run(&make, input.as_bytes(), &[input.len().max(1)]);
    let chunked = run(&make, input.as_bytes(), &sizes);
    prop_assert!(
        whole == chunked,
        "chunks {:?} changed the output of {}",
        sizes,
        input
    );
    let out = String::from_utf8(chunked).unwrap();
    if follower {
        prop_assert!(
            !out.contains(SECRET),
            "a masked value reached a follower: {}",
            out
        );
    }
    prop_assert_eq!(without_agent(&out)?, expected, "input {}", input);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_customers_document_is_the_input_with_only_the_intended_edits(
        pieces in prop::collection::vec(piece(), 0..24),
        sizes in prop::collection::vec(1usize..48, 1..6),
    ) {
        check_document(pieces, sizes, false)?;
    }

    #[test]
    fn a_followers_document_never_holds_a_masked_value(
        pieces in prop::collection::vec(piece(), 0..24),
        sizes in prop::collection::vec(1usize..48, 1..6),
    ) {
        check_document(pieces, sizes, true)?;
    }

    #[test]
    fn a_stylesheet_is_the_input_with_only_upstream_origins_mapped(
        parts in prop::collection::vec(
            prop_oneof![
                "[a-z{}:;( ) ]{0,16}".prop_map(|s| (s.clone(), s)),
                "[a-z]{0,8}".prop_map(|p| (
                    format!("url(https://shop.example/{p})"),
                    format!("url(http://a.test:8080/{p})"),
                )),
                "[a-z]{0,8}".prop_map(|p| (
                    format!("@import '//127.0.0.1:9000/{p}';"),
                    format!("@import '//b.test:8080/{p}';"),
                )),
                "[a-z]{0,8}".prop_map(|p| {
                    let s = format!("url(https://shop.example.evil/{p}) //shop.examples");
                    (s.clone(), s)
                }),
            ],
            0..16,
        ),
        sizes in prop::collection::vec(1usize..32, 1..6),
    ) {
        let input: String = parts.iter().map(|p| p.0.as_str()).collect();
        let expected: String = parts.iter().map(|p| p.1.as_str()).collect();
        let make = || Pipeline::default().then(StreamMapper::new(mapper(false)));
        let out = run(&make, input.as_bytes(), &sizes);
        prop_assert_eq!(String::from_utf8(out).unwrap(), expected, "input {}", input);
    }
}

/// A piece of markup around which the link scanner and a browser's tokenizer
/// could disagree on where a comment, a bogus comment or a raw-text element
/// ends. A link is `None`: it gets its own path when the document is built.
fn token() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        Just(None),
        prop::sample::select(vec![
            "<!-->",
            "<!--->",
            "<!---->",
            "<!-- c -->",
            "<!-- c --!>",
            "<!--",
            "-->",
            "--!>",
            "--!",
            "-",
            "!",
            ">",
            "<!x",
            "<![CDATA[",
            "]]>",
            "<!doctype html>",
            "<?x",
            "</ x",
            "</",
            "</>",
            "<",
            " text ",
            "<head>",
            "<p>",
            "<p title='>'>",
            "<p title = \"a>b\" data-x='c\"d'>",
            "<p x' y=\"\"'>",
            "</p>",
            "<script>if (a<b) c()</script>",
            "<textarea>",
            "</textarea>",
            "<title>",
            "</title>",
            "<xmp>",
            "</xmp>",
        ])
        .prop_map(Some),
    ]
}

fn document(tokens: &[Option<&str>]) -> String {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| match t {
            Some(t) => t.to_string(),
            None => format!("<a href=\"https://shop.example/{i}\">"),
        })
        .collect()
}

/// Runs `input` through the link scanner alone, in chunks of `size`.
fn scanned(input: &[u8], size: usize, agent: bool) -> String {
    let mut links = super::links::Links::new(mapper(false), 1 << 20);
    if agent {
        links = links.with_agent(b"[A]");
    }
    let mut out = Vec::new();
    for chunk in input.chunks(size) {
        links.push(chunk, &mut out);
    }
    links.finish(&mut out);
    String::from_utf8(out).unwrap()
}

/// The reference: lol_html's tokenizer. Returns the `href`s of the elements
/// it sees, and the document with `[A]` where an element handler on the
/// elements that open a head or body would place the agent (the placement
/// the scanner replaced), if there is one.
fn lol_html_view(input: &str) -> (Vec<String>, Option<String>) {
    use lol_html::html_content::ContentType;
    use lol_html::{HtmlRewriter, Settings, element};
    use std::cell::RefCell;

    let hrefs = RefCell::new(Vec::new());
    let placed = RefCell::new(false);
    let mut out = Vec::new();
    let first = super::links::AGENT_BEFORE.join(", ");
    let mut rewriter = HtmlRewriter::new(
        Settings::new()
            .with_strict(false)
            .append_element_content_handler(element!("[href]", |el| {
                hrefs.borrow_mut().push(el.get_attribute("href").unwrap());
                Ok(())
            }))
            .append_element_content_handler(element!(first, |el| {
                if !placed.replace(true) {
                    if el.tag_name() == "head" {
                        el.prepend("[A]", ContentType::Html);
                    } else {
                        el.before("[A]", ContentType::Html);
                    }
                }
                Ok(())
            })),
        |c: &[u8]| out.extend_from_slice(c),
    );
    rewriter.write(input.as_bytes()).unwrap();
    rewriter.end().unwrap();
    let placed = *placed.borrow();
    let hrefs = hrefs.into_inner();
    (hrefs, placed.then(|| String::from_utf8(out).unwrap()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Where the scanner thinks comments and raw text end is where the
    /// tokenizer ends them: it maps exactly the links of the elements
    /// lol_html sees, and places the agent where a lol_html handler would.
    #[test]
    fn the_scanner_tokenizes_as_the_html_tokenizer_does(
        tokens in prop::collection::vec(token(), 0..16),
        size in 1usize..24,
    ) {
        let input = document(&tokens);
        let (hrefs, placed) = lol_html_view(&input);
        let out = scanned(input.as_bytes(), size, false);
        let mapped: Vec<String> = (0..tokens.len())
            .filter(|i| out.contains(&format!("\"http://a.test:8080/{i}\"")))
            .map(|i| format!("https://shop.example/{i}"))
            .collect();
        prop_assert_eq!(&mapped, &hrefs, "input {}\nscanned {}", input, out);

        let with_agent = scanned(input.as_bytes(), size, true);
        match placed {
            Some(reference) => {
                let reference = scanned(reference.as_bytes(), size, false);
                prop_assert_eq!(with_agent, reference, "input {}", input);
            }
            // Nothing opens a head or a body: at the end, or left out when
            // the document ends inside an unfinished tag.
            None => prop_assert!(
                with_agent == format!("{out}[A]") || with_agent == out,
                "input {}\ngot {}", input, with_agent
            ),
        }
    }
}

/// Elements whose attributes the tag pass edits ([`super::links::Elements`]),
/// written in the ways a page may write them, among tokens the scanner must
/// not mistake for tags.
fn element_token() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        token(),
        prop::sample::select(vec![
            "<iframe srcdoc=\"&lt;p&gt;x &amp; y\">",
            "<IFRAME SRCDOC='<a href=\"https://shop.example/f\">f</a>'>",
            "<iframe srcdoc>",
            "<iframe srcdoc=x>",
            "<iframe srcdoc=\"<script src=/__cobrowse/agent.js nonce=N0NCE></script>\">",
            "<iframe title=t srcdoc='a' srcdoc='b'>",
            "</iframe>",
            "<link rel=stylesheet href=https://shop.example/a.css integrity=sha384-x>",
            "<link as=SCRIPT integrity=sha384-y href=a.js>",
            "<link rel=\"ModulePreload\" integrity='sha384-z'>",
            "<link integrity>",
            "<link integrity=a rel=preload integrity=b>",
            "<link integrity=\"q\"rel=x>",
            "<link\tINTEGRITY = 'q' />",
            "<meta http-equiv=refresh content=\"5; url=https://shop.example/n\">",
            "<META HTTP-EQUIV=\"Content-Security-Policy\" CONTENT=\"script-src 'self'; img-src https://shop.example\">",
            "<meta http-equiv='content-security-policy' content='default-src &apos;none&apos;'>",
            "<meta http-equiv=x-other content=https://shop.example/o>",
            "<meta content=0;url=https://shop.example/u/ http-equiv=REFRESH>",
            "<meta http-equiv=refresh>",
            "<meta http-equiv=refresh content>",
            "<meta http-equiv=refresh content=\"1; url=https://shop.example/a\" content=\"2; url=https://shop.example/b\">",
        ])
        .prop_map(Some),
    ]
}

/// What the tag pass replaced, as lol_html did it: the reference.
fn lol_html_elements(input: &str) -> String {
    use lol_html::{HtmlRewriter, Settings, element};
    let srcdoc = "<script src=/__cobrowse/agent.js nonce=N0NCE></script>";
    let opts = options(false);
    let (mapper, allowance) = (opts.mapper.clone(), opts.csp.clone());
    let mut out = Vec::new();
    let mut rewriter = HtmlRewriter::new(
        Settings::new()
            .with_strict(false)
            .append_element_content_handler(element!("iframe[srcdoc]", |el| {
                if let Some(doc) = el.get_attribute("srcdoc").filter(|d| !d.contains(srcdoc)) {
                    el.set_attribute("srcdoc", &format!("{srcdoc}{doc}"))?;
                }
                Ok(())
            }))
            .append_element_content_handler(element!("link[integrity]", |el| {
                let is_script = el
                    .get_attribute("as")
                    .is_some_and(|a| a.eq_ignore_ascii_case("script"))
                    || el
                        .get_attribute("rel")
                        .is_some_and(|r| r.to_ascii_lowercase().contains("modulepreload"));
                if !is_script {
                    el.remove_attribute("integrity");
                }
                Ok(())
            }))
            .append_element_content_handler(element!("meta[http-equiv][content]", |el| {
                let equiv = el
                    .get_attribute("http-equiv")
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let Some(content) = el.get_attribute("content") else {
                    return Ok(());
                };
                let rewritten = match equiv.as_str() {
                    "refresh" => super::links::map_attribute(&mapper, &content).into_owned(),
                    "content-security-policy" => super::csp::rewrite(
                        &mapper.map_str(&super::links::decode_entities(&content)),
                        &allowance,
                        "N0NCE",
                        true,
                    ),
                    _ => return Ok(()),
                };
                if rewritten != content {
                    el.set_attribute("content", &rewritten)?;
                }
                Ok(())
            })),
        |c: &[u8]| out.extend_from_slice(c),
    );
    rewriter.write(input.as_bytes()).unwrap();
    rewriter.end().unwrap();
    String::from_utf8(out).unwrap()
}

/// A document as a browser's tokenizer reads it: each element's name and
/// attributes (values with their character references decoded), the text
/// and comments between them.
fn tokenized(html: &str) -> Vec<String> {
    use lol_html::{HtmlRewriter, Settings, doc_comments, doc_text, element};
    use std::cell::RefCell;
    let events = RefCell::new(Vec::new());
    let text = RefCell::new(String::new());
    let flush = |events: &RefCell<Vec<String>>, text: &RefCell<String>| {
        let t = std::mem::take(&mut *text.borrow_mut());
        if !t.is_empty() {
            events.borrow_mut().push(t);
        }
    };
    let mut rewriter = HtmlRewriter::new(
        Settings::new()
            .append_element_content_handler(element!("*", |el| {
                flush(&events, &text);
                let attrs: Vec<(String, String)> = el
                    .attributes()
                    .iter()
                    .map(|a| {
                        (
                            a.name(),
                            super::links::decode_entities(&a.value()).into_owned(),
                        )
                    })
                    .collect();
                events
                    .borrow_mut()
                    .push(format!("<{} {attrs:?}", el.tag_name()));
                Ok(())
            }))
            .append_document_content_handler(doc_text!(|t| {
                text.borrow_mut().push_str(t.as_str());
                Ok(())
            }))
            .append_document_content_handler(doc_comments!(|c| {
                flush(&events, &text);
                events.borrow_mut().push(format!("<!--{}", c.text()));
                Ok(())
            })),
        |_: &[u8]| {},
    );
    rewriter.write(html.as_bytes()).unwrap();
    rewriter.end().unwrap();
    flush(&events, &text);
    events.into_inner()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The tag pass edits `<iframe srcdoc>`, `<link integrity>` and `<meta
    /// http-equiv>` as the lol_html handlers it replaced did (followed by
    /// the scanner, as they were): the same elements, attributes and values,
    /// wherever the chunks are cut.
    #[test]
    fn the_scanner_edits_elements_as_lol_html_handlers_did(
        tokens in prop::collection::vec(element_token(), 0..16),
        size in 1usize..24,
    ) {
        let input = document(&tokens);
        let reference = scanned(lol_html_elements(&input).as_bytes(), input.len().max(1), false);
        let opts = options(false);
        let mut links = super::links::Links::new(mapper(false), 1 << 20).with_elements(
            super::links::Elements {
                srcdoc_agent: b"<script src=/__cobrowse/agent.js nonce=N0NCE></script>".to_vec(),
                csp: opts.csp.clone(),
                nonce: "N0NCE".into(),
            },
        );
        let mut out = Vec::new();
        for chunk in input.as_bytes().chunks(size) {
            links.push(chunk, &mut out);
        }
        links.finish(&mut out);
        let out = String::from_utf8(out).unwrap();
        prop_assert_eq!(
            tokenized(&out),
            tokenized(&reference),
            "input {}\nscanned {}\nreference {}", input, out, reference
        );
    }
}
