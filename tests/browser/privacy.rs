//! Masked fields: their values never leave the customer's browser, the
//! operator sees only that they are filled and cannot type into them; and
//! remote control is the customer's to grant and take back.

use super::*;

const SECRETS: [(&str, &str); 4] = [
    ("#ssn", "QQ123456C"),
    ("#card", "4111111111111111"),
    ("#pw", "hunter2hunter2"),
    ("#memo", "my-private-memo"),
];

#[tokio::test]
async fn masked_values_never_leave_the_customers_browser() {
    let s = Shared::start("/controls.html").await;
    let (c, o) = (&s.customer, &s.operator);
    for (id, secret) in SECRETS {
        c.type_into(id, secret).await;
    }
    c.type_into("#full", "visible").await;
    s.on_operator(
        "an unmasked field arriving after the masked ones",
        "document.querySelector('#full').value === 'visible'",
    )
    .await;
    s.on_operator(
        "four 'filled' badges",
        "[...document.querySelector('cobrowse-overlay').shadowRoot.querySelectorAll('[data-cobrowse=badge]')].filter(b => b.textContent === 'Private field: filled').length === 4",
    )
    .await;
    for (id, _) in SECRETS {
        s.on_operator(&format!("{id} empty and read-only for the operator"), &format!("document.querySelector('{id}').value === '' && document.querySelector('{id}').readOnly")).await;
    }
    // Seen: the badge's dark ground beside a masked field, once the
    // customer's window (and so the operator's) shows it.
    c.eval("document.querySelector('#ssn').scrollIntoView({block: 'center', behavior: 'instant'})")
        .await;
    let y = c.eval("Math.round(scrollY)").await;
    s.on_operator(
        "the operator's window at the customer's position",
        &format!("Math.round(scrollY) === {y}"),
    )
    .await;
    let (x, y, w, _) = o.rect(&content("#ssn")).await.expect("the masked field");
    super::harness::until_seen(
        o,
        "the badge beside the masked field",
        (x + w + 8.0, y + 2.0, 40.0, 10.0),
        "#444c5c",
        40,
        &s.tabs(),
        &s.server,
    )
    .await;

    // With control, the operator still cannot type into a masked field.
    s.grant_control().await;
    o.type_into(&content("#ssn"), "XX").await;
    o.type_into(&content("#full"), "!").await;
    s.on_customer(
        "the operator's typing in an unmasked field",
        "document.querySelector('#full').value === 'visible!'",
    )
    .await;
    assert_eq!(
        c.eval("document.querySelector('#ssn').value").await,
        serde_json::json!("QQ123456C")
    );

    // Revoke: the operator's typing is no longer applied.
    s.take_control_back().await;
    o.type_into(&content("#full"), "?").await;
    s.on_operator(
        "the operator's keystroke reverted",
        "document.querySelector('#full').value === 'visible!'",
    )
    .await;
    c.type_into("#search", "done").await;
    s.on_operator(
        "a later customer change",
        "document.querySelector('#search').value === 'done'",
    )
    .await;
    assert_eq!(
        c.eval("document.querySelector('#full').value").await,
        serde_json::json!("visible!")
    );

    // Not one WebSocket frame, either way, on either side, carried a secret.
    for tab in [c, o] {
        for frame in tab.websocket_frames() {
            for (_, secret) in SECRETS {
                assert!(
                    !frame.contains(secret),
                    "{}: a masked value in a WebSocket frame: {frame}",
                    tab.name
                );
            }
        }
    }
    assert!(
        c.websocket_frames().iter().any(|f| f.contains("visible")),
        "the frames were observed"
    );
    s.assert_no_errors();
}

/// `secrets` appear in no WebSocket frame the customer's browser sent or
/// received, nor in any the operator's received: what the hub stores and
/// replays to late joiners is what the customer sent.
fn assert_never_sent(s: &Shared, secrets: &[&str]) {
    for tab in s.tabs() {
        for frame in tab.websocket_frames() {
            for secret in secrets {
                assert!(
                    !frame.contains(secret),
                    "{}: a masked value in a WebSocket frame: {frame}",
                    tab.name
                );
            }
        }
    }
}

/// The fixture pages of `tests/fixtures/privacy`, behind the binary with the
/// `.private` mask selector and a second operator (`op2`), shared from
/// `path`.
async fn privacy_site(path: &str) -> (crate::support::origin::Origin, Shared) {
    let site = fixture_site("privacy").await;
    let server = Cobrowse::with_config(&Cobrowse::config_for(
        &site.url(),
        &format!("[privacy]\nmask = [\".private\"]\n\n[[operators]]\nuser = \"op2\"\nname = \"Oscar Second\"\npassword_hash = \"{OPERATOR_HASH}\"\n"),
    ))
    .await;
    let s = Shared::on(server, path).await;
    (site, s)
}

