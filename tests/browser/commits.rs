//! Commit events as the customer's browser fired them: a small app that adds
//! an entry on a text field's `change` and saves an edit in place on Enter or
//! `blur` (tests/fixtures/commit) ends up with the same entries on both
//! sides, one per commit, whoever types: the customer, or the operator with
//! control.

use super::harness::{Tab, until};
use super::*;

/// JS: the texts of the list `#id`, joined with `|`.
fn list(id: &str) -> String {
    format!("[...document.querySelectorAll('#{id} > li')].map((li) => li.textContent).join('|')")
}

/// Waits until both sides' app shows `want` for `js` (a list or a count).
async fn both_show(s: &Shared, what: &str, js: &str, want: &str) {
    let check = format!("({js}) === {}", serde_json::to_string(want).unwrap());
    s.on_customer(&format!("{what}, on the customer's side"), &check)
        .await;
    s.on_operator(&format!("{what}, on the operator's side"), &check)
        .await;
}

/// Double-clicks the shopping item `n` (from 1) on `tab`'s page (`chain`
/// maps a selector to it), and types `text` into the field that opens.
async fn edit_item(s: &Shared, tab: &Tab, chain: &dyn Fn(&str) -> String, n: usize, text: &str) {
    let item = chain(&format!("#shopping > li:nth-child({n})"));
    tab.double_click(&item).await;
    let field = chain(&format!("#shopping > li:nth-child({n}) > input"));
    until_on(
        tab,
        "the item's edit field focused",
        &field,
        "el && el.getRootNode().activeElement === el && el.selectionEnd === el.value.length",
        &s.tabs(),
        &s.server,
    )
    .await;
    tab.type_text(text).await;
}

#[tokio::test]
async fn change_and_blur_are_replayed_once_per_commit_both_ways() {
    let site = fixture_site("commit").await;
    let server = Cobrowse::with_config(&Cobrowse::config_for(&site.url(), "")).await;
    let s = Shared::on(server, "/errands.html").await;
    let (c, o) = (&s.customer, &s.operator);
    let here = |sel: &str| sel.to_string();
    let framed = |sel: &str| content(sel);

    // The customer commits with Enter, then by leaving the field: one entry
    // each on both sides, not one per keystroke.
    c.type_into("#entry", "Eggs\n").await;
    both_show(
        &s,
        "the errand committed with Enter",
        &list("errands"),
        "Eggs",
    )
    .await;
    c.type_into("#entry", "Flour").await;
    c.click("h1").await;
    both_show(
        &s,
        "the errand committed by leaving the field",
        &list("errands"),
        "Eggs|Flour",
    )
    .await;

    // Edits in place, saved with Enter and by leaving the field: once each.
    edit_item(&s, c, &here, 1, "Oat milk\n").await;
    both_show(
        &s,
        "the item saved with Enter",
        &list("shopping"),
        "Oat milk|Bread|Apples",
    )
    .await;
    both_show(
        &s,
        "one save",
        "document.querySelector('#saves').textContent",
        "1",
    )
    .await;
    edit_item(&s, c, &here, 2, "Rye bread").await;
    c.click("h1").await;
    both_show(
        &s,
        "the item saved by leaving it",
        &list("shopping"),
        "Oat milk|Rye bread|Apples",
    )
    .await;
    both_show(
        &s,
        "two saves",
        "document.querySelector('#saves').textContent",
        "2",
    )
    .await;

    // The operator, with control, does the same; the customer's app shows
    // each commit once.
    s.grant_control().await;
    o.type_into(&content("#entry"), "Tea\n").await;
    both_show(
        &s,
        "the operator's errand committed with Enter",
        &list("errands"),
        "Eggs|Flour|Tea",
    )
    .await;
    o.type_into(&content("#entry"), "Jam").await;
    o.click(&content("h1")).await;
    both_show(
        &s,
        "the operator's errand committed by leaving the field",
        &list("errands"),
        "Eggs|Flour|Tea|Jam",
    )
    .await;
    edit_item(&s, o, &framed, 3, "Pears\n").await;
    both_show(
        &s,
        "the operator's item saved with Enter",
        &list("shopping"),
        "Oat milk|Rye bread|Pears",
    )
    .await;
    both_show(
        &s,
        "three saves",
        "document.querySelector('#saves').textContent",
        "3",
    )
    .await;
    edit_item(&s, o, &framed, 1, "Soy milk").await;
    o.click(&content("h1")).await;
    both_show(
        &s,
        "the operator's item saved by leaving it",
        &list("shopping"),
        "Soy milk|Rye bread|Pears",
    )
    .await;
    both_show(
        &s,
        "four saves",
        "document.querySelector('#saves').textContent",
        "4",
    )
    .await;

    // The customer's errands crossed as two commits, never one per key.
    let commits: Vec<String> = c
        .websocket_frames()
        .into_iter()
        .filter(|f| {
            f.starts_with("sent")
                && f.contains(r#""key":"top/input#entry/@commit""#)
                && f.contains(r#"["change","#)
        })
        .collect();
    assert_eq!(
        commits.len(),
        2,
        "the customer's commits of the errand field: {commits:#?}"
    );

    // Control taken back: the operator's double click, typing and leaving
    // the field commit nothing on the customer's side.
    s.take_control_back().await;
    let before = o.websocket_frames().len();
    o.double_click(&content("#shopping > li:nth-child(2)"))
        .await;
    o.type_text("Stale").await;
    // The console's notice comes after anything the content frame sent
    // before it (messages from one frame arrive in order).
    o.eval("document.querySelector('[data-cobrowse=notice]').textContent = ''")
        .await;
    o.click(&content("h1")).await;
    until(o, "the console to explain view-only", r#"document.querySelector('[data-cobrowse="notice"]').textContent.includes('has not given you control')"#, &s.tabs(), &s.server).await;
    let acted: Vec<String> = o.websocket_frames()[before..]
        .iter()
        .filter(|f| {
            f.starts_with("sent")
                && (f.contains(r#""fn":"commit""#) || f.contains(r#""fn":"dblclick""#))
        })
        .cloned()
        .collect();
    assert!(
        acted.is_empty(),
        "a view-only operator's commits were sent: {acted:#?}"
    );
    assert_eq!(
        c.eval(&list("shopping")).await,
        serde_json::json!("Soy milk|Rye bread|Pears"),
        "the customer's list after a view-only operator's edit"
    );
    s.assert_no_errors();
}
