//! Huddle's webhook signatures verify with the Standard Webhooks library that receivers use
//! (`standardwebhooks` from npm, run by node): what the specification promises them. Installs
//! the library from npm on first run (tests/webhooks-js).

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

use huddle::webhooks::signing;
use serde_json::{json, Value};

/// Runs `verify.mjs` on one delivery; `Ok(payload)` when the library accepts it.
fn verify(
    secret: &str,
    id: &str,
    timestamp: i64,
    signature: &str,
    body: &str,
) -> Result<Value, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhooks-js");
    let mut child = Command::new("node")
        .arg("verify.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is needed to run the Standard Webhooks library (Node.js 20+)");
    let input = json!({"secret": secret, "id": id, "timestamp": timestamp,
                       "signature": signature, "body": body});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match stdout.strip_prefix("verified ") {
        Some(payload) if out.status.success() => Ok(serde_json::from_str(payload).unwrap()),
        _ => Err(format!(
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

fn install() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhooks-js");
    if !dir.join("node_modules/standardwebhooks").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed to install standardwebhooks (Node.js 20+)");
        assert!(status.success(), "npm ci failed in tests/webhooks-js");
    }
}

#[test]
fn the_standard_webhooks_library_verifies_what_huddle_signs_and_nothing_else() {
    install();
    let (secret, shown) = signing::new_secret();
    let event = json!({
        "id": "0d3b9c1e-5b7a-4c53-9f3e-2f1f6a9b8c71",
        "type": "message.created",
        "position": 42,
        "workspace_id": "00000000-0000-0000-0000-000000000001",
        "created_at": "2026-12-03T09:00:00.123456Z",
        "data": {"room": {"id": "r", "name": "général"},
                 "message": {"body": "héllo 👋 \"quoted\" \\ and a\nnewline"}},
    });
    let body = event.to_string();
    let id = event["id"].as_str().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let signature = signing::sign(&secret, id, now, body.as_bytes());
    assert!(signature.starts_with("v1,"), "{signature}");

    let payload = verify(&shown, id, now, &signature, &body).expect("a genuine delivery verifies");
    assert_eq!(payload, event);

    // Anything changed is refused: the body, the id, the timestamp (all three are signed), or
    // another webhook's secret.
    let tampered = body.replace("42", "43");
    assert!(verify(&shown, id, now, &signature, &tampered).is_err());
    assert!(verify(&shown, "another-id", now, &signature, &body).is_err());
    assert!(verify(&shown, id, now + 1, &signature, &body).is_err());
    let (_, other) = signing::new_secret();
    assert!(verify(&other, id, now, &signature, &body).is_err());
    // A replay long after (the library's tolerance is five minutes) is refused even with a
    // signature made for that old timestamp.
    let old = now - 3600;
    let old_signature = signing::sign(&secret, id, old, body.as_bytes());
    assert!(verify(&shown, id, old, &old_signature, &body).is_err());
}
