//! Access tokens (HS256 JWTs) and refresh tokens (random, stored only as SHA-256).
//!
//! Keys rotate without logging anyone out: `JWT_SECRET` signs and verifies, each of
//! `JWT_PREVIOUS_SECRETS` still verifies. An operator moves the old secret to the previous list,
//! sets a new one, and drops the old one once `ACCESS_TOKEN_TTL` has passed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{error::AppError, workspaces::WorkspaceId};

/// The claims of an access token, exactly as the contract lists them.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The session id: revoking the session kills the token before it expires.
    pub sid: Uuid,
    /// The workspace of the user and the session. Checked against the session on every request
    /// (`auth::authenticate`), so it is a statement the server made, never a client's choice.
    pub wid: WorkspaceId,
    pub iat: u64,
    pub exp: u64,
}

/// Signing and checking keys, built once from `JWT_SECRET` and `JWT_PREVIOUS_SECRETS`.
pub struct Keys {
    encoding: EncodingKey,
    /// The current secret's key first, then the previous ones'.
    decoding: Vec<DecodingKey>,
    validation: Validation,
    pub access_ttl: Duration,
}

impl Keys {
    /// Keys that sign with `secret` and verify with it and with each of `previous`.
    pub fn new(secret: &[u8], previous: &[&[u8]], access_ttl: Duration) -> Self {
        // Only HS256 is accepted: `none`, RS*/ES* and the other HMACs are refused by the library
        // before the signature is looked at.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: std::iter::once(secret)
                .chain(previous.iter().copied())
                .map(DecodingKey::from_secret)
                .collect(),
            validation,
            access_ttl,
        }
    }

    /// A fresh access token for a session of a user of `ws`.
    pub fn issue(
        &self,
        ws: WorkspaceId,
        user_id: Uuid,
        session_id: Uuid,
    ) -> anyhow::Result<String> {
        let iat = unix_now();
        let claims = Claims {
            sub: user_id,
            sid: session_id,
            wid: ws,
            iat,
            exp: iat + self.access_ttl.as_secs(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The claims of a well-signed, unexpired token. Whether its session is still live is the
    /// caller's question (see `auth::authenticate`).
    pub fn verify(&self, token: &str) -> Result<Claims, AppError> {
        for key in &self.decoding {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => return Ok(data.claims),
                // Only a signature that does not match is worth trying the next key for; an
                // expired, malformed or wrongly-typed token is refused whichever key signed it.
                Err(err) if matches!(err.kind(), ErrorKind::InvalidSignature) => continue,
                Err(_) => return Err(AppError::Unauthorized),
            }
        }
        Err(AppError::Unauthorized)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A new refresh token and the hash that is stored in its place.
pub fn new_refresh_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

/// SHA-256 is enough here: the token is 256 random bits, so there is nothing to brute-force.
pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_a_foreign_one_does_not() {
        let keys = Keys::new(&[7; 32], &[], Duration::from_secs(60));
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        let ws = WorkspaceId::from(Uuid::now_v7());
        let token = keys.issue(ws, user, session).unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.sub, claims.sid, claims.wid), (user, session, ws));
        assert_eq!(claims.exp - claims.iat, 60);

        let other = Keys::new(&[8; 32], &[], Duration::from_secs(60));
        assert!(other.verify(&token).is_err());
    }

    #[test]
    fn a_previous_secret_still_verifies_but_never_signs() {
        let old = Keys::new(&[7; 32], &[], Duration::from_secs(60));
        let token = old
            .issue(WorkspaceId::DEFAULT, Uuid::now_v7(), Uuid::now_v7())
            .unwrap();
        let rotated = Keys::new(&[8; 32], &[&[9; 32], &[7; 32]], Duration::from_secs(60));
        assert!(rotated.verify(&token).is_ok());
        let fresh = rotated
            .issue(WorkspaceId::DEFAULT, Uuid::now_v7(), Uuid::now_v7())
            .unwrap();
        assert!(old.verify(&fresh).is_err());
        let unknown = Keys::new(&[6; 32], &[], Duration::from_secs(60));
        let foreign = unknown
            .issue(WorkspaceId::DEFAULT, Uuid::now_v7(), Uuid::now_v7())
            .unwrap();
        assert!(rotated.verify(&foreign).is_err());
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let (a, ha) = new_refresh_token();
        let (b, _) = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(ha, hash_refresh_token(&a));
        assert_eq!(ha.len(), 32);
    }
}
