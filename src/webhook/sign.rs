//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `{webhook-id}.{webhook-timestamp}.{body}`, one entry per active secret (two during a
//! rotation), keyed with the base64 bytes after the `whsec_` prefix.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a secret is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Not base64 after the prefix.
    #[error("a webhook secret must be `whsec_` followed by base64: {0}")]
    NotBase64(String),
    /// Too short to be a secret.
    #[error("a webhook secret needs at least 16 bytes of key ({0} given)")]
    TooShort(usize),
}

/// A signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// Parses `whsec_<base64>` (the prefix optional, padding optional, as the Python
    /// library accepts).
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let encoded = text.trim();
        let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
        let key = STANDARD
            .decode(encoded)
            .or_else(|_| STANDARD_NO_PAD.decode(encoded.trim_end_matches('=')))
            .map_err(|error| SecretError::NotBase64(error.to_string()))?;
        if key.len() < 16 {
            return Err(SecretError::TooShort(key.len()));
        }
        Ok(Secret { key })
    }

    /// A key taken as it is written (GatewayAPI's and SMSGate's secrets are raw strings).
    pub fn raw(text: &str) -> Secret {
        Secret {
            key: text.as_bytes().to_vec(),
        }
    }

    /// The key's bytes.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// A `v1,<base64>` signature entry.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, timestamp, body)))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        // HMAC takes a key of any length; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether a `webhook-signature` header holds a valid `v1` entry for this secret
    /// (compared in constant time). Used by `smsrelay demo`'s receiver.
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        header
            .split(' ')
            .filter_map(|entry| entry.split_once(','))
            .filter(|(version, _)| *version == "v1")
            .filter_map(|(_, signature)| STANDARD.decode(signature).ok())
            .any(|signature| mac.clone().verify_slice(&signature).is_ok())
    }
}

/// The `webhook-signature` header: one entry per secret, newest first.
pub fn signature_header(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| secret.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn short_or_garbled_secrets_are_refused() {
        assert!(matches!(
            Secret::parse("whsec_!!!"),
            Err(SecretError::NotBase64(_))
        ));
        assert!(matches!(
            Secret::parse("whsec_c2hvcnQ="),
            Err(SecretError::TooShort(5))
        ));
        // Padding may be left off.
        assert!(Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
    }

    #[test]
    fn verify_accepts_any_matching_entry_and_nothing_else() {
        let secret = Secret::parse(A).expect("valid");
        let body = br#"{"test": 2432232314}"#;
        let header = signature_header(std::slice::from_ref(&secret), "msg_1", 1_614_265_330, body);
        assert!(secret.verify("msg_1", 1_614_265_330, body, &header));
        assert!(secret.verify("msg_1", 1_614_265_330, body, &format!("v1,AAAA {header}")));
        assert!(!secret.verify("msg_1", 1_614_265_331, body, &header));
        assert!(!secret.verify("msg_2", 1_614_265_330, body, &header));
        assert!(!secret.verify("msg_1", 1_614_265_330, b"{}", &header));
        assert!(!secret.verify("msg_1", 1_614_265_330, body, "v2,garbage nonsense"));
    }
}
