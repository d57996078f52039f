//! The web client (`clients/web`, embedded in the binary and served at `/`) in a real browser:
//! two users in two Chromium contexts, everything through the UI, an offline spell included (see
//! `tests/browser/scenario.mjs`). Needs Node.js 20+ and Chromium (`apt-get install chromium`, or
//! `CHROMIUM=/path/to/chrome`); installs playwright-core from npm on first run. `SCREENSHOTS=dir`
//! saves PNGs of the main screens (docs/screenshots holds the committed ones).
//!
//! Also, without a browser: the embedded files are served with their content types, ETags and
//! 304s, and take no path of the API.

mod common;

use std::{path::Path, process::Command};

use reqwest::{header, StatusCode};
use serde_json::Value;

/// Seconds; the scenario keeps B offline for longer than this.
const ACCESS_TOKEN_TTL: &str = "4";

#[tokio::test]
async fn two_users_chat_in_the_web_client_and_miss_nothing_while_offline() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&chromium).exists(),
        "this test drives the web client in Chromium, which is not at {chromium}: install it \
         (apt-get install chromium) or set CHROMIUM to the browser's path"
    );
    // Short-lived access tokens, so that the scenario outlives them: the client must refresh
    // them, and reconnect with a fresh one after a spell offline longer than their life.
    let app = common::spawn_app_with(&[("ACCESS_TOKEN_TTL", ACCESS_TOKEN_TTL)]).await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed to install playwright-core (Node.js 20+)");
        assert!(status.success(), "npm ci failed in tests/browser");
    }
    let base = app.base.clone();
    // The script bounds itself (90 s at most, the browser always closed).
    let out = tokio::task::spawn_blocking(move || {
        let mut node = Command::new("node");
        node.arg("scenario.mjs")
            .arg(&base)
            .env("CHROMIUM", &chromium)
            .env("ACCESS_TOKEN_TTL", ACCESS_TOKEN_TTL)
            .current_dir(&dir);
        if let Some(shots) = std::env::var_os("SCREENSHOTS") {
            // Relative to the repository, not to tests/browser where the script runs.
            node.env(
                "SCREENSHOTS",
                Path::new(env!("CARGO_MANIFEST_DIR")).join(shots),
            );
        }
        node.output()
            .expect("node is needed to run the browser scenario (Node.js 20+)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "scenario.mjs failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[tokio::test]
async fn the_client_and_the_docs_page_are_served_with_etags_beside_the_api() {
    let app = common::spawn_app().await;
    let get = |path: &str| app.client.get(format!("{}{path}", app.base));

    let index = get("/").send().await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    let headers = index.headers().clone();
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    assert!(index.text().await.unwrap().contains("/app.js"));

    let again = get("/")
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[header::ETAG], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());
    let stale = get("/")
        .header(header::IF_NONE_MATCH, "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::OK);

    let app_js = get("/app.js").send().await.unwrap();
    assert_eq!(app_js.status(), StatusCode::OK);
    assert_eq!(
        app_js.headers()[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert_ne!(app_js.headers()[header::ETAG], etag.as_str());

    for docs in ["/docs", "/docs/"] {
        let page = get(docs).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{docs}");
        assert!(page.text().await.unwrap().contains("swagger-ui-bundle.js"));
    }
    let bundle = get("/docs/swagger-ui-bundle.js").send().await.unwrap();
    assert_eq!(bundle.status(), StatusCode::OK);
    assert_eq!(
        bundle.headers()[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );

    // The API and the JSON 404 are untouched.
    let health: Value = get("/healthz").send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    for unknown in ["/nope.js", "/api/nope", "/docs/nope"] {
        let res = get(unknown).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{unknown}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{unknown}");
    }
    let post = app
        .client
        .post(format!("{}/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::NOT_FOUND);
}
