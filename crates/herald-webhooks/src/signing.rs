//! Standard Webhooks secrets and signatures: `whsec_` HMAC-SHA256 secrets signing `v1`,
//! `whsk_` ed25519 secret keys signing `v1a` (verified with the `whpk_` public key).
//!
//! # Format
//!
//! The signed content is `{msg_id}.{timestamp}.{body}` over the exact body bytes, the timestamp
//! in integer Unix seconds. The signature header is a space-separated list of
//! `<version>,<base64 signature>`, one per secret that is valid now, so a receiver keeps
//! verifying while a secret is rotated.
//!
//! - `whsec_<base64>`: the HMAC key is the base64-decoded bytes. A bare base64 secret (no
//!   prefix) is accepted too, as the reference libraries do.
//! - `whsk_<base64>`: an ed25519 secret key, either the 64-byte key pair (seed then public key,
//!   the form Svix stores and the form [`generate_ed25519_secret`] returns) or the 32-byte seed.
//! - `whpk_<base64>`: the 32-byte ed25519 public key, given to receivers.
//!
//! Secrets never appear in `Debug` output or in errors.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ed25519_dalek::{Signer, Verifier};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Prefix of HMAC secrets.
pub const HMAC_SECRET_PREFIX: &str = "whsec_";
/// Prefix of ed25519 secret keys.
pub const ED25519_SECRET_PREFIX: &str = "whsk_";
/// Prefix of ed25519 public keys.
pub const ED25519_PUBLIC_PREFIX: &str = "whpk_";
/// Signature version of HMAC-SHA256 signatures.
pub const VERSION_HMAC: &str = "v1";
/// Signature version of ed25519 signatures.
pub const VERSION_ED25519: &str = "v1a";
/// How far a timestamp may be from the verifier's clock, either way.
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Random bytes in a generated HMAC secret (the spec allows 24 to 64).
const GENERATED_HMAC_BYTES: usize = 32;
/// Shortest HMAC key accepted for a new secret (the spec's minimum).
const MIN_HMAC_BYTES: usize = 24;
/// Longest HMAC key accepted for a new secret: Svix accepts up to 100 base64 characters.
const MAX_HMAC_BYTES: usize = 75;

/// Why a secret or key could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningError {
    #[error("the secret is not valid base64")]
    InvalidBase64,
    #[error("the secret is empty")]
    Empty,
    #[error("the HMAC secret must be {MIN_HMAC_BYTES} to {MAX_HMAC_BYTES} bytes, got {0}")]
    HmacLength(usize),
    #[error("the ed25519 key is not a valid key")]
    InvalidEd25519Key,
    #[error("a whpk_ public key can verify but not sign")]
    PublicKeyCannotSign,
    #[error("no secret to sign with")]
    NoSecrets,
}

/// Why a signature did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the timestamp is too old")]
    TimestampTooOld,
    #[error("the timestamp is too far in the future")]
    TimestampInFuture,
    #[error("no signature matches")]
    NoMatch,
    #[error("invalid verification key: {0}")]
    InvalidKey(#[from] SigningError),
}

/// A parsed signing secret.
#[derive(Clone)]
pub enum Secret {
    /// HMAC-SHA256 key bytes; signs `v1`.
    Hmac(Vec<u8>),
    /// ed25519 signing key; signs `v1a`.
    Ed25519(ed25519_dalek::SigningKey),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Hmac(_) => f.write_str("Secret::Hmac(<redacted>)"),
            Secret::Ed25519(key) => {
                write!(f, "Secret::Ed25519(pk={})", STANDARD.encode(key.verifying_key().as_bytes()))
            }
        }
    }
}

impl Secret {
    /// Parse `whsec_<base64>`, a bare base64 HMAC secret, or `whsk_<base64>`.
    pub fn parse(text: &str) -> Result<Secret, SigningError> {
        if let Some(encoded) = text.strip_prefix(ED25519_SECRET_PREFIX) {
            return parse_ed25519_secret(encoded).map(Secret::Ed25519);
        }
        if text.starts_with(ED25519_PUBLIC_PREFIX) {
            return Err(SigningError::PublicKeyCannotSign);
        }
        let encoded = text.strip_prefix(HMAC_SECRET_PREFIX).unwrap_or(text);
        let key = decode_base64(encoded)?;
        if key.is_empty() {
            return Err(SigningError::Empty);
        }
        Ok(Secret::Hmac(key))
    }

    /// The versioned signature (`v1,<b64>` or `v1a,<b64>`) of `content`.
    pub fn sign(&self, content: &[u8]) -> String {
        match self {
            Secret::Hmac(key) => format!("{VERSION_HMAC},{}", STANDARD.encode(hmac_sha256(key, content))),
            Secret::Ed25519(key) => {
                format!("{VERSION_ED25519},{}", STANDARD.encode(key.sign(content).to_bytes()))
            }
        }
    }
}

