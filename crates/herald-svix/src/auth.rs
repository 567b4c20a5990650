//! Bearer authentication, as the open-source Svix server does it.
//!
//! A request carries `Authorization: Bearer <token>`, where the token is either
//! - an HS256 JWT signed with `management.jwt_secret`: `sub` is an organisation id (`org_...`)
//!   for organisation-wide access, or, when the token also has an `org` claim, `sub` is an
//!   application id and the token reaches only that application (Svix's app tokens); `exp` and
//!   `nbf` are optional and checked when present; or
//! - the static `management.token`, compared in constant time, with organisation-wide access.
//!
//! Herald keeps a single tenant: the organisation id only scopes idempotency keys, every
//! organisation sees the same applications.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herald_core::config::ManagementConfig;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::Inner;
use crate::error::ApiError;

/// The issuer the Svix server writes into the tokens it generates.
const JWT_ISSUER: &str = "svix-server";
/// Svix's `svix-server jwt generate` tokens are valid for ten years.
const TOKEN_LIFETIME_SECONDS: i64 = 10 * 365 * 24 * 3600;
/// Clock skew tolerated on `exp` and `nbf` (jwt-simple's default, which the Svix server uses).
const LEEWAY_SECONDS: i64 = 15 * 60;
/// The organisation a static token acts as.
const STATIC_TOKEN_ORG: &str = "org_static";

const INVALID_TOKEN: &str = "Invalid token";
const JWT_SECRET_AS_TOKEN: &str = "Authentication failed. JWT signing secrets can not be used as tokens, please refer to https://github.com/svix/svix-webhooks#authentication for more information.";

/// Who is calling, as established by [`authenticate`]; handlers read it from the request
/// extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Principal {
    pub org_id: String,
    /// Set for an application token: only this application (by id) is reachable.
    pub app_id: Option<String>,
}

impl Principal {
    /// Organisation-wide operations (listing, creating, changing or deleting applications,
    /// writing event types, sending messages) are refused to application tokens, as in Svix.
    pub fn require_org(&self) -> Result<(), ApiError> {
        match self.app_id {
            None => Ok(()),
            Some(_) => Err(ApiError::forbidden()),
        }
    }

    /// Whether this principal may touch the application with id `app_id`.
    pub fn may_access_app(&self, app_id: &str) -> bool {
        self.app_id.as_deref().is_none_or(|allowed| allowed == app_id)
    }
}

/// Checks bearer tokens against the management config.
pub(crate) struct Authenticator {
    jwt_secret: Option<(Vec<u8>, DecodingKey)>,
    static_token: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
}

#[derive(Serialize)]
struct MintClaims<'a> {
    iat: i64,
    exp: i64,
    nbf: i64,
    iss: &'a str,
    sub: &'a str,
}

impl Authenticator {
    pub fn new(config: &ManagementConfig) -> Self {
        let jwt_secret = config.jwt_secret.as_ref().map(|secret| {
            let bytes = secret.expose_secret().as_bytes().to_vec();
            let key = DecodingKey::from_secret(&bytes);
            (bytes, key)
        });
        let static_token = config.token.as_ref().map(|token| token.expose_secret().as_bytes().to_vec());
        Self { jwt_secret, static_token }
    }

    pub fn verify(&self, authorization: Option<&str>, now_unix: i64) -> Result<Principal, ApiError> {
        let token = authorization
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or_else(|| ApiError::unauthorized(INVALID_TOKEN))?;

        if let Some(expected) = &self.static_token
            && bool::from(expected.as_slice().ct_eq(token.as_bytes()))
        {
            return Ok(Principal { org_id: STATIC_TOKEN_ORG.to_owned(), app_id: None });
        }

        let Some((secret, key)) = &self.jwt_secret else {
            return Err(ApiError::unauthorized(INVALID_TOKEN));
        };
        if bool::from(secret.as_slice().ct_eq(token.as_bytes())) {
            return Err(ApiError::unauthorized(JWT_SECRET_AS_TOKEN));
        }
        let claims = decode_claims(token, key, now_unix).ok_or_else(|| ApiError::unauthorized(INVALID_TOKEN))?;
        principal_from_claims(claims)
    }
}

fn decode_claims(token: &str, key: &DecodingKey, now_unix: i64) -> Option<Claims> {
    let mut validation = Validation::new(Algorithm::HS256);
    // `exp` is optional (checked below when present); Svix does not pin the issuer or audience.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(token, key, &validation).ok()?.claims;
    if claims.exp.is_some_and(|exp| exp + LEEWAY_SECONDS <= now_unix) {
        return None;
    }
    if claims.nbf.is_some_and(|nbf| nbf - LEEWAY_SECONDS > now_unix) {
        return None;
    }
    Some(claims)
}

