//! A PostgreSQL server of the test's own (Debian's `initdb` and `pg_ctl`), on a free port and in
//! a temporary directory, for tests that stop and restart the database under a running node.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use uuid::Uuid;

use super::cluster::free_port;

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct OwnPostgres {
    pub port: u16,
    dir: PathBuf,
}

impl OwnPostgres {
    /// Makes a new cluster (trust authentication, user `postgres`) and starts it.
    pub fn start() -> OwnPostgres {
        let dir = std::env::temp_dir().join(format!("huddle-pg-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let pg = OwnPostgres {
            port: free_port(),
            dir,
        };
        // Postgres refuses to run as root: as root, run it as the `postgres` user.
        if is_root() {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&pg.dir));
        }
        let data = pg.data();
        run(pg
            .as_owner(&format!("{BIN}/initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data));
        pg.resume();
        pg
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server (`pg_ctl stop -m fast`: connections are cut, as in a failover).
    pub fn stop(&self) {
        run(self
            .as_owner(&format!("{BIN}/pg_ctl"))
            .args(["stop", "-w", "-m", "fast", "-D"])
            .arg(self.data()));
    }

    /// Starts the server again, on the same port, and waits until it accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        run(self
            .as_owner(&format!("{BIN}/pg_ctl"))
            .args(["start", "-w", "-o", &options, "-l"])
            .arg(self.dir.join("log"))
            .arg("-D")
            .arg(self.data()));
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn as_owner(&self, program: &str) -> Command {
        if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--", program]);
            cmd
        } else {
            Command::new(program)
        }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self
            .as_owner(&format!("{BIN}/pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run a Postgres tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
