//! The HTML rewrite on one core, in process: pages per second for the
//! catalogue fixture (82 KB, ~1,000 links to the upstream), fed in 16 KiB
//! chunks as from a socket. Run with `cargo bench --bench rewrite`.
//!
//! Four configurations separate the costs: injection only (no link names
//! an upstream), injection plus link mapping, and the same through gzip
//! and through brotli decoding and encoding.
//!
//! With `REWRITE_CORPUS` naming a file that lists HTML pages (one path a
//! line; `benches/run.sh` lists real documentation pages), it also measures
//! row B3 of docs/performance.md: MB/s over the whole corpus for the
//! customer's rewrite and a follower's (with masking), against lol_html
//! doing only the injection, rounds interleaved so the ratios come from the
//! same moments of a noisy machine. `REWRITE_SMOKE=1` runs one short round
//! of everything (the test suite's check that the tooling still works).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cobrowse::config::{Config, Overrides};
use cobrowse::proxy::compress::{Codec, Coding};
use cobrowse::proxy::csp::Allowance;
use cobrowse::proxy::html::{Html, Options};
use cobrowse::proxy::mask;
use cobrowse::proxy::site::Sites;
use cobrowse::proxy::stream::Pipeline;

const PAGE: &[u8] = include_bytes!("../tests/fixtures/proxy/catalogue.html");

fn options(upstream: &str) -> Options {
    let config = Config::parse(
        &format!("upstream = \"{upstream}\""),
        None,
        &Overrides::default(),
    )
    .unwrap();
    let mapper = Arc::new(Sites::new(&config)).mapper(0, "127.0.0.1:8080", false);
    Options {
        mapper,
        agent: "/__cobrowse/agent.js?v=0123456789abcdef".into(),
        nonce: "0123456789abcdef0123456789abcdef".into(),
        csp: Allowance {
            origin: "http://127.0.0.1:8080".into(),
            prefix: "/__cobrowse/".into(),
            console: None,
        },
        memory_limit: 1 << 20,
        declared: None,
        mask: Vec::new(),
        follower: false,
        unbound: false,
    }
}

fn run(input: &[u8], make: &dyn Fn() -> Pipeline) -> usize {
    let mut pipeline = make();
    let mut n = 0;
    for chunk in input.chunks(16 * 1024) {
        n += pipeline.push(chunk).unwrap().len();
    }
    n + pipeline.finish().unwrap().len()
}

fn smoke() -> bool {
    std::env::var_os("REWRITE_SMOKE").is_some_and(|v| v == "1")
}

/// Rounds and the time each takes.
fn rounds() -> (usize, Duration) {
    if smoke() {
        (1, Duration::from_millis(20))
    } else {
        // Many short rounds, the configurations interleaved: a burst of
        // load from elsewhere on the machine falls on a few rounds of each,
        // and the median leaves them out.
        (15, Duration::from_millis(200))
    }
}

