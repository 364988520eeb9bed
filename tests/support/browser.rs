//! The Chromium harness for browser tests: Debian's Chromium, headless,
//! driven over CDP, with one isolated browser context per participant
//! (customer, operators), so cookies and storage are separate as in
//! different browsers.
//!
//! Elements are named by a *chain* of CSS selectors separated by ` | `: each
//! step after the first looks inside the previous element's frame document
//! (for an iframe) or its shadow root (for any other element). For example
//! `iframe[data-cobrowse="content"] | #name` or
//! `[data-cobrowse="widget"] | [data-cobrowse="call"]`.
//!
//! The operator console frames the site from another origin: a step into a
//! frame whose document the top page cannot read goes on in that frame's
//! own JavaScript context (found by the frame's name), as a user's eye
//! would; there `el` for the frame itself is `{ contentWindow: window,
//! contentDocument: document }`.
//!
//! Input is real: clicks are CDP mouse events at the element's place on the
//! screen and typing is CDP key events, so the page's listeners see what a
//! user's actions would make them see.
//!
//! What a person sees is read the same way: [`Tab::pixels_at`] takes the
//! screen's pixels in a rectangle (a screenshot, decoded), and
//! [`Tab::element_at`] asks hit testing what is on top at a point, through
//! frames and shadow roots. Marks that let the mouse through (the overlay's
//! pointer, strokes, carets) are invisible to hit testing: read their pixels.

#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chromiumoxide::browser::{Browser as Cdp, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::input::{
    DispatchKeyEventParams, DispatchKeyEventType, DispatchMouseEventParams, DispatchMouseEventType,
    MouseButton,
};
use chromiumoxide::cdp::browser_protocol::network::{
    EnableParams as NetworkEnable, EventWebSocketFrameReceived, EventWebSocketFrameSent,
};
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, CaptureScreenshotParams, Viewport,
};
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use chromiumoxide::cdp::js_protocol::runtime::{
    EvaluateParams, EventConsoleApiCalled, EventExceptionThrown,
};
use chromiumoxide::page::Page;
use futures_util::StreamExt;
use serde_json::Value;

use crate::support::{Front, TempDir};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Browser tests share two cores with everything else: one Chromium at a
/// time (a semaphore, not a mutex: each test has its own runtime, and the
/// turn is held across awaits for the whole test).
static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// A headless Chromium; killed on drop.
pub struct Browser {
    cdp: Cdp,
    handler: tokio::task::JoinHandle<()>,
    _turn: tokio::sync::SemaphorePermit<'static>,
    _dir: TempDir,
}

impl Browser {
    /// Launches Chromium. Fails (never skips) when it is not installed.
    pub async fn launch() -> Browser {
        let turn = ONE_AT_A_TIME
            .acquire()
            .await
            .expect("the semaphore is never closed");
        if !Path::new(CHROMIUM).exists() {
            panic!(
                "this test needs Chromium at {CHROMIUM}. Install it with `sudo apt-get install -y chromium` \
                 (Debian/Ubuntu), or run tests/run.sh, which installs it when run as root."
            );
        }
        let dir = TempDir::new();
        let config = BrowserConfig::builder()
            .chrome_executable(CHROMIUM)
            .no_sandbox()
            .user_data_dir(dir.path.join("profile"))
            .window_size(1400, 1000)
            .viewport(None)
            .launch_timeout(Duration::from_secs(30))
            .request_timeout(Duration::from_secs(20))
            .args([
                "disable-gpu",
                "disable-quic",
                "no-first-run",
                "disable-background-networking",
                "disable-component-update",
                "disable-sync",
                "disable-dev-shm-usage",
            ])
            .build()
            .expect("a valid browser config");
        let (cdp, mut handler) = Cdp::launch(config)
            .await
            .unwrap_or_else(|e| panic!("could not launch {CHROMIUM}: {e}. Is it installed (`sudo apt-get install -y chromium`)?"));
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        Browser {
            cdp,
            handler,
            _turn: turn,
            _dir: dir,
        }
    }

