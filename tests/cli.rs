//! The command line as a user types it.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::support::origin::Origin;
use crate::support::{Cobrowse, TempDir};

fn bin() -> tokio::process::Command {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_cobrowse"))
}

#[tokio::test]
async fn help_and_version() {
    let help = bin().arg("--help").output().await.unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for word in [
        "--config",
        "--listen",
        "--upstream",
        "--log-format",
        "check",
        "hash-password",
    ] {
        assert!(
            text.contains(word),
            "--help does not mention {word}:\n{text}"
        );
    }
    let version = bin().arg("--version").output().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("cobrowse {}", env!("CARGO_PKG_VERSION"))
    );
    let bad = bin().arg("--no-such-flag").output().await.unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unexpected argument"));
    let bad = bin().args(["--log-format", "xml"]).output().await.unwrap();
    assert!(!bad.status.success());
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(
        text.contains("--log-format") && text.contains("text") && text.contains("json"),
        "{text}"
    );
}

#[tokio::test]
async fn check_names_the_offending_field_and_line() {
    let dir = TempDir::new();
    let path = dir.path.join("bad.toml");
    std::fs::write(
        &path,
        "upstream = \"http://127.0.0.1:9\"\n\n[hub]\nmax_message_bytes = 0\n",
    )
    .unwrap();
    let out = bin()
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:4:") && err.contains("hub.max_message_bytes"),
        "{err}"
    );

    std::fs::write(
        &path,
        "upstream = \"http://127.0.0.1:9\"\nlisten_on = \"x\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:2:") && err.contains("listen_on"),
        "unknown keys must be errors: {err}"
    );

    let shipped = bin()
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.toml"),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        shipped.status.success(),
        "the shipped proxy.toml must be valid: {}",
        String::from_utf8_lossy(&shipped.stderr)
    );

    // So are the example cluster's nodes (examples/cluster/run.sh).
    for node in ["node1", "node2"] {
        let path = format!(
            "{}/examples/cluster/{node}.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        let out = bin()
            .args(["check", "--config", &path])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "examples/cluster/{node}.toml must be valid: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn hash_password_makes_a_hash_the_config_accepts() {
    let mut child = bin()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    let dir = TempDir::new();
    let path = dir.path.join("p.toml");
    std::fs::write(&path, format!("upstream = \"http://127.0.0.1:9\"\n[[operators]]\nuser = \"a\"\npassword_hash = \"{hash}\"\n")).unwrap();
    let check = bin()
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[tokio::test]
async fn runs_without_a_config_file() {
    let origin = Origin::pages(&[(
        "/",
        "text/html",
        "<html><head><title>t</title></head><body>upstream page</body></html>",
    )])
    .await;
    let proxy = Cobrowse::start(&["--upstream", &origin.url()]).await;
    let body = reqwest_text(&proxy.url("/")).await;
    assert!(body.contains("upstream page"), "{body}\n{}", proxy.output());
    assert!(
        body.contains("/__cobrowse/agent.js"),
        "agent not injected: {body}"
    );
}

#[tokio::test]
async fn flags_override_the_config_file() {
    let origin = Origin::pages(&[(
        "/",
        "text/html",
        "<html><head></head><body>from the flag's upstream</body></html>",
    )])
    .await;
    let dir = TempDir::new();
    let path = dir.path.join("proxy.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:1\"\nupstream = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let proxy = Cobrowse::start(&[
        "--config",
        path.to_str().unwrap(),
        "--upstream",
        &origin.url(),
    ])
    .await;
    assert_ne!(proxy.addr.port(), 1);
    let body = reqwest_text(&proxy.url("/")).await;
    assert!(body.contains("from the flag's upstream"), "{body}");
}

/// A plain GET with hyper's client; the body as text.
pub async fn reqwest_text(url: &str) -> String {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    let client: Client<_, Empty<bytes::Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let res = client.get(url.parse().unwrap()).await.unwrap();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}
