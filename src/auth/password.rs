//! argon2id password hashing, off the async runtime.
//!
//! One hash costs ~19 MiB and tens of milliseconds of a core, so it runs on tokio's blocking
//! pool, and a semaphore caps how many run at once: a login flood queues here instead of
//! eating every core and all the memory the chat traffic needs.

use std::sync::Arc;

use anyhow::Context;
use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Algorithm, Argon2, Params, Version,
};
use tokio::sync::{OnceCell, Semaphore};

use crate::error::AppResult;

/// OWASP's recommendation for argon2id: 19 MiB, 2 iterations, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// Verified against when a login names an unknown user, so that it costs what a wrong
    /// password costs and timing does not tell which usernames exist.
    dummy_hash: Arc<OnceCell<String>>,
}

impl Passwords {
    pub fn new(concurrency: usize) -> Self {
        Passwords {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: Arc::new(OnceCell::new()),
        }
    }

    /// A PHC string for `password`, with a fresh salt.
    pub async fn hash(&self, password: String) -> AppResult<String> {
        self.blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))
        })
        .await
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
            .get_or_try_init(|| self.hash("not a password anyone has".to_owned()))
            .await
            .cloned()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> AppResult<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .context("password semaphore closed")?;
        let result = tokio::task::spawn_blocking(work)
            .await
            .context("password hashing task failed")??;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_only_its_password() {
        let passwords = Passwords::new(2);
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
    async fn an_unknown_user_never_verifies() {
        let passwords = Passwords::new(1);
        assert!(!passwords
            .verify("not a password anyone has".into(), None)
            .await
            .unwrap());
    }
}
