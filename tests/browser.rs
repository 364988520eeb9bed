//! Browser tests: the real binary, the bundled demo site, and Debian's
//! Chromium with one isolated context per participant. Each test asserts what
//! a customer or an operator would notice on their screen.

#[path = "support/browser.rs"]
pub mod harness;

mod audit;
mod binding;
mod call;
mod cluster;
mod commits;
mod console_a11y;
mod console_origin;
mod conversation;
mod driver;
mod failover;
mod fidelity;
mod forms;
mod frames;
mod handover;
mod large_page;
mod navigation;
mod outage;
mod pointer;
mod privacy;
mod scroll;
mod session;
mod third_party;
mod widget;

use std::path::PathBuf;

use crate::support::origin::{Origin, full};
use crate::support::{Cobrowse, Front, OPERATOR_HASH, OPERATOR_PASSWORD, OPERATOR_USER};
use harness::{Browser, Tab, around, until, until_on, until_seen, until_unseen};

pub const CALL: &str = r#"[data-cobrowse="widget"] | [data-cobrowse="call"]"#;
pub const CONTROL: &str = r#"[data-cobrowse="widget"] | [data-cobrowse="control"]"#;
pub const CONTENT: &str = r#"iframe[data-cobrowse="content"]"#;

/// The widget's status line, as the customer reads it.
pub const WIDGET_STATUS: &str = r#"(document.querySelector('[data-cobrowse="widget"]')?.shadowRoot?.querySelector('[data-cobrowse="status"]')?.textContent || '')"#;
/// The console's status line.
pub const CONSOLE_STATUS: &str =
    r#"(document.querySelector('[data-cobrowse="status"]')?.textContent || '')"#;

/// Selector chain for an element of the page shown in the console's content
/// frame.
pub fn content(selector: &str) -> String {
    format!("{CONTENT} | {selector}")
}

/// The binary fronting the bundled demo site, with two operator accounts
/// (`op` and `op2`, both with the test password) and mask selectors.
pub async fn demo_server() -> Cobrowse {
    Cobrowse::with_config(&demo_config()).await
}

/// The configuration of [`demo_server`], to add sections to.
pub fn demo_config() -> String {
    format!(
        "[demo]\nenabled = true\n\n[privacy]\nmask = [\"#ssn\", \".private\"]\n\n\
         [[operators]]\nuser = \"{OPERATOR_USER}\"\nname = \"Olivia Operator\"\npassword_hash = \"{OPERATOR_HASH}\"\n\n\
         [[operators]]\nuser = \"op2\"\nname = \"Oscar Second\"\npassword_hash = \"{OPERATOR_HASH}\"\n"
    )
}

/// An upstream site serving the files of `tests/fixtures/{dir}`.
pub async fn fixture_site(dir: &str) -> Origin {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    Origin::start(move |req| {
        let dir = dir.clone();
        async move {
            let path = req.uri().path().trim_start_matches('/').to_string();
            let content_type = match path.rsplit('.').next() {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript",
                Some("css") => "text/css",
                Some("png") => "image/png",
                _ => "application/octet-stream",
            };
            match (path.contains(".."), std::fs::read(dir.join(&path))) {
                (false, Ok(bytes)) => http::Response::builder()
                    .header("content-type", content_type)
                    .body(full(bytes))
                    .unwrap(),
                _ => http::Response::builder()
                    .status(404)
                    .body(full("not found"))
                    .unwrap(),
            }
        }
    })
    .await
}

/// A customer and an operator in one session, on `path` of the demo site.
pub struct Shared {
    /// The node the customer's pages come through.
    pub server: Cobrowse,
    /// The node the operator's console comes through, when it is another
    /// node of a cluster than `server`.
    pub operator_server: Option<Cobrowse>,
    pub browser: Browser,
    pub customer: Tab,
    pub operator: Tab,
}

impl Shared {
    pub async fn start(path: &str) -> Shared {
        Shared::on(demo_server().await, path).await
    }

    /// As [`Shared::start`], on `server` (which has the test operator).
    pub async fn on(server: Cobrowse, path: &str) -> Shared {
        Shared::across(server, None, path).await
    }

    /// As [`Shared::on`], the customer's pages through `server` and the
    /// operator's console through `operator_server` (another node of the
    /// same cluster) when given.
    pub async fn across(server: Cobrowse, operator_server: Option<Cobrowse>, path: &str) -> Shared {
        let browser = Browser::launch().await;
        let operator = browser.tab("operator", 1400, 1000).await;
        let customer = browser.tab("customer", 1000, 760).await;
        let console = operator_server.as_ref().unwrap_or(&server);
        operator_waits(&operator, console, OPERATOR_USER, &[&customer]).await;
        customer.goto(&server.url(path)).await;
        customer_calls(&customer, &server, &[&operator]).await;
        operator_responds(&operator, console, &[&customer]).await;
        Shared {
            server,
            operator_server,
            browser,
            customer,
            operator,
        }
    }

