//! One error type for the whole service, rendered as the contract's error body.
//!
//! REST handlers return `Result<_, AppError>`; socket handlers turn the same errors into
//! `{"ok": false, "error": {...}}` acks. Each variant has one status and one stable code, so a
//! client can branch on `code` and show `message`.

use std::{collections::BTreeMap, time::Duration};

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;

/// Field name -> why it was refused.
pub type FieldErrors = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    InvalidInput {
        message: String,
        fields: Option<FieldErrors>,
    },
    #[error("missing, invalid, expired or revoked access token")]
    Unauthorized,
    #[error("{0}")]
    UnauthorizedBecause(&'static str),
    #[error("unknown username or wrong password")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(String),
    #[error("this account is disabled")]
    AccountDisabled,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than MAX_BODY_BYTES allows")]
    PayloadTooLarge,
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Duration,
    },
    #[error("join the room first")]
    NotJoined,
    #[error("{0} is unavailable")]
    Unavailable(&'static str),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn invalid(message: impl Into<String>) -> Self {
        AppError::InvalidInput {
            message: message.into(),
            fields: None,
        }
    }

    /// A bad value of one field.
    pub fn invalid_field(field: &str, why: impl Into<String>) -> Self {
        let why = why.into();
        AppError::InvalidInput {
            message: format!("{field} {why}"),
            fields: Some(BTreeMap::from([(field.to_owned(), why)])),
        }
    }

    pub fn not_found() -> Self {
        AppError::NotFound("not found".into())
    }

    pub fn forbidden() -> Self {
        AppError::Forbidden("you are not allowed to do this".into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::InvalidInput { .. } | AppError::NotJoined => StatusCode::BAD_REQUEST,
            AppError::Unauthorized
            | AppError::UnauthorizedBecause(_)
            | AppError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) | AppError::AccountDisabled => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::InvalidInput { .. } => "invalid_input",
            AppError::Unauthorized | AppError::UnauthorizedBecause(_) => "unauthorized",
            AppError::InvalidCredentials => "invalid_credentials",
            AppError::Forbidden(_) => "forbidden",
            AppError::AccountDisabled => "account_disabled",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::PayloadTooLarge => "payload_too_large",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::NotJoined => "not_joined",
            AppError::Unavailable(_) => "unavailable",
            AppError::Internal(_) => "internal",
        }
    }

    /// The `error` object of the contract. Internal errors are logged here, once, with their
    /// cause; the client only learns that something broke.
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            AppError::Internal(cause) => {
                tracing::error!(error = ?cause, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        ErrorBody {
            code: self.code(),
            message,
            fields: match self {
                AppError::InvalidInput { fields, .. } => fields.clone(),
                _ => None,
            },
            retry_after_ms: match self {
                AppError::RateLimited { retry_after, .. } => {
                    Some(retry_after.as_millis().max(1) as u64)
                }
                _ => None,
            },
        }
    }
}

/// The object under `"error"` in every failure, REST or socket ack.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// Stable, for clients to branch on: `invalid_input`, `unauthorized`,
    /// `invalid_credentials`, `forbidden`, `account_disabled`, `not_found`, `conflict`,
    /// `payload_too_large`, `rate_limited`, `not_joined`, `unavailable`, `internal`.
    #[schema(value_type = String, example = "not_found")]
    pub code: &'static str,
    /// For people: what went wrong.
    pub message: String,
    /// `invalid_input` only: each field at fault and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(inline)]
    pub fields: Option<FieldErrors>,
    /// `rate_limited` only: how long to wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub retry_after_ms: Option<u64>,
}

/// Every failure's body: `{"error": {...}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    error: ErrorBody,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status(), Json(ErrorResponse { error: self.body() })).into_response();
        if let AppError::RateLimited { retry_after, .. } = &self {
            // Whole seconds, rounded up, as the header requires.
            let secs = retry_after.as_millis().div_ceil(1000).max(1);
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        if is_connection_error(&err) {
            tracing::warn!(error = %err, "database unavailable");
            return AppError::Unavailable("the database");
        }
        if let Some(db) = err.as_database_error() {
            if let Some(message) = db.constraint().and_then(conflict_message) {
                return AppError::Conflict(message.to_owned());
            }
        }
        AppError::Internal(err.into())
    }
}

/// Unique constraints that clients can run into, and what to tell them. The database decides
/// who wins a race for a name; this only phrases the answer.
fn conflict_message(constraint: &str) -> Option<&'static str> {
    match constraint {
        "users_username_key" => Some("this username is taken"),
        "rooms_name_key" => Some("a room with this name already exists"),
        "workspaces_slug_key" => Some("a workspace with this slug already exists"),
        _ => None,
    }
}

/// True when Postgres could not be reached or went away, as opposed to refusing a statement.
pub fn is_connection_error(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P01-57P03: the server is shutting down or starting.
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}