const BADGE_FILLED: &str = "[...document.querySelector('cobrowse-overlay').shadowRoot.querySelectorAll('[data-cobrowse=badge]')].some(b => b.textContent === 'Private field: filled')";

#[tokio::test]
async fn a_password_shown_by_its_toggle_stays_masked() {
    let (_site, s) = privacy_site("/login.html").await;
    let c = &s.customer;
    c.type_into("#pw", "hunter2-secret").await;
    // "Show password": the same field, now type=text. Typing on, and the
    // sweep after the click, would send its value.
    c.click("#show").await;
    s.on_customer(
        "the password shown",
        "document.querySelector('#pw').type === 'text'",
    )
    .await;
    c.type_into("#pw", "-more").await;
    c.click("#show").await;
    c.click("#show").await;
    c.type_into("#remarks", "visible-after").await;
    s.on_operator(
        "the remark typed after the password",
        "document.querySelector('#remarks').value === 'visible-after'",
    )
    .await;
    assert_never_sent(&s, &["hunter2", "-more"]);
    s.on_operator("the password empty, read-only and filled", &format!("document.querySelector('#pw').value === '' && document.querySelector('#pw').readOnly && {BADGE_FILLED}")).await;
    assert_eq!(
        c.eval("document.querySelector('#pw').value").await,
        serde_json::json!("hunter2-secret-more")
    );
    s.assert_no_errors();
}

#[tokio::test]
async fn text_copied_out_of_a_masked_field_stays_masked_where_it_is_pasted() {
    let (_site, s) = privacy_site("/login.html").await;
    let c = &s.customer;
    c.type_into("#pw", "hunter2-secret").await;
    // Shown, the password can be copied (a password field refuses it).
    c.click("#show").await;
    c.click("#pw").await;
    c.edit("selectAll").await;
    c.edit("copy").await;
    c.click("#remarks").await;
    c.edit("paste").await;
    s.on_customer(
        "the password pasted into the remarks",
        "document.querySelector('#remarks').value === 'hunter2-secret'",
    )
    .await;
    c.type_into("#user", "visible-after").await;
    s.on_operator(
        "the user name typed after the paste",
        "document.querySelector('#user').value === 'visible-after'",
    )
    .await;
    assert_never_sent(&s, &["hunter2"]);
    s.on_operator("the remarks empty and read-only", "document.querySelector('#remarks').value === '' && document.querySelector('#remarks').readOnly").await;
    s.assert_no_errors();
}

#[tokio::test]
async fn a_card_field_stays_masked_when_a_script_drops_its_autocomplete() {
    let (_site, s) = privacy_site("/card.html").await;
    let c = &s.customer;
    assert_eq!(
        c.eval("document.querySelector('#cardno').hasAttribute('autocomplete')")
            .await,
        serde_json::json!(false),
        "the site's script ran"
    );
    c.type_into("#cardno", "4111111111111111").await;
    c.type_into("#holder", "Jane Cardholder").await;
    c.type_into("#note", "visible-after").await;
    s.on_operator(
        "the note typed after the card",
        "document.querySelector('#note').value === 'visible-after'",
    )
    .await;
    assert_never_sent(&s, &["4111", "Cardholder"]);
    s.on_operator("the card number empty and read-only", "document.querySelector('#cardno').value === '' && document.querySelector('#cardno').readOnly").await;
    s.assert_no_errors();
}