    /// A new page in a new isolated browser context (its own cookies and
    /// storage), with a viewport of `width` x `height`.
    pub async fn tab(&self, name: &str, width: i64, height: i64) -> Tab {
        let context = self
            .cdp
            .create_browser_context(CreateBrowserContextParams::default())
            .await
            .expect("create a browser context");
        let params = CreateTargetParams::builder()
            .url("about:blank")
            .browser_context_id(context)
            .build()
            .expect("target params");
        let page = self.cdp.new_page(params).await.expect("open a page");
        page.execute(SetDeviceMetricsOverrideParams::new(
            width, height, 1.0, false,
        ))
        .await
        .expect("set the viewport");
        page.execute(NetworkEnable::default())
            .await
            .expect("enable network events");
        let log = Arc::new(Mutex::new(Vec::new()));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let mut console = page
            .event_listener::<EventConsoleApiCalled>()
            .await
            .expect("console events");
        let mut errors = page
            .event_listener::<EventExceptionThrown>()
            .await
            .expect("exception events");
        let mut sent = page
            .event_listener::<EventWebSocketFrameSent>()
            .await
            .expect("websocket events");
        let mut received = page
            .event_listener::<EventWebSocketFrameReceived>()
            .await
            .expect("websocket events");
        {
            let log = log.clone();
            tokio::spawn(async move {
                while let Some(ev) = console.next().await {
                    let args: Vec<String> = ev
                        .args
                        .iter()
                        .map(|a| match (&a.value, &a.description) {
                            (Some(Value::String(s)), _) => s.clone(),
                            (Some(v), _) => v.to_string(),
                            (None, Some(d)) => d.clone(),
                            _ => String::new(),
                        })
                        .collect();
                    log.lock().unwrap().push(format!(
                        "console.{:?}: {}",
                        ev.r#type,
                        args.join(" ")
                    ));
                }
            });
        }
        {
            let log = log.clone();
            tokio::spawn(async move {
                while let Some(ev) = errors.next().await {
                    let d = &ev.exception_details;
                    let what = d
                        .exception
                        .as_ref()
                        .and_then(|e| e.description.clone())
                        .unwrap_or_else(|| d.text.clone());
                    log.lock().unwrap().push(format!(
                        "uncaught: {what} at {}:{}",
                        d.url.clone().unwrap_or_default(),
                        d.line_number
                    ));
                }
            });
        }
        {
            let frames = frames.clone();
            tokio::spawn(async move {
                while let Some(ev) = sent.next().await {
                    frames
                        .lock()
                        .unwrap()
                        .push(format!("sent {}", ev.response.payload_data));
                }
            });
        }
        {
            let frames = frames.clone();
            tokio::spawn(async move {
                while let Some(ev) = received.next().await {
                    frames
                        .lock()
                        .unwrap()
                        .push(format!("received {}", ev.response.payload_data));
                }
            });
        }
        Tab {
            name: name.to_string(),
            page,
            log,
            frames,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(child) = self.cdp.get_mut_child() {
            let _ = child.as_mut_inner().start_kill();
        }
        self.handler.abort();
    }
}

/// One participant's page.
pub struct Tab {
    pub name: String,
    pub page: Page,
    log: Arc<Mutex<Vec<String>>>,
    frames: Arc<Mutex<Vec<String>>>,
}

/// The JavaScript that finds an element by a selector chain (see the module
/// docs) and its centre in the top page's viewport, through frames (scaled
/// or not) and shadow roots.
const FIND: &str = r#"
const __find = (chain, x0 = 0, y0 = 0, s0 = 1, into = false) => {
  const steps = chain.split(' | ');
  let root = document, el = null;
  for (let i = 0; i < steps.length; i++) {
    el = root.querySelector(steps[i]);
    if (!el) return null;
    const framed = el.localName === 'iframe' || el.localName === 'frame';
    let inner = null;
    if (framed) { try { inner = el.contentDocument; } catch (e) { inner = null; } }
    if (i === steps.length - 1 && !(into && framed && !inner && el.contentWindow)) break;
    if (framed) {
      const r = el.getBoundingClientRect();
      const s = el.offsetWidth ? r.width / el.offsetWidth : 1;
      x0 += s0 * (r.left + s * el.clientLeft);
      y0 += s0 * (r.top + s * el.clientTop);
      s0 *= s;
      if (!inner) return el.contentWindow && el.name ? { cross: { name: el.name, rest: steps.slice(i + 1).join(' | '), x0, y0, s0 } } : null;
      root = inner;
    } else {
      root = el.shadowRoot;
      if (!root) return null;
    }
  }
  return { el, x0, y0, s0 };
};
"#;

impl Tab {
    /// Evaluates `js` (an expression; a promise is awaited) in the top
    /// document and returns its JSON value.
    pub async fn eval(&self, js: &str) -> Value {
        let params = EvaluateParams::builder()
            .expression(js)
            .await_promise(true)
            .return_by_value(true)
            .build()
            .expect("evaluate params");
        match self.page.evaluate_expression(params).await {
            Ok(r) => r.value().cloned().unwrap_or(Value::Null),
            Err(e) => Value::String(format!("evaluation failed: {e}")),
        }
    }

