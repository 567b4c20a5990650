//! Connection and subscription tokens: JWTs as Centrifugo issues and checks them.
//!
//! The token's `alg` header picks the key: HS256 uses `client.token.hmac_secret`, RS256 the RSA
//! public key, ES256 the ECDSA public key. `exp` is optional (a token without it never expires);
//! `expire_at`, when present, sets when the connection or subscription expires independently of
//! the token's own `exp`. Expired tokens are told apart from invalid ones, because the SDKs
//! react differently: an expired connect token makes the client fetch a new one (error 109), an
//! invalid one ends the connection for good (disconnect 3500).

use std::collections::HashMap;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::config::TokenConfig;

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// What a valid connection token grants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectGrant {
    pub user: String,
    /// Unix seconds when the connection expires unless refreshed; `None` never expires.
    pub expire_at: Option<i64>,
    /// Raw JSON (or decoded `b64info` bytes) attached to the client in presence and join/leave.
    pub info: Option<Vec<u8>>,
    /// Channels the server subscribes the connection to (server-side subscriptions).
    pub channels: Vec<String>,
}

/// What a valid subscription token grants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscribeGrant {
    pub user: String,
    pub channel: String,
    pub expire_at: Option<i64>,
    pub info: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct ConnectClaims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    expire_at: Option<i64>,
    #[serde(default)]
    info: Option<Box<RawValue>>,
    #[serde(default)]
    b64info: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    subs: HashMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct SubscribeClaims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    expire_at: Option<i64>,
    #[serde(default)]
    info: Option<Box<RawValue>>,
    #[serde(default)]
    b64info: Option<String>,
}

/// Checks tokens against the configured keys. Cheap to share behind an `Arc`.
pub struct TokenVerifier {
    hmac: Option<DecodingKey>,
    rsa: Option<DecodingKey>,
    ecdsa: Option<DecodingKey>,
    audience: Option<String>,
    issuer: Option<String>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("hmac", &self.hmac.is_some())
            .field("rsa", &self.rsa.is_some())
            .field("ecdsa", &self.ecdsa.is_some())
            .finish()
    }
}

impl TokenVerifier {
    /// Build from config. Keys were checked by `Config::validate`; a key that still fails to
    /// parse is reported here.
    pub fn new(config: &TokenConfig) -> Result<Self, TokenError> {
        let hmac = config.hmac_secret.as_ref().map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes()));
        let rsa = config
            .rsa_public_key
            .as_ref()
            .map(|pem| DecodingKey::from_rsa_pem(pem.as_bytes()))
            .transpose()
            .map_err(|e| TokenError::Invalid(format!("rsa public key: {e}")))?;
        let ecdsa = config
            .ecdsa_public_key
            .as_ref()
            .map(|pem| DecodingKey::from_ec_pem(pem.as_bytes()))
            .transpose()
            .map_err(|e| TokenError::Invalid(format!("ecdsa public key: {e}")))?;
        Ok(Self { hmac, rsa, ecdsa, audience: config.audience.clone(), issuer: config.issuer.clone() })
    }

    /// Whether any key is configured at all.
    pub fn has_keys(&self) -> bool {
        self.hmac.is_some() || self.rsa.is_some() || self.ecdsa.is_some()
    }

    /// Verify a connection token.
    pub fn verify_connect(&self, token: &str, now_unix: i64) -> Result<ConnectGrant, TokenError> {
        let claims: ConnectClaims = self.decode(token, now_unix)?;
        let info = decode_info(claims.info, claims.b64info)?;
        let mut channels = claims.channels;
        channels.extend(claims.subs.into_keys());
        Ok(ConnectGrant { user: claims.sub, expire_at: claims.expire_at.or(claims.exp), info, channels })
    }

    /// Verify a subscription token. The caller checks `channel` and `user` against the request.
    pub fn verify_subscribe(&self, token: &str, now_unix: i64) -> Result<SubscribeGrant, TokenError> {
        let claims: SubscribeClaims = self.decode(token, now_unix)?;
        let info = decode_info(claims.info, claims.b64info)?;
        if claims.channel.is_empty() {
            return Err(TokenError::Invalid("subscription token has no channel".to_owned()));
        }
        Ok(SubscribeGrant {
            user: claims.sub,
            channel: claims.channel,
            expire_at: claims.expire_at.or(claims.exp),
            info,
        })
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, token: &str, now_unix: i64) -> Result<T, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let key = match header.alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => self.hmac.as_ref(),
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => self.rsa.as_ref(),
            Algorithm::ES256 | Algorithm::ES384 => self.ecdsa.as_ref(),
            _ => None,
        }
        .ok_or_else(|| TokenError::Invalid(format!("no key configured for {:?}", header.alg)))?;

        let mut validation = Validation::new(header.alg);
        // `exp` is optional, as in Centrifugo, and checked below against our clock.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        let data = jsonwebtoken::decode::<serde_json::Value>(token, key, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid(e.to_string()),
        })?;
        if let Some(exp) = data.claims.get("exp") {
            let exp = exp.as_i64().ok_or_else(|| TokenError::Invalid("exp is not an integer".to_owned()))?;
            if exp > 0 && exp <= now_unix {
                return Err(TokenError::Expired);
            }
        }
        serde_json::from_value(data.claims).map_err(|e| TokenError::Invalid(format!("claims: {e}")))
    }
}

