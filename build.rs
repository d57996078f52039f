use std::{
    env,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

fn main() {
    // `sqlx::migrate!` embeds migrations/ at compile time; without this, a build after a change to
    // a migration alone (no Rust source changed) would keep the old one.
    println!("cargo:rerun-if-changed=migrations");
    embed_web_client();
}

/// `src/http/web.rs` serves the web client and the API docs page from the binary: the built files
/// of `clients/web/dist` (committed, so building Huddle needs no Node.js). This writes their table,
/// one `include_bytes!` per file, to `OUT_DIR/web_assets.rs`. Cargo scans the whole directory for
/// the rerun check, so a file added, removed or changed under dist/ rebuilds the table.
fn embed_web_client() {
    println!("cargo:rerun-if-changed=clients/web/dist");
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dist = root.join("clients/web/dist");
    assert!(
        dist.join("index.html").is_file() && dist.join("docs/index.html").is_file(),
        "{} lacks index.html or docs/index.html: build the web client \
         (cd clients/web && npm ci && npm run build)",
        dist.display()
    );
    let mut files = Vec::new();
    walk(&dist, &mut files);
    // Sorted, so the generated table (and the binary) does not depend on directory order.
    files.sort();
    let mut table = String::from("&[\n");
    for file in &files {
        let path: Vec<&str> = file
            .strip_prefix(&dist)
            .expect("walked from dist")
            .components()
            .map(|c| {
                c.as_os_str()
                    .to_str()
                    .expect("file names under dist/ are UTF-8")
            })
            .collect();
        let source = file.to_str().expect("the checkout's path is UTF-8");
        writeln!(
            table,
            "    ({:?}, include_bytes!({source:?}) as &[u8]),",
            path.join("/")
        )
        .expect("writing to a String");
    }
    table.push_str("]\n");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("web_assets.rs"), table).expect("writing OUT_DIR/web_assets.rs");
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("reading clients/web/dist") {
        let path = entry.expect("reading clients/web/dist").path();
        if path.is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}