    pub fn tabs(&self) -> [&Tab; 2] {
        [&self.customer, &self.operator]
    }

    /// Waits until `js` is truthy in the customer's top document.
    pub async fn on_customer(&self, what: &str, js: &str) -> serde_json::Value {
        until(&self.customer, what, js, &self.tabs(), &self.server).await
    }

    /// Waits until `js` is truthy in the operator's content frame (the
    /// shared page as the operator sees it).
    pub async fn on_operator(&self, what: &str, js: &str) -> serde_json::Value {
        until_on(
            &self.operator,
            what,
            CONTENT,
            &in_frame(js),
            &self.tabs(),
            &self.server,
        )
        .await
    }

    /// Neither page threw, logged an error, or failed to apply a command.
    pub fn assert_no_errors(&self) {
        for tab in self.tabs() {
            let bad: Vec<String> = tab
                .console_log()
                .into_iter()
                .filter(|l| {
                    l.starts_with("uncaught")
                        || l.starts_with("console.Error")
                        || l.contains("cobrowse:")
                })
                .collect();
            assert!(
                bad.is_empty(),
                "{}: errors in the console: {bad:#?}",
                tab.name
            );
        }
    }

    /// The customer grants remote control; waits until the console says so.
    /// The customer takes control back, and both sides show it: the console
    /// says view only, and the widget no longer says the operator can act
    /// (its layout settles before anything else on it is clicked).
    pub async fn take_control_back(&self) {
        self.customer.click(CONTROL).await;
        until(
            &self.operator,
            "view only again",
            &format!("{CONSOLE_STATUS}.includes('View only')"),
            &self.tabs(),
            &self.server,
        )
        .await;
        until(
            &self.customer,
            "the widget to offer control again",
            &format!("{WIDGET_STATUS}.startsWith('Connected') && !{WIDGET_STATUS}.includes('They can act on this page')"),
            &self.tabs(),
            &self.server,
        )
        .await;
    }

    /// The customer's widget says it is connected with an operator: after a
    /// navigation, once the new page's agent has resumed the session.
    pub async fn customer_connected(&self, what: &str) {
        until(
            &self.customer,
            what,
            &format!("{WIDGET_STATUS}.includes('Connected with')"),
            &self.tabs(),
            &self.server,
        )
        .await;
    }

    pub async fn grant_control(&self) {
        self.customer.click(CONTROL).await;
        until(
            &self.operator,
            "the console to say the operator has control",
            &format!("{CONSOLE_STATUS}.includes('You have control')"),
            &self.tabs(),
            &self.server,
        )
        .await;
        // The customer's widget learns of the grant by its own status message,
        // which may arrive after the operator's: until its button offers to
        // take control back, a click on it would grant again.
        until(
            &self.customer,
            "the widget to offer taking control back",
            &format!("{WIDGET_STATUS}.includes('They can act on this page')"),
            &self.tabs(),
            &self.server,
        )
        .await;
    }
}

/// The centre of the element named by `chain` on `tab`'s screen, where it
/// is now (unlike [`Tab::center`], nothing is scrolled to show it: a
/// scroll would be shared).
pub async fn centre(tab: &Tab, chain: &str) -> (f64, f64) {
    match tab.rect(chain).await {
        Some((x, y, w, h)) => (x + w / 2.0, y + h / 2.0),
        None => panic!("{}: no element `{chain}`\n{}", tab.name, tab.dump().await),
    }
}

/// JS for a shared page's root document: the colour of the remote pointer
/// labelled `name` (its dot), or null.
pub fn pointer_colour(name: &str) -> String {
    format!(
        "[...(document.querySelector('cobrowse-overlay')?.shadowRoot?.querySelectorAll('[data-cobrowse=remote-pointer]') || [])].find((p) => p.textContent === '{name}')?.querySelector('i').style.backgroundColor || null"
    )
}

/// JS for a shared page's root document: the colour of the latest stroke.
pub const STROKE_COLOUR: &str = "[...(document.querySelector('cobrowse-overlay')?.shadowRoot?.querySelectorAll('[data-cobrowse=ink] polyline') || [])].pop()?.getAttribute('stroke') || null";

/// JS for the content frame: the console's drawing tool has reached its
/// agent (the console tells it by postMessage, which the mouse may overtake).
pub const DRAWING_ON: &str = "document.querySelector('cobrowse-overlay')?.shadowRoot?.querySelector('.capture')?.hidden === false";

/// JS for the content frame: the console's pointer tool has reached its agent.
pub const POINTER_ON: &str = "window.__cobrowse.link?.tools.pointer === true";

