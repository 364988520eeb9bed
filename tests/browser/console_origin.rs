//! The operator's authority is out of the site's reach: a script of the
//! proxied site running in a logged-in operator's browser (here, in the
//! console's content frame, the page the operator is shown) tries every door
//! to the operator's power and finds each closed.

use super::harness::{until, until_on};
use super::*;

/// What a hostile site script in the content frame tries, reported as one
/// object. `CONSOLE` is the console's origin.
const ATTACK: &str = r#"(async () => {
  const out = {};
  const settle = (ws, seen, resolve) => {
    // Settles on the first thing that decides: refused (closed), or the
    // hub answering as it would an operator.
    ws.onopen = () => ws.send(JSON.stringify({ type: 'ready' }));
    ws.onmessage = (ev) => {
      seen.push(ev.data);
      const m = JSON.parse(ev.data);
      // The queue lists the calls; with an offer in it, take it.
      if (m.type === 'queue' && m.offer) ws.send(JSON.stringify({ type: 'respond', session: m.offer }));
      else if (m.type === 'queue') { ws.close(); resolve('listed ' + seen.join(' | ')); }
      if (m.type === 'joined') { ws.close(); resolve('joined ' + seen.join(' | ')); }
    };
    ws.onclose = () => resolve('closed ' + seen.join(' | '));
  };
  // The operator's login, asked from the site's origin.
  try { const r = await fetch('/__cobrowse/me', { credentials: 'include' }); out.me = r.status + ' ' + await r.text(); } catch (e) { out.me = 'error ' + e; }
  try { const r = await fetch(CONSOLE + '/__cobrowse/me', { credentials: 'include' }); out.consoleMe = r.status + ' ' + await r.text(); } catch (e) { out.consoleMe = 'blocked'; }
  // The hub as the operator: list the calls, take the offer.
  out.ws = await new Promise((resolve) => settle(new WebSocket(`ws://${location.host}/__cobrowse/ws?role=operator`), [], resolve));
  out.consoleWs = await new Promise((resolve) => settle(new WebSocket(CONSOLE.replace('http', 'ws') + '/__cobrowse/ws?role=operator'), [], resolve));
  // The console's page itself.
  for (const [name, w] of [['parent', window.parent], ['top', window.top]]) {
    try { out[name] = w.document.querySelector('[data-cobrowse="queue"]').textContent; } catch (e) { out[name] = 'blocked'; }
  }
  // The console opened in a window of the site's.
  const opened = window.open(CONSOLE + '/__cobrowse/console', 'console-copy');
  out.open = await new Promise((resolve) => {
    const look = () => {
      if (!opened || opened.closed) return resolve('no handle');
      try {
        const q = opened.document.querySelector('[data-cobrowse="queue"]');
        if (q) return resolve('read: ' + q.textContent);
      } catch (e) { return resolve('blocked'); }
      setTimeout(look, 50);
    };
    look();
  });
  try { if (opened) opened.close(); } catch (e) { /* gone */ }
  return out;
})()"#;

