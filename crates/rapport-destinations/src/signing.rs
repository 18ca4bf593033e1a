//! Signatures per the Standard Webhooks specification (standardwebhooks.com), by its own
//! library: every webhook request carries `webhook-id` (the idempotency key: the same for
//! every attempt of one message to one destination), `webhook-timestamp` (Unix seconds of
//! the attempt) and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of
//! `{id}.{timestamp}.{body}` under the destination's secret), so that receivers can verify
//! a request and drop a repeated one.

use sha2::{Digest, Sha256};

/// The three headers of a signed request, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
}

impl SignedHeaders {
    /// `(name, value)` pairs, ready to be sent.
    pub fn pairs(&self) -> [(&'static str, String); 3] {
        [
            ("webhook-id", self.id.clone()),
            ("webhook-timestamp", self.timestamp.to_string()),
            ("webhook-signature", self.signature.clone()),
        ]
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningError {
    /// The secret is not `whsec_` followed by base64 (24 to 64 bytes once decoded).
    #[error("the signing secret must be `whsec_` followed by base64 of 24 to 64 bytes")]
    InvalidSecret,
}

/// Checks a signing secret: `whsec_` + base64 of 24 to 64 random bytes, as the
/// specification recommends.
pub fn check_secret(secret: &str) -> Result<(), SigningError> {
    use base64::Engine as _;
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .ok_or(SigningError::InvalidSecret)?;
    if (24..=64).contains(&key.len()) {
        Ok(())
    } else {
        Err(SigningError::InvalidSecret)
    }
}

/// A new secret from 32 bytes of randomness the caller draws.
pub fn secret_from(random: [u8; 32]) -> String {
    use base64::Engine as _;
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(random)
    )
}

/// The idempotency key of one message to one destination: `msg_` + the first 16 bytes of
/// SHA-256 over the destination id and the message's stable identity (its log offset, or a
/// change's own id), in hex. The same on every attempt and every replay.
pub fn message_id(destination_id: &str, message: &str) -> String {
    let mut h = Sha256::new();
    h.update(destination_id.as_bytes());
    h.update([0]);
    h.update(message.as_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(4 + 32);
    out.push_str("msg_");
    for b in &digest[..16] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Signs `body` for sending at `timestamp` (Unix seconds).
pub fn sign(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<SignedHeaders, SigningError> {
    let hook = standardwebhooks::Webhook::new(secret).map_err(|_| SigningError::InvalidSecret)?;
    let signature = hook
        .sign(id, timestamp, body)
        .map_err(|_| SigningError::InvalidSecret)?;
    Ok(SignedHeaders {
        id: id.to_owned(),
        timestamp,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_verifies_with_the_specification_s_library() {
        let secret = secret_from([7; 32]);
        check_secret(&secret).unwrap();
        let body = br#"{"type":"track","event":"Order Completed"}"#;
        // The library checks the timestamp against its clock.
        let now = chrono::Utc::now().timestamp();
        let h = sign(&secret, "msg_1", now, body).unwrap();
        assert!(h.signature.starts_with("v1,"));
        let mut headers = http::HeaderMap::new();
        for (k, v) in h.pairs() {
            headers.insert(k, v.parse().unwrap());
        }
        let hook = standardwebhooks::Webhook::new(&secret).unwrap();
        hook.verify(body, &headers).unwrap();
        assert!(hook.verify(b"{}", &headers).is_err());
    }

    #[test]
    fn secrets_are_checked() {
        assert_eq!(check_secret("hunter2"), Err(SigningError::InvalidSecret));
        assert_eq!(
            check_secret("whsec_c2hvcnQ="),
            Err(SigningError::InvalidSecret)
        );
        assert!(check_secret(&secret_from([0; 32])).is_ok());
        assert_eq!(secret_from([0; 32]).len(), "whsec_".len() + 44);
    }

    #[test]
    fn message_ids_are_stable_per_destination_and_message() {
        let a = message_id("dst_1", "offset:42");
        assert_eq!(a, message_id("dst_1", "offset:42"));
        assert_ne!(a, message_id("dst_2", "offset:42"));
        assert_ne!(a, message_id("dst_1", "offset:43"));
        assert_eq!(a.len(), 4 + 32);
    }
}