fn measure(name: &str, input: &[u8], make: &dyn Fn() -> Pipeline) {
    for _ in 0..if smoke() { 1 } else { 20 } {
        black_box(run(input, make));
    }
    let (n, round) = rounds();
    let mut rates = Vec::new();
    for _ in 0..n {
        let start = Instant::now();
        let mut pages = 0u32;
        while start.elapsed() < round {
            black_box(run(input, make));
            pages += 1;
        }
        rates.push(f64::from(pages) / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "{name:<44} {median:>8.0} pages/s  {:>6.0} MB/s",
        median * PAGE.len() as f64 / 1e6
    );
}

/// The anchor of B3: lol_html with the one handler the injection needs,
/// fed and drained the same way.
fn lol_html_injection_only(input: &[u8]) -> usize {
    use lol_html::html_content::ContentType;
    use lol_html::{HtmlRewriter, Settings, element};
    let tag = "<script src=\"/__cobrowse/agent.js?v=0123456789abcdef\" nonce=\"0123456789abcdef0123456789abcdef\"></script>";
    let mut out = Vec::with_capacity(input.len() + 256);
    let mut rewriter = HtmlRewriter::new(
        Settings::new()
            .with_strict(false)
            .append_element_content_handler(element!("head", |el| {
                el.prepend(tag, ContentType::Html);
                Ok(())
            })),
        |c: &[u8]| out.extend_from_slice(c),
    );
    for chunk in input.chunks(16 * 1024) {
        rewriter.write(chunk).unwrap();
    }
    rewriter.end().unwrap();
    out.len()
}

/// Not an anchor but a measure of where a follower's time goes: lol_html
/// with only the masking selectors a follower's document is matched
/// against (`proxy::mask::selectors`, blanking as `proxy::mask::blank`),
/// without the link scanner on its output.
fn lol_html_masking_only(input: &[u8]) -> usize {
    use lol_html::{ElementContentHandlers, HtmlRewriter, Selector, Settings};
    let mut settings = Settings::new().with_strict(false);
    for selector in mask::selectors(&[]) {
        let parsed: Selector = selector.parse().unwrap();
        settings = settings.append_element_content_handler((
            std::borrow::Cow::Owned(parsed),
            ElementContentHandlers::default().element(
                |el: &mut lol_html::html_content::Element<'_, '_>| {
                    mask::blank(el);
                    Ok(())
                },
            ),
        ));
    }
    let mut out = Vec::with_capacity(input.len() + 256);
    let mut rewriter = HtmlRewriter::new(settings, |c: &[u8]| out.extend_from_slice(c));
    for chunk in input.chunks(16 * 1024) {
        rewriter.write(chunk).unwrap();
    }
    rewriter.end().unwrap();
    out.len()
}

/// One configuration of B3: a page in, the output's length out.
type Rewrite = Box<dyn Fn(&[u8]) -> usize>;

/// B3: the corpus, one round of each configuration after the other, 15
/// rounds; prints each one's median MB/s and the ratios to the anchor.
fn corpus(list: &str) {
    let pages: Vec<Vec<u8>> = std::fs::read_to_string(list)
        .unwrap_or_else(|e| panic!("REWRITE_CORPUS {list}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| std::fs::read(l.trim()).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(!pages.is_empty(), "REWRITE_CORPUS {list} lists no page");
    let bytes: usize = pages.iter().map(Vec::len).sum();
    let customer = options("http://127.0.0.1:18081");
    let follower = Options {
        mask: mask::selectors(&[]),
        follower: true,
        unbound: false,
        ..customer.clone()
    };
    let ours = |options: &Options| {
        let options = options.clone();
        move |page: &[u8]| {
            run(page, &|| {
                Pipeline::default().then(Html::new(options.clone()))
            })
        }
    };
    let configs: [(&str, Rewrite); 4] = [
        (
            "lol_html, injection only",
            Box::new(lol_html_injection_only),
        ),
        (
            "lol_html, masking selectors only",
            Box::new(lol_html_masking_only),
        ),
        ("cobrowse, customer", Box::new(ours(&customer))),
        ("cobrowse, follower with masking", Box::new(ours(&follower))),
    ];
    let (n, round) = rounds();
    let mut rates = vec![Vec::new(); configs.len()];
    for _ in 0..n {
        for (i, (_, rewrite)) in configs.iter().enumerate() {
            let start = Instant::now();
            let mut done = 0usize;
            while start.elapsed() < round {
                for page in &pages {
                    black_box(rewrite(page));
                }
                done += bytes;
            }
            rates[i].push(done as f64 / start.elapsed().as_secs_f64() / 1e6);
        }
    }
    let medians: Vec<f64> = rates
        .iter_mut()
        .map(|r| {
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        })
        .collect();
    println!(
        "corpus: {} pages, {:.1} MB; median of {n} rounds",
        pages.len(),
        bytes as f64 / 1e6
    );
    for ((name, _), mbs) in configs.iter().zip(&medians) {
        println!("{name:<44} {mbs:>8.1} MB/s  {:>5.2}x", mbs / medians[0]);
    }
    // One line for benches/run.sh.
    println!(
        "B3 anchor {:.1} customer {:.1} follower {:.1} masking {:.1}",
        medians[0], medians[2], medians[3], medians[1]
    );
}

fn main() {
    let gz = {
        let mut p = Pipeline::default().then(Codec::encoder(Coding::Gzip));
        let mut out = p.push(PAGE).unwrap();
        out.extend(p.finish().unwrap());
        out
    };
    println!(
        "catalogue page: {} bytes, {} bytes gzipped",
        PAGE.len(),
        gz.len()
    );
    measure("injection only (no upstream links)", PAGE, &|| {
        Pipeline::default().then(Html::new(options("http://elsewhere.test")))
    });
    measure("injection + link mapping", PAGE, &|| {
        Pipeline::default().then(Html::new(options("https://shop.example")))
    });
    measure("gzip in, injection + mapping, gzip out", &gz, &|| {
        Pipeline::default()
            .decode(Coding::Gzip)
            .then(Html::new(options("https://shop.example")))
            .then(Codec::encoder(Coding::Gzip))
    });
    let br = {
        let mut p = Pipeline::default().then(Codec::encoder(Coding::Brotli));
        let mut out = p.push(PAGE).unwrap();
        out.extend(p.finish().unwrap());
        out
    };
    measure("brotli in, injection + mapping, brotli out", &br, &|| {
        Pipeline::default()
            .decode(Coding::Brotli)
            .then(Html::new(options("https://shop.example")))
            .then(Codec::encoder(Coding::Brotli))
    });
    if let Ok(list) = std::env::var("REWRITE_CORPUS") {
        corpus(&list);
    }
}
