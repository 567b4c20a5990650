//! Untrusted text that is not a WebSocket frame: server API bodies, configuration files and
//! client JWTs.
//!
//! Input: `mode`, then the body.
//!
//! - mode % 4 == 3, server API: a byte choosing the method, then the body of
//!   `POST /api/<method>`, read as the HTTP door reads it (empty is `{}`, then one JSON value)
//!   and given to `server_api::Request::parse`. A rejected body is error 107 with a message;
//!   a batch that parses has each of its commands parsed the way the batch runs them.
//! - mode % 4 == 0, config: the body is TOML text, optionally followed by a NUL byte and
//!   `NAME=value` lines given as the environment, for `Config::from_toml_and_env`. It must
//!   return a config or the list of problems, never panic; a config it returns must validate.
//! - mode % 4 == 1, token: the body is a token for `TokenVerifier::verify_connect` and
//!   `verify_subscribe` (HS256 secret, RSA and ECDSA public keys configured), after 8 bytes
//!   of `now` and a byte choosing whether audience and issuer are required.
//! - mode % 4 == 2, signed token: the body is a JWT header (JSON), a NUL byte and claims
//!   (JSON); they are signed with the HS256 secret, so the claims parsing behind the signature
//!   check is reached. A verified token must not have expired by its own `exp`.

#![no_main]

use base64::Engine as _;
use herald_core::Config;
use herald_core::auth::{TokenError, TokenVerifier};
use herald_core::config::TokenConfig;
use herald_server::server_api::{ApiError, Method, Request};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use serde_json::value::RawValue;

const SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret";

// Public halves of throwaway keys generated for this target (`openssl genpkey`); only
// verification is fuzzed, so the private halves were not kept.
const RSA_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA3W8RKr71Fs1SpvriVKIV
sv32e28Tw7InvNVtQ5CnP0oUPoCmUdinTH0XGbsJldRM+36YBm6Scl264mk+k9B/
7wE3GdhJnX2UPbjJQ9W88J+C+6/YcFM08FHmRg/EamRENdIK9wi9Vq3SXWLn6H76
dmfhpqP5BtP3F8rCCkXFn7ByFZ9rwuiETePDJ3t5qBv8OREPj6NDoCWmjBGry2uC
M7wxzkycHSHq5G3jb9wATdnJJaEnpGTEmr5TXlOZl21xstaIfEJtGnC8CFSYYNdz
BLRYVjBEoQUXAs32gWWywHAC9m1E7br8mEQeI11/iN9IUcspTTGWJ1OFjpUYrLjt
XwIDAQAB
-----END PUBLIC KEY-----
";

const ECDSA_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQZ1RIuUsuqNW/KGM/iOGxkW5+aWl
cqeg0xRsLkZ2emq5ae4K/EjKaKNAvb82tnX09PE5uMrk7TwjzXV7t5R3MA==
-----END PUBLIC KEY-----
";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    match mode % 4 {
        0 => config(body),
        1 => token(body),
        2 => signed_token(body),
        _ => server_api(body),
    }
});

fn server_api(body: &[u8]) {
    let Some((&which, body)) = body.split_first() else { return };
    let method = Method::ALL[usize::from(which) % Method::ALL.len()];
    let Ok(params) = serde_json::from_slice::<&RawValue>(if body.is_empty() { b"{}" } else { body }) else {
        return;
    };
    match Request::parse(method, params) {
        Ok(Request::Batch(batch)) => {
            for command in batch.commands {
                let mut entries = command.into_iter();
                let (Some((name, params)), None) = (entries.next(), entries.next()) else { continue };
                let Some(method) = Method::from_name(&name) else { continue };
                assert_eq!(method.name(), name, "a method answers to another name");
                let raw = serde_json::value::to_raw_value(&params).expect("a JSON value re-serializes");
                if let Err(error) = Request::parse(method, &raw) {
                    rejected(&error);
                }
            }
        }
        Ok(_) => {}
        Err(error) => {
            assert_ne!(method, Method::Info, "info takes any parameters");
            rejected(&error);
        }
    }
}

fn rejected(error: &ApiError) {
    assert_eq!(error.code, 107, "a body that does not fit is a bad request");
    assert!(!error.message.is_empty(), "an error without a message");
}

fn config(body: &[u8]) {
    let (text, env) = match body.iter().position(|&b| b == 0) {
        Some(at) => (&body[..at], &body[at + 1..]),
        None => (body, &b""[..]),
    };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let env: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    match Config::from_toml_and_env(text, env) {
        Ok(config) => {
            assert!(config.validate().is_empty(), "a loaded config does not validate");
            let _ = config.warnings();
            // What `herald config show` prints.
            let _ = serde_json::to_string_pretty(&config);
            if let Ok(verifier) = TokenVerifier::new(&config.client.token) {
                let _ = verifier.verify_connect("a.b.c", 0);
            }
        }
        Err(error) => {
            assert!(!error.problems().is_empty(), "an error without a problem");
            let _ = error.to_string();
        }
    }
}

fn verifier(audience_issuer: u8) -> TokenVerifier {
    let config = TokenConfig {
        hmac_secret: Some(SecretString::from(SECRET.to_owned())),
        rsa_public_key: Some(RSA_PUBLIC_KEY.to_owned()),
        ecdsa_public_key: Some(ECDSA_PUBLIC_KEY.to_owned()),
        audience: (audience_issuer & 1 == 1).then(|| "herald".to_owned()),
        issuer: (audience_issuer & 2 == 2).then(|| "fuzz".to_owned()),
    };
    TokenVerifier::new(&config).expect("the target's keys parse")
}

fn check_both(verifier: &TokenVerifier, token: &str, now: i64) -> bool {
    let mut verified = false;
    match verifier.verify_connect(token, now) {
        Ok(grant) => {
            verified = true;
            let _ = grant;
        }
        Err(TokenError::Expired) => {}
        Err(TokenError::Invalid(reason)) => assert!(!reason.is_empty()),
    }
    match verifier.verify_subscribe(token, now) {
        Ok(grant) => {
            verified = true;
            assert!(!grant.channel.is_empty(), "a subscription grant without a channel");
        }
        Err(TokenError::Expired) => {}
        Err(TokenError::Invalid(reason)) => assert!(!reason.is_empty()),
    }
    verified
}

fn token(body: &[u8]) {
    let Some((head, token)) = body.split_at_checked(9) else { return };
    let now = i64::from_be_bytes(head[..8].try_into().expect("8 bytes"));
    let Ok(token) = std::str::from_utf8(token) else { return };
    check_both(&verifier(head[8]), token, now);
}

fn signed_token(body: &[u8]) {
    let Some((&flags, body)) = body.split_first() else { return };
    let Some(at) = body.iter().position(|&b| b == 0) else { return };
    let (header, claims) = (&body[..at], &body[at + 1..]);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let message = format!("{}.{}", b64.encode(header), b64.encode(claims));
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("HS256 signs");
    let token = format!("{message}.{signature}");
    // A fixed clock, so `exp` is fuzzed against a known `now`.
    let now = 1_700_000_000;
    if check_both(&verifier(flags), &token, now) {
        // Verified: the claims are a JSON object whose `exp`, if any, is an integer not past.
        let claims: serde_json::Value = serde_json::from_slice(claims).expect("verified claims are JSON");
        if let Some(exp) = claims.get("exp") {
            let exp = exp.as_i64().expect("verified exp is an integer");
            assert!(exp <= 0 || exp > now, "an expired token verified (exp {exp}, now {now})");
        }
    }
}
