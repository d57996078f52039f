//! The official JavaScript client, `socket.io-client` v4 (what browsers use), through a full
//! flow against a real server: see `tests/js/flow.mjs`. Needs node 20+; installs the client
//! from npm on first run.

mod common;

use std::{path::Path, process::Command};

#[tokio::test]
async fn the_official_javascript_client_runs_the_whole_flow() {
    let app = common::spawn_app().await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    if !dir.join("node_modules/socket.io-client").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed to install socket.io-client (Node.js 20+)");
        assert!(status.success(), "npm ci failed in tests/js");
    }
    let base = app.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("flow.mjs")
            .arg(&base)
            .current_dir(&dir)
            .output()
            .expect("node is needed to run the JavaScript client (Node.js 20+)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "flow.mjs failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