    /// Evaluates `body` with `el` bound to the element named by `chain` (or
    /// null) and returns its JSON value.
    pub async fn eval_on(&self, chain: &str, body: &str) -> Value {
        let chain = serde_json::to_string(chain).unwrap();
        // A chain that ends at a cross-origin frame names the frame itself,
        // unless the body asks for what is inside it.
        let into = body.contains("contentWindow") || body.contains("contentDocument");
        let first = self
            .eval(&format!("(() => {{ {FIND} const f = __find({chain}, 0, 0, 1, {into}); if (f && f.cross) return {{ __cross: f.cross }}; const el = f && f.el; return ({body}); }})()"))
            .await;
        let Some(cross) = first.get("__cross") else {
            return first;
        };
        // A frame of another origin: the rest of the chain in its context.
        let Some(context) = self
            .frame_context(cross["name"].as_str().unwrap_or_default())
            .await
        else {
            return Value::Null;
        };
        let rest = cross["rest"].as_str().unwrap_or_default();
        let (x0, y0, s0) = (&cross["x0"], &cross["y0"], &cross["s0"]);
        let js = if rest.is_empty() {
            format!(
                "(() => {{ const f = {{ x0: {x0}, y0: {y0}, s0: {s0} }}; const el = {{ contentWindow: window, contentDocument: document }}; return ({body}); }})()"
            )
        } else {
            let rest = serde_json::to_string(rest).unwrap();
            format!(
                "(() => {{ {FIND} const f = __find({rest}, {x0}, {y0}, {s0}); const el = f && f.el; return ({body}); }})()"
            )
        };
        self.eval_in(context, &js).await
    }

    /// The main-world JavaScript context of the frame named `name`.
    async fn frame_context(
        &self,
        name: &str,
    ) -> Option<chromiumoxide::cdp::js_protocol::runtime::ExecutionContextId> {
        for id in self.page.frames().await.ok()? {
            if self
                .page
                .frame_name(id.clone())
                .await
                .ok()
                .flatten()
                .as_deref()
                == Some(name)
            {
                return self.page.frame_execution_context(id).await.ok().flatten();
            }
        }
        None
    }

    /// Evaluates `js` in one JavaScript context (a frame's).
    async fn eval_in(
        &self,
        context: chromiumoxide::cdp::js_protocol::runtime::ExecutionContextId,
        js: &str,
    ) -> Value {
        let params = EvaluateParams::builder()
            .expression(js)
            .context_id(context)
            .await_promise(true)
            .return_by_value(true)
            .build()
            .expect("evaluate params");
        match self.page.evaluate_expression(params).await {
            Ok(r) => r.value().cloned().unwrap_or(Value::Null),
            Err(e) => Value::String(format!("evaluation failed: {e}")),
        }
    }

