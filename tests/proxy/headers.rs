//! Headers both ways: the upstream sees itself addressed; the browser sees
//! the proxy in every URL, cookies it will keep, and policies that let the
//! agent and the console work and nothing more.

use http::{Response, StatusCode};

use super::{fetch, get};
use crate::support::Cobrowse;
use crate::support::origin::{Origin, full};

#[tokio::test]
async fn the_upstream_sees_itself_addressed() {
    let origin = Origin::start(|req| async move {
        let h = |n: &str| {
            req.headers()
                .get(n)
                .map_or("-".to_string(), |v| v.to_str().unwrap().to_string())
        };
        let seen = format!(
            "host={} origin={} referer={} accept-encoding={}",
            h("host"),
            h("origin"),
            h("referer"),
            h("accept-encoding")
        );
        Response::builder()
            .header("content-type", "text/plain")
            .body(full(seen))
            .unwrap()
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    let me = format!("http://{}", proxy.addr);
    let got = fetch(
        "POST",
        &proxy.url("/api"),
        &[
            ("origin", &me),
            ("referer", &format!("{me}/cart?x=1")),
            ("accept-encoding", "gzip, sdch, br"),
        ],
    )
    .await;
    let up = origin.url();
    assert_eq!(
        got.text(),
        format!(
            "host={} origin={up} referer={up}/cart?x=1 accept-encoding=gzip, br",
            origin.addr
        ),
        "{}",
        proxy.output()
    );
    let foreign = fetch(
        "GET",
        &proxy.url("/api"),
        &[
            ("origin", "https://other.test"),
            ("referer", "https://other.test/x"),
        ],
    )
    .await;
    assert!(
        foreign
            .text()
            .contains("origin=https://other.test referer=https://other.test/x"),
        "{}",
        foreign.text()
    );
}

#[tokio::test]
async fn urls_cookies_and_policies_in_response_headers() {
    let origin = Origin::start(|req| async move {
        let up = format!("http://{}", req.headers()["host"].to_str().unwrap());
        Response::builder()
            .status(302)
            .header("location", format!("{up}/login?next=%2Fcart"))
            .header("content-location", format!("{up}/cart"))
            .header("refresh", format!("5; url={up}/later"))
            .header(
                "link",
                format!(
                    "<{up}/app.css>; rel=preload; as=style, <https://cdn.test/f.woff2>; rel=preload"
                ),
            )
            .header(
                "set-cookie",
                "sid=abc; Domain=shop.example; Path=/; Secure; HttpOnly; SameSite=None",
            )
            .header("set-cookie", "pref=1; Path=/")
            .header("access-control-allow-origin", up.clone())
            .header(
                "strict-transport-security",
                "max-age=63072000; includeSubDomains; preload",
            )
            .header("alt-svc", "h3=\":443\"; ma=86400")
            .header("x-frame-options", "DENY")
            .header(
                "content-security-policy",
                format!("default-src 'self' {up}; frame-ancestors 'none'"),
            )
            .header("content-type", "text/html")
            .body(full("<html><head></head><body>moved</body></html>"))
            .unwrap()
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    let me = format!("http://{}", proxy.addr);
    let got = fetch("GET", &proxy.url("/cart"), &[]).await;
    assert_eq!(got.status, StatusCode::FOUND);
    assert_eq!(got.header("location"), format!("{me}/login?next=%2Fcart"));
    assert_eq!(got.header("content-location"), format!("{me}/cart"));
    assert_eq!(got.header("refresh"), format!("5; url={me}/later"));
    assert_eq!(
        got.header("link"),
        format!("<{me}/app.css>; rel=preload; as=style, <https://cdn.test/f.woff2>; rel=preload")
    );
    let cookies: Vec<&str> = got
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        cookies,
        ["sid=abc; Path=/; HttpOnly; SameSite=Lax", "pref=1; Path=/"],
        "host-only, and no Secure over plain HTTP"
    );
    assert_eq!(got.header("access-control-allow-origin"), me);
    assert!(
        got.headers.get("strict-transport-security").is_none()
            && got.headers.get("alt-svc").is_none()
    );
    // Framing: the proxy itself and the console's own origin, said in a
    // policy (X-Frame-Options cannot name another origin).
    assert!(got.headers.get("x-frame-options").is_none());
    let console = proxy.console_origin();
    let policies: Vec<&str> = got
        .headers
        .get_all("content-security-policy")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        policies,
        [
            format!(
                "default-src 'self' {me} {me}/__cobrowse/agent.js {me}/__cobrowse/ ws://{}/__cobrowse/; frame-ancestors 'self' {console}",
                proxy.addr
            ),
            format!("frame-ancestors 'self' {console}")
        ]
    );
}

#[tokio::test]
async fn a_nonce_policy_lets_the_injected_agent_run_and_nothing_else() {
    let origin = Origin::start(|_| async {
        Response::builder()
            .header("content-type", "text/html")
            .header(
                "content-security-policy",
                "script-src 'nonce-site' 'strict-dynamic'; object-src 'none'",
            )
            .body(full(
                "<html><head><script nonce=site>ok()</script></head></html>",
            ))
            .unwrap()
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    let first = fetch("GET", &proxy.url("/"), &[]).await;
    let second = fetch("GET", &proxy.url("/"), &[]).await;
    for got in [&first, &second] {
        let csp = got.header("content-security-policy");
        let nonce = csp
            .split("'nonce-")
            .nth(2)
            .and_then(|n| n.split('\'').next())
            .unwrap_or_else(|| panic!("no agent nonce in {csp}"));
        assert!(
            csp.starts_with("script-src 'nonce-site' 'strict-dynamic' "),
            "{csp}"
        );
        assert!(csp.ends_with("; object-src 'none'"), "{csp}");
        assert!(
            got.text()
                .contains(&format!("\" nonce=\"{nonce}\" data-cobrowse-map=")),
            "tag and policy disagree: {csp}\n{}",
            got.text()
        );
    }
    assert_ne!(
        first.header("content-security-policy"),
        second.header("content-security-policy"),
        "a nonce is used once"
    );
}

#[tokio::test]
async fn service_worker_scripts_are_refused_before_the_upstream() {
    let origin = Origin::pages(&[(
        "/sw.js",
        "text/javascript",
        "self.addEventListener('fetch', () => {})",
    )])
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    let got = fetch("GET", &proxy.url("/sw.js"), &[("service-worker", "script")]).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert!(got.text().contains("Service workers are not available"));
    assert_eq!(origin.requests(), 0);
    let plain = fetch("GET", &proxy.url("/sw.js"), &[]).await;
    assert_eq!(
        plain.status,
        StatusCode::OK,
        "the same file as a plain script is served"
    );
}

#[tokio::test]
async fn a_host_that_is_not_a_host_name_is_refused() {
    let origin = Origin::pages(&[("/", "text/html", "<html><head></head></html>")]).await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    let got = fetch(
        "GET",
        &proxy.url("/"),
        &[("host", "x\"><script>alert(1)</script>")],
    )
    .await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert!(!got.text().contains("<script>alert"));
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn behind_a_tls_terminating_balancer_the_browser_sees_https() {
    let origin = Origin::start(|req| async move {
        let up = format!("http://{}", req.headers()["host"].to_str().unwrap());
        Response::builder()
            .status(302)
            .header("location", format!("{up}/cart"))
            .header("set-cookie", "sid=abc; Path=/; Secure; HttpOnly")
            .body(full(""))
            .unwrap()
    })
    .await;
    let proxy = Cobrowse::with_config(&Cobrowse::config_for(
        &origin.url(),
        "public_origins = [\"https://support.example\"]",
    ))
    .await;
    // The balancer forwards plain HTTP with the browser's Host.
    let got = fetch("GET", &proxy.url("/"), &[("host", "support.example")]).await;
    assert_eq!(
        got.header("location"),
        "https://support.example/cart",
        "{}",
        proxy.output()
    );
    assert!(
        got.header("set-cookie").contains("Secure"),
        "a Secure cookie must survive for an https browser: {}",
        got.header("set-cookie")
    );
    // Another host on the same proxy is still plain HTTP.
    let plain = fetch("GET", &proxy.url("/"), &[]).await;
    assert_eq!(
        plain.header("location"),
        format!("http://{}/cart", proxy.addr)
    );
    assert!(
        !plain.header("set-cookie").contains("Secure"),
        "{}",
        plain.header("set-cookie")
    );
}

/// Cookies ignore ports: the browser sends the console's login cookie to the
/// site's port too. It is the operator's, never the upstream's.
#[tokio::test]
async fn the_operators_login_cookie_never_goes_upstream() {
    let origin = Origin::start(|req| async move {
        let cookie = req
            .headers()
            .get("cookie")
            .map_or("-".to_string(), |v| v.to_str().unwrap().to_string());
        Response::builder()
            .header("content-type", "text/plain")
            .body(full(format!("cookie={cookie}")))
            .unwrap()
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    for cookie in [
        "cobrowse_operator=0123456789abcdef; site=1",
        "site=1; cobrowse_operator=0123456789abcdef",
        "site=1",
    ] {
        let got = fetch("GET", &proxy.url("/account"), &[("cookie", cookie)]).await;
        assert_eq!(got.text(), "cookie=site=1", "sent {cookie}");
    }
    let got = fetch(
        "GET",
        &proxy.url("/account"),
        &[("cookie", "cobrowse_operator=0123456789abcdef")],
    )
    .await;
    assert_eq!(got.text(), "cookie=-");
}

/// The agent's URL in a proxied page.
pub(super) fn agent_src(page: &str) -> String {
    let tag = page
        .split("<script src=\"")
        .find(|t| t.contains("data-cobrowse-map="))
        .unwrap_or_else(|| panic!("no agent tag in {page}"));
    tag[..tag.find('"').unwrap()].to_string()
}

/// The synchronous agent in `<head>` must not cost a page load a
/// revalidation round trip: it is named by its content and kept for good;
/// the unversioned URL and an old version still work and revalidate; a
/// changed agent gets a new URL.
#[tokio::test]
async fn the_agent_is_named_by_its_version_and_kept_for_good() {
    let origin = Origin::start(|_req| async move {
        Response::builder()
            .header("content-type", "text/html")
            .body(full(
                "<html><head><title>t</title></head><body>hi</body></html>",
            ))
            .unwrap()
    })
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    let page = get(&proxy.url("/")).await.text();
    let src = agent_src(&page);
    let version = src
        .strip_prefix("/__cobrowse/agent.js?v=")
        .unwrap_or_else(|| panic!("the agent's URL names no version: {src}"));
    assert!(
        version.len() == 16 && version.bytes().all(|b| b.is_ascii_hexdigit()),
        "{src}"
    );
    let versioned = get(&proxy.url(&src)).await;
    assert_eq!(versioned.status, StatusCode::OK, "{}", proxy.output());
    assert_eq!(
        versioned.header("cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert!(versioned.text().starts_with("(function () {"));
    for old in [
        "/__cobrowse/agent.js".to_string(),
        "/__cobrowse/agent.js?v=0000000000000000".to_string(),
    ] {
        let got = get(&proxy.url(&old)).await;
        assert_eq!(got.status, StatusCode::OK, "{old}");
        assert_eq!(got.header("cache-control"), "no-cache", "{old}");
        assert_eq!(got.body, versioned.body, "{old}");
    }
    let other = Cobrowse::with_config(&Cobrowse::config_for(
        &origin.url(),
        "[privacy]\nmask = [\".other\"]",
    ))
    .await;
    let changed = agent_src(&get(&other.url("/")).await.text());
    assert!(changed.starts_with("/__cobrowse/agent.js?v="), "{changed}");
    assert_ne!(changed, src, "another agent, another URL");
    let got = get(&other.url(&changed)).await;
    assert_eq!(
        got.header("cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert!(got.text().contains("\".other\""));
}

/// The agent's tag says the browser is bound to no session only when that
/// is sure: no binding came with a request that would have carried one.
/// A binding of any value (live, stale or made up), a navigation from
/// another site (the binding is `SameSite=Strict`) or a client that does
/// not say where the request comes from leave the tag unmarked, and the
/// agent then looks for a session to resume as before.
#[tokio::test]
async fn the_agent_is_told_the_browser_is_unbound_only_when_it_surely_is() {
    let origin = Origin::pages(&[(
        "/",
        "text/html",
        "<html><head></head><body>hi</body></html>",
    )])
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    const MARK: &str = " data-cobrowse-unbound>";
    let cases: [(&[(&str, &str)], bool); 7] = [
        (&[("sec-fetch-site", "none")], true),
        (&[("sec-fetch-site", "same-origin")], true),
        (&[("sec-fetch-site", "same-site")], true),
        (
            &[
                ("sec-fetch-site", "same-origin"),
                ("cookie", "site=1; cobrowse_participant=s1.r1"),
            ],
            false,
        ),
        (
            &[
                ("sec-fetch-site", "none"),
                ("cookie", "cobrowse_participant=made-up"),
            ],
            false,
        ),
        (&[("sec-fetch-site", "cross-site")], false),
        (&[], false),
    ];
    for (headers, marked) in cases {
        let got = fetch("GET", &proxy.url("/"), headers).await;
        let text = got.text();
        assert!(text.contains("data-cobrowse-map="), "no agent: {text}");
        assert_eq!(text.contains(MARK), marked, "{headers:?}: {text}");
    }
}
