//! Every setting, its default and its validation.
//!
//! Settings come from the environment (and `.env`, loaded by `main` before this runs). A bad
//! value is reported as one line naming the variable, what it must be and what it got, so that an
//! operator can fix it without reading code; `main` prints it and exits with code 2.

use std::{collections::HashMap, fmt, net::IpAddr, time::Duration};

/// Where structured logs go and in which shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The JWT signing secret. Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A connection URL that may carry a password (`postgres://user:password@host/db`). It reads as
/// the `str` it is; its `Debug` shows it with the password replaced, so printing the config
/// never prints a password.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl std::ops::Deref for SecretUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

/// `url` with the password of its user info (`scheme://user:password@host`) replaced by
/// `<redacted>`; anything else as it is.
pub fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let Some(at) = url[start..authority_end].rfind('@').map(|i| start + i) else {
        return url.to_owned();
    };
    match url[start..at].find(':').map(|i| start + i) {
        Some(colon) => format!("{}:<redacted>{}", &url[..colon], &url[at..]),
        None => url.to_owned(),
    }
}

/// The Redis the nodes meet on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisEngine {
    /// One server (`REDIS_URL`).
    Single(SecretUrl),
    /// A Redis Cluster, found through any of these seed nodes (`REDIS_CLUSTER_URLS`).
    Cluster(Vec<SecretUrl>),
}

#[derive(Clone, Debug)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub database_url: SecretUrl,
    /// Signing secret for access tokens.
    pub jwt_secret: Secret,
    /// Secrets of earlier `JWT_SECRET`s: tokens they signed still verify (key rotation).
    pub jwt_previous_secrets: Vec<Secret>,
    /// True when no `JWT_SECRET` was given and `jwt_secret` was made up at start.
    pub jwt_secret_generated: bool,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// The longest a session lasts from its login, however often it is refreshed.
    pub session_max_age: Duration,
    /// Messages replayed to a socket when it joins a room.
    pub history_limit: u32,
    /// Seconds after sending during which the sender may edit a message (0: no limit).
    pub edit_window: u64,
    /// Days the event log keeps an event (0: forever).
    pub event_retention_days: u64,
    /// Webhooks may be delivered to loopback, private and link-local addresses (tests, a
    /// receiver on the same private network). Off by default: the SSRF guard.
    pub webhook_allow_private: bool,
    /// The wait before a failed webhook delivery's first retry; it doubles with each attempt.
    pub webhook_retry_base: Duration,
    /// Set: several nodes meet over Redis (`REDIS_URL`) or a Redis Cluster
    /// (`REDIS_CLUSTER_URLS`). Unset: one node.
    pub redis: Option<RedisEngine>,
    /// Prefix of this cluster's Redis channels and keys (default `huddle:<database name>`), so
    /// that clusters sharing a Redis stay apart.
    pub redis_prefix: String,
    /// Public rooms that exist from the first start, and in every new workspace.
    pub default_rooms: Vec<String>,
    /// Whether `POST /api/workspaces` is open to anyone.
    pub workspace_signup: WorkspaceSignup,
    pub max_body_bytes: usize,
    /// Messages per second per user (sendMessage, directMessage, typing); 0 turns the limit off.
    pub message_rate: u32,
    pub message_burst: u32,
    /// Register + login per client address per minute, and the failed-login limit; 0: both off.
    pub auth_rate: u32,
    /// `None`: any origin (`*`).
    pub cors_origins: Option<Vec<String>>,
    /// Behind a reverse proxy: take the client address from the last `X-Forwarded-For` entry
    /// (the one the proxy added) instead of the TCP peer, for the per-address auth limit.
    pub trust_proxy: bool,
    pub log_format: LogFormat,
    /// Largest number of argon2 hashes computed at once (each takes 19 MiB and a core).
    pub password_hash_concurrency: usize,
    /// Password hashes that may wait for a hashing thread; beyond it: `503 unavailable`.
    pub password_hash_queue: usize,
    /// Largest number of Postgres connections this process opens.
    pub database_max_connections: u32,
    /// How often each node re-checks its live sockets' sessions and rooms, and so the longest a
    /// lost revocation signal can go unnoticed (`REVALIDATE_SECS`; zero turns re-checking off,
    /// including the one after each bus reconnect).
    pub revalidate_every: Duration,
    /// Sockets one user may have open on one node; the next is refused at the handshake.
    pub max_sockets_per_user: usize,
    /// Chat rooms one socket may be in at once.
    pub max_rooms_per_socket: usize,
    /// joinRoom, joinPrivateRoom, leaveRoom, history and listOnline per second per user (0: off),
    /// with bursts of `room_event_burst`.
    pub room_event_rate: u32,
    pub room_event_burst: u32,
    /// Rooms one user may create, and direct rooms one user may open, per hour (0: no limit).
    pub rooms_per_hour: u32,
    /// `Strict-Transport-Security: max-age=<this>` on every response; `None`: no HSTS header.
    pub hsts_max_age: Option<u64>,
    /// How long a client may take to send a request's headers, and how long a kept-alive HTTP
    /// connection may sit idle between requests.
    pub http_header_timeout: Duration,
}

