//! Request extractors whose rejections speak the contract's error body.
//!
//! axum's own extractors answer failures in plain text; these wrap them so that malformed JSON,
//! a wrong content type, an oversized body, a bad path id or a bad query all come back as
//! `{"error": {"code", "message", "fields"?}}`.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{AppError, FieldErrors};

/// A JSON body in, a JSON body out.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(req.headers()) {
            return Err(AppError::invalid(
                "expected a JSON body with content-type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge
            } else {
                AppError::invalid("the request body could not be read")
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn has_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Parses a JSON object into `T`, naming the field at fault when there is one.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => {
            return Err(AppError::invalid(
                "the request body is empty; expected a JSON object",
            ))
        }
        Some(b'{') => {}
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() => {
            return Err(AppError::invalid("the request body is not valid JSON"))
        }
        Some(_) => return Err(AppError::invalid("the request body must be a JSON object")),
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(json_error)?;
    de.end()
        .map_err(|_| AppError::invalid("the request body is not valid JSON"))?;
    Ok(value)
}

/// Turns serde's complaint into an `invalid_input` naming the field.
fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> AppError {
    use serde_json::error::Category;
    let path = err.path().to_string();
    let inner = err.into_inner();
    match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            AppError::invalid("the request body is not valid JSON")
        }
        Category::Data => {
            let text = inner.to_string();
            // serde says "<what> at line L column C": the position is noise for a client.
            let what = text.split(" at line ").next().unwrap_or(&text).to_owned();
            if let Some(field) = what
                .strip_prefix("missing field `")
                .and_then(|rest| rest.strip_suffix('`'))
            {
                let field = if path == "." {
                    field.to_owned()
                } else {
                    format!("{path}.{field}")
                };
                return AppError::InvalidInput {
                    message: format!("{field} is required"),
                    fields: Some(FieldErrors::from([(field, "is required".to_owned())])),
                };
            }
            if path == "." {
                return AppError::invalid(what);
            }
            AppError::InvalidInput {
                message: format!("{path}: {what}"),
                fields: Some(FieldErrors::from([(path, what)])),
            }
        }
    }
}

/// A path parameter; anything that does not parse (a malformed id) is `404 not_found`, since
/// no such thing can exist.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|_| AppError::not_found())
    }
}

/// Query parameters; a bad one is `400 invalid_input`.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|rejection| AppError::invalid(rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Login {
        username: String,
        password: String,
    }

    fn code_and_fields(err: AppError) -> (String, Option<FieldErrors>) {
        match err {
            AppError::InvalidInput { message, fields } => (message, fields),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn names_the_missing_field() {
        let (_, fields) =
            code_and_fields(parse_json::<Login>(br#"{"username":"bob"}"#).unwrap_err());
        assert_eq!(fields.unwrap()["password"], "is required");
    }

    #[test]
    fn names_the_field_of_the_wrong_type() {
        let (_, fields) =
            code_and_fields(parse_json::<Login>(br#"{"username":5,"password":"x"}"#).unwrap_err());
        assert!(fields.unwrap()["username"].contains("expected a string"));
    }

    #[test]
    fn refuses_what_is_not_an_object() {
        for body in [
            &b"[\"bob\", \"pw\"]"[..],
            b"\"x\"",
            b"",
            b"{",
            b"{} trailing",
            b"nul",
        ] {
            let (message, _) = code_and_fields(parse_json::<Login>(body).unwrap_err());
            assert!(!message.is_empty());
        }
    }
}