    /// The pixels the screen shows in the rectangle at (`x`, `y`) of the
    /// top page's viewport, `w` x `h` CSS pixels (one device pixel each: the
    /// tabs have a device scale factor of 1).
    pub async fn pixels_at(&self, x: f64, y: f64, w: f64, h: f64) -> Pixels {
        // The clip is in the document's coordinates: add the top page's
        // scroll (the visual viewport's place in the page).
        let at = self
            .eval("[visualViewport.pageLeft, visualViewport.pageTop]")
            .await;
        let (sx, sy) = (at[0].as_f64().unwrap_or(0.0), at[1].as_f64().unwrap_or(0.0));
        let (x, y) = (x.round(), y.round());
        let (w, h) = (w.round().max(1.0), h.round().max(1.0));
        let shot = self
            .page
            .execute(
                CaptureScreenshotParams::builder()
                    .format(CaptureScreenshotFormat::Png)
                    .clip(Viewport {
                        x: x + sx,
                        y: y + sy,
                        width: w,
                        height: h,
                        scale: 1.0,
                    })
                    .build(),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: a screenshot: {e}", self.name));
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(AsRef::<str>::as_ref(&shot.result.data))
            .expect("a base64 screenshot");
        Pixels::decode(&png, (x, y))
    }

    /// The screen rectangle (x, y, width, height in the top page's
    /// viewport) of the element named by `chain`, as it is now (not
    /// scrolled into view), through frames, scaled or not.
    pub async fn rect(&self, chain: &str) -> Option<(f64, f64, f64, f64)> {
        let v = self
            .eval_on(
                chain,
                "el && (() => { const r = el.getBoundingClientRect(); \
                 return [f.x0 + f.s0 * r.left, f.y0 + f.s0 * r.top, f.s0 * r.width, f.s0 * r.height]; })()",
            )
            .await;
        let a = v.as_array()?;
        Some((
            a[0].as_f64()?,
            a[1].as_f64()?,
            a[2].as_f64()?,
            a[3].as_f64()?,
        ))
    }

    /// What hit testing finds on top at the point (`x`, `y`) of the top
    /// page's viewport, as a person's click there would: the chain of
    /// elements from the top document down through frames and open shadow
    /// roots, each as `tag#id[data-cobrowse=hook]`, joined by ` | ` (as in
    /// selector chains). Empty when nothing is there.
    pub async fn element_at(&self, x: f64, y: f64) -> String {
        const HIT: &str = r#"
const __hit = (x, y) => {
  const name = (e) => e.localName + (e.id ? '#' + e.id : '') + (e.getAttribute('data-cobrowse') ? `[data-cobrowse=${e.getAttribute('data-cobrowse')}]` : '');
  const path = [];
  let doc = document;
  for (;;) {
    let el = doc.elementFromPoint(x, y);
    if (!el) return { path };
    path.push(name(el));
    for (let root = el.shadowRoot; root; root = el.shadowRoot) {
      const inner = root.elementFromPoint(x, y);
      if (!inner || inner === el) break;
      el = inner;
      path.push(name(el));
    }
    if (el.localName !== 'iframe' && el.localName !== 'frame') return { path };
    const r = el.getBoundingClientRect();
    const s = el.offsetWidth ? r.width / el.offsetWidth : 1;
    x = (x - r.left) / s - el.clientLeft;
    y = (y - r.top) / s - el.clientTop;
    let inner = null;
    try { inner = el.contentDocument; } catch (e) { inner = null; }
    if (!inner) return { path, cross: el.name, x, y };
    doc = inner;
  }
};
"#;
        let mut found = self
            .eval(&format!("(() => {{ {HIT} return __hit({x}, {y}); }})()"))
            .await;
        let mut path: Vec<String> = Vec::new();
        loop {
            path.extend(
                found["path"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string)),
            );
            let Some(frame) = found["cross"].as_str() else {
                break;
            };
            // A frame of another origin: hit testing goes on in its context.
            let Some(context) = self.frame_context(frame).await else {
                break;
            };
            let (fx, fy) = (&found["x"], &found["y"]);
            found = self
                .eval_in(
                    context,
                    &format!("(() => {{ {HIT} return __hit({fx}, {fy}); }})()"),
                )
                .await;
        }
        path.join(" | ")
    }

