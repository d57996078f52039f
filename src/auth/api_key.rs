//! API keys: how the product's backend authenticates `/api/server/*`.
//!
//! A secret is `hk_` and 32 random bytes in base64url (43 characters); the database keeps its
//! SHA-256 and a short prefix to recognise it by. A user's access token is refused here, and a
//! key is refused on the user routes (it is not a JWT), both as `401 unauthorized`.

use axum::{extract::FromRequestParts, http::request::Parts};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    app::AppState,
    error::{AppError, AppResult},
    store, workspaces,
    workspaces::WorkspaceId,
};

const SCHEME: &str = "hk_";
/// 32 bytes in base64url without padding.
const SECRET_CHARS: usize = 43;
/// How much of a secret is kept in clear to recognise it: `hk_` and 8 characters (48 of its 256
/// bits), too little to guess the rest from.
const PREFIX_CHARS: usize = SCHEME.len() + 8;

/// The header a platform key names its workspace with (a slug).
pub const WORKSPACE_HEADER: &str = "huddle-workspace";

/// A fresh key: the secret (shown once), its prefix and its digest (stored).
pub struct Secret {
    pub secret: String,
    pub prefix: String,
    pub hash: Vec<u8>,
}

pub fn new_secret() -> Secret {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!("{SCHEME}{}", URL_SAFE_NO_PAD.encode(bytes));
    Secret {
        prefix: secret[..PREFIX_CHARS].to_owned(),
        hash: digest(&secret),
        secret,
    }
}

fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Whether a bearer token has the shape of a key secret (checked before any database trip).
fn is_key_shaped(token: &str) -> bool {
    token.strip_prefix(SCHEME).is_some_and(|rest| {
        rest.len() == SECRET_CHARS
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// A request of the server API: the key that made it and the workspace it acts in.
#[derive(Clone, Copy, Debug)]
pub struct ServerCaller {
    pub key_id: Uuid,
    /// A platform key (no workspace of its own).
    pub platform: bool,
    workspace: WorkspaceId,
}

impl ServerCaller {
    /// The workspace this request acts in: a workspace key's own, or the one a platform key
    /// named with `Huddle-Workspace` (default: `default`).
    pub fn workspace(&self) -> WorkspaceId {
        self.workspace
    }

    /// Creating and listing workspaces is for platform keys only.
    pub fn require_platform(&self) -> AppResult<()> {
        if self.platform {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                "only a platform key may manage workspaces".into(),
            ))
        }
    }
}

/// Checks the key of a request and settles its workspace. An unknown, revoked or malformed key
/// is `401 unauthorized`; a workspace key naming another workspace is `403 forbidden`; a
/// platform key naming an unknown one is `404 not_found`.
pub async fn authenticate(
    state: &AppState,
    token: &str,
    workspace: Option<&str>,
) -> AppResult<ServerCaller> {
    if !is_key_shaped(token) {
        return Err(AppError::Unauthorized);
    }
    let key = store::api_keys::use_key(&state.db, &digest(token))
        .await?
        .ok_or(AppError::Unauthorized)?;
    let workspace = match (key.workspace, workspace) {
        (None, named) => workspaces::existing(state, named).await?,
        (Some(own), None) => own,
        (Some(own), Some(named)) => match workspaces::resolve(state, Some(named)).await? {
            Some(ws) if ws == own => own,
            _ => {
                return Err(AppError::Forbidden(
                    "this key belongs to another workspace".into(),
                ))
            }
        },
    };
    Ok(ServerCaller {
        key_id: key.id,
        platform: key.workspace.is_none(),
        workspace,
    })
}

impl FromRequestParts<AppState> for ServerCaller {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = super::bearer_token(&parts.headers).ok_or(AppError::Unauthorized)?;
        let workspace = match parts.headers.get(WORKSPACE_HEADER) {
            None => None,
            Some(value) => match value.to_str() {
                Ok(slug) => Some(slug),
                Err(_) => {
                    // The key first: without a valid one, the answer is 401 whatever the headers.
                    authenticate(state, token, None).await?;
                    return Err(AppError::invalid_field(
                        "Huddle-Workspace",
                        "must be a workspace slug",
                    ));
                }
            },
        };
        let caller = authenticate(state, token, workspace).await?;
        // Into the request's span (`app::http_span`): every later log line of it names it.
        tracing::Span::current()
            .record("workspace.id", tracing::field::display(caller.workspace()));
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_secret_has_the_contract_shape_and_a_short_prefix() {
        let s = new_secret();
        assert!(is_key_shaped(&s.secret), "{}", s.secret);
        assert!(s.secret.starts_with(&s.prefix));
        assert_eq!(s.prefix.len(), 11);
        assert_eq!(s.hash, digest(&s.secret));
        assert_ne!(new_secret().secret, s.secret);
    }

    #[test]
    fn tokens_of_other_shapes_are_not_keys() {
        let s = new_secret().secret;
        assert!(!is_key_shaped(&s[..s.len() - 1]));
        assert!(!is_key_shaped(&format!("{s}a")));
        assert!(!is_key_shaped(&s.replacen("hk_", "hx_", 1)));
        assert!(!is_key_shaped(&format!("hk_{}", "!".repeat(43))));
        assert!(!is_key_shaped("eyJhbGciOiJIUzI1NiJ9.e30.sig"));
    }
}