#[tokio::test]
async fn a_get_form_never_shares_masked_values_in_the_next_url() {
    let (_site, s) = privacy_site("/pay.html").await;
    let c = &s.customer;
    c.type_into("#q", "shoes").await;
    c.type_into("#pw", "hunter2-secret").await;
    c.type_into("#cardno", "4111111111111111").await;
    c.click("#go").await;
    // The site put the values in the URL; the shared URL keeps each
    // parameter's name and place with an empty value.
    s.on_customer(
        "the customer on the page the form led to",
        "location.pathname === '/done.html' && location.search.includes('hunter2-secret')",
    )
    .await;
    s.on_operator("the operator on the same page, without the values", "location.pathname === '/done.html' && location.search === '?q=shoes&pw=&cardno=' && !!window.__cobrowse.engine").await;

    // Back on the form page: URLs a script pushes carry a masked field's
    // value under its name in a fragment, and as a path segment.
    c.click("#again").await;
    s.on_operator(
        "the pay page again",
        "location.pathname === '/pay.html' && !!window.__cobrowse.engine",
    )
    .await;
    s.customer_connected("the customer reconnected").await;
    c.type_into("#pin", "9931-pin").await;
    c.eval("history.pushState(null, '', '/pay.html?step=2#/confirm?pin=9931-pin&n=1')")
        .await;
    s.on_operator(
        "the pushed fragment without the PIN",
        "location.search === '?step=2' && location.hash === '#/confirm?pin=&n=1'",
    )
    .await;
    c.eval("history.pushState(null, '', '/pay.html/9931-pin/receipt')")
        .await;
    s.on_operator(
        "the pushed path without the PIN",
        "location.pathname === '/pay.html//receipt'",
    )
    .await;
    c.eval("history.replaceState(null, '', '/pay.html')").await;
    s.on_operator(
        "the pay page's URL again",
        "location.pathname === '/pay.html' && location.search === ''",
    )
    .await;

    // A script's form.submit() (no submit event), with a formdata listener
    // that copies the PIN under another name.
    c.click("#pay").await;
    s.on_customer(
        "the scripted submission",
        "location.search.includes('9931-pin')",
    )
    .await;
    s.on_operator("the operator after the scripted submission", "location.pathname === '/done.html' && location.search === '?pin=&ref=r1&check=' && !!window.__cobrowse.engine").await;
    s.customer_connected("the customer reconnected").await;

    // A later URL of the tab with the same parameter names: the names are
    // kept for the tab.
    c.eval("history.pushState(null, '', '/done.html?cardno=5500000000000004&feedback=ok')")
        .await;
    s.on_operator(
        "the pushed URL",
        "location.search === '?cardno=&feedback=ok'",
    )
    .await;

    // A navigation a script builds from a masked field (a one-time code),
    // with no form.
    c.type_into("#otp", "771234").await;
    c.click("#verify").await;
    s.on_customer(
        "the script's navigation",
        "location.search === '?code=771234'",
    )
    .await;
    s.on_operator(
        "the operator after the script's navigation",
        "location.search === '?code=' && !!window.__cobrowse.engine",
    )
    .await;
    let secrets = ["hunter2", "4111", "9931", "5500000000000004", "771234"];
    assert_never_sent(&s, &secrets);

    // An operator who joins late gets the stored commands: none carries one.
    let late = s.browser.tab("late operator", 1400, 1000).await;
    operator_waits(&late, &s.server, "op2", &s.tabs()).await;
    s.operator.click(r#"[data-cobrowse="invite"]"#).await;
    operator_responds(&late, &s.server, &s.tabs()).await;
    until_on(
        &late,
        "the late operator on the page, without the code",
        CONTENT,
        &in_frame("location.search === '?code='"),
        &s.tabs(),
        &s.server,
    )
    .await;
    for frame in late.websocket_frames() {
        for secret in secrets {
            assert!(
                !frame.contains(secret),
                "late operator: a masked value in the replay: {frame}"
            );
        }
    }
    assert!(
        late.websocket_frames()
            .iter()
            .any(|f| f.contains("\"replay\"")),
        "the late operator got a replay"
    );
    s.assert_no_errors();
}

#[tokio::test]
async fn private_regions_stay_masked_in_an_editor_and_after_a_script_restyles_them() {
    let (_site, s) = privacy_site("/editor.html").await;
    let c = &s.customer;
    c.type_into("#account", "ACCT-998877").await;
    // A field inside a container the configuration masks, whose class a
    // script changed before the customer came to it.
    assert_eq!(
        c.eval("document.querySelector('#vault').className").await,
        serde_json::json!("vault"),
        "the site's script ran"
    );
    c.type_into("#answer", "blue-whale").await;
    // A choice in a custom menu inside a masked container is not repeated
    // on the operator's page.
    c.click("#plans li:nth-child(2)").await;
    s.on_customer(
        "the customer's choice",
        "document.querySelector('#chosen').textContent === 'Chosen: Gold'",
    )
    .await;
    c.type_into("#subject", "visible-after").await;
    s.on_operator(
        "the subject typed after the letter",
        "document.querySelector('#subject').value === 'visible-after'",
    )
    .await;
    assert_never_sent(&s, &["998877", "blue-whale", "ul#plans"]);
    assert_eq!(
        s.operator
            .eval_on(
                CONTENT,
                &in_frame("document.querySelector('#chosen').textContent")
            )
            .await,
        serde_json::json!("")
    );
    s.on_operator("the answer empty and read-only", "document.querySelector('#answer').value === '' && document.querySelector('#answer').readOnly").await;
    s.assert_no_errors();
}
