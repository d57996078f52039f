//! Property tests of every decoder of client input: REST bodies and query strings and Socket.IO
//! payloads (all through `huddle::decode`), the bounds of `validate`, and access tokens. Random
//! and mutated inputs must never panic, and every refusal must be the contract's
//! `invalid_input` (or `unauthorized` for tokens). The case counts keep this to a few seconds;
//! `PROPTEST_CASES=100000 cargo test --test fuzz` runs a longer campaign.

mod common;

use std::time::Duration;

use common::urlencode;
use huddle::{
    auth::token::Keys,
    decode,
    error::AppError,
    realtime::payload::{
        DirectMessage, HistoryQuery, JoinPrivateRoom, JoinRoom, MarkRead, RoomOnly, SendMessage,
        Typing,
    },
    validate::{self, PageQuery},
};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use uuid::Uuid;

/// Any JSON value, nested a few levels, with the strings and numbers clients get wrong.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        Just(json!("\u{0}")),
        Just(json!("general")),
        Just(json!(-1)),
        Just(json!(1e300)),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Field names of the contract's payloads, and others.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "room",
            "roomId",
            "since",
            "body",
            "client_id",
            "to",
            "before",
            "after",
            "limit",
            "seq",
            "typing",
            "username",
            "password",
            "display_name",
            "topic",
            "name",
            "visibility",
            "role",
            "refresh_token",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{0,12}",
    ]
}

/// Decoding either works or is refused as `invalid_input`: nothing else, no panic.
fn refused_cleanly<T>(result: Result<T, AppError>) -> Result<(), TestCaseError> {
    match result {
        Ok(_) | Err(AppError::InvalidInput { .. }) => Ok(()),
        Err(other) => Err(TestCaseError::fail(format!("unexpected {other:?}"))),
    }
}

fn every_payload(value: Value) -> Result<(), TestCaseError> {
    refused_cleanly(decode::string_or_object::<JoinRoom>(value.clone(), "room"))?;
    refused_cleanly(decode::string_or_object::<JoinPrivateRoom>(
        value.clone(),
        "roomId",
    ))?;
    refused_cleanly(decode::string_or_object::<RoomOnly>(value.clone(), "room"))?;
    refused_cleanly(decode::from_value::<SendMessage>(value.clone()))?;
    refused_cleanly(decode::from_value::<DirectMessage>(value.clone()))?;
    refused_cleanly(decode::from_value::<HistoryQuery>(value.clone()))?;
    refused_cleanly(decode::from_value::<MarkRead>(value.clone()))?;
    refused_cleanly(decode::from_value::<Typing>(value.clone()))?;
    refused_cleanly(decode::from_value::<PageQuery>(value).and_then(PageQuery::page))
}

fn every_body(bytes: &[u8]) -> Result<(), TestCaseError> {
    fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<(), TestCaseError> {
        refused_cleanly(decode::from_slice::<T>(bytes))
    }
    body::<SendMessage>(bytes)?;
    body::<MarkRead>(bytes)?;
    body::<HistoryQuery>(bytes)?;
    body::<Value>(bytes)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn socket_payloads_decode_or_are_invalid_input(value in json_value()) {
        every_payload(value)?;
    }

    #[test]
    fn payloads_with_every_field_of_a_wrong_kind_are_invalid_input(
        fields in prop::collection::btree_map(field_name(), json_value(), 1..10),
    ) {
        every_payload(Value::Object(fields.into_iter().collect()))?;
    }

    #[test]
    fn rest_bodies_of_any_bytes_decode_or_are_invalid_input(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        every_body(&bytes)?;
    }

    #[test]
    fn rest_bodies_of_any_json_decode_or_are_invalid_input(value in json_value()) {
        every_body(value.to_string().as_bytes())?;
    }

    #[test]
    fn query_strings_decode_or_are_invalid_input(query in ".{0,80}") {
        refused_cleanly(decode::from_query::<PageQuery>(&query).and_then(PageQuery::page))?;
    }

    #[test]
    fn query_strings_of_the_contracts_parameters_decode_or_are_invalid_input(
        pairs in prop::collection::vec(
            (prop::sample::select(vec!["before", "after", "limit"]), ".{0,24}"),
            0..5,
        ),
    ) {
        let query: String = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        refused_cleanly(decode::from_query::<PageQuery>(&query).and_then(PageQuery::page))?;
    }

    #[test]
    fn the_bounds_take_any_text(text in ".{0,300}") {
        let _ = validate::is_username(&text);
        let _ = validate::is_room_name(&text);
        refused_cleanly(validate::username("username", &text))?;
        refused_cleanly(validate::password("password", &text))?;
        refused_cleanly(validate::display_name("display_name", &text))?;
        refused_cleanly(validate::room_name("name", &text))?;
        refused_cleanly(validate::message_body("body", &text))?;
        refused_cleanly(validate::client_id("client_id", Some(text.clone())))?;
        refused_cleanly(validate::topic("topic", Some(&text)))?;
    }

    #[test]
    fn tokens_of_any_text_are_refused_as_unauthorized(token in ".{0,300}") {
        let keys = keys();
        prop_assert!(matches!(keys.verify(&token), Err(AppError::Unauthorized)));
    }

    #[test]
    fn a_token_changed_anywhere_is_refused_as_unauthorized(
        at in any::<prop::sample::Index>(),
        to in any::<char>(),
    ) {
        let keys = keys();
        let token = keys
            .issue(huddle::workspaces::WorkspaceId::DEFAULT, Uuid::now_v7(), Uuid::now_v7())
            .unwrap();
        let mut chars: Vec<char> = token.chars().collect();
        let i = at.index(chars.len());
        prop_assume!(chars[i] != to);
        chars[i] = to;
        let changed: String = chars.into_iter().collect();
        // A change inside the base64 padding bits can decode to the same bytes; anything that
        // still verifies must carry the very same claims.
        match keys.verify(&changed) {
            Err(AppError::Unauthorized) => {}
            Ok(claims) => {
                let original = keys.verify(&token).unwrap();
                prop_assert_eq!(
                    (claims.sub, claims.sid, claims.iat, claims.exp),
                    (original.sub, original.sid, original.iat, original.exp)
                );
            }
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

fn keys() -> Keys {
    Keys::new(
        b"fuzz-secret-fuzz-secret-fuzz-secret-0",
        &[b"fuzz-old-secret-fuzz-old-secret-fuzz-0"],
        Duration::from_secs(900),
    )
}