    pub async fn goto(&self, url: &str) {
        self.page
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("{}: navigate to {url}: {e}", self.name));
    }

    /// The screen point at the centre of the element, scrolled into view.
    async fn point(&self, chain: &str) -> Option<(f64, f64)> {
        let v = self
            .eval_on(
                chain,
                "el && (el.scrollIntoView({block: 'nearest', inline: 'nearest', behavior: 'instant'}), (() => { const r = el.getBoundingClientRect(); \
                 return [f.x0 + f.s0 * (r.left + r.width / 2), f.y0 + f.s0 * (r.top + r.height / 2)]; })())",
            )
            .await;
        let a = v.as_array()?;
        Some((a[0].as_f64()?, a[1].as_f64()?))
    }

    /// Waits for the element to exist (up to `timeout`) and clicks its
    /// centre with the mouse.
    pub async fn click(&self, chain: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let (x, y) = loop {
            // Aimed twice at the same place: a layout that is still moving
            // (a status line that just changed) is waited out.
            if let Some(p) = self.point(chain).await
                && self
                    .point(chain)
                    .await
                    .is_some_and(|q| (q.0 - p.0).abs() < 0.5 && (q.1 - p.1).abs() < 0.5)
            {
                break p;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{}: no element `{chain}` to click\n{}",
                    self.name,
                    self.dump().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.mouse_at(x, y).await;
    }

    /// Waits for the element to exist and double-clicks its centre: two
    /// presses, the second counted as the second click, as a mouse makes.
    pub async fn double_click(&self, chain: &str) {
        self.click(chain).await;
        let (x, y) = self.center(chain).await;
        self.mouse(DispatchMouseEventType::MousePressed, x, y, 2)
            .await;
        self.mouse(DispatchMouseEventType::MouseReleased, x, y, 2)
            .await;
    }

    pub async fn mouse_at(&self, x: f64, y: f64) {
        self.mouse(DispatchMouseEventType::MouseMoved, x, y, 0)
            .await;
        self.mouse(DispatchMouseEventType::MousePressed, x, y, 1)
            .await;
        self.mouse(DispatchMouseEventType::MouseReleased, x, y, 1)
            .await;
    }

    pub async fn mouse(&self, kind: DispatchMouseEventType, x: f64, y: f64, clicks: i64) {
        let mut p = DispatchMouseEventParams::builder()
            .r#type(kind.clone())
            .x(x)
            .y(y);
        if kind != DispatchMouseEventType::MouseMoved || clicks > 0 {
            p = p
                .button(MouseButton::Left)
                .click_count(clicks.max(1))
                .buttons(1);
        }
        self.page
            .execute(p.build().unwrap())
            .await
            .expect("mouse event");
    }

    /// A mouse drag along `points` (screen coordinates) with the button down.
    pub async fn drag(&self, points: &[(f64, f64)]) {
        let (x, y) = points[0];
        self.mouse(DispatchMouseEventType::MouseMoved, x, y, 0)
            .await;
        self.mouse(DispatchMouseEventType::MousePressed, x, y, 1)
            .await;
        for &(x, y) in &points[1..] {
            let p = DispatchMouseEventParams::builder()
                .r#type(DispatchMouseEventType::MouseMoved)
                .x(x)
                .y(y)
                .button(MouseButton::Left)
                .buttons(1)
                .build()
                .unwrap();
            self.page.execute(p).await.expect("mouse event");
        }
        let (x, y) = *points.last().unwrap();
        self.mouse(DispatchMouseEventType::MouseReleased, x, y, 1)
            .await;
    }

    /// The element's centre on screen (for drags and pointer moves).
    pub async fn center(&self, chain: &str) -> (f64, f64) {
        match self.point(chain).await {
            Some(p) => p,
            None => panic!("{}: no element `{chain}`\n{}", self.name, self.dump().await),
        }
    }

    /// Clicks into the field and types `text` with key events.
    pub async fn type_into(&self, chain: &str, text: &str) {
        self.click(chain).await;
        self.type_text(text).await;
    }

    /// Types `text` into whatever has focus, one key at a time.
    pub async fn type_text(&self, text: &str) {
        for ch in text.chars() {
            if ch == '\n' {
                // Enter: the key that makes a line break, with its text.
                let down = DispatchKeyEventParams::builder()
                    .r#type(DispatchKeyEventType::KeyDown)
                    .key("Enter")
                    .code("Enter")
                    .text("\r")
                    .windows_virtual_key_code(13)
                    .native_virtual_key_code(13)
                    .build()
                    .unwrap();
                self.page.execute(down).await.expect("key down");
                let up = DispatchKeyEventParams::builder()
                    .r#type(DispatchKeyEventType::KeyUp)
                    .key("Enter")
                    .code("Enter")
                    .build()
                    .unwrap();
                self.page.execute(up).await.expect("key up");
                continue;
            }
            let s = ch.to_string();
            let down = DispatchKeyEventParams::builder()
                .r#type(DispatchKeyEventType::KeyDown)
                .key(s.clone())
                .text(s.clone())
                .unmodified_text(s.clone())
                .build()
                .unwrap();
            self.page.execute(down).await.expect("key down");
            let up = DispatchKeyEventParams::builder()
                .r#type(DispatchKeyEventType::KeyUp)
                .key(s)
                .build()
                .unwrap();
            self.page.execute(up).await.expect("key up");
        }
    }

    /// Runs an editing command (`selectAll`, `copy`, `cut`, `paste`) on
    /// whatever has focus, as its keyboard shortcut would.
    pub async fn edit(&self, command: &str) {
        for kind in [
            DispatchKeyEventType::RawKeyDown,
            DispatchKeyEventType::KeyUp,
        ] {
            let mut event = DispatchKeyEventParams::builder()
                .r#type(kind.clone())
                .modifiers(2)
                .key("Control")
                .code("ControlLeft");
            if kind == DispatchKeyEventType::RawKeyDown {
                event = event.commands([command]);
            }
            self.page
                .execute(event.build().unwrap())
                .await
                .expect("key event");
        }
    }

    /// Presses a named key (`Backspace`, `Enter`, `Tab`, `ArrowLeft`...).
    pub async fn press(&self, key: &str, code: i64) {
        for kind in [
            DispatchKeyEventType::RawKeyDown,
            DispatchKeyEventType::KeyUp,
        ] {
            let event = DispatchKeyEventParams::builder()
                .r#type(kind)
                .key(key)
                .code(key)
                .windows_virtual_key_code(code)
                .native_virtual_key_code(code)
                .build()
                .unwrap();
            self.page.execute(event).await.expect("key event");
        }
    }

    /// What the page shows and logged, for failure messages: each frame's
    /// URL and text (through same-origin frames and open shadow roots), the
    /// console log and the WebSocket frames.
    pub async fn dump(&self) -> String {
        let pages = self
            .eval(
                r#"(() => {
  const out = [];
  const walk = (doc, depth) => {
    out.push(`${'  '.repeat(depth)}[${doc.location ? doc.location.href : '?'}] ${(doc.body ? doc.body.innerText : '').replace(/\s+/g, ' ').slice(0, 1500)}`);
    for (const host of doc.querySelectorAll('*')) if (host.shadowRoot) out.push(`${'  '.repeat(depth + 1)}<${host.localName} shadow> ${host.shadowRoot.textContent.replace(/\s+/g, ' ').slice(0, 400)}`);
    for (const f of doc.querySelectorAll('iframe, frame')) { try { if (f.contentDocument) walk(f.contentDocument, depth + 1); } catch (e) { out.push('  (cross-origin frame)'); } }
  };
  walk(document, 0);
  return out.join('\n');
})()"#,
            )
            .await;
        let content = self
            .eval_on(
                r#"iframe[data-cobrowse="content"]"#,
                "el && el.contentDocument && !el.contentDocument.defaultView.frameElement ? `  [content frame ${location.href}] ${(document.body ? document.body.innerText : '').replace(/\\s+/g, ' ').slice(0, 1500)}` : ''",
            )
            .await;
        let pages = match content.as_str() {
            Some(c) if !c.is_empty() => {
                Value::String(format!("{}\n{c}", pages.as_str().unwrap_or_default()))
            }
            _ => pages,
        };
        let log = self.log.lock().unwrap().join("\n");
        let frames = self.frames.lock().unwrap();
        let tail: Vec<&String> = frames
            .iter()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!(
            "==== {} ====\n{}\n-- console --\n{}\n-- last websocket frames ({} in all) --\n{}\n",
            self.name,
            pages.as_str().unwrap_or(&pages.to_string()),
            log,
            frames.len(),
            tail.iter()
                .map(|s| s.chars().take(300).collect::<String>())
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// Every WebSocket frame this page sent or received so far.
    pub fn websocket_frames(&self) -> Vec<String> {
        self.frames.lock().unwrap().clone()
    }

    pub fn console_log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// Dumps every tab and the server's output, for failure messages.
pub async fn context(tabs: &[&Tab], server: &dyn Front) -> String {
    let mut out = String::new();
    for t in tabs {
        out.push_str(&t.dump().await);
    }
    out.push_str("==== server ====\n");
    let log = server.output();
    let lines: Vec<&str> = log.lines().collect();
    let start = lines.len().saturating_sub(80);
    out.push_str(&lines[start..].join("\n"));
    out
}

/// Waits until `js` (evaluated in `tab`'s top document) returns something
/// truthy, and returns it; fails with what every tab and the server saw.
pub async fn until(tab: &Tab, what: &str, js: &str, all: &[&Tab], server: &dyn Front) -> Value {
    until_for(tab, what, js, Duration::from_secs(15), all, server).await
}

pub async fn until_for(
    tab: &Tab,
    what: &str,
    js: &str,
    timeout: Duration,
    all: &[&Tab],
    server: &dyn Front,
) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = tab.eval(js).await;
        if truthy(&last) {
            return last;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "{}: timed out after {timeout:?} waiting for {what}\n(last value: {last})\n{}",
                tab.name,
                context(all, server).await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Like [`until`], with `el` bound to the element named by `chain`.
pub async fn until_on(
    tab: &Tab,
    what: &str,
    chain: &str,
    body: &str,
    all: &[&Tab],
    server: &dyn Front,
) -> Value {
    until_on_for(tab, what, chain, body, Duration::from_secs(15), all, server).await
}

/// Like [`until_on`], waiting up to `timeout`.
pub async fn until_on_for(
    tab: &Tab,
    what: &str,
    chain: &str,
    body: &str,
    timeout: Duration,
    all: &[&Tab],
    server: &dyn Front,
) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = tab.eval_on(chain, body).await;
        if truthy(&last) {
            return last;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "{}: timed out after {timeout:?} waiting for {what}\n(last value: {last})\n{}",
                tab.name,
                context(all, server).await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A colour as CSS writes it: `#rrggbb` or `rgb(r, g, b)`.
pub fn rgb(css: &str) -> [u8; 3] {
    let css = css.trim();
    if let Some(hex) = css.strip_prefix('#').filter(|h| h.len() == 6) {
        let c = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).expect("a hex colour");
        return [c(0), c(2), c(4)];
    }
    let parts: Vec<u8> = css
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .take(3)
        .map(|p| p.trim().parse().expect("an rgb() colour"))
        .collect();
    assert_eq!(parts.len(), 3, "not a colour: {css}");
    [parts[0], parts[1], parts[2]]
}

/// Pixels of a part of the screen, decoded from a PNG screenshot.
pub struct Pixels {
    /// Where the rectangle is in the top page's viewport.
    pub at: (f64, f64),
    pub width: u32,
    pub height: u32,
    rgb: Vec<[u8; 3]>,
}

impl Pixels {
    fn decode(png_bytes: &[u8], at: (f64, f64)) -> Pixels {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size().expect("a bounded PNG")];
        let info = reader.next_frame(&mut buf).expect("PNG pixels");
        buf.truncate(info.buffer_size());
        let channels = buf.len() / (info.width * info.height) as usize;
        assert!(
            channels >= 3,
            "an 8-bit colour PNG, not {:?}",
            info.color_type
        );
        Pixels {
            at,
            width: info.width,
            height: info.height,
            rgb: buf.chunks(channels).map(|p| [p[0], p[1], p[2]]).collect(),
        }
    }

    /// How many pixels are within `tolerance` (on each channel) of `colour`.
    pub fn count_near(&self, colour: [u8; 3], tolerance: u8) -> usize {
        self.rgb
            .iter()
            .filter(|p| {
                p.iter()
                    .zip(colour)
                    .all(|(a, b)| a.abs_diff(b) <= tolerance)
            })
            .count()
    }

    /// The most frequent colours, for failure messages.
    pub fn summary(&self) -> String {
        let mut counts: std::collections::HashMap<[u8; 3], usize> = Default::default();
        for p in &self.rgb {
            *counts.entry(*p).or_default() += 1;
        }
        let mut top: Vec<_> = counts.into_iter().collect();
        top.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let colours: Vec<String> = top
            .iter()
            .take(6)
            .map(|([r, g, b], n)| format!("#{r:02x}{g:02x}{b:02x} x{n}"))
            .collect();
        format!(
            "{}x{} at ({}, {}): {}",
            self.width,
            self.height,
            self.at.0,
            self.at.1,
            colours.join(", ")
        )
    }
}

/// How close a screenshot's pixel must be to a mark's colour: marks are
/// drawn antialiased, and a scaled content frame blends their edges.
pub const COLOUR_TOLERANCE: u8 = 40;

/// Waits until at least `least` pixels of `colour` (a CSS colour) show in
/// the rectangle (`x`, `y`, `w`, `h`) of `tab`'s screen, as a person would
/// see the mark there; fails with the colours found and what every tab and
/// the server saw.
#[allow(clippy::too_many_arguments)]
pub async fn until_seen(
    tab: &Tab,
    what: &str,
    (x, y, w, h): (f64, f64, f64, f64),
    colour: &str,
    least: usize,
    all: &[&Tab],
    server: &dyn Front,
) {
    let want = rgb(colour);
    let timeout = Duration::from_secs(10);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let px = tab.pixels_at(x, y, w, h).await;
        if px.count_near(want, COLOUR_TOLERANCE) >= least {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "{}: timed out after {timeout:?} waiting to see {what}: {least} pixels of {colour} in the screen's {}\n{}",
                tab.name,
                px.summary(),
                context(all, server).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until no pixel of `colour` shows in the rectangle any more (a
/// mark that faded or was cleared).
#[allow(clippy::too_many_arguments)]
pub async fn until_unseen(
    tab: &Tab,
    what: &str,
    (x, y, w, h): (f64, f64, f64, f64),
    colour: &str,
    timeout: Duration,
    all: &[&Tab],
    server: &dyn Front,
) {
    let want = rgb(colour);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let px = tab.pixels_at(x, y, w, h).await;
        if px.count_near(want, COLOUR_TOLERANCE) == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "{}: timed out after {timeout:?} waiting for {what} to go: {colour} still in the screen's {}\n{}",
                tab.name,
                px.summary(),
                context(all, server).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A rectangle of `size` CSS pixels centred on (`x`, `y`).
pub fn around((x, y): (f64, f64), size: f64) -> (f64, f64, f64, f64) {
    (x - size / 2.0, y - size / 2.0, size, size)
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty() && !s.starts_with("evaluation failed"),
        _ => true,
    }
}
