//! Standard Webhooks signatures (standardwebhooks.com): `webhook-signature: v1,<base64 of
//! HMAC-SHA256(secret, "<webhook-id>.<webhook-timestamp>.<body>")>`, with the secret shown to
//! its owner as `whsec_<base64 of its bytes>`, which the specification's libraries take as is.

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// 32 random bytes: the specification asks for 24 to 64.
const SECRET_BYTES: usize = 32;

/// A new signing secret: its bytes (stored) and how its owner is shown it.
pub fn new_secret() -> (Vec<u8>, String) {
    let mut bytes = vec![0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let shown = format!("{PREFIX}{}", STANDARD.encode(&bytes));
    (bytes, shown)
}

/// The `webhook-signature` header of one delivery.
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of every length"),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the specification's reference libraries (secret, id, timestamp, payload
    /// and their signature), which Python's own hmac module gives too.
    #[test]
    fn signs_as_the_reference_libraries_do() {
        let secret = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_new_secret_is_shown_as_whsec_and_its_bytes() {
        let (bytes, shown) = new_secret();
        assert_eq!(bytes.len(), 32);
        assert_eq!(
            STANDARD
                .decode(shown.strip_prefix("whsec_").unwrap())
                .unwrap(),
            bytes
        );
    }
}