/// Whether anyone may create a workspace with `POST /api/workspaces` (`WORKSPACE_SIGNUP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkspaceSignup {
    /// Only operators create workspaces (`huddle workspace create`); the default.
    Closed,
    Open,
}

impl WorkspaceSignup {
    pub fn is_open(self) -> bool {
        self == WorkspaceSignup::Open
    }
}

/// One invalid setting, already phrased for the operator.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@localhost:5432/huddle";

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads settings from a map of variables (the environment, or a test's own map).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env(vars);
        let (jwt_secret, jwt_secret_generated) = match env.get("JWT_SECRET") {
            Some(s) if s.len() >= 32 => (Secret(s.as_bytes().to_vec()), false),
            Some(s) => {
                return Err(ConfigError(format!(
                    "JWT_SECRET must be at least 32 bytes, got {} bytes",
                    s.len()
                )))
            }
            None => {
                use rand::RngCore;
                let mut bytes = vec![0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                (Secret(bytes), true)
            }
        };
        let mut jwt_previous_secrets = Vec::new();
        for (i, s) in env.list("JWT_PREVIOUS_SECRETS", "").into_iter().enumerate() {
            if s.len() < 32 {
                // The length only: even a bad secret is never echoed.
                return Err(ConfigError(format!(
                    "JWT_PREVIOUS_SECRETS must be a comma-separated list of secrets of at least 32 bytes each, got {} bytes in entry {}",
                    s.len(),
                    i + 1
                )));
            }
            jwt_previous_secrets.push(Secret(s.into_bytes()));
        }
        let database_url = env
            .get("DATABASE_URL")
            .unwrap_or(DEFAULT_DATABASE_URL)
            .to_owned();
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError(format!(
                "DATABASE_URL must be a postgres:// URL, got '{}'",
                redact_url(&database_url)
            )));
        }
        let redis_url = |name: &str, url: &str| {
            if url.starts_with("redis://") || url.starts_with("rediss://") {
                Ok(SecretUrl(url.to_owned()))
            } else {
                Err(ConfigError(format!(
                    "{name} must be a redis:// URL, got '{}'",
                    redact_url(url)
                )))
            }
        };
        let redis = match (env.get("REDIS_URL"), env.get("REDIS_CLUSTER_URLS")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError(
                    "set REDIS_URL (one Redis) or REDIS_CLUSTER_URLS (a Redis Cluster's seed nodes), not both".into(),
                ))
            }
            (Some(url), None) => Some(RedisEngine::Single(redis_url("REDIS_URL", url)?)),
            (None, Some(_)) => {
                let seeds = env.list("REDIS_CLUSTER_URLS", "");
                if seeds.is_empty() {
                    return Err(ConfigError(
                        "REDIS_CLUSTER_URLS must list at least one redis:// URL".into(),
                    ));
                }
                let seeds = seeds
                    .iter()
                    .map(|url| redis_url("REDIS_CLUSTER_URLS", url))
                    .collect::<Result<_, _>>()?;
                Some(RedisEngine::Cluster(seeds))
            }
            (None, None) => None,
        };
        let redis_prefix = match env.get("REDIS_PREFIX") {
            Some(prefix) => prefix.to_owned(),
            None => {
                let db = database_url
                    .split('?')
                    .next()
                    .and_then(|u| u.rsplit('/').next())
                    .filter(|d| !d.is_empty() && !d.contains('@'))
                    .unwrap_or("huddle");
                format!("huddle:{db}")
            }
        };
        let default_rooms = env.list("DEFAULT_ROOMS", "general");
        for room in &default_rooms {
            if !crate::validate::is_room_name(room) {
                return Err(ConfigError(format!(
                    "DEFAULT_ROOMS must be a comma-separated list of room names (1-64 of a-z, 0-9, _ and -), got '{room}'"
                )));
            }
        }
        let cors = env.list("CORS_ORIGINS", "*");
        let cors_origins = if cors.iter().any(|o| o == "*") {
            None
        } else {
            Some(cors)
        };
        let log_format = match env.get("LOG_FORMAT").unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError(format!(
                    "LOG_FORMAT must be 'text' or 'json', got '{other}'"
                )))
            }
        };
        let trust_proxy = match env.get("TRUST_PROXY").unwrap_or("false") {
            "true" | "1" => true,
            "false" | "0" => false,
            other => {
                return Err(ConfigError(format!(
                    "TRUST_PROXY must be 'true' or 'false', got '{other}'"
                )))
            }
        };
        let webhook_allow_private = match env.get("WEBHOOK_ALLOW_PRIVATE").unwrap_or("false") {
            "true" | "1" => true,
            "false" | "0" => false,
            other => {
                return Err(ConfigError(format!(
                    "WEBHOOK_ALLOW_PRIVATE must be 'true' or 'false', got '{other}'"
                )))
            }
        };
        let workspace_signup = match env.get("WORKSPACE_SIGNUP").unwrap_or("closed") {
            "closed" => WorkspaceSignup::Closed,
            "open" => WorkspaceSignup::Open,
            other => {
                return Err(ConfigError(format!(
                    "WORKSPACE_SIGNUP must be 'closed' or 'open', got '{other}'"
                )))
            }
        };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let password_hash_concurrency = env.positive("PASSWORD_HASH_CONCURRENCY", cores)?;
        Ok(Config {
            host: env.parse(
                "HOST",
                "0.0.0.0".parse().expect("literal address"),
                "an IP address",
            )?,
            port: env.parse("PORT", 3000, "a port number")?,
            database_url: SecretUrl(database_url),
            jwt_secret,
            jwt_previous_secrets,
            jwt_secret_generated,
            access_token_ttl: Duration::from_secs(env.positive("ACCESS_TOKEN_TTL", 900)?),
            refresh_token_ttl: Duration::from_secs(
                env.positive("REFRESH_TOKEN_TTL", 30 * 24 * 3600)?,
            ),
            session_max_age: Duration::from_secs(u64::from(env.bounded(
                "SESSION_MAX_AGE",
                90 * 24 * 3600,
                60,
                10 * 365 * 24 * 3600,
            )?)),
            history_limit: env.bounded("HISTORY_LIMIT", 50, 1, 1000)?,
            edit_window: env.parse("EDIT_WINDOW", 0, "a whole number of seconds (0: no limit)")?,
            event_retention_days: env.parse(
                "EVENT_RETENTION_DAYS",
                30,
                "a whole number of days (0: keep forever)",
            )?,
            webhook_allow_private,
            webhook_retry_base: Duration::from_millis(u64::from(env.bounded(
                "WEBHOOK_RETRY_BASE_MS",
                5_000,
                10,
                600_000,
            )?)),
            redis,
            redis_prefix,
            default_rooms,
            workspace_signup,
            max_body_bytes: env.positive("MAX_BODY_BYTES", 1024 * 1024)?,
            message_rate: env.parse(
                "MESSAGE_RATE",
                10,
                "a whole number of messages per second (0: off)",
            )?,
            message_burst: env.positive("MESSAGE_BURST", 30)?,
            auth_rate: env.parse(
                "AUTH_RATE",
                30,
                "a whole number of requests per minute (0: off)",
            )?,
            cors_origins,
            trust_proxy,
            log_format,
            password_hash_concurrency,
            password_hash_queue: env.positive(
                "PASSWORD_HASH_QUEUE",
                crate::auth::password::QUEUE_PER_THREAD * password_hash_concurrency,
            )?,
            database_max_connections: env.positive("DATABASE_MAX_CONNECTIONS", 20)?,
            revalidate_every: Duration::from_secs(
                env.bounded("REVALIDATE_SECS", 30, 0, 3600)?.into(),
            ),
            max_sockets_per_user: env.positive("MAX_SOCKETS_PER_USER", 20)?,
            max_rooms_per_socket: env.positive("MAX_ROOMS_PER_SOCKET", 100)?,
            room_event_rate: env.parse(
                "ROOM_EVENT_RATE",
                10,
                "a whole number of events per second (0: off)",
            )?,
            room_event_burst: env.positive("ROOM_EVENT_BURST", 60)?,
            rooms_per_hour: env.parse(
                "ROOMS_PER_HOUR",
                60,
                "a whole number of rooms per hour (0: no limit)",
            )?,
            http_header_timeout: Duration::from_secs(env.positive("HTTP_HEADER_TIMEOUT", 30)?),
            hsts_max_age: match env.get("HSTS_MAX_AGE") {
                None => None,
                Some(_) => Some(env.parse("HSTS_MAX_AGE", 0, "a whole number of seconds")?),
            },
        })
    }

    /// The previous JWT secrets' bytes, as `auth::token::Keys::new` takes them.
    pub fn jwt_previous_secrets(&self) -> Vec<&[u8]> {
        self.jwt_previous_secrets
            .iter()
            .map(|s| s.0.as_slice())
            .collect()
    }

    /// The address to listen on.
    pub fn listen_addr(&self) -> std::net::SocketAddr {
        (self.host, self.port).into()
    }
}