/// `js` evaluated with the content frame's `window`, `document`, `location`,
/// `history`, `scrollY` (and the component page's `houseRoot`) in scope;
/// `el` is the iframe element.
pub fn in_frame(js: &str) -> String {
    format!(
        "el && el.contentWindow && (function (window, document, location, history, scrollY, houseRoot) {{ try {{ return ({js}); }} catch (e) {{ return null; }} }})\
         .call(el.contentWindow, el.contentWindow, el.contentDocument, el.contentWindow.location, el.contentWindow.history, el.contentWindow.scrollY, el.contentWindow.houseRoot)"
    )
}

/// A widget element, by its `data-cobrowse` hook.
pub fn widget(hook: &str) -> String {
    format!(r#"[data-cobrowse="widget"] | [data-cobrowse="{hook}"]"#)
}

/// JS: the widget element's text (empty when hidden or absent).
pub fn widget_text(hook: &str) -> String {
    format!(
        r#"(() => {{ const el = document.querySelector('[data-cobrowse="widget"]')?.shadowRoot?.querySelector('[data-cobrowse="{hook}"]'); return el && el.getClientRects().length ? el.textContent : ''; }})()"#
    )
}

/// The customer asks for a code in the widget; returns it as shown.
pub async fn customer_shares_a_code(customer: &Tab, server: &dyn Front, all: &[&Tab]) -> String {
    until_on(
        customer,
        "the share button",
        &widget("share-code"),
        "el && el.getClientRects().length > 0",
        all,
        server,
    )
    .await;
    customer.click(&widget("share-code")).await;
    let code = until(
        customer,
        "the code on show",
        &format!("/^[0-9]{{6}}$/.test({0}) && {0}", widget_text("code")),
        all,
        server,
    )
    .await;
    code.as_str().unwrap().to_string()
}

/// The operator types a code into the console's join form and submits it
/// with Enter.
pub async fn operator_joins_by_code(operator: &Tab, code: &str, server: &dyn Front, all: &[&Tab]) {
    let field = r#"form[data-cobrowse="join-code"] input"#;
    until_on(
        operator,
        "the join-code field enabled",
        field,
        "el && !el.disabled",
        all,
        server,
    )
    .await;
    operator.type_into(field, code).await;
    until_on(
        operator,
        "the code in the field",
        field,
        &format!("el.value === {code:?}"),
        all,
        server,
    )
    .await;
    operator.type_text("\n").await;
}

/// The operator opens the console, signs in and waits for calls.
pub async fn operator_waits(operator: &Tab, server: &dyn Front, user: &str, others: &[&Tab]) {
    let mut all = vec![operator];
    all.extend_from_slice(others);
    // The address people know, on the site's origin: it leads to the
    // console's own origin.
    operator.goto(&server.url("/__cobrowse/console")).await;
    operator
        .type_into(r#"form[data-cobrowse="login"] input[name="user"]"#, user)
        .await;
    operator
        .type_into(
            r#"form[data-cobrowse="login"] input[name="password"]"#,
            OPERATOR_PASSWORD,
        )
        .await;
    operator
        .click(r#"form[data-cobrowse="login"] button[type="submit"]"#)
        .await;
    // Signed in (the desk shows) and linked to the hub: waiting, or already
    // offered a call that was waiting. The status line reads "Waiting for
    // calls" before sign-in too, hidden with the desk.
    until(
        operator,
        "the console to wait for calls",
        &format!(
            "!document.querySelector('[data-cobrowse=\"desk\"]').hidden && /^(Waiting for calls|A customer is calling|\\d+ call\\(s\\) waiting)/.test({CONSOLE_STATUS})"
        ),
        &all,
        server,
    )
    .await;
}

/// The customer presses the call button and waits to be queued or offered.
pub async fn customer_calls(customer: &Tab, server: &dyn Front, others: &[&Tab]) {
    let mut all = vec![customer];
    all.extend_from_slice(others);
    until_on(
        customer,
        "the widget's call button",
        CALL,
        "el && el.textContent === 'Call operator'",
        &all,
        server,
    )
    .await;
    customer.click(CALL).await;
    until(
        customer,
        "the widget to show the call waiting",
        &format!("/Waiting|being connected|Connected/.test({WIDGET_STATUS})"),
        &all,
        server,
    )
    .await;
}

/// The operator presses Respond once it is enabled and waits for the
/// customer's page in the content frame, with its agent sharing it.
pub async fn operator_responds(operator: &Tab, server: &dyn Front, others: &[&Tab]) {
    let mut all = vec![operator];
    all.extend_from_slice(others);
    until_on(
        operator,
        "Respond to be enabled",
        r#"[data-cobrowse="respond"]"#,
        "el && !el.disabled",
        &all,
        server,
    )
    .await;
    operator.click(r#"[data-cobrowse="respond"]"#).await;
    until(
        operator,
        "the console to be connected",
        &format!("{CONSOLE_STATUS}.startsWith('Connected')"),
        &all,
        server,
    )
    .await;
    until_on(
        operator,
        "the customer's page with its agent in the content frame",
        CONTENT,
        &in_frame("!!(window.__cobrowse && window.__cobrowse.engine)"),
        &all,
        server,
    )
    .await;
}
