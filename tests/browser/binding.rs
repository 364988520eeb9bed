//! Binding a browser to a session is for the page that holds the
//! participant's connection only. A page on another site that knows a
//! session's secrets (here: the attacker's own session) must not bind a
//! victim's browser to it: the victim would then drive the attacker's
//! session, and the attacker's follower would be served the victim's pages
//! and make its reads with the victim's cookies.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::*;
use crate::support::origin::{Origin, full};

/// The victim's cookie at the site.
const VICTIM_COOKIE: &str = "sid=victim-secret";

/// The attacker's page: a script's no-cors POST, then an auto-submitting
/// `enctype=text/plain` form whose one field spells the JSON body. What to
/// post where comes in the fragment.
const ATTACK: &str = r#"<!doctype html><html><head><title>win a prize</title></head><body>
<form id="f" method="POST" enctype="text/plain"><input id="i" type="hidden"></form>
<script>
const p = JSON.parse(decodeURIComponent(location.hash.slice(1)));
const json = JSON.stringify(p.body);
fetch(p.target, { method: 'POST', mode: 'no-cors', credentials: 'include', headers: { 'content-type': 'text/plain' }, body: json })
  .catch(() => null)
  .then(() => {
    document.title = 'fetched';
    const f = document.getElementById('f'), i = document.getElementById('i');
    f.action = p.target;
    i.name = json.slice(0, -1) + ',"pad":"';
    i.value = '"}';
    f.submit();
  });
</script></body></html>"#;

/// The site: `/login` gives the browser its cookie, `/whoami` says which
/// cookies a request carried.
async fn site() -> Origin {
    Origin::start(|req| async move {
        let cookies = req
            .headers()
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        match req.uri().path() {
            "/login" => http::Response::builder()
                .header("content-type", "text/html")
                .header("set-cookie", format!("{VICTIM_COOKIE}; Path=/"))
                .body(full("<html><head></head><body>signed in</body></html>"))
                .unwrap(),
            "/whoami" => http::Response::builder()
                .header("content-type", "text/plain")
                .body(full(format!("cookies: {cookies}")))
                .unwrap(),
            path => http::Response::builder()
                .header("content-type", "text/html")
                .body(full(format!(
                    "<html><head></head><body>page {path}</body></html>"
                )))
                .unwrap(),
        }
    })
    .await
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A customer's connection to the hub, as the attacker's own browser opens it.
async fn customer(server: &Cobrowse) -> Ws {
    let mut req = server
        .ws_url("/__cobrowse/ws?role=customer")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Origin", server.url("").parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.output()))
        .0
}

async fn next_of(ws: &mut Ws, kind: &str, server: &Cobrowse) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == kind {
                    return v;
                }
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("no `{kind}` from the hub: {other:?}\n{}", server.output()),
        }
    }
}

#[tokio::test]
async fn a_page_on_another_site_cannot_bind_a_browser_to_a_session() {
    let site = site().await;
    let attacker_site = Origin::pages(&[("/attack", "text/html", ATTACK)]).await;
    let server = Cobrowse::with_config(&Cobrowse::config_for(&site.url(), "")).await;

    // The attacker calls (its connection stays: it is the session's driver)
    // and joins a second tab of its own, which follows.
    let mut caller = customer(&server).await;
    caller
        .send(Message::text(json!({"type": "call"}).to_string()))
        .await
        .unwrap();
    let joined = next_of(&mut caller, "joined", &server).await;
    let session = joined["session"].as_str().unwrap().to_string();
    let mut follower = customer(&server).await;
    follower
        .send(Message::text(
            json!({"type": "join", "session": session, "resume": joined["resume"]}).to_string(),
        ))
        .await
        .unwrap();
    let follows = next_of(&mut follower, "joined", &server).await;
    let follower_cookie = format!(
        "cobrowse_participant={session}.{}",
        follows["resume"].as_str().unwrap()
    );

    // The victim is signed in at the site, then visits the attacker's page
    // (another site: localhost, not 127.0.0.1), which posts everything the
    // attacker holds: the session, its resume secret and its bind token.
    let browser = Browser::launch().await;
    let victim = browser.tab("victim", 1000, 760).await;
    victim.goto(&server.url("/login")).await;
    let target = server.url("/__cobrowse/bind");
    let body = json!({"session": session, "resume": joined["resume"], "token": joined["bind"]});
    let hash = urlencoding(&json!({"target": target, "body": body}).to_string());
    let attack = format!(
        "http://localhost:{}/attack#{hash}",
        attacker_site.addr.port()
    );
    victim
        .eval(&format!(
            "location.href = {}",
            serde_json::to_string(&attack).unwrap()
        ))
        .await;
    let answered = format!(
        "location.href === {} && document.body && document.body.innerText.trim().length > 0",
        serde_json::to_string(&target).unwrap()
    );
    let answer = until(
        &victim,
        "the forged form's answer",
        &format!("({answered}) && document.body.innerText"),
        &[&victim],
        &server,
    )
    .await;
    assert!(
        attacker_site.requests() >= 1,
        "the attack page was not loaded"
    );

    // The victim browses on. Its pages and cookies must stay its own.
    victim.goto(&server.url("/account")).await;
    until(
        &victim,
        "the victim's account page",
        "document.body && document.body.innerText.includes('page /account')",
        &[&victim],
        &server,
    )
    .await;
    let read = crate::proxy::fetch(
        "GET",
        &server.url("/whoami"),
        &[("cookie", &follower_cookie)],
    )
    .await;
    assert!(
        !read.text().contains("victim-secret"),
        "the attacker's follower read with the victim's cookies ({}); the forged bind was answered {answer}\n{}",
        read.text(),
        server.output()
    );
    let cookies = victim.page.get_cookies().await.unwrap();
    assert!(
        !cookies.iter().any(|c| c.name == "cobrowse_participant"),
        "the victim's browser was bound: {:?}; the forged bind was answered {answer}",
        cookies
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect::<Vec<_>>()
    );
    let out = server.output();
    assert!(!out.contains("browser bound to session"), "{out}");
    assert!(
        out.contains("refused a request from a foreign page"),
        "{out}"
    );
}

/// Percent-encodes `text` for a URL fragment.
fn urlencoding(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