/// A new `whsec_` secret of 32 random bytes.
pub fn generate_hmac_secret() -> String {
    let bytes: [u8; GENERATED_HMAC_BYTES] = rand::random();
    format!("{HMAC_SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// A new `whsk_` ed25519 secret key (the 64-byte key pair, as Svix stores it).
pub fn generate_ed25519_secret() -> String {
    let seed: [u8; 32] = rand::random();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    format!("{ED25519_SECRET_PREFIX}{}", STANDARD.encode(key.to_keypair_bytes()))
}

/// The `whpk_` public key of a `whsk_` secret key.
pub fn public_key(secret: &str) -> Result<String, SigningError> {
    match Secret::parse(secret)? {
        Secret::Ed25519(key) => {
            Ok(format!("{ED25519_PUBLIC_PREFIX}{}", STANDARD.encode(key.verifying_key().as_bytes())))
        }
        Secret::Hmac(_) => Err(SigningError::InvalidEd25519Key),
    }
}

/// Check a secret given by a user for a new endpoint: a `whsec_` (or bare base64) secret of 24 to
/// 75 bytes, or a valid `whsk_` key.
pub fn check_new_secret(secret: &str) -> Result<(), SigningError> {
    match Secret::parse(secret)? {
        Secret::Hmac(key) if !(MIN_HMAC_BYTES..=MAX_HMAC_BYTES).contains(&key.len()) => {
            Err(SigningError::HmacLength(key.len()))
        }
        _ => Ok(()),
    }
}

/// The content that is signed: `{msg_id}.{timestamp}.{body}`.
pub fn signed_content(msg_id: &str, timestamp_secs: i64, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(msg_id.len() + body.len() + 24);
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp_secs.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// The `webhook-signature` header value: one versioned signature per secret, space-separated,
/// in the order of `secrets`.
pub fn sign(msg_id: &str, timestamp_secs: i64, body: &[u8], secrets: &[&str]) -> Result<String, SigningError> {
    if secrets.is_empty() {
        return Err(SigningError::NoSecrets);
    }
    let content = signed_content(msg_id, timestamp_secs, body);
    let mut header = String::new();
    for secret in secrets {
        if !header.is_empty() {
            header.push(' ');
        }
        header.push_str(&Secret::parse(secret)?.sign(&content));
    }
    Ok(header)
}

/// Verify a signature header the way a receiver does: the timestamp within [`TOLERANCE`] of
/// `now_secs`, and at least one signature in the list matching one of `keys` (`whsec_` or bare
/// base64 for `v1`, `whpk_` or `whsk_` for `v1a`). Compares in constant time.
pub fn verify(
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
    signature_header: &str,
    keys: &[&str],
    now_secs: i64,
) -> Result<(), VerifyError> {
    let tolerance = TOLERANCE.as_secs() as i64;
    if now_secs.saturating_sub(timestamp_secs) > tolerance {
        return Err(VerifyError::TimestampTooOld);
    }
    if timestamp_secs.saturating_sub(now_secs) > tolerance {
        return Err(VerifyError::TimestampInFuture);
    }
    let content = signed_content(msg_id, timestamp_secs, body);
    let keys = keys.iter().map(|key| VerificationKey::parse(key)).collect::<Result<Vec<_>, _>>()?;
    let mut matched = false;
    for (version, encoded) in signature_header.split(' ').filter_map(|entry| entry.split_once(',')) {
        let Ok(signature) = decode_base64(encoded) else { continue };
        for key in &keys {
            // Keep going after a match so the time taken does not depend on which entry matched.
            matched |= key.verifies(version, &content, &signature);
        }
    }
    if matched { Ok(()) } else { Err(VerifyError::NoMatch) }
}

/// A key that checks signatures.
enum VerificationKey {
    Hmac(Vec<u8>),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl VerificationKey {
    fn parse(text: &str) -> Result<VerificationKey, SigningError> {
        if let Some(encoded) = text.strip_prefix(ED25519_PUBLIC_PREFIX) {
            let bytes: [u8; 32] = decode_base64(encoded)?.try_into().map_err(|_| SigningError::InvalidEd25519Key)?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| SigningError::InvalidEd25519Key)?;
            return Ok(VerificationKey::Ed25519(key));
        }
        Ok(match Secret::parse(text)? {
            Secret::Hmac(key) => VerificationKey::Hmac(key),
            Secret::Ed25519(key) => VerificationKey::Ed25519(key.verifying_key()),
        })
    }

    fn verifies(&self, version: &str, content: &[u8], signature: &[u8]) -> bool {
        match self {
            VerificationKey::Hmac(key) if version == VERSION_HMAC => {
                bool::from(hmac_sha256(key, content).as_slice().ct_eq(signature))
            }
            VerificationKey::Ed25519(key) if version == VERSION_ED25519 => {
                let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else { return false };
                key.verify(content, &signature).is_ok()
            }
            _ => false,
        }
    }
}

fn parse_ed25519_secret(encoded: &str) -> Result<ed25519_dalek::SigningKey, SigningError> {
    let bytes = decode_base64(encoded)?;
    match bytes.len() {
        32 => {
            let seed: [u8; 32] = bytes.try_into().map_err(|_| SigningError::InvalidEd25519Key)?;
            Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
        }
        // The key pair form: `from_keypair_bytes` checks that the public half matches the seed.
        64 => {
            let pair: [u8; 64] = bytes.try_into().map_err(|_| SigningError::InvalidEd25519Key)?;
            ed25519_dalek::SigningKey::from_keypair_bytes(&pair).map_err(|_| SigningError::InvalidEd25519Key)
        }
        _ => Err(SigningError::InvalidEd25519Key),
    }
}

fn decode_base64(encoded: &str) -> Result<Vec<u8>, SigningError> {
    STANDARD.decode(encoded).or_else(|_| STANDARD_NO_PAD.decode(encoded)).map_err(|_| SigningError::InvalidBase64)
}

fn hmac_sha256(key: &[u8], content: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; the fallback is never taken.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return [0; 32] };
    mac.update(content);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vector of the Standard Webhooks reference libraries.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const MSG_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TIMESTAMP: i64 = 1649367553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn hmac_signature_matches_the_reference_vector() {
        assert_eq!(sign(MSG_ID, TIMESTAMP, BODY, &[SECRET]).expect("signs"), SIGNATURE);
        // A bare base64 secret is the same key.
        let bare = SECRET.strip_prefix(HMAC_SECRET_PREFIX).expect("prefixed");
        assert_eq!(sign(MSG_ID, TIMESTAMP, BODY, &[bare]).expect("signs"), SIGNATURE);
    }

    #[test]
    fn verifies_the_reference_vector_within_tolerance_only() {
        verify(MSG_ID, TIMESTAMP, BODY, SIGNATURE, &[SECRET], TIMESTAMP).expect("verifies");
        verify(MSG_ID, TIMESTAMP, BODY, SIGNATURE, &[SECRET], TIMESTAMP + 300).expect("5 minutes late is fine");
        verify(MSG_ID, TIMESTAMP, BODY, SIGNATURE, &[SECRET], TIMESTAMP - 300).expect("5 minutes early is fine");
        assert_eq!(
            verify(MSG_ID, TIMESTAMP, BODY, SIGNATURE, &[SECRET], TIMESTAMP + 301),
            Err(VerifyError::TimestampTooOld)
        );
        assert_eq!(
            verify(MSG_ID, TIMESTAMP, BODY, SIGNATURE, &[SECRET], TIMESTAMP - 301),
            Err(VerifyError::TimestampInFuture)
        );
    }

    #[test]
    fn tampering_breaks_verification() {
        let no_match = Err(VerifyError::NoMatch);
        assert_eq!(verify("msg_other", TIMESTAMP, BODY, SIGNATURE, &[SECRET], TIMESTAMP), no_match);
        assert_eq!(verify(MSG_ID, TIMESTAMP + 1, BODY, SIGNATURE, &[SECRET], TIMESTAMP), no_match);
        assert_eq!(verify(MSG_ID, TIMESTAMP, b"{}", SIGNATURE, &[SECRET], TIMESTAMP), no_match);
        let other_secret = generate_hmac_secret();
        assert_eq!(verify(MSG_ID, TIMESTAMP, BODY, SIGNATURE, &[&other_secret], TIMESTAMP), no_match);
        // The reference libraries' negative vector.
        let wrong = "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=";
        assert_eq!(verify(MSG_ID, TIMESTAMP, BODY, wrong, &[SECRET], TIMESTAMP), no_match);
        // Right signature under the wrong version.
        let relabelled = SIGNATURE.replacen("v1,", "v1a,", 1);
        assert_eq!(verify(MSG_ID, TIMESTAMP, BODY, &relabelled, &[SECRET], TIMESTAMP), no_match);
    }

    #[test]
    fn any_signature_in_the_list_may_match() {
        let list = format!(
            "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ= garbage v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q= {SIGNATURE}"
        );
        verify(MSG_ID, TIMESTAMP, BODY, &list, &[SECRET], TIMESTAMP).expect("the last entry matches");
    }

    #[test]
    fn several_secrets_sign_in_order() {
        let new = generate_hmac_secret();
        let header = sign(MSG_ID, TIMESTAMP, BODY, &[&new, SECRET]).expect("signs");
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1], SIGNATURE);
        verify(MSG_ID, TIMESTAMP, BODY, &header, &[&new], TIMESTAMP).expect("new secret verifies");
        verify(MSG_ID, TIMESTAMP, BODY, &header, &[SECRET], TIMESTAMP).expect("old secret verifies");
    }

    #[test]
    fn generated_hmac_secrets_are_32_random_bytes() {
        let a = generate_hmac_secret();
        let b = generate_hmac_secret();
        assert_ne!(a, b);
        let encoded = a.strip_prefix(HMAC_SECRET_PREFIX).expect("prefixed");
        assert_eq!(STANDARD.decode(encoded).expect("base64").len(), 32);
        check_new_secret(&a).expect("acceptable as a user secret");
    }

    #[test]
    fn ed25519_sign_and_verify() {
        let secret = generate_ed25519_secret();
        assert!(secret.starts_with(ED25519_SECRET_PREFIX));
        let public = public_key(&secret).expect("public key");
        assert!(public.starts_with(ED25519_PUBLIC_PREFIX));
        let header = sign(MSG_ID, TIMESTAMP, BODY, &[&secret]).expect("signs");
        assert!(header.starts_with("v1a,"), "{header}");
        verify(MSG_ID, TIMESTAMP, BODY, &header, &[&public], TIMESTAMP).expect("verifies with whpk_");
        verify(MSG_ID, TIMESTAMP, BODY, &header, &[&secret], TIMESTAMP).expect("verifies with whsk_");
        assert_eq!(verify(MSG_ID, TIMESTAMP, b"x", &header, &[&public], TIMESTAMP), Err(VerifyError::NoMatch));
        let other = public_key(&generate_ed25519_secret()).expect("public key");
        assert_eq!(verify(MSG_ID, TIMESTAMP, BODY, &header, &[&other], TIMESTAMP), Err(VerifyError::NoMatch));
    }

    #[test]
    fn ed25519_rfc8032_vector() {
        // RFC 8032 section 7.1, TEST 1: secret key (seed), public key, empty message.
        let seed = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let public = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let expected = hex(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        );
        let secret = format!("{ED25519_SECRET_PREFIX}{}", STANDARD.encode(&seed));
        assert_eq!(
            public_key(&secret).expect("public"),
            format!("{ED25519_PUBLIC_PREFIX}{}", STANDARD.encode(&public))
        );
        let Secret::Ed25519(key) = Secret::parse(&secret).expect("parses") else { panic!("an ed25519 key") };
        assert_eq!(Secret::Ed25519(key.clone()).sign(b""), format!("v1a,{}", STANDARD.encode(&expected)));
        // The 64-byte key pair form is the same key; a pair whose halves disagree is refused.
        let pair = format!("{ED25519_SECRET_PREFIX}{}", STANDARD.encode(key.to_keypair_bytes()));
        assert_eq!(public_key(&pair), public_key(&secret));
        let mut bad = key.to_keypair_bytes();
        bad[40] ^= 1;
        let bad = format!("{ED25519_SECRET_PREFIX}{}", STANDARD.encode(bad));
        assert_eq!(Secret::parse(&bad).map(|_| ()), Err(SigningError::InvalidEd25519Key));
    }

    #[test]
    fn mixed_secrets_sign_both_versions() {
        let ed = generate_ed25519_secret();
        let header = sign(MSG_ID, TIMESTAMP, BODY, &[SECRET, &ed]).expect("signs");
        let versions: Vec<&str> = header.split(' ').filter_map(|e| e.split_once(',')).map(|(v, _)| v).collect();
        assert_eq!(versions, ["v1", "v1a"]);
        assert!(header.starts_with(SIGNATURE));
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert_eq!(Secret::parse("whsec_!!!").map(|_| ()), Err(SigningError::InvalidBase64));
        assert_eq!(Secret::parse("whsec_").map(|_| ()), Err(SigningError::Empty));
        assert_eq!(Secret::parse("whsk_AAAA").map(|_| ()), Err(SigningError::InvalidEd25519Key));
        assert_eq!(Secret::parse("whpk_AAAA").map(|_| ()), Err(SigningError::PublicKeyCannotSign));
        assert_eq!(sign(MSG_ID, TIMESTAMP, BODY, &[]), Err(SigningError::NoSecrets));
        assert_eq!(public_key(SECRET), Err(SigningError::InvalidEd25519Key));
        let short = format!("whsec_{}", STANDARD.encode([7u8; 16]));
        assert_eq!(check_new_secret(&short), Err(SigningError::HmacLength(16)));
        check_new_secret(SECRET).expect("24 bytes is the minimum");
        check_new_secret(&generate_ed25519_secret()).expect("ed25519 keys are fine");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let shown = format!("{:?}", Secret::parse(SECRET).expect("parses"));
        assert!(!shown.contains("C2FVsBQIhrsc"), "{shown}");
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
    }
}
