//! Two nodes on one Redis acting as one (`[cluster]`), against two real
//! binaries and a real `redis-server`: a customer on one node and an
//! operator on the other share a session through the leader; a burst of
//! calls and operators spread over both nodes meets one allocator; the peer
//! headers are believed only with the cluster's secret; the leader's
//! graceful stop or death hands the lease to the other node.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{Client, NO_UPSTREAM, WAIT, command, connected_call, http, second_operator};
use crate::observe::sample;
use crate::support::cluster::{Cluster, PREFIX, leads, standing};
use crate::support::redis::CLUSTER_SECRET;
use crate::support::{Cobrowse, OPERATOR_HASH, OPERATOR_USER, wait_for};

async fn metrics(node: &Cobrowse) -> String {
    http(node, "GET", "/__cobrowse/metrics", &[], "").await.2
}

/// `cobrowse_cluster_forwarded_total{route}` on `node`.
async fn forwarded(node: &Cobrowse, route: &str) -> f64 {
    let text = metrics(node).await;
    sample(
        &text,
        "cobrowse_cluster_forwarded_total",
        &[("route", route)],
    )
    .unwrap_or(0.0)
}

/// The node id in a `healthz` `cluster:` line (`… (node ID)`).
fn node_id(line: &str) -> String {
    line.rsplit_once("(node ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no node id in `{line}`"))
        .to_string()
}

#[tokio::test]
async fn a_customer_on_one_node_and_an_operator_on_the_other_share_a_session() {
    let cluster = Cluster::start(&Cobrowse::config_for(NO_UPSTREAM, &second_operator())).await;
    let (node1, node2) = (&cluster.leader, &cluster.follower);

    // The operator logs in through node 2, which is not the leader.
    let mut op = Client::operator(node2, "operator on node 2", OPERATOR_USER).await;
    op.send(json!({"type": "ready"})).await;
    op.expect(node2, "queue").await;
    let mut customer = Client::customer(node1, "customer on node 1").await;
    customer.send(json!({"type": "call"})).await;
    let joined = customer.expect_next(node1, "joined").await;
    let session = joined["session"].as_str().unwrap().to_string();
    let offer = op.expect(node2, "offer").await;
    assert_eq!(offer["session"], session.as_str());
    op.send(json!({"type": "respond", "session": session}))
        .await;
    op.expect(node2, "joined").await;
    // Live from here: what the customer sends next is not in the replay.
    op.expect_next(node2, "replay").await;
    customer
        .expect_where(node1, "status", |v| v["state"] == "connected")
        .await;

    // Commands both ways.
    customer
        .send(command("top/form#f/input[name=q]", "value", json!("shoes")))
        .await;
    op.expect_where(node2, "command", |v| v["args"][0] == "shoes")
        .await;
    customer
        .send(json!({"type": "control", "granted": true}))
        .await;
    op.expect_where(node2, "status", |v| v["control"] == true)
        .await;
    op.send(command("top/form#f/input[name=size]", "value", json!("42")))
        .await;
    customer
        .expect_where(node1, "command", |v| v["args"][0] == "42")
        .await;

    // A late joiner on a third connection, through node 2: the customer's
    // second tab gets the replay of both sides' work.
    let mut tab = Client::customer(node2, "customer's second tab on node 2").await;
    tab.send(json!({"type": "join", "session": session, "resume": joined["resume"]}))
        .await;
    tab.expect_next(node2, "joined").await;
    let replay = tab.expect_next(node2, "replay").await;
    let values: BTreeSet<&str> = replay["commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["args"][0].as_str())
        .collect();
    assert_eq!(values, BTreeSet::from(["shoes", "42"]), "{replay}");
    customer
        .send(command("top/form#f/input[name=q]", "value", json!("boots")))
        .await;
    tab.expect_where(node2, "command", |v| v["args"][0] == "boots")
        .await;

    // Node 2 forwarded the login, `me`-free WebSockets and all; node 1
    // forwarded nothing.
    assert!(
        forwarded(node2, "hub").await >= 3.0,
        "{}",
        metrics(node2).await
    );
    assert_eq!(forwarded(node1, "hub").await, 0.0);
}

/// Operators `op0`…`op{n-1}`, all with the test password.
fn operators(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[operators]]\nuser = \"op{i}\"\nname = \"Operator {i}\"\npassword_hash = \"{OPERATOR_HASH}\"\n"
            )
        })
        .collect()
}

