//! A cluster under a live session: two nodes sharing Redis behind nginx
//! (the example cluster's own balancer configuration,
//! `tests/support/balanced.rs`), with a customer and an operator in Chromium
//! who reach the nodes only through the balancer. The leader killed while
//! the customer types, both nodes restarted one at a time, Redis killed
//! and started again: each time the session goes on after a reconnect,
//! with the same participants, and the operator's page shows everything
//! the customer typed.

use std::time::Duration;

use super::*;
use crate::support::balanced::Balanced;
use crate::support::redis::Redis;
use harness::{until_for, until_on_for};

/// How long a side may take to come back: a lease that must expire (about
/// 3 s), a new leader loading the sessions, and the browser side's backoff.
const RECONNECT: Duration = Duration::from_secs(40);

/// The operator's console: its status when in a session with the customer.
const CONSOLE_CONNECTED: &str = "Connected with the customer.";

/// A customer and an operator in one session, through the balancer.
struct Live {
    cluster: Balanced,
    _browser: Browser,
    customer: Tab,
    operator: Tab,
}

impl Live {
    async fn start(redis: Redis) -> Live {
        let cluster = Balanced::start(&demo_config(), redis).await;
        let browser = Browser::launch().await;
        let operator = browser.tab("operator", 1400, 1000).await;
        let customer = browser.tab("customer", 1000, 760).await;
        operator_waits(&operator, &cluster, OPERATOR_USER, &[&customer]).await;
        customer.goto(&cluster.url("/form.html")).await;
        customer_calls(&customer, &cluster, &[&operator]).await;
        operator_responds(&operator, &cluster, &[&customer]).await;
        Live {
            cluster,
            _browser: browser,
            customer,
            operator,
        }
    }

    fn tabs(&self) -> [&Tab; 2] {
        [&self.customer, &self.operator]
    }

    /// Waits until the operator's page shows `text` in the notes field the
    /// customer types into.
    async fn operator_sees(&self, text: &str) {
        until_on_for(
            &self.operator,
            &format!("the operator's page to show {text:?}"),
            CONTENT,
            &in_frame(&format!(
                "document.querySelector('#notes').value === {text:?}"
            )),
            RECONNECT,
            &self.tabs(),
            &self.cluster,
        )
        .await;
    }

    /// Both sides are in the session `session` again, connected, with the
    /// participants the console listed before (`participants`).
    async fn same_session(&self, session: &str, participants: &str) {
        let all = self.tabs();
        until_for(
            &self.customer,
            "the customer to be connected in the same session",
            &format!(
                "JSON.parse(sessionStorage.getItem('cobrowse.session') || 'null')?.session === {session:?} \
                 && {WIDGET_STATUS}.includes('Connected with')"
            ),
            RECONNECT,
            &all,
            &self.cluster,
        )
        .await;
        until_for(
            &self.operator,
            "the console to be connected in the same session with the same participants",
            &format!(
                "JSON.parse(sessionStorage.getItem('cobrowse.console.session') || 'null')?.session === {session:?} \
                 && {CONSOLE_STATUS}.startsWith({CONSOLE_CONNECTED:?}) && {PARTICIPANTS} === {participants:?}"
            ),
            RECONNECT,
            &all,
            &self.cluster,
        )
        .await;
    }

    /// The session's id, as the customer's page keeps it, and the console's
    /// list of participants.
    async fn identity(&self) -> (String, String) {
        let session = self
            .customer
            .eval("JSON.parse(sessionStorage.getItem('cobrowse.session') || 'null')?.session")
            .await;
        let session = session
            .as_str()
            .unwrap_or_else(|| panic!("the customer's page keeps no session: {session}"))
            .to_string();
        let participants = self.operator.eval(PARTICIPANTS).await;
        (
            session,
            participants.as_str().unwrap_or_default().to_string(),
        )
    }

    /// Neither side was told its session ended: the reconnects were all.
    fn nobody_was_ended(&self) {
        for tab in self.tabs() {
            let ended: Vec<String> = tab
                .websocket_frames()
                .into_iter()
                .filter(|f| f.contains(r#""type":"ended""#))
                .collect();
            assert!(
                ended.is_empty(),
                "{} was told the session ended: {ended:#?}",
                tab.name
            );
        }
    }
}

/// The console's list of participants, as the operator reads it.
const PARTICIPANTS: &str =
    r#"(document.querySelector('[data-cobrowse="participants"]')?.textContent || '')"#;

#[tokio::test]
async fn nothing_the_customer_typed_is_lost_when_the_leader_is_killed() {
    let mut s = Live::start(Redis::start()).await;
    s.customer.type_into("#notes", "before").await;
    s.operator_sees("before").await;
    let (session, participants) = s.identity().await;
    assert_eq!(
        s.cluster.leader(),
        Some(0),
        "node 0 started first and leads"
    );

    // The customer goes on typing while the leader dies: no handing over,
    // no goodbye, its sockets simply gone.
    tokio::join!(s.customer.type_text(" while it dies"), s.cluster.kill(0));
    s.customer.type_text(" and after").await;
    s.cluster.wait_leader(1, RECONNECT).await;
    s.operator_sees("before while it dies and after").await;
    s.same_session(&session, &participants).await;

    // And the session is live on the new leader: typing arrives at once.
    s.customer.type_text("!").await;
    s.operator_sees("before while it dies and after!").await;
    s.nobody_was_ended();
}

#[tokio::test]
async fn a_rolling_restart_of_both_nodes_is_only_a_short_reconnect() {
    let mut s = Live::start(Redis::start()).await;
    s.customer.type_into("#notes", "one").await;
    s.operator_sees("one").await;
    let (session, participants) = s.identity().await;
    let mut typed = String::from("one");

    // Node 0 leads: stopping it hands the sessions over to node 1; then
    // node 1 (leading by then) hands them back to node 0.
    for (node, next_leader, word) in [(0, 1, " two"), (1, 0, " three")] {
        s.cluster.stop(node).await;
        s.cluster.wait_leader(next_leader, RECONNECT).await;
        s.customer.type_text(word).await;
        typed.push_str(word);
        s.operator_sees(&typed).await;
        s.same_session(&session, &participants).await;
        s.cluster.restart(node).await;
        // As a rolling restart does: the next node stops once the balancer
        // sends requests to this one again.
        s.cluster.wait_in_rotation(node, RECONNECT).await;
        // The node back is a follower: the session stays where it is.
        s.customer.type_text("+").await;
        typed.push('+');
        s.operator_sees(&typed).await;
        assert_eq!(s.cluster.leader(), Some(next_leader));
    }
    s.same_session(&session, &participants).await;
    s.nobody_was_ended();
}

#[tokio::test]
async fn the_session_goes_on_after_redis_is_killed_and_started_again() {
    // Redis with persistence, as docs/scale-out.md says to run it.
    let mut s = Live::start(Redis::start_with(true)).await;
    s.customer.type_into("#notes", "before").await;
    s.operator_sees("before").await;
    let (session, participants) = s.identity().await;

    s.cluster.redis.stop();
    s.customer.type_text(" during").await;
    s.cluster
        .redis
        .run()
        .unwrap_or_else(|e| panic!("redis-server did not start again: {e}"));
    s.operator_sees("before during").await;
    s.same_session(&session, &participants).await;
    s.customer.type_text(" after").await;
    s.operator_sees("before during after").await;
    s.nobody_was_ended();
}
