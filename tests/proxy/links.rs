//! Links stay inside the proxy: attributes, `<style>`, and text/css
//! responses cut at every byte.

use bytes::Bytes;
use http::Response;

use super::get;
use crate::support::Cobrowse;
use crate::support::origin::{Origin, chunked};

const PAGE: &str = concat!(
    "<html><head><base href=\"UP/\"><link rel=stylesheet href=\"UP/s.css\" integrity=\"sha384-abc\">",
    "<style>body{background:url(UP/bg.png)}</style></head><body>",
    "<a href=\"UP/a?x=1&amp;y=2\">a</a><a href=\"https://elsewhere.test/b\">b</a><a href=\"/rel\">c</a><a href=\"#top\">d</a>",
    "<img src=\"UP/i.png\" srcset=\"UP/i1.png 1x, UP/i2.png 2x\"><form action=\"UP/buy\"><button formaction=\"UP/alt\">go</button></form>",
    "<div style=\"background-image:url('UP/d.png')\"></div><iframe src=\"UP/frame\"></iframe>",
    "<a href=\"data:text/html,UP\">data</a><a href=\"javascript:void('UP')\">js</a>",
    "<p>Our address is UP/ (text stays)</p><script>var api = \"UP/api\";</script></body></html>",
);

const CSS: &str = "@import url(\"UP/base.css\");\n.a{background:url(UP/a.png)}\n.b{background:url( 'UP/b.png' )}\n.c{x:url(https://elsewhere.test/c.png)}\n";

#[tokio::test]
async fn attributes_and_stylesheets_point_into_the_proxy() {
    let origin = Origin::start(|req| async move {
        let up = format!("http://{}", req.headers()["host"].to_str().unwrap());
        let (ct, text) = if req.uri().path() == "/s.css" {
            ("text/css", CSS)
        } else {
            ("text/html", PAGE)
        };
        let body = Bytes::from(text.replace("UP", &up));
        // One byte per chunk: every URL is cut somewhere.
        let chunks = (0..body.len()).map(|i| body.slice(i..i + 1)).collect();
        Response::builder()
            .header("content-type", ct)
            .body(chunked(chunks))
            .unwrap()
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    let up = origin.url();
    let me = format!("http://{}", proxy.addr);

    let page = get(&proxy.url("/")).await.text();
    let expected = PAGE
        .replace("<base href=\"UP/\"", &format!("<base href=\"{me}/\""))
        .replace(" integrity=\"sha384-abc\"", "")
        .replace("<p>Our address is UP/", &format!("<p>Our address is {up}/"))
        .replace("var api = \"UP/api\"", &format!("var api = \"{up}/api\""))
        .replace("data:text/html,UP", &format!("data:text/html,{up}"))
        .replace("javascript:void('UP')", &format!("javascript:void('{up}')"))
        .replace("UP", &me);
    let (before, after) = page
        .split_once("<script src=\"/__cobrowse/agent.js?v=")
        .unwrap_or_else(|| panic!("no agent: {page}"));
    let after = &after[after.find("</script>").unwrap() + 9..];
    assert_eq!(format!("{before}{after}"), expected, "\n{}", proxy.output());

    let css = get(&proxy.url("/s.css")).await.text();
    assert_eq!(css, CSS.replace("UP", &me), "other origins stay");
}
