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
    c.click(CONTROL).await;
    super::harness::until(
        o,
        "view only again",
        &format!("{CONSOLE_STATUS}.includes('View only')"),
        &s.tabs(),
        &s.server,
    )
    .await;
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
