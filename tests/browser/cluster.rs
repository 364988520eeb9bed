//! Two nodes of one cluster in real Chromium: the customer's pages come
//! through one node, the operator's console through the other, and the
//! call, typing both ways, navigation and a late joiner work as on one
//! node. One node
//! leads; the other forwards the hub links, the login, the binding and the
//! participants' pages to it.

use super::*;
use crate::hub::http;
use crate::observe::sample;
use crate::support::cluster::Cluster;

/// What `node` forwarded to the leader on `route`.
async fn forwarded(node: &Cobrowse, route: &str) -> f64 {
    let text = http(node, "GET", "/__cobrowse/metrics", &[], "").await.2;
    sample(
        &text,
        "cobrowse_cluster_forwarded_total",
        &[("route", route)],
    )
    .unwrap_or(0.0)
}

/// A call on `/form.html`, typing both ways, and a navigation each way.
async fn call_type_and_navigate(s: &Shared) {
    let (c, o) = (&s.customer, &s.operator);
    c.type_into("#notes", "from the customer").await;
    s.on_operator(
        "the customer's typing",
        "document.querySelector('#notes').value === 'from the customer'",
    )
    .await;
    s.grant_control().await;
    o.type_into(&content("#name"), "Lin").await;
    s.on_customer(
        "the operator's typing",
        "document.querySelector('#name').value === 'Lin'",
    )
    .await;
    // The customer navigates: the operator follows.
    c.click(r#"header a[href="/"]"#).await;
    s.on_operator(
        "the customer's page load",
        "location.pathname === '/' && !!window.__cobrowse.engine",
    )
    .await;
    s.customer_connected("the customer back in the session on the new page")
        .await;
    // The operator navigates (with control): the customer follows.
    o.click(&content(r#"ul a[href="/form.html"]"#)).await;
    s.on_customer(
        "the operator's link followed by the customer",
        "location.pathname === '/form.html' && !!document.querySelector('[data-cobrowse=widget]')",
    )
    .await;
    s.on_operator(
        "the operator's page settled on the form",
        "location.pathname === '/form.html' && !!window.__cobrowse.engine",
    )
    .await;
    // A late joiner, through the customer's node (so a third node link):
    // a second operator joins by the code the customer reads out and sees
    // the page as it stands, from the store's replay.
    c.type_into("#notes", "before the late joiner").await;
    s.on_operator(
        "the customer's typing before the late joiner",
        "document.querySelector('#notes').value === 'before the late joiner'",
    )
    .await;
    let late = s.browser.tab("late operator", 1400, 1000).await;
    let all = [c, o, &late];
    operator_waits(&late, &s.server, "op2", &[c, o]).await;
    let code = customer_shares_a_code(c, &s.server, &all).await;
    operator_joins_by_code(&late, &code, &s.server, &all).await;
    until_on(
        &late,
        "the late joiner's copy of the page as it stands",
        CONTENT,
        &in_frame("location.pathname === '/form.html' && document.querySelector('#notes')?.value === 'before the late joiner'"),
        &all,
        &s.server,
    )
    .await;
    s.assert_no_errors();
}

#[tokio::test]
async fn the_customer_through_the_follower_and_the_operator_through_the_leader() {
    let Cluster {
        redis: _redis,
        leader,
        follower,
        ..
    } = Cluster::start(&demo_config()).await;
    let s = Shared::across(follower, Some(leader), "/form.html").await;
    call_type_and_navigate(&s).await;
    // The customer's hub link, its binding and its pages went to the leader.
    for route in ["hub", "bind", "proxy"] {
        assert!(forwarded(&s.server, route).await >= 1.0, "{route}");
    }
}

#[tokio::test]
async fn the_customer_through_the_leader_and_the_operator_through_the_follower() {
    let Cluster {
        redis: _redis,
        leader,
        follower,
        ..
    } = Cluster::start(&demo_config()).await;
    let s = Shared::across(leader, Some(follower), "/form.html").await;
    call_type_and_navigate(&s).await;
    // The login, the console's hub link and the content frame's pages (the
    // driver's documents, which the leader keeps) went to the leader.
    let follower = s.operator_server.as_ref().unwrap();
    for route in ["hub", "proxy"] {
        assert!(forwarded(follower, route).await >= 1.0, "{route}");
    }
}