/// What one operator saw in the race.
#[derive(Default)]
struct Seen {
    offers: Vec<String>,
    answered: Vec<String>,
    problems: Vec<String>,
}

/// Takes every offer, answers it, and leaves the session at once, until
/// `total` calls were answered by all operators together.
async fn operate(
    mut op: Client,
    node: &Cobrowse,
    answered: &std::sync::atomic::AtomicUsize,
    total: usize,
) -> Seen {
    use std::sync::atomic::Ordering;
    let mut seen = Seen::default();
    let mut in_session: Option<String> = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    op.send(json!({"type": "ready"})).await;
    while Instant::now() < deadline {
        if in_session.is_none() && answered.load(Ordering::SeqCst) >= total {
            break;
        }
        let Some(v) = op.next_within(Duration::from_millis(200)).await else {
            continue;
        };
        let session = v["session"].as_str().unwrap_or("").to_string();
        match v["type"].as_str() {
            Some("offer") => {
                if let Some(held) = &in_session {
                    seen.problems
                        .push(format!("{}: offered {session} while in {held}", op.name));
                }
                seen.offers.push(session.clone());
                op.send(json!({"type": "respond", "session": session}))
                    .await;
            }
            Some("joined") => {
                if let Some(held) = &in_session {
                    seen.problems
                        .push(format!("{}: joined {session} while in {held}", op.name));
                }
                in_session = Some(session.clone());
                seen.answered.push(session);
                answered.fetch_add(1, Ordering::SeqCst);
                op.send(json!({"type": "hangup"})).await;
            }
            Some("left") => in_session = None,
            Some("error") => seen
                .problems
                .push(format!("{}: {v}\n{}", op.name, node.output())),
            _ => {}
        }
    }
    seen
}

/// Calls and waits until an operator answered and left (`ended`,
/// `operator_left`); returns the session and whether `connected` was seen.
async fn call(mut customer: Client) -> (String, bool, String) {
    customer.send(json!({"type": "call"})).await;
    let mut session = String::new();
    let mut connected = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        let Some(v) = customer.next_within(Duration::from_millis(500)).await else {
            continue;
        };
        match v["type"].as_str() {
            Some("joined") => session = v["session"].as_str().unwrap().to_string(),
            Some("status") if v["state"] == "connected" => connected = true,
            Some("ended") => {
                connected &= v["reason"] == "operator_left";
                break;
            }
            _ => {}
        }
    }
    (session, connected, customer.log)
}

