//! The OpenAPI document (`GET /openapi.json`) against what is served and what the contract's
//! reference (`docs/api.md`) lists: no route without its description, no description without
//! its route. Whether answers match their schemas is schemathesis' part, in CI (`.ci/run`).

mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use reqwest::Method;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// Pages that are not REST routes: the web client, the docs page and the document itself.
const PAGES: [&str; 3] = ["/", "/docs", "/openapi.json"];

/// `(METHOD, path)` of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

async fn served_document(app: &common::TestApp) -> Value {
    let res = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    res.json().await.unwrap()
}

/// Every `` `METHOD /path `` that docs/api.md names, REST routes only.
fn documented_in_api_md() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md"))
        .expect("docs/api.md");
    let mut found = BTreeSet::new();
    for piece in text.split('`').skip(1).step_by(2) {
        let mut words = piece.split_whitespace();
        let (Some(method), Some(path)) = (words.next(), words.next()) else {
            continue;
        };
        if !["GET", "PUT", "POST", "DELETE", "PATCH"].contains(&method) || !path.starts_with('/') {
            continue;
        }
        let path = path.split('?').next().unwrap_or(path).to_owned();
        if !PAGES.contains(&path.as_str()) {
            found.insert((method.to_owned(), path));
        }
    }
    found
}

#[tokio::test]
async fn the_document_describes_exactly_the_routes_of_the_reference() {
    let app = common::spawn_app().await;
    let doc = served_document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let described = operations(&doc);
    let listed = documented_in_api_md();
    let undocumented: Vec<_> = listed.difference(&described).collect();
    let unlisted: Vec<_> = described.difference(&listed).collect();
    assert!(
        undocumented.is_empty() && unlisted.is_empty(),
        "in docs/api.md but not in /openapi.json: {undocumented:?}\n\
         in /openapi.json but not in docs/api.md: {unlisted:?}"
    );
}

#[tokio::test]
async fn every_described_operation_is_served_and_answers_as_described() {
    let app = common::spawn_app().await;
    let doc = served_document(&app).await;
    let ops = operations(&doc);
    assert!(ops.len() >= 50, "only {} operations described", ops.len());
    for (method, path) in ops {
        // Ids that exist nowhere; without credentials every protected route refuses first.
        let concrete = path
            .replace("{id}", "0191f4a2-0000-7000-8000-000000000001")
            .replace("{user_id}", "0191f4a2-0000-7000-8000-000000000002")
            .replace("{message_id}", "0191f4a2-0000-7000-8000-000000000003")
            .replace("{root_id}", "0191f4a2-0000-7000-8000-000000000004")
            .replace("{emoji}", "%F0%9F%91%8D")
            .replace("{external_id}", "crm-1");
        let res = app
            .client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(&concrete),
            )
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(
            status != 404 && status != 405,
            "{method} {path}: {status} {body}: described but not served"
        );
        let described = &doc["paths"][&path][method.to_lowercase()]["responses"];
        assert!(
            described.get(status.to_string()).is_some(),
            "{method} {path}: answered {status}, which the document does not describe"
        );
    }
}

#[tokio::test]
async fn every_operation_is_named_summarised_tagged_and_secured_as_its_family() {
    let app = common::spawn_app().await;
    let doc = served_document(&app).await;
    let public = [
        ("POST", "/api/auth/register"),
        ("POST", "/api/auth/login"),
        ("POST", "/api/auth/refresh"),
        ("POST", "/api/workspaces"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    ];
    let mut ids = BTreeSet::new();
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][method.to_lowercase()];
        let id = op["operationId"].as_str().unwrap_or_default().to_owned();
        assert!(!id.is_empty(), "{method} {path}: no operationId");
        assert!(ids.insert(id.clone()), "operationId {id} is used twice");
        assert!(
            op["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{method} {path}: no summary"
        );
        assert!(op["tags"][0].is_string(), "{method} {path}: no tag");
        let scheme = op["security"][0]
            .as_object()
            .and_then(|s| s.keys().next().cloned());
        let expected = if public.contains(&(method.as_str(), path.as_str())) {
            None
        } else if path.starts_with("/api/server/") {
            Some("api_key".to_owned())
        } else {
            Some("user_token".to_owned())
        };
        assert_eq!(scheme, expected, "{method} {path}: security");
        for (status, response) in op["responses"].as_object().unwrap() {
            let json = &response["content"]["application/json"]["schema"]["$ref"];
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    json, "#/components/schemas/ErrorResponse",
                    "{method} {path} {status}: not the error body"
                );
            }
            if let Some(target) = json.as_str() {
                let name = target.trim_start_matches("#/components/schemas/");
                assert!(
                    doc["components"]["schemas"].get(name).is_some(),
                    "{method} {path} {status}: {target} is not in components"
                );
            }
        }
    }
}

/// Routes added around `routes!` (plain `.route(..)`, `.route_service(..)`, ...) would be
/// served without a description: only the pages that are not REST routes may be.
#[test]
fn no_route_is_added_outside_the_described_ones() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    let mut offenders = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for call in [".route(", ".route_service(", ".nest_service("] {
                if !code.contains(call) {
                    continue;
                }
                // A page's own route names its literal path on the same or the next line.
                let next = text.lines().nth(n + 1).unwrap_or_default();
                let page = PAGES.iter().any(|p| {
                    code.contains(&format!("\"{p}\"")) || next.contains(&format!("\"{p}\""))
                });
                let web = file.ends_with("src/http/web.rs");
                if !page && !web {
                    offenders.push(format!(
                        "{}:{}: {}",
                        file.strip_prefix(root).unwrap().display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "routes outside utoipa_axum::routes! (add #[utoipa::path] and register with routes!):\n{}",
        offenders.join("\n")
    );
}

#[tokio::test]
async fn the_command_prints_the_served_document() {
    let app = common::spawn_app().await;
    let served = served_document(&app).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_huddle"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, served);
}
