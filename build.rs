// `sqlx::migrate!` embeds migrations/ at compile time; without this, a build after a change to a
// migration alone (no Rust source changed) would keep the old one.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