/// The race of issue 12: many calls and many operators spread over two
/// nodes at once. From what the clients saw: every call offered once and to
/// one operator, no operator offered or given a call while in another, and
/// every call answered.
#[tokio::test]
async fn calls_and_operators_spread_over_two_nodes_meet_one_allocator() {
    const CALLS: usize = 40;
    const OPERATORS: usize = 20;
    let cluster = Cluster::start(&Cobrowse::config_for(NO_UPSTREAM, &operators(OPERATORS))).await;
    let nodes = [&cluster.leader, &cluster.follower];
    let mut ops = Vec::new();
    for i in 0..OPERATORS {
        let node = nodes[i % 2];
        let user = format!("op{i}");
        let name: &'static str = Box::leak(format!("op{i} on node {}", i % 2 + 1).into_boxed_str());
        ops.push((Client::operator(node, name, &user).await, node));
    }
    let mut customers = Vec::new();
    for i in 0..CALLS {
        let name: &'static str =
            Box::leak(format!("customer {i} on node {}", i % 2 + 1).into_boxed_str());
        customers.push(Client::customer(nodes[(i + 1) % 2], name).await);
    }
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let operating = futures_util::future::join_all(
        ops.into_iter()
            .map(|(op, node)| operate(op, node, &answered, CALLS)),
    );
    let calling = futures_util::future::join_all(customers.into_iter().map(call));
    let (seen, calls) = tokio::join!(operating, calling);

    let mut problems: Vec<String> = seen.iter().flat_map(|s| s.problems.clone()).collect();
    let mut offered: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &seen {
        for o in &s.offers {
            *offered.entry(o.as_str()).or_default() += 1;
        }
    }
    let mut by_whom: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &seen {
        for a in &s.answered {
            *by_whom.entry(a.as_str()).or_default() += 1;
        }
    }
    for (session, connected, log) in &calls {
        if session.is_empty() || !connected {
            problems.push(format!("a call was not answered: {session}\n{log}"));
        }
        if offered.get(session.as_str()) != Some(&1) {
            problems.push(format!(
                "{session} was offered {:?} times",
                offered.get(session.as_str())
            ));
        }
        if by_whom.get(session.as_str()) != Some(&1) {
            problems.push(format!(
                "{session} was answered {:?} times",
                by_whom.get(session.as_str())
            ));
        }
    }
    assert_eq!(offered.len(), CALLS, "{offered:?}");
    assert!(
        problems.is_empty(),
        "{}\n{}",
        problems.join("\n"),
        cluster.output()
    );
    // Both nodes took part: the follower forwarded its half.
    assert!(
        forwarded(&cluster.follower, "hub").await >= (CALLS / 2 + OPERATORS / 2) as f64,
        "{}",
        metrics(&cluster.follower).await
    );
}

