//! The HTML rewrite on one core, in process: pages per second for the
//! catalogue fixture (82 KB, ~1,000 links to the upstream), fed in 16 KiB
//! chunks as from a socket. Run with `cargo bench --bench rewrite`.
//!
//! Three configurations separate the costs: injection only (no link names
//! an upstream), injection plus link mapping, and the same through gzip
//! decoding and encoding.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cobrowse::config::{Config, Overrides};
use cobrowse::proxy::compress::{Codec, Coding};
use cobrowse::proxy::csp::Allowance;
use cobrowse::proxy::html::{Html, Options};
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

fn measure(name: &str, input: &[u8], make: &dyn Fn() -> Pipeline) {
    for _ in 0..20 {
        black_box(run(input, make));
    }
    let mut rates = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut pages = 0u32;
        while start.elapsed() < Duration::from_millis(600) {
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
}
