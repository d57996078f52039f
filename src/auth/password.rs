//! argon2id password hashing, off the async runtime and behind the chat traffic.
//!
//! One hash costs ~19 MiB and about 15 ms of a core. Hashes run on a few threads of their own
//! (`PASSWORD_HASH_CONCURRENCY`, default the number of cores): a login flood queues for them
//! instead of eating every core and all the memory the chat traffic needs. Those threads are in
//! the `SCHED_IDLE` class, so a runtime thread that wakes up never waits behind a hash. What a
//! login flood still costs the chat traffic is argon2's memory traffic, not scheduling; the
//! figures are in BENCHMARKS.md ("Profiles and what changed", logins).
//!
//! The queue in front of those threads is bounded (`PASSWORD_HASH_QUEUE`, default 64 per
//! thread: about a second of waiting at ~15 ms a hash). When it is full a login, registration or
//! password change is answered `503 unavailable` at once instead of waiting behind a flood (and
//! holding its request's memory) for longer than any client would. A job whose requester has
//! gone (the client hung up while it queued) is skipped, not hashed for no one.

use std::sync::{mpsc, Arc, Mutex};

use anyhow::Context;
use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Algorithm, Argon2, Params, Version,
};
use tokio::sync::{oneshot, OnceCell};

use crate::error::{AppError, AppResult};

/// OWASP's recommendation for argon2id: 19 MiB, 2 iterations, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

type Job = Box<dyn FnOnce() + Send>;

/// Queued jobs allowed per hashing thread when `PASSWORD_HASH_QUEUE` is not set.
pub const QUEUE_PER_THREAD: usize = 64;

#[derive(Clone)]
pub struct Passwords {
    jobs: mpsc::SyncSender<Job>,
    /// Verified against when a login names an unknown user, so that it costs what a wrong
    /// password costs and timing does not tell which usernames exist.
    dummy_hash: Arc<OnceCell<String>>,
}

impl Passwords {
    /// Starts `threads` hashing threads behind a queue of `queue` jobs; they end when the last
    /// `Passwords` clone is dropped. The dummy hash is made first thing, so no login waits for it.
    pub fn new(threads: usize, queue: usize) -> Self {
        let (jobs, queue) = mpsc::sync_channel::<Job>(queue.max(1));
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    crate::idle::lower_priority("a password hashing thread");
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        // A panicking hash must not take its thread along: the job's caller sees
                        // its reply dropped (an internal error), and the thread serves the next.
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                            tracing::error!("a password hashing job panicked");
                        }
                    }
                });
            if let Err(err) = spawned {
                tracing::error!(error = %err, "could not start a password hashing thread");
            }
        }
        let passwords = Passwords {
            jobs,
            dummy_hash: Arc::new(OnceCell::new()),
        };
        let cell = passwords.dummy_hash.clone();
        let made = passwords.jobs.try_send(Box::new(move || {
            if let Ok(hash) = hash_now(DUMMY_PASSWORD) {
                // A login that needed it sooner may have made one already: either will do.
                let _ = cell.set(hash);
            }
        }));
        if made.is_err() {
            tracing::warn!("could not queue the dummy password hash; it is made on first use");
        }
        passwords
    }

    /// A PHC string for `password`, with a fresh salt.
    pub async fn hash(&self, password: String) -> AppResult<String> {
        self.blocking(move || hash_now(&password)).await
    }

    /// Whether `password` matches `hash`. With no hash (an unknown user) the same work is done
    /// against a dummy hash and the answer is always no.
    pub async fn verify(&self, password: String, hash: Option<String>) -> AppResult<bool> {
        let (hash, known) = match hash {
            Some(hash) => (hash, true),
            None => (self.dummy_hash().await?, false),
        };
        let matches = self
            .blocking(move || {
                let parsed =
                    PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
                Ok(argon2()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok())
            })
            .await?;
        Ok(known && matches)
    }

    async fn dummy_hash(&self) -> AppResult<String> {
        self.dummy_hash
            .get_or_try_init(|| self.hash(DUMMY_PASSWORD.to_owned()))
            .await
            .cloned()
    }

    /// Runs `work` on a hashing thread and waits for it without blocking the runtime; `503
    /// unavailable` at once when the queue is full.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> AppResult<T> {
        let result = self.submit(work)?;
        let result = result.await.context("password hashing thread stopped")??;
        Ok(result)
    }

    /// Queues `work`; the receiver gets its result. Dropping the receiver before a thread takes
    /// the job means it is skipped.
    fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> AppResult<oneshot::Receiver<anyhow::Result<T>>> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The requester is gone (its client hung up): no one would read the answer.
            if done.is_closed() {
                return;
            }
            let _ = done.send(work());
        });
        match self.jobs.try_send(job) {
            Ok(()) => Ok(result),
            Err(mpsc::TrySendError::Full(_)) => Err(AppError::Unavailable(
                "password checking (too many at once; try again shortly)",
            )),
            Err(mpsc::TrySendError::Disconnected(_)) => {
                Err(anyhow::anyhow!("no password hashing thread is running").into())
            }
        }
    }
}

/// What the dummy hash is of; no one can log in with it, as it is never any user's hash.
const DUMMY_PASSWORD: &str = "not a password anyone has";

/// A PHC string for `password` with a fresh salt, on the calling thread.
fn hash_now(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_only_its_password() {
        let passwords = Passwords::new(2, 8);
        let hash = passwords.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(passwords
            .verify("correct horse".into(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!passwords
            .verify("wrong horse".into(), Some(hash))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_its_thread_goes_on() {
        let passwords = Passwords::new(1, 8);
        let failed = passwords
            .blocking(|| -> anyhow::Result<()> { panic!("a job that panics") })
            .await;
        assert!(failed.is_err());
        // The one hashing thread still serves.
        let hash = passwords.hash("still here".into()).await.unwrap();
        assert!(passwords
            .verify("still here".into(), Some(hash))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        let passwords = Passwords::new(1, 8);
        assert!(!passwords
            .verify("not a password anyone has".into(), None)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_is_unavailable_and_a_gone_requester_is_skipped() {
        use std::sync::atomic::{AtomicUsize, Ordering};

        let passwords = Passwords::new(1, 2);
        // The dummy hash is made at start.
        let started = std::time::Instant::now();
        while passwords.dummy_hash.get().is_none() {
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Hold the one thread, and wait until it has taken the job, so the queue is empty.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, has_started) = std::sync::mpsc::channel::<()>();
        let holding = passwords
            .submit(move || {
                let _ = started.send(());
                let _ = held.recv();
                Ok(())
            })
            .unwrap();
        has_started
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let job = |n| {
            let ran = ran.clone();
            move || {
                ran.fetch_add(n, Ordering::SeqCst);
                Ok(())
            }
        };
        let abandoned = passwords.submit(job(1)).unwrap();
        let kept = passwords.submit(job(10)).unwrap();
        // The queue holds 2: a third is refused at once.
        let refused = passwords.submit(job(100));
        assert_eq!(refused.unwrap_err().code(), "unavailable");
        // The first requester goes away before its turn: its job is skipped.
        drop(abandoned);
        release.send(()).unwrap();
        holding.await.unwrap().unwrap();
        kept.await.unwrap().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 10);
    }
}