/// Opens a customer's hub link on `addr`'s site door with extra headers;
/// the handshake's status, and the socket when it opened.
async fn customer_socket(node: &Cobrowse, headers: &[(&str, &str)]) -> (u16, Option<super::Ws>) {
    let mut req = node
        .ws_url("/__cobrowse/ws?role=customer")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Origin", format!("http://{}", node.addr).parse().unwrap());
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match connect_async(req).await {
        Ok((ws, r)) => (r.status().as_u16(), Some(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => (r.status().as_u16(), None),
        Err(e) => panic!("handshake failed: {e}\n{}", node.output()),
    }
}

/// A client that says it is a peer, or names another client, without the
/// cluster's secret is counted under its own address: the per-address
/// socket cap bites whatever address it claims, on the leader and through
/// the other node alike. A peer's request that reaches a node that does not
/// lead is refused, never forwarded again.
#[tokio::test]
async fn peer_headers_without_the_secret_change_nothing_and_nothing_is_forwarded_twice() {
    let cluster = Cluster::start(&Cobrowse::config_for(
        NO_UPSTREAM,
        "[hub]\nmax_sockets_per_address = 2\n",
    ))
    .await;
    let (leader, follower) = (&cluster.leader, &cluster.follower);
    let wrong = "x".repeat(CLUSTER_SECRET.len());
    let mut open = Vec::new();
    // Two sockets straight to the leader, each claiming another client.
    for headers in [
        vec![("x-cobrowse-client", "203.0.113.1")],
        vec![
            ("x-cobrowse-peer", wrong.as_str()),
            ("x-cobrowse-client", "203.0.113.2"),
        ],
    ] {
        let (status, ws) = customer_socket(leader, &headers).await;
        assert_eq!(status, 101, "{headers:?}\n{}", cluster.output());
        open.push(ws);
    }
    // A third, claiming a third client, straight or through the follower:
    // its real address already holds two.
    for node in [leader, follower] {
        let (status, _) = customer_socket(
            node,
            &[
                ("x-cobrowse-peer", wrong.as_str()),
                ("x-cobrowse-client", "203.0.113.3"),
            ],
        )
        .await;
        assert_eq!(status, 429, "{}", cluster.output());
    }
    let text = metrics(leader).await;
    assert!(
        sample(
            &text,
            "cobrowse_cluster_peer_headers_refused_total",
            &[("reason", "secret")]
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{text}"
    );
    assert!(
        leader
            .output()
            .contains("peer headers without the cluster's secret"),
        "{}",
        leader.output()
    );

    // With the secret, a peer's request to the follower is refused there:
    // it does not lead, and it never forwards a peer's request.
    let before = forwarded(follower, "hub").await;
    let peer = [
        ("x-cobrowse-peer", CLUSTER_SECRET),
        ("x-cobrowse-client", "203.0.113.4"),
        ("x-cobrowse-tls", "0"),
    ];
    let (status, headers, body) =
        super::console_http(follower, "GET", "/__cobrowse/me", &peer, "").await;
    assert_eq!(status, 503, "{body}\n{}", cluster.output());
    assert!(body.contains("no longer leads"), "{body}");
    assert_eq!(super::header(&headers, "retry-after"), Some("1"));
    assert_eq!(forwarded(follower, "hub").await, before);
    let text = metrics(follower).await;
    assert_eq!(
        sample(
            &text,
            "cobrowse_cluster_unserved_total",
            &[("reason", "not_leader")]
        ),
        Some(1.0),
        "{text}"
    );
    drop(open);
}

/// SIGTERM to the leader: it releases the lease, the other node leads at
/// once (well within a lease), and a client that reconnects to the
/// surviving node is served.
#[tokio::test]
async fn the_leaders_graceful_stop_makes_the_other_node_lead() {
    let cluster = Cluster::start(&Cobrowse::config_for(NO_UPSTREAM, &second_operator())).await;
    // A third node, which forwards to whichever node leads.
    let third = cluster.another_node().await;
    let Cluster {
        redis,
        mut leader,
        follower,
        ..
    } = cluster;
    let old = node_id(&standing(&leader).await);
    let survivor = node_id(&standing(&follower).await);
    let (mut customer, _op, _) = connected_call(&leader).await;
    let stopped = Instant::now();
    leader.terminate();
    // The leader's clients are told to go (to reconnect elsewhere).
    while customer.next_within(WAIT).await.is_some() {}
    assert!(customer.log.contains("<close"), "{}", customer.log);
    leads(&follower).await;
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_millis(3000),
        "the other node led {took:?} after the stop (the lease is 3 s: it was not released)\n{}",
        follower.output()
    );
    assert!(
        leader
            .exited_within(Duration::from_secs(15))
            .await
            .is_some(),
        "{}",
        leader.output()
    );
    assert!(
        leader.output().contains("released the lease"),
        "{}",
        leader.output()
    );
    let holder = redis.command(&["GET", &format!("{PREFIX}leader")]);
    assert!(holder.contains(&survivor), "{holder}");
    let gone = redis.command(&["EXISTS", &format!("{PREFIX}node:{old}")]);
    assert_eq!(gone, ":0\r\n");

    // The survivor serves the shared sessions now.
    let (mut customer, mut op, _) = connected_call(&follower).await;
    customer
        .send(command("top/form#f/input[name=q]", "value", json!("after")))
        .await;
    op.expect_where(&follower, "command", |v| v["args"][0] == "after")
        .await;
    let text = metrics(&follower).await;
    assert_eq!(
        sample(&text, "cobrowse_cluster_leading", &[]),
        Some(1.0),
        "{text}"
    );
    // The third node found the new leader, and forwards to it.
    wait_for(
        "the third node to follow the new leader",
        Duration::from_secs(5),
        || async {
            standing(&third)
                .await
                .starts_with(&format!("following {survivor}"))
                .then_some(())
        },
        || third.output(),
    )
    .await;
    let (mut customer, mut op, _) = connected_call(&third).await;
    customer
        .send(command("top/form#f/input[name=q]", "value", json!("third")))
        .await;
    op.expect_where(&third, "command", |v| v["args"][0] == "third")
        .await;
    assert!(forwarded(&third, "hub").await >= 3.0);
}

/// A leader that dies without a word: the other node leads once the lease
/// expires, within about a lease.
#[tokio::test]
async fn a_dead_leaders_lease_expires_and_the_other_node_leads() {
    let cluster = Cluster::start(&Cobrowse::config_for(NO_UPSTREAM, "")).await;
    let Cluster {
        redis: _redis,
        leader,
        follower,
        ..
    } = cluster;
    // Killed (SIGKILL): no release.
    drop(leader);
    let killed = Instant::now();
    // Until its lease expires the leader is known but does not answer: the
    // shared sessions' requests are refused with a readable 503, to retry.
    let (headers, body) = wait_for(
        "a 503 from the node that forwards to a dead leader",
        Duration::from_secs(3),
        || async {
            let (status, headers, body) =
                super::console_http(&follower, "GET", "/__cobrowse/me", &[], "").await;
            (status == 503).then_some((headers, body))
        },
        || follower.output(),
    )
    .await;
    assert_eq!(super::header(&headers, "retry-after"), Some("1"));
    assert!(body.contains("unavailable for a moment"), "{body}");
    wait_for(
        "the other node to lead",
        Duration::from_secs(8),
        || async {
            standing(&follower)
                .await
                .starts_with("leading")
                .then_some(())
        },
        || follower.output(),
    )
    .await;
    let took = killed.elapsed();
    assert!(
        took < Duration::from_millis(3000 + 2000),
        "{took:?}\n{}",
        follower.output()
    );
    let mut customer = Client::customer(&follower, "customer").await;
    customer.send(json!({"type": "call"})).await;
    customer.expect_next(&follower, "joined").await;
}

/// A page request carrying the participant cookie goes to the leader (it
/// keeps the driver's documents). The site sees the real client, and none
/// of the peer headers: neither what the client made up nor the secret the
/// forwarding node added.
#[tokio::test]
async fn a_participants_page_goes_through_the_leader_and_the_site_never_sees_the_peer_headers() {
    use crate::support::origin::{Origin, full};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let origin = Origin::start(move |req| {
        let record = record.clone();
        async move {
            let headers: Vec<String> = req
                .headers()
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
                .collect();
            record.lock().unwrap().push(headers.join("\n"));
            http::Response::builder()
                .header("content-type", "text/plain")
                .body(full("a page of the site"))
                .unwrap()
        }
    })
    .await;
    let cluster = Cluster::start(&Cobrowse::config_for(
        &format!("http://{}", origin.addr),
        "",
    ))
    .await;
    let follower = &cluster.follower;
    let (status, _, body) = http(
        follower,
        "GET",
        "/shop",
        &[
            ("Cookie", "cobrowse_participant=s.r; theme=dark"),
            ("x-cobrowse-peer", "made-up"),
            ("x-cobrowse-client", "203.0.113.9"),
            ("x-cobrowse-tls", "1"),
        ],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}\n{}", cluster.output());
    assert_eq!(body, "a page of the site");
    assert_eq!(forwarded(follower, "proxy").await, 1.0);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let headers = seen[0].to_ascii_lowercase();
    assert!(!headers.contains("x-cobrowse"), "{headers}");
    assert!(!headers.contains(CLUSTER_SECRET), "{headers}");
    assert!(!headers.contains("203.0.113.9"), "{headers}");
    // The real client, as the leader's proxy tells the site.
    assert!(headers.contains("x-forwarded-for: 127.0.0.1"), "{headers}");
    assert!(headers.contains("theme=dark"), "{headers}");
}

/// Redis restarted empty (it kept nothing, the lease included): the leader
/// takes its lease back, the other node goes on following it, and calls
/// across the nodes work again. Leadership does not move for nothing.
#[tokio::test]
async fn redis_restarted_empty_leaves_the_leader_leading() {
    let mut cluster = Cluster::start(&Cobrowse::config_for(NO_UPSTREAM, &second_operator())).await;
    let leader = node_id(&standing(&cluster.leader).await);
    cluster.redis.stop();
    wait_for(
        "the leader to notice Redis is down",
        Duration::from_secs(8),
        || async {
            let (status, _, _) = http(&cluster.leader, "GET", "/__cobrowse/healthz", &[], "").await;
            (status == 503).then_some(())
        },
        || cluster.output(),
    )
    .await;
    // Down, nobody can take the lease: nothing moves.
    assert!(standing(&cluster.leader).await.starts_with("leading"));
    assert!(standing(&cluster.follower).await.starts_with("following"));
    cluster.redis.run().unwrap();
    let key = format!("{PREFIX}leader");
    wait_for(
        "the leader to take its lease back",
        Duration::from_secs(8),
        || async {
            cluster
                .redis
                .command(&["GET", &key])
                .contains(&leader)
                .then_some(())
        },
        || cluster.output(),
    )
    .await;
    // A few beats later it still leads, and was never replaced.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(cluster.redis.command(&["GET", &key]).contains(&leader));
    for node in [&cluster.leader, &cluster.follower] {
        let text = metrics(node).await;
        assert_eq!(
            sample(&text, "cobrowse_cluster_leader_changes_total", &[]),
            Some(1.0),
            "{text}\n{}",
            cluster.output()
        );
    }
    assert_eq!(
        standing(&cluster.follower).await,
        format!(
            "following {leader} (node {})",
            node_id(&standing(&cluster.follower).await)
        )
    );
    wait_for(
        "the store to answer again",
        Duration::from_secs(8),
        || async {
            let (status, _, _) = http(&cluster.leader, "GET", "/__cobrowse/healthz", &[], "").await;
            (status == 200).then_some(())
        },
        || cluster.output(),
    )
    .await;
    let (mut customer, mut op, _) = connected_call(&cluster.follower).await;
    customer
        .send(command("top/form#f/input[name=q]", "value", json!("again")))
        .await;
    op.expect_where(&cluster.follower, "command", |v| v["args"][0] == "again")
        .await;
}

/// The scheme the client used is the peer's to say, with the secret: a
/// login forwarded for a client on HTTPS (sent here as a peer sends it) is
/// checked against the `https` origin and gets a `Secure` cookie; a client
/// that says so itself, without the secret, is checked against the scheme
/// it really used.
#[tokio::test]
async fn only_a_peer_says_the_client_used_https() {
    let cluster = Cluster::start(&Cobrowse::config_for(NO_UPSTREAM, "")).await;
    let leader = &cluster.leader;
    let https = format!("https://{}", leader.console_addr);
    let form = format!(
        "user={OPERATOR_USER}&password={}",
        crate::support::OPERATOR_PASSWORD
    );
    let login = |proof: &'static str| {
        let https = https.clone();
        let form = form.clone();
        async move {
            let headers = [
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", https.as_str()),
                ("x-cobrowse-peer", proof),
                ("x-cobrowse-client", "203.0.113.7"),
                ("x-cobrowse-tls", "1"),
            ];
            super::console_http(leader, "POST", "/__cobrowse/login", &headers, &form).await
        }
    };
    let (status, headers, body) = login(CLUSTER_SECRET).await;
    assert_eq!(status, 204, "{body}\n{}", cluster.output());
    let cookie = super::header(&headers, "set-cookie").unwrap_or_default();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Without the secret the request is plain HTTP, and an https Origin is
    // not this door's.
    let (status, _, body) = login("not-the-secret-not-the-secret-xx").await;
    assert_eq!(status, 403, "{body}");
}