fn principal_from_claims(claims: Claims) -> Result<Principal, ApiError> {
    let Some(sub) = claims.sub else {
        return Err(ApiError::unauthorized("Invalid token (missing `sub`)."));
    };
    match claims.org {
        Some(org_id) => {
            if !org_id.starts_with("org_") {
                return Err(bad_token("`org` is not a valid organization id"));
            }
            if !sub.starts_with("app_") {
                return Err(bad_token("`sub` is not a valid application id"));
            }
            Ok(Principal { org_id, app_id: Some(sub) })
        }
        None => {
            if !sub.starts_with("org_") {
                return Err(bad_token("`sub` is not a valid organization id."));
            }
            Ok(Principal { org_id: sub, app_id: None })
        }
    }
}

fn bad_token(detail: &str) -> ApiError {
    ApiError::http(http::StatusCode::BAD_REQUEST, "bad_token", detail)
}

/// An organisation token as `svix-server jwt generate` makes it: HS256 over
/// `{iat, exp: iat + 10 years, nbf, iss: "svix-server", sub: org_id}`.
pub fn mint_token(secret: &str, org_id: &str) -> String {
    let now = unix_now();
    let claims = MintClaims { iat: now, exp: now + TOKEN_LIFETIME_SECONDS, nbf: now, iss: JWT_ISSUER, sub: org_id };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("HS256 signing of plain claims cannot fail")
}

pub(crate) fn unix_now() -> i64 {
    herald_store::now_ms().div_euclid(1000)
}

/// Middleware: authenticate, then hand the [`Principal`] to the handlers.
pub(crate) async fn authenticate(
    State(inner): State<std::sync::Arc<Inner>>,
    mut request: Request,
    next: Next,
) -> Response {
    let authorization = request.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match inner.auth.verify(authorization, unix_now()) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn authenticator(jwt_secret: Option<&str>, token: Option<&str>) -> Authenticator {
        Authenticator::new(&ManagementConfig {
            jwt_secret: jwt_secret.map(|s| SecretString::from(s.to_owned())),
            token: token.map(|s| SecretString::from(s.to_owned())),
            ..ManagementConfig::default()
        })
    }

    fn sign(secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
            .expect("sign")
    }

    #[test]
    fn minted_org_token_is_accepted() {
        let auth = authenticator(Some("jwt-secret"), None);
        let token = mint_token("jwt-secret", "org_23rb8YdGqMT0qIzpgGwdXfHirMu");
        let principal = auth.verify(Some(&format!("Bearer {token}")), unix_now()).expect("valid");
        assert_eq!(principal, Principal { org_id: "org_23rb8YdGqMT0qIzpgGwdXfHirMu".into(), app_id: None });
    }

    #[test]
    fn wrong_secret_expired_and_garbage_are_refused() {
        let auth = authenticator(Some("jwt-secret"), None);
        let other = mint_token("other-secret", "org_x");
        assert!(auth.verify(Some(&format!("Bearer {other}")), unix_now()).is_err());
        let expired = sign("jwt-secret", serde_json::json!({"sub": "org_x", "exp": 1_000}));
        assert!(auth.verify(Some(&format!("Bearer {expired}")), 1_000 + LEEWAY_SECONDS).is_err());
        assert!(auth.verify(Some("Bearer garbage"), unix_now()).is_err());
        assert!(auth.verify(Some("Basic abc"), unix_now()).is_err());
        assert!(auth.verify(None, unix_now()).is_err());
    }

    #[test]
    fn token_without_exp_never_expires() {
        let auth = authenticator(Some("jwt-secret"), None);
        let token = sign("jwt-secret", serde_json::json!({"sub": "org_x"}));
        assert!(auth.verify(Some(&format!("Bearer {token}")), i64::MAX / 2).is_ok());
    }

    #[test]
    fn app_token_is_limited_to_its_app() {
        let auth = authenticator(Some("jwt-secret"), None);
        let token = sign("jwt-secret", serde_json::json!({"sub": "app_1", "org": "org_x"}));
        let principal = auth.verify(Some(&format!("Bearer {token}")), unix_now()).expect("valid");
        assert!(principal.require_org().is_err());
        assert!(principal.may_access_app("app_1"));
        assert!(!principal.may_access_app("app_2"));
    }

    #[test]
    fn bad_sub_is_a_bad_request() {
        let auth = authenticator(Some("jwt-secret"), None);
        let token = sign("jwt-secret", serde_json::json!({"sub": "user_1"}));
        match auth.verify(Some(&format!("Bearer {token}")), unix_now()) {
            Err(ApiError::Http { status, .. }) => assert_eq!(status, http::StatusCode::BAD_REQUEST),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn static_token_and_jwt_secret_misuse() {
        let auth = authenticator(Some("jwt-secret"), Some("static-token"));
        assert!(auth.verify(Some("Bearer static-token"), unix_now()).expect("valid").app_id.is_none());
        assert!(auth.verify(Some("bearer static-token"), unix_now()).is_ok());
        assert!(auth.verify(Some("Bearer static-tokem"), unix_now()).is_err());
        match auth.verify(Some("Bearer jwt-secret"), unix_now()) {
            Err(ApiError::Http { detail, .. }) => assert_eq!(detail, JWT_SECRET_AS_TOKEN),
            other => panic!("unexpected {other:?}"),
        }
        let none = authenticator(None, None);
        assert!(none.verify(Some("Bearer anything"), unix_now()).is_err());
    }
}