/// Typed reads of the variables, each failure phrased as one line.
struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    /// A set, non-empty variable (an empty one counts as unset, as in most shells' `.env` files).
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    fn parse<T: std::str::FromStr>(
        &self,
        name: &str,
        default: T,
        what: &str,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|_| ConfigError(format!("{name} must be {what}, got '{raw}'"))),
        }
    }

    fn positive<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + From<u8>,
    {
        let value = self.parse(name, default, "a whole number greater than 0")?;
        if value < T::from(1) {
            let raw = self.get(name).unwrap_or_default();
            return Err(ConfigError(format!(
                "{name} must be a whole number greater than 0, got '{raw}'"
            )));
        }
        Ok(value)
    }

    fn bounded(&self, name: &str, default: u32, min: u32, max: u32) -> Result<u32, ConfigError> {
        let what = format!("a whole number from {min} to {max}");
        let value: u32 = self.parse(name, default, &what)?;
        if !(min..=max).contains(&value) {
            return Err(ConfigError(format!("{name} must be {what}, got '{value}'")));
        }
        Ok(value)
    }

    fn list(&self, name: &str, default: &str) -> Vec<String> {
        self.0
            .get(name)
            .map(String::as_str)
            .unwrap_or(default)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = Config::from_vars(&vars(&[])).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.host.to_string(), "0.0.0.0");
        assert_eq!(&*c.database_url, DEFAULT_DATABASE_URL);
        assert!(c.jwt_secret_generated);
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert_eq!(c.history_limit, 50);
        assert_eq!(c.default_rooms, vec!["general"]);
        assert_eq!(c.max_body_bytes, 1024 * 1024);
        assert_eq!((c.message_rate, c.message_burst, c.auth_rate), (10, 30, 30));
        assert!(c.cors_origins.is_none());
        assert!(c.redis.is_none());
        assert_eq!(c.redis_prefix, "huddle:huddle");
        assert_eq!(c.workspace_signup, WorkspaceSignup::Closed);
    }

    #[test]
    fn one_redis_or_a_redis_cluster_not_both() {
        let one = Config::from_vars(&vars(&[("REDIS_URL", "redis://r:6379")])).unwrap();
        assert!(matches!(one.redis, Some(RedisEngine::Single(u)) if &*u == "redis://r:6379"));
        let seeds = "redis://a:7000, redis://b:7001,";
        let cluster = Config::from_vars(&vars(&[("REDIS_CLUSTER_URLS", seeds)])).unwrap();
        let Some(RedisEngine::Cluster(seeds)) = cluster.redis else {
            panic!("a cluster");
        };
        assert_eq!(seeds.len(), 2);
        assert_eq!(&*seeds[1], "redis://b:7001");
        for bad in [
            vec![
                ("REDIS_URL", "redis://r"),
                ("REDIS_CLUSTER_URLS", "redis://a"),
            ],
            vec![("REDIS_CLUSTER_URLS", "redis://a,http://b")],
            vec![("REDIS_CLUSTER_URLS", " , ")],
        ] {
            let err = Config::from_vars(&vars(&bad)).unwrap_err();
            assert!(err.to_string().contains("REDIS"), "{err}");
        }
    }

    #[test]
    fn workspace_signup_is_closed_or_open() {
        let open = Config::from_vars(&vars(&[("WORKSPACE_SIGNUP", "open")])).unwrap();
        assert!(open.workspace_signup.is_open());
        let closed = Config::from_vars(&vars(&[("WORKSPACE_SIGNUP", "closed")])).unwrap();
        assert!(!closed.workspace_signup.is_open());
    }

    #[test]
    fn a_bad_port_is_one_clear_line() {
        let err = Config::from_vars(&vars(&[("PORT", "abc")])).unwrap_err();
        assert_eq!(err.0, "PORT must be a port number, got 'abc'");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("PORT", "70000"),
            ("HOST", "example"),
            ("JWT_SECRET", "short"),
            ("ACCESS_TOKEN_TTL", "0"),
            ("REFRESH_TOKEN_TTL", "-5"),
            ("HISTORY_LIMIT", "0"),
            ("MAX_BODY_BYTES", "1MB"),
            ("MESSAGE_RATE", "fast"),
            ("MESSAGE_BURST", "0"),
            ("AUTH_RATE", "-1"),
            ("LOG_FORMAT", "xml"),
            ("DATABASE_URL", "mysql://x"),
            ("REDIS_URL", "localhost:6379"),
            ("DEFAULT_ROOMS", "general,Bad Room"),
            ("TRUST_PROXY", "maybe"),
            ("WEBHOOK_ALLOW_PRIVATE", "yes"),
            ("WEBHOOK_RETRY_BASE_MS", "0"),
            (
                "JWT_PREVIOUS_SECRETS",
                "0123456789abcdef0123456789abcdef,short",
            ),
            ("MAX_SOCKETS_PER_USER", "0"),
            ("MAX_ROOMS_PER_SOCKET", "many"),
            ("ROOM_EVENT_RATE", "-1"),
            ("ROOM_EVENT_BURST", "0"),
            ("ROOMS_PER_HOUR", "x"),
            ("HSTS_MAX_AGE", "1y"),
            ("HTTP_HEADER_TIMEOUT", "0"),
            ("WORKSPACE_SIGNUP", "yes"),
        ] {
            let err = Config::from_vars(&vars(&[(name, value)])).unwrap_err();
            assert!(
                err.0.starts_with(&format!("{name} must be")),
                "{name}: {}",
                err.0
            );
            assert!(!err.0.contains('\n'));
        }
    }

    #[test]
    fn the_secret_is_never_printed() {
        let c = Config::from_vars(&vars(&[
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            (
                "JWT_PREVIOUS_SECRETS",
                "previous-secret-one-0123456789abcdef, previous-secret-two-0123456789abcdef",
            ),
        ]))
        .unwrap();
        assert_eq!(c.jwt_previous_secrets.len(), 2);
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        let err =
            Config::from_vars(&vars(&[("JWT_PREVIOUS_SECRETS", "not-long-enough")])).unwrap_err();
        assert!(!err.0.contains("not-long-enough"), "{}", err.0);
        assert!(!c.jwt_secret_generated);
    }

    #[test]
    fn url_passwords_are_never_printed() {
        let c = Config::from_vars(&vars(&[
            (
                "DATABASE_URL",
                "postgres://huddle:db-pass-word@db:5432/huddle",
            ),
            ("REDIS_URL", "redis://:redis-pass-word@cache:6379/0"),
        ]))
        .unwrap();
        assert_eq!(
            &*c.database_url,
            "postgres://huddle:db-pass-word@db:5432/huddle"
        );
        let printed = format!("{c:?}");
        assert!(!printed.contains("pass-word"), "{printed}");
        assert!(printed.contains("postgres://huddle:<redacted>@db:5432/huddle"));
        for (name, value) in [
            ("DATABASE_URL", "mysql://root:db-pass-word@db/x"),
            ("REDIS_URL", "http://u:redis-pass-word@cache"),
        ] {
            let err = Config::from_vars(&vars(&[(name, value)])).unwrap_err();
            assert!(!err.0.contains("pass-word"), "{}", err.0);
            assert!(err.0.contains(":<redacted>@"), "{}", err.0);
        }
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://u:p@h/db?x=a@b"),
            "postgres://u:<redacted>@h/db?x=a@b"
        );
    }

    #[test]
    fn zero_turns_rate_limits_off_and_origins_are_a_list() {
        let c = Config::from_vars(&vars(&[
            ("MESSAGE_RATE", "0"),
            ("AUTH_RATE", "0"),
            ("CORS_ORIGINS", "https://a.example, https://b.example"),
        ]))
        .unwrap();
        assert_eq!((c.message_rate, c.auth_rate), (0, 0));
        assert_eq!(
            c.cors_origins.unwrap(),
            vec!["https://a.example", "https://b.example"]
        );
    }
}
