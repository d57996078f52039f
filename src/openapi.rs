//! The OpenAPI 3.1 document of the REST API (`GET /openapi.json`), generated from the code.
//!
//! Each handler carries its `#[utoipa::path]` (path, parameters, body, its own answers) and is
//! registered through `utoipa_axum::routes!`, which adds the route and its description together:
//! a route cannot be served without being described, nor described without being served (see
//! `tests/openapi.rs`). The answers every route shares (a malformed body, a missing token, the
//! database away) are added here, once, from what each operation declares, rather than repeated
//! on 45 handlers where one would be forgotten.

use utoipa::{
    openapi::{
        header::HeaderBuilder,
        path::{Operation, Parameter, ParameterBuilder, ParameterIn},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        ContentBuilder, InfoBuilder, LicenseBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Required,
        Response, ResponseBuilder, Tag, Type,
    },
    PartialSchema, ToSchema,
};

use crate::error::ErrorResponse;

/// The security scheme of user routes: an access token from login, registration or refresh.
pub const USER_TOKEN: &str = "user_token";
/// The security scheme of `/api/server/*`: an API key (`hk_...`).
pub const API_KEY: &str = "api_key";

/// The whole document, without a server: what `GET /openapi.json` serves.
pub fn document() -> OpenApi {
    finish(crate::http::router().split_for_parts().1)
}

/// Completes the document that `routes!` collected: its description, security schemes, tags,
/// the error schema, and the answers every operation shares.
pub fn finish(mut api: OpenApi) -> OpenApi {
    api.info = InfoBuilder::new()
        .title("Huddle")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "The REST API of Huddle, an authenticated real-time chat backend: accounts, rooms \
             and their members, history and message changes for users (an access token), and \
             the server API for the product's own backend (an API key). The Socket.IO events \
             are described in docs/api.md and typed in clients/ts. Every failure answers \
             `{\"error\": {\"code\", \"message\", \"fields\"?, \"retry_after_ms\"?}}`.",
        ))
        .license(Some(LicenseBuilder::new().name("MIT").build()))
        .build();
    api.tags = Some(
        [
            (
                "accounts",
                "Registration, login, sessions and the caller's account.",
            ),
            (
                "workspaces",
                "Workspaces (tenants): the caller's own, and self-service signup.",
            ),
            (
                "rooms",
                "Rooms, their members (the ACL), direct rooms and read positions.",
            ),
            (
                "messages",
                "History, one message, edits, deletions, reactions, threads, the change feed.",
            ),
            ("admin", "Workspace admins: disabling users, API keys."),
            (
                "server",
                "The server API, for the product's backend, with an API key.",
            ),
            ("ops", "Health, readiness and metrics."),
        ]
        .into_iter()
        .map(|(name, description)| {
            let mut tag = Tag::new(name);
            tag.description = Some(description.to_owned());
            tag
        })
        .collect(),
    );
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        USER_TOKEN,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "`Authorization: Bearer <access_token>` from /api/auth/login, \
                     /api/auth/register or /api/auth/refresh.",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        API_KEY,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "`Authorization: Bearer hk_...`: an API key made with `huddle api-key create` \
                     or POST /api/admin/api-keys.",
                ))
                .build(),
        ),
    );
    let mut schemas = Vec::new();
    ErrorResponse::schemas(&mut schemas);
    schemas.push((ErrorResponse::name().into_owned(), ErrorResponse::schema()));
    components.schemas.extend(schemas);

    for (path, item) in api.paths.paths.iter_mut() {
        let server = path.starts_with("/api/server/");
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            add_shared_answers(op, server);
        }
    }
    api
}

/// What any operation may answer beyond its own declared outcomes, from its shape: a body or
/// query can be malformed (400) or too large (413), a token missing (401), a path id malformed
/// (404: no such thing can exist), and any route can meet the database away (503) or a bug (500).
fn add_shared_answers(op: &mut Operation, server: bool) {
    let params = op.parameters.as_deref().unwrap_or_default();
    let has_path_param = params
        .iter()
        .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Path));
    let has_query = params
        .iter()
        .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Query));
    let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
    if server {
        // A platform key names the workspace it acts in with this header.
        op.parameters
            .get_or_insert_with(Vec::new)
            .push(RefOr::T(workspace_header()));
    }
    let mut add = |status: &str, description: &str| {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(error_answer(description)));
    };
    if op.request_body.is_some() || has_query || server {
        add(
            "400",
            "`invalid_input`: the body, a query parameter or a header is malformed or out of \
             bounds (`fields` names each one at fault).",
        );
    }
    if op.request_body.is_some() {
        add(
            "413",
            "`payload_too_large`: the body is larger than MAX_BODY_BYTES.",
        );
    }
    if authenticated {
        add(
            "401",
            if server {
                "`unauthorized`: no API key, or an unknown or revoked one."
            } else {
                "`unauthorized`: no access token, or an invalid, expired or revoked one."
            },
        );
    }
    if has_path_param {
        add(
            "404",
            "`not_found`: no such thing, or not visible to the caller.",
        );
    }
    if server {
        add(
            "403",
            "`forbidden`: a workspace key naming another workspace in Huddle-Workspace.",
        );
        add(
            "404",
            "`not_found`: no workspace with the slug given in Huddle-Workspace.",
        );
    }
    add(
        "500",
        "`internal`: a bug; the cause is logged, never shown.",
    );
    add(
        "503",
        "`unavailable`: the database (or another dependency) cannot be reached right now.",
    );
    if let Some(RefOr::T(limited)) = op.responses.responses.get_mut("429") {
        limited
            .headers
            .entry("Retry-After".to_owned())
            .or_insert_with(|| {
                RefOr::T(
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                        .description(Some("Whole seconds to wait before trying again."))
                        .build(),
                )
            });
    }
}

/// An error answer: the contract's error body.
fn error_answer(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorResponse::name())))
                .build(),
        )
        .build()
}

fn workspace_header() -> Parameter {
    ParameterBuilder::new()
        .name("Huddle-Workspace")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "With a platform key: the slug of the workspace to act in (absent: `default`). A \
             workspace key naming another workspace is refused (403).",
        ))
        .schema(Some(String::schema()))
        .build()
}

/// The document as served: built once, at startup.
pub fn json(api: &OpenApi) -> String {
    // A document utoipa built always serialises; should that ever change, an empty object
    // is served rather than a panic at startup.
    api.to_json().unwrap_or_else(|_| "{}".to_owned())
}
