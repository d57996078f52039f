//! The `huddle` binary itself: configuration errors, `migrate`, `user create`, and a graceful
//! stop on SIGTERM.

mod common;

use std::{
    io::Write,
    net::TcpListener,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sqlx::{Connection, PgConnection};
use uuid::Uuid;

fn huddle() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_huddle"));
    // A clean environment, so the developer's own settings and .env cannot leak in.
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .current_dir(std::env::temp_dir());
    cmd
}

/// A fresh database name, dropped when the guard goes.
struct Db {
    name: String,
    url: String,
}

impl Db {
    fn new() -> Self {
        let name = format!("huddle_test_{}", Uuid::new_v4().simple());
        let url = format!("{}/{name}", common::postgres_server_url());
        Db { name, url }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        common::drop_database(self.name.clone());
    }
}

fn query_one(url: &str, sql: &str) -> Option<(String, bool)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = PgConnection::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_optional(&mut conn).await.unwrap()
    })
}

#[test]
fn a_bad_setting_is_one_line_and_exit_code_2() {
    for (name, value, expected) in [
        (
            "PORT",
            "abc",
            "huddle: PORT must be a port number, got 'abc'",
        ),
        (
            "JWT_SECRET",
            "too-short",
            "huddle: JWT_SECRET must be at least 32 bytes, got 9 bytes",
        ),
        (
            "HISTORY_LIMIT",
            "lots",
            "huddle: HISTORY_LIMIT must be a whole number from 1 to 1000, got 'lots'",
        ),
    ] {
        let out = huddle().env(name, value).arg("serve").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.trim_end(), expected);
    }
}

#[test]
fn migrate_creates_the_database_and_applies_every_migration() {
    let db = Db::new();
    let out = huddle()
        .env("DATABASE_URL", &db.url)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = query_one(
        &db.url,
        "select count(*)::text, bool_and(success) from _sqlx_migrations",
    );
    let (count, all_ok) = row.unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert_eq!(count, files.to_string());
    assert!(all_ok);
    // Running it again is a no-op.
    let again = huddle()
        .env("DATABASE_URL", &db.url)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(again.status.success());
}

#[test]
fn user_create_reads_the_password_from_stdin_and_can_make_an_admin() {
    let db = Db::new();
    let mut child = huddle()
        .env("DATABASE_URL", &db.url)
        .args(["user", "create", "root_admin", "--admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a-long-password\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("root_admin"));
    let (name, admin) = query_one(&db.url, "select username, is_admin from users").unwrap();
    assert_eq!((name.as_str(), admin), ("root_admin", true));

    // A password out of bounds is refused and nothing is made.
    let mut child = huddle()
        .env("DATABASE_URL", &db.url)
        .args(["user", "create", "second"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"short\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password must be 8-256 characters"));
    assert!(query_one(
        &db.url,
        "select username, is_admin from users where username = 'second'"
    )
    .is_none());
}

/// `huddle user create` with stdin as its password.
fn create_user(db: &Db, args: &[&str]) -> std::process::Output {
    let mut child = huddle()
        .env("DATABASE_URL", &db.url)
        .args(["user", "create"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a-long-password\n")
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn workspace_create_prints_the_workspace_and_user_create_names_one() {
    let db = Db::new();
    let out = huddle()
        .env("DATABASE_URL", &db.url)
        .args(["workspace", "create", "acme", "--name", "Acme Inc."])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["slug"], "acme");
    assert_eq!(printed["name"], "Acme Inc.");
    let id = printed["id"].as_str().unwrap();
    // Its DEFAULT_ROOMS come with it.
    let (rooms, _) = query_one(
        &db.url,
        &format!("select string_agg(name, ','), true from rooms where workspace_id = '{id}'"),
    )
    .unwrap();
    assert_eq!(rooms, "general");
    // A taken slug or a bad one is refused.
    for slug in ["acme", "default", "Not-A-Slug"] {
        let out = huddle()
            .env("DATABASE_URL", &db.url)
            .args(["workspace", "create", slug])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{slug}");
    }

    // The same username in two workspaces; an admin of acme only.
    for args in [&["pat", "--workspace", "acme", "--admin"][..], &["pat"][..]] {
        let out = create_user(&db, args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (admins, _) = query_one(
        &db.url,
        "select string_agg(w.slug || ':' || u.is_admin, ',' order by w.slug), true
         from users u join workspaces w on w.id = u.workspace_id where u.username = 'pat'",
    )
    .unwrap();
    assert_eq!(admins, "acme:true,default:false");
    let out = create_user(&db, &["pat", "--workspace", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no workspace"));
}

#[test]
fn api_key_create_prints_only_the_secret_and_stores_its_digest() {
    let db = Db::new();
    let create = |args: &[&str]| {
        huddle()
            .env("DATABASE_URL", &db.url)
            .args(["api-key", "create"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = create(&["--name", "crm"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let secret = stdout.trim_end();
    assert!(secret.starts_with("hk_") && secret.len() == 46, "{secret}");
    // The key is default's, named, stored as the secret's SHA-256 with its prefix in clear.
    let (row, _) = query_one(
        &db.url,
        &format!(
            "select w.slug || ':' || k.name || ':' || k.prefix, \
                    k.secret_hash = sha256('{secret}'::bytea) \
             from api_keys k join workspaces w on w.id = k.workspace_id"
        ),
    )
    .unwrap();
    assert_eq!(row, format!("default:crm:{}", &secret[..11]));
    let (hashed, _) = query_one(
        &db.url,
        &format!("select 'x', secret_hash = sha256('{secret}'::bytea) from api_keys"),
    )
    .map(|(_, ok)| (ok, ()))
    .unwrap();
    assert!(hashed);

    let out = create(&["--platform"]);
    assert!(out.status.success());
    let (platform, _) = query_one(
        &db.url,
        "select count(*)::text, true from api_keys where workspace_id is null and name = 'cli'",
    )
    .unwrap();
    assert_eq!(platform, "1");
    // An unknown workspace, a bad name, or both scopes at once: refused, nothing printed.
    for args in [
        &["--workspace", "nope"][..],
        &["--name", ""][..],
        &["--platform", "--workspace", "default"][..],
    ] {
        let out = create(args);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let (count, _) = query_one(&db.url, "select count(*)::text, true from api_keys").unwrap();
    assert_eq!(count, "2");
}

#[test]
fn serve_listens_and_stops_cleanly_on_sigterm() {
    let log = serve_until_sigterm(&[]);
    // Without CORS_ORIGINS any web page may call the API: the operator is told so.
    assert!(
        log.contains("CORS_ORIGINS is '*'"),
        "no CORS warning in: {log}"
    );
    let log = serve_until_sigterm(&[("CORS_ORIGINS", "https://chat.example.com")]);
    assert!(!log.contains("CORS_ORIGINS is '*'"), "{log}");
}

/// Starts `huddle` with `env`, waits until it answers, stops it with SIGTERM and checks that it
/// exits cleanly. Returns its log (standard output, at `warn` here).
fn serve_until_sigterm(env: &[(&str, &str)]) -> String {
    let db = Db::new();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = huddle()
        .env("DATABASE_URL", &db.url)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut up = false;
    while started.elapsed() < Duration::from_secs(30) {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Read;
            stream.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
            let mut reply = String::new();
            let _ = stream.read_to_string(&mut reply);
            up = reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200");
            if up {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(up, "the server did not come up");
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut log = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    log
}
