//! Several real `huddle` server processes on free ports of 127.0.0.1, sharing one fresh
//! database and one Redis (`REDIS_URL`) or Redis Cluster (`REDIS_CLUSTER_URLS`). Dropping the
//! cluster stops the processes and drops the database.
//!
//! The multi-node suites start theirs with `TestCluster::start_on_test_redis`: on the machine's
//! Redis, or, when `TEST_REDIS_CLUSTER=1`, on a fresh Redis Cluster of their own (3 masters).

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sqlx::PgPool;
use uuid::Uuid;

use super::{postgres_server_url, redis_cluster::OwnRedisCluster, Api, TEST_JWT_SECRET};

/// Where the nodes meet.
#[derive(Clone, Debug)]
pub enum RedisEngine {
    /// One Redis: `REDIS_URL`.
    Single(String),
    /// A Redis Cluster: `REDIS_CLUSTER_URLS`, its comma-separated seed URLs.
    Cluster(String),
}

impl RedisEngine {
    /// The variable and value a node is given.
    fn var(&self) -> (&'static str, &str) {
        match self {
            RedisEngine::Single(url) => ("REDIS_URL", url),
            RedisEngine::Cluster(seeds) => ("REDIS_CLUSTER_URLS", seeds),
        }
    }
}

/// The machine's Redis the multi-node tests share (`HUDDLE_TEST_REDIS`, default
/// `redis://127.0.0.1:6379`).
pub fn test_redis_url() -> String {
    std::env::var("HUDDLE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Whether the multi-node suites run on Redis Clusters of their own (`TEST_REDIS_CLUSTER=1`).
pub fn on_redis_cluster() -> bool {
    std::env::var("TEST_REDIS_CLUSTER").is_ok_and(|v| v == "1")
}

pub struct Node {
    pub api: Api,
    pub port: u16,
    child: Option<Child>,
}

impl std::ops::Deref for Node {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Node {
    /// Stops the process (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Node {
    /// Starts a node on a free port against `database_url` (and Redis, if given), with test
    /// settings (rate limits off) and `env` on top. It may not be ready yet: see `wait_ready`.
    pub fn spawn(database_url: &str, redis: Option<&RedisEngine>, env: &[(&str, &str)]) -> Node {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_huddle"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("JWT_SECRET", TEST_JWT_SECRET)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("AUTH_RATE", "0")
            .env("MESSAGE_RATE", "0")
            .env("DATABASE_MAX_CONNECTIONS", "5")
            .env(
                "RUST_LOG",
                std::env::var("TEST_LOG").map_or("warn".into(), |v| {
                    if v == "1" {
                        "info".to_owned()
                    } else {
                        v
                    }
                }),
            )
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null());
        if let Some(redis) = redis {
            let (var, value) = redis.var();
            cmd.env(var, value);
        }
        if std::env::var_os("TEST_LOG").is_none() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start huddle");
        Node {
            api: Api::new(format!("http://127.0.0.1:{port}")),
            port,
            child: Some(child),
        }
    }
}

impl Node {
    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct TestCluster {
    pub nodes: Vec<Node>,
    pub db: PgPool,
    /// Where the nodes meet.
    pub redis: RedisEngine,
    /// The Redis Cluster started for this cluster alone (`start_on_test_redis` under
    /// `TEST_REDIS_CLUSTER=1`); dropped after the nodes are stopped.
    pub own_redis_cluster: Option<OwnRedisCluster>,
    db_name: String,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestCluster {
    /// Starts `n` nodes against the one Redis at `redis_url` (always: fault tests pass their
    /// own), with test settings (rate limits off) and `env` on top.
    pub async fn start(n: usize, redis_url: &str, env: &[(&str, &str)]) -> TestCluster {
        Self::start_on(n, RedisEngine::Single(redis_url.to_owned()), env).await
    }

    /// Starts `n` nodes on the machine's Redis (`test_redis_url`) or, when
    /// `TEST_REDIS_CLUSTER=1`, on a fresh Redis Cluster of 3 masters owned by the cluster.
    pub async fn start_on_test_redis(n: usize, env: &[(&str, &str)]) -> TestCluster {
        if !on_redis_cluster() {
            return Self::start(n, &test_redis_url(), env).await;
        }
        let own = OwnRedisCluster::start(3, 0).await;
        let mut c = Self::start_on(n, RedisEngine::Cluster(own.seeds()), env).await;
        c.own_redis_cluster = Some(own);
        c
    }

    /// Starts `n` nodes meeting over `redis`, with test settings (rate limits off) and `env` on
    /// top.
    pub async fn start_on(n: usize, redis: RedisEngine, env: &[(&str, &str)]) -> TestCluster {
        let db_name = format!("huddle_test_{}", Uuid::new_v4().simple());
        let database_url = format!("{}/{db_name}", postgres_server_url());
        let mut nodes = Vec::new();
        for _ in 0..n {
            let node = Node::spawn(&database_url, Some(&redis), env);
            // The first node creates and migrates the database; the others wait for it.
            wait_ready(&node).await;
            nodes.push(node);
        }
        if n > 1 {
            wait_acquainted(&nodes).await;
        }
        let db = PgPool::connect(&database_url).await.unwrap();
        TestCluster {
            nodes,
            db,
            redis,
            own_redis_cluster: None,
            db_name,
        }
    }

    /// The name of the cluster's database (the nodes' default `REDIS_PREFIX` is
    /// `huddle:<name>`).
    pub fn db_name(&self) -> &str {
        &self.db_name
    }

    /// A connection to the Redis node that holds `key`: the one Redis, or the master serving
    /// the key's slot in the Redis Cluster this cluster owns.
    pub async fn redis_for(&self, key: &str) -> redis::aio::MultiplexedConnection {
        let url = match (&self.redis, &self.own_redis_cluster) {
            (RedisEngine::Single(url), _) => url.clone(),
            (RedisEngine::Cluster(_), Some(own)) => own.url(own.master_for(key).await),
            (RedisEngine::Cluster(_), None) => {
                panic!("redis_for: this cluster's Redis Cluster is not its own")
            }
        };
        redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&self.db)
            .await
            .unwrap()
    }
}

/// Waits until every node knows every other from the node registry (up to 15 s): a node learns
/// of a newcomer from its announcement, or at its next registry read when that announcement
/// was lost, and until then its questions (socket counts, who is online) leave the newcomer
/// out. Tests of those answers need the settled state, not that window.
async fn wait_acquainted(nodes: &[Node]) {
    let others = (nodes.len() - 1) as u64;
    let deadline = Instant::now() + Duration::from_secs(15);
    for (i, node) in nodes.iter().enumerate() {
        loop {
            let peers = super::metric(node, "huddle_cluster_peers").await;
            if peers == Some(others) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} knows {peers:?} other nodes, not {others}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits until the node answers `/healthz` (up to 60 s).
pub async fn wait_ready(node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(res) = node.client.get(node.url("/healthz")).send().await {
            if res.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node on port {} did not start",
            node.port
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        super::drop_database(std::mem::take(&mut self.db_name));
    }
}

/// A Redis server of the test's own, on a free port, for fault tests.
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    pub async fn start() -> OwnRedis {
        let port = free_port();
        let mut redis = OwnRedis { port, child: None };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers, as with a
    /// network partition or a paused container, which fails nothing fast.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Starts it again on the same port and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed for the fault test");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ping = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "ping"])
                .output();
            if ping.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG") {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
