//! A Redis Cluster of the test's own: `redis-server` processes in cluster mode on free ports of
//! 127.0.0.1, with a temporary directory of their own (their `nodes-<port>.conf` and logs), made
//! into one cluster by `redis-cli --cluster create`. Nodes can be killed (SIGKILL, as a crash)
//! and restarted (same port, directory and nodes conf: they rejoin). Dropping it kills every node
//! and removes the directory.
//!
//! Every wait here has a deadline and panics saying what it waited for and what it last saw.

use std::{
    collections::HashMap,
    fs,
    future::Future,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use redis::{AsyncConnectionConfig, FromRedisValue};
use uuid::Uuid;

/// The slots of a Redis Cluster.
const SLOTS: usize = 16384;
/// How long one admin command may take (connect or answer) on a local node.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

pub struct OwnRedisCluster {
    /// Client port of each node, by index.
    ports: Vec<u16>,
    /// Cluster bus port of each node (`--cluster-port`: the default, port + 10000, can pass
    /// 65535 for the ephemeral ports `free_ports` hands out).
    bus_ports: Vec<u16>,
    /// The running process of each node; None while killed.
    children: Vec<Option<Child>>,
    /// The nodes that were masters when the cluster was made.
    first_masters: Vec<usize>,
    dir: PathBuf,
}

impl OwnRedisCluster {
    /// Starts `masters * (1 + replicas_per_master)` nodes, makes them a cluster (each master with
    /// `replicas_per_master` replicas) and waits until it is healthy.
    pub async fn start(masters: usize, replicas_per_master: usize) -> OwnRedisCluster {
        assert!(masters >= 3, "a Redis Cluster needs at least 3 masters");
        let n = masters * (1 + replicas_per_master);
        let dir =
            std::env::temp_dir().join(format!("huddle-redis-cluster-{}", Uuid::new_v4().simple()));
        fs::create_dir_all(&dir).expect("create the Redis Cluster's directory");
        let mut ports = free_ports(2 * n);
        let mut cluster = OwnRedisCluster {
            bus_ports: ports.split_off(n),
            ports,
            children: (0..n).map(|_| None).collect(),
            first_masters: Vec::new(),
            dir,
        };
        let started = Instant::now();
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            // A port taken meanwhile by another test's process: start over on other ones.
            let mut attempts = 1;
            while let Err(exited) = cluster.wait_answering(i).await {
                assert!(attempts < 3, "{exited}");
                eprintln!("{exited}\n(starting it again on other ports)");
                attempts += 1;
                let taken: Vec<u16> = cluster
                    .ports
                    .iter()
                    .chain(&cluster.bus_ports)
                    .copied()
                    .collect();
                let fresh: Vec<u16> = free_ports(2 + taken.len())
                    .into_iter()
                    .filter(|p| !taken.contains(p))
                    .take(2)
                    .collect();
                (cluster.ports[i], cluster.bus_ports[i]) = (fresh[0], fresh[1]);
                cluster.spawn(i);
            }
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &cluster.ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        create
            .args(["--cluster-replicas", &replicas_per_master.to_string()])
            .arg("--cluster-yes")
            .stdin(Stdio::null());
        let created = tokio::task::spawn_blocking(move || create.output())
            .await
            .unwrap()
            .expect("redis-cli is needed for the Redis Cluster tests");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed ({}):\n{}\n{}",
            created.status,
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        let created_in = started.elapsed();
        cluster.wait_healthy().await;
        cluster.first_masters = cluster
            .view()
            .await
            .iter()
            .filter(|e| e.is_master() && !e.slots.is_empty())
            .map(|e| cluster.index_of(e.port))
            .collect();
        cluster.first_masters.sort_unstable();
        assert_eq!(cluster.first_masters.len(), masters, "masters after create");
        if std::env::var_os("TEST_LOG").is_some() {
            eprintln!(
                "Redis Cluster of {n} nodes (ports {:?}): created in {created_in:?}, healthy in {:?}",
                cluster.ports,
                started.elapsed()
            );
        }
        cluster
    }

    /// The comma-separated `redis://` URLs of the masters the cluster was made with: what
    /// `REDIS_CLUSTER_URLS` takes.
    pub fn seeds(&self) -> String {
        let urls: Vec<String> = self.first_masters.iter().map(|&i| self.url(i)).collect();
        urls.join(",")
    }

    /// How many nodes (masters and replicas).
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    pub fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    pub fn url(&self, i: usize) -> String {
        format!("redis://127.0.0.1:{}", self.ports[i])
    }

    pub fn is_alive(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    /// The index of the node serving the slot of `name` (a key or a sharded channel) now, as a
    /// live node sees it: a master that was killed serves it until a replica is promoted.
    pub async fn master_for(&self, name: &str) -> usize {
        let mut last = String::new();
        for i in self.live() {
            let port = self.ports[i];
            let slot: usize = match query(port, &["CLUSTER", "KEYSLOT", name]).await {
                Ok(slot) => slot,
                Err(e) => {
                    last = format!("node {i}: {e}");
                    continue;
                }
            };
            let view = match self.view_of(i).await {
                Ok(view) => view,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let owner = view
                .iter()
                .find(|e| e.is_master() && e.slots.iter().any(|r| r.contains(&slot)))
                .unwrap_or_else(|| panic!("node {i} sees no master for slot {slot} of {name:?}"));
            return self.index_of(owner.port);
        }
        panic!("no live node answered which master serves {name:?}: {last}");
    }

    /// One command on node `i` (e.g. `["SPUBLISH", channel, payload]`), bounded by a second.
    pub async fn command<T: FromRedisValue>(
        &self,
        i: usize,
        args: &[&str],
    ) -> redis::RedisResult<T> {
        query(self.ports[i], args).await
    }

    /// Kills node `i` at once (SIGKILL), as a crash would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its port, directory and nodes conf (it rejoins the cluster as
    /// the conf says; a master whose slots were handed to a replica meanwhile becomes a replica)
    /// and waits until it answers. Wait for the cluster with `wait_healthy`.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        if let Err(exited) = self.wait_answering(i).await {
            panic!("{exited}");
        }
    }

    /// Waits (up to 30 s) until the cluster is healthy: on every live node `cluster_state:ok`,
    /// every slot ok and every node known; every slot served by a live master; and every live
    /// replica linked to its master (a replica whose link is down cannot be promoted).
    pub async fn wait_healthy(&self) {
        within(
            "the Redis Cluster to be healthy",
            Duration::from_secs(30),
            move || self.health(),
        )
        .await;
    }

    /// Ok, or what is not healthy yet.
    async fn health(&self) -> Result<(), String> {
        let n = self.len();
        // Who serves which slots, as the first live node sees it; every other must agree (a
        // restarted node believes its old nodes conf until the others correct it).
        let mut agreed: Option<(usize, SlotOwners)> = None;
        for i in self.live() {
            let port = self.ports[i];
            let at = |e: redis::RedisError| format!("node {i} (port {port}): {e}");
            let info: String = query(port, &["CLUSTER", "INFO"]).await.map_err(at)?;
            let info = fields(&info);
            let want = [
                ("cluster_state", "ok".to_owned()),
                ("cluster_slots_ok", SLOTS.to_string()),
                ("cluster_known_nodes", n.to_string()),
            ];
            for (field, value) in want {
                let got = info.get(field).map(String::as_str).unwrap_or("(none)");
                if got != value {
                    return Err(format!("node {i} (port {port}): {field}:{got}"));
                }
            }
            let view = self.view_of(i).await?;
            let mut owners = Vec::new();
            for entry in view.iter().filter(|e| !e.slots.is_empty()) {
                let owner = self.index_of(entry.port);
                if !entry.is_master() || entry.flags.contains("fail") || !self.is_alive(owner) {
                    return Err(format!(
                        "node {i} sees slots served by node {owner} (port {}, {}), not a live \
                         master",
                        entry.port, entry.flags
                    ));
                }
                owners.extend(
                    entry
                        .slots
                        .iter()
                        .map(|r| (*r.start(), *r.end(), entry.port)),
                );
            }
            owners.sort_unstable();
            let served: usize = owners.iter().map(|(a, b, _)| b - a + 1).sum();
            if served != SLOTS {
                return Err(format!("node {i} sees {served} of {SLOTS} slots served"));
            }
            match &agreed {
                None => agreed = Some((i, owners)),
                Some((j, theirs)) if *theirs != owners => {
                    return Err(format!(
                        "nodes {j} and {i} disagree on who serves the slots"
                    ));
                }
                Some(_) => {}
            }
            let myself = view
                .iter()
                .find(|e| e.flags.split(',').any(|f| f == "myself"))
                .ok_or_else(|| format!("node {i} does not list itself"))?;
            if myself.is_master() && myself.slots.is_empty() {
                return Err(format!(
                    "node {i} is a master without slots (still rejoining)"
                ));
            }
            if !myself.is_master() {
                let replication: String =
                    query(port, &["INFO", "replication"]).await.map_err(at)?;
                let replication = fields(&replication);
                let link = replication.get("master_link_status").map(String::as_str);
                if link != Some("up") {
                    return Err(format!(
                        "replica {i} (port {port}): master_link_status:{}",
                        link.unwrap_or("(none)")
                    ));
                }
            }
        }
        if agreed.is_none() {
            return Err("no node is alive".to_owned());
        }
        Ok(())
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).filter(|&i| self.is_alive(i))
    }

    fn index_of(&self, port: u16) -> usize {
        self.ports
            .iter()
            .position(|&p| p == port)
            .unwrap_or_else(|| panic!("port {port} is not a node of this cluster"))
    }

    /// `CLUSTER NODES` as the first live node that answers sees it.
    async fn view(&self) -> Vec<Entry> {
        let mut last = String::from("no node is alive");
        for i in self.live() {
            match self.view_of(i).await {
                Ok(view) => return view,
                Err(e) => last = e,
            }
        }
        panic!("no live node answered CLUSTER NODES: {last}");
    }

    async fn view_of(&self, i: usize) -> Result<Vec<Entry>, String> {
        let port = self.ports[i];
        let text: String = query(port, &["CLUSTER", "NODES"])
            .await
            .map_err(|e| format!("node {i} (port {port}): {e}"))?;
        Ok(text.lines().filter_map(Entry::parse).collect())
    }

    fn spawn(&mut self, i: usize) {
        let (port, bus) = (self.ports[i].to_string(), self.bus_ports[i].to_string());
        let log = self.dir.join(format!("redis-{port}.log"));
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
            .args(["--cluster-port", &bus])
            .args(["--cluster-node-timeout", "1000"])
            .args(["--repl-diskless-sync-delay", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed for the Redis Cluster tests");
        self.children[i] = Some(child);
    }

    /// Waits (up to 10 s) until node `i` answers PING; Err (with the end of its log) if the
    /// process exited.
    async fn wait_answering(&mut self, i: usize) -> Result<(), String> {
        let port = self.ports[i];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(Ok(Some(status))) = self.children[i].as_mut().map(Child::try_wait) {
                self.children[i] = None;
                return Err(format!(
                    "redis-server {i} (port {port}) exited ({status}):\n{}",
                    self.log_tail(port)
                ));
            }
            let last = match query::<String>(port, &["PING"]).await {
                Ok(pong) if pong == "PONG" => return Ok(()),
                Ok(other) => other,
                Err(e) => e.to_string(),
            };
            assert!(
                Instant::now() < deadline,
                "redis-server {i} (port {port}) did not answer within 10 s: {last}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last lines of the log of the node on `port`.
    fn log_tail(&self, port: u16) -> String {
        let log = self.dir.join(format!("redis-{port}.log"));
        let text = fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// A `redis-cli` subscribed to one channel of one node, as an operator's would be: `SUBSCRIBE`
/// or `SSUBSCRIBE` (a sharded channel, on the node serving its slot). Killed when dropped.
pub struct Subscriber {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl OwnRedisCluster {
    /// A subscriber on node `i` (`command` is `SUBSCRIBE` or `SSUBSCRIBE`), once the node has
    /// confirmed the subscription (5 s).
    pub async fn subscriber(&self, i: usize, command: &str, channel: &str) -> Subscriber {
        use tokio::io::AsyncBufReadExt;

        let mut child = tokio::process::Command::new("redis-cli")
            .args(["-p", &self.ports[i].to_string(), command, channel])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-cli is needed for the Redis Cluster tests");
        let stdout = child.stdout.take().unwrap();
        let mut subscriber = Subscriber {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
        };
        // The confirmation: the command's name in lower case, the channel, the count.
        let confirmation = subscriber.reply(Duration::from_secs(5)).await;
        assert_eq!(
            confirmation.first().map(String::as_str),
            Some(command.to_lowercase().as_str()),
            "{command} {channel} on node {i}: {confirmation:?}"
        );
        subscriber
    }
}

impl Subscriber {
    /// The next message's payload, or None if none comes within `within` (or the connection
    /// ends).
    pub async fn message_within(&mut self, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let reply = tokio::time::timeout(remaining, self.read_reply())
                .await
                .ok()??;
            // `message <channel> <payload>` or `smessage <channel> <payload>`.
            if matches!(reply[0].as_str(), "message" | "smessage") {
                return Some(reply[2].clone());
            }
        }
    }

    async fn reply(&mut self, within: Duration) -> Vec<String> {
        match tokio::time::timeout(within, self.read_reply()).await {
            Ok(Some(reply)) => reply,
            Ok(None) => panic!("redis-cli's subscription ended"),
            Err(_) => panic!("redis-cli said nothing within {within:?}"),
        }
    }

    /// One push reply: three lines (kind, channel, payload or count), as redis-cli prints them
    /// when its output is not a terminal.
    async fn read_reply(&mut self) -> Option<Vec<String>> {
        let mut reply = Vec::new();
        while reply.len() < 3 {
            reply.push(self.lines.next_line().await.ok()??);
        }
        Some(reply)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Drop for OwnRedisCluster {
    fn drop(&mut self) {
        for i in 0..self.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            // The nodes' own account of what happened, for the failing test's output.
            for &port in &self.ports {
                let tail = self.log_tail(port);
                eprintln!("--- redis-server {port}, last lines of its log:\n{tail}");
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Who serves the slots: `(first, last, port)`, in slot order.
type SlotOwners = Vec<(usize, usize, u16)>;

/// One line of `CLUSTER NODES`: `<id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch>
/// <link> <slot or range>...`.
struct Entry {
    port: u16,
    flags: String,
    slots: Vec<std::ops::RangeInclusive<usize>>,
}

impl Entry {
    fn parse(line: &str) -> Option<Entry> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let address = f.get(1)?.split(['@', ',']).next()?;
        let port = address.rsplit(':').next()?.parse().ok()?;
        let slots = f
            .get(8..)
            .unwrap_or_default()
            .iter()
            // `[slot->-node]` and `[slot-<-node]`: a slot being migrated, not served here.
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some(a.parse().ok()?..=b.parse().ok()?),
                None => s.parse().ok().map(|a| a..=a),
            })
            .collect();
        Some(Entry {
            port,
            flags: f.get(2)?.to_string(),
            slots,
        })
    }

    fn is_master(&self) -> bool {
        self.flags.split(',').any(|f| f == "master")
    }
}

/// `k` distinct free ports of 127.0.0.1 (all bound at once, then let go).
fn free_ports(k: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..k)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// `field:value` lines (CLUSTER INFO, INFO) as a map.
fn fields(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// One command on the node at `port`, on a connection of its own, bounded by `COMMAND_TIMEOUT`.
async fn query<T: FromRedisValue>(port: u16, args: &[&str]) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let mut cmd = redis::cmd(args[0]);
    cmd.arg(&args[1..]);
    cmd.query_async(&mut conn).await
}

/// Polls `check` every 50 ms until it is Ok; panics after `limit` with its last complaint.
async fn within<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = match check().await {
            Ok(()) => return,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "waited {limit:?} for {what}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