#[tokio::test]
async fn a_site_script_in_the_operators_browser_gets_no_operator_power() {
    let s = Shared::start("/form.html").await;
    let (c, o) = (&s.customer, &s.operator);
    // A second customer calls: with the operator busy, the call waits, and
    // any new operator link would be offered it.
    let waiting = s.browser.tab("waiting customer", 1000, 760).await;
    waiting.goto(&s.server.url("/")).await;
    customer_calls(&waiting, &s.server, &[c, o]).await;
    let all = [c, o, &waiting];
    until(
        o,
        "the console to list the waiting call",
        r#"document.querySelector('[data-cobrowse="status"]').textContent.startsWith('Connected')"#,
        &all,
        &s.server,
    )
    .await;

    let attack = ATTACK.replace("CONSOLE", &format!("'{}'", s.server.console_origin()));
    let out = o.eval_on(CONTENT, &in_frame(&attack)).await;
    let field = |k: &str| out[k].as_str().unwrap_or_default().to_string();
    let report = format!(
        "{out:#}\n{}",
        super::harness::context(&all, &s.server).await
    );
    assert!(
        !field("me").starts_with("200") && !field("me").contains("\"user\""),
        "the site's origin asked who is logged in: {report}"
    );
    assert!(
        !field("consoleMe").starts_with("200") && !field("consoleMe").contains("\"user\""),
        "the site's origin read the console's `me`: {report}"
    );
    for ws in ["ws", "consoleWs"] {
        let v = field(ws);
        assert!(
            v.starts_with("closed") && !v.contains("queue") && !v.contains("joined"),
            "{ws}: an operator hub link from the site's origin: {report}"
        );
    }
    for frame in ["parent", "top"] {
        assert_eq!(
            field(frame),
            "blocked",
            "{frame}: the console's page read from the content frame: {report}"
        );
    }
    assert!(
        !field("open").starts_with("read"),
        "the console opened by the site's page was read: {report}"
    );
    // The waiting customer is still waiting: nobody took the call.
    assert!(
        waiting
            .eval(WIDGET_STATUS)
            .await
            .as_str()
            .is_some_and(|t| t.starts_with("Waiting")),
        "the waiting call was taken: {report}"
    );
}

/// Messages posted to the console from anything but its content frame (a
/// frame inside it, a window of the site's) are ignored; the content frame's
/// own messages reach the session as difference commands, and nothing else.
#[tokio::test]
async fn the_console_listens_to_its_content_frame_only() {
    let s = Shared::start("/form.html").await;
    let (c, o) = (&s.customer, &s.operator);
    let all = [c, o];
    // From a frame inside the content frame (same origin as the site), then
    // from the content frame itself, in that order: by the time the second
    // arrives at the customer, the first would have.
    let spoof = r#"(() => {
      const command = (key) => ({ cobrowse: 'frame', type: 'command', command: { key, fn: 'pointer', args: [5, 5] } });
      const f = document.createElement('iframe');
      document.body.appendChild(f);
      f.contentWindow.eval(`top.postMessage(${JSON.stringify(command('top/@pointer/spoofed'))}, '*')`);
      window.parent.postMessage({ cobrowse: 'frame', type: 'respond', session: 'x' }, '*');
      window.parent.postMessage(command('top/@pointer/genuine'), '*');
      return true;
    })()"#;
    assert_eq!(
        o.eval_on(CONTENT, &in_frame(spoof)).await,
        serde_json::json!(true)
    );
    crate::support::wait_for(
        "the content frame's own command at the customer",
        std::time::Duration::from_secs(15),
        || async {
            c.websocket_frames()
                .iter()
                .any(|f| f.contains("top/@pointer/genuine"))
                .then_some(())
        },
        || format!("{:#?}\n{}", c.websocket_frames(), s.server.output()),
    )
    .await;
    let frames = c.websocket_frames();
    assert!(
        !frames.iter().any(|f| f.contains("spoofed")),
        "a message from another frame reached the session: {frames:#?}"
    );

    // The agent in the content frame listens to the console only: a frame
    // of the site posing as the console changes nothing.
    let pose = r#"(() => {
      const f = document.createElement('iframe');
      document.body.appendChild(f);
      f.contentWindow.eval(`parent.postMessage({ cobrowse: 'console', type: 'status', control: true, joined: true, participants: [] }, '*')`);
      return true;
    })()"#;
    o.eval_on(CONTENT, &in_frame(pose)).await;
    o.click(&content("#name")).await;
    o.type_text("x").await;
    until(o, "the console to explain view-only", r#"document.querySelector('[data-cobrowse="notice"]').textContent.includes('has not given you control')"#, &all, &s.server).await;
    until_on(
        o,
        "the content frame still view-only",
        CONTENT,
        &in_frame("window.__cobrowse.engine && document.querySelector('#name').value === ''"),
        &all,
        &s.server,
    )
    .await;
}