fn decode_info(info: Option<Box<RawValue>>, b64info: Option<String>) -> Result<Option<Vec<u8>>, TokenError> {
    if let Some(b64) = b64info {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| TokenError::Invalid("b64info is not base64".to_owned()))?;
        return Ok(Some(bytes));
    }
    Ok(info.map(|raw| raw.get().as_bytes().to_vec()))
}

/// Claims for minting a connection token (the `herald token` command and tests).
#[derive(Clone, Debug, Default, Serialize)]
pub struct MintClaims {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Set to mint a subscription token for this channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
}

/// Sign claims with HS256.
pub fn mint_hs256(secret: &str, claims: &MintClaims) -> Result<String, TokenError> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|e| TokenError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn verifier(secret: &str) -> TokenVerifier {
        let config = TokenConfig { hmac_secret: Some(SecretString::from(secret.to_owned())), ..Default::default() };
        TokenVerifier::new(&config).expect("verifier")
    }

    #[test]
    fn connect_token_round_trip() {
        let claims = MintClaims {
            sub: "alice".into(),
            exp: Some(2_000),
            channels: vec!["news".into()],
            info: Some(serde_json::json!({"name": "Alice"})),
            ..Default::default()
        };
        let token = mint_hs256("secret-secret", &claims).expect("mint");
        let grant = verifier("secret-secret").verify_connect(&token, 1_000).expect("valid");
        assert_eq!(grant.user, "alice");
        assert_eq!(grant.expire_at, Some(2_000));
        assert_eq!(grant.channels, vec!["news".to_owned()]);
        assert_eq!(grant.info.as_deref(), Some(br#"{"name":"Alice"}"#.as_slice()));
    }

    #[test]
    fn expired_and_invalid_are_told_apart() {
        let claims = MintClaims { sub: "bob".into(), exp: Some(1_000), ..Default::default() };
        let token = mint_hs256("secret-secret", &claims).expect("mint");
        assert_eq!(verifier("secret-secret").verify_connect(&token, 1_000), Err(TokenError::Expired));
        assert!(matches!(verifier("other-secret").verify_connect(&token, 10), Err(TokenError::Invalid(_))));
        assert!(matches!(verifier("secret-secret").verify_connect("garbage", 10), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn subscription_token_needs_channel() {
        let token = mint_hs256("secret-secret", &MintClaims { sub: "a".into(), ..Default::default() }).expect("mint");
        assert!(verifier("secret-secret").verify_subscribe(&token, 10).is_err());
        let token = mint_hs256(
            "secret-secret",
            &MintClaims { sub: "a".into(), channel: Some("secret:x".into()), ..Default::default() },
        )
        .expect("mint");
        let grant = verifier("secret-secret").verify_subscribe(&token, 10).expect("valid");
        assert_eq!(grant.channel, "secret:x");
        assert_eq!(grant.expire_at, None);
    }

    #[test]
    fn no_key_for_algorithm_is_invalid() {
        let verifier = TokenVerifier::new(&TokenConfig::default()).expect("verifier");
        assert!(!verifier.has_keys());
        let token = mint_hs256("secret-secret", &MintClaims::default()).expect("mint");
        assert!(matches!(verifier.verify_connect(&token, 10), Err(TokenError::Invalid(_))));
    }
}
