//! Authentication, health, and the shape of errors for unknown routes.

use http::{Method, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::helpers::{JWT_SECRET, STATIC_TOKEN, TestApp};

#[tokio::test]
async fn missing_or_bad_tokens_get_401() {
    let app = TestApp::new().await;
    for authorization in ["", "Bearer ", "Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer test-static-tokeX"] {
        let response = app.raw(Method::GET, "/api/v1/app", &[("authorization", authorization)], None).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{authorization}");
        assert_eq!(response.json(), json!({"code": "authentication_failed", "detail": "Invalid token"}));
    }
    let other = herald_svix::mint_token("another-secret", "org_x");
    let response = app.raw(Method::GET, "/api/v1/app", &[("authorization", &format!("Bearer {other}"))], None).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    // Bad input changes nothing, and a refused POST creates nothing.
    let response =
        app.raw(Method::POST, "/api/v1/app", &[("authorization", "Bearer nope")], Some(r#"{"name":"x"}"#)).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    let (_, list) = app.get("/api/v1/app").await;
    assert_eq!(list["data"], json!([]));
}

#[tokio::test]
async fn static_token_and_minted_jwt_are_accepted() {
    let app = TestApp::new().await;
    let response =
        app.raw(Method::GET, "/api/v1/app", &[("authorization", &format!("Bearer {STATIC_TOKEN}"))], None).await;
    assert_eq!(response.status, StatusCode::OK);
    let token = herald_svix::mint_token(JWT_SECRET, "org_abc");
    let response = app.raw(Method::GET, "/api/v1/app", &[("authorization", &format!("Bearer {token}"))], None).await;
    assert_eq!(response.status, StatusCode::OK);
}

#[tokio::test]
async fn using_the_jwt_secret_as_a_token_is_explained() {
    let app = TestApp::new().await;
    let response =
        app.raw(Method::GET, "/api/v1/app", &[("authorization", &format!("Bearer {JWT_SECRET}"))], None).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert!(response.json()["detail"].as_str().expect("detail").contains("JWT signing secrets can not be used"));
}

#[tokio::test]
async fn app_token_reaches_only_its_app() {
    let app = TestApp::new().await;
    let mine = app.app("mine", None).await;
    let theirs = app.app("theirs", None).await;
    let claims = json!({"sub": mine, "org": "org_23rb8YdGqMT0qIzpgGwdXfHirMu", "iat": 1});
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(JWT_SECRET.as_bytes()))
            .expect("sign");
    let auth = format!("Bearer {token}");
    let headers = [("authorization", auth.as_str())];
    assert_eq!(app.raw(Method::GET, &format!("/api/v1/app/{mine}"), &headers, None).await.status, StatusCode::OK);
    assert_eq!(
        app.raw(Method::GET, &format!("/api/v1/app/{theirs}"), &headers, None).await.status,
        StatusCode::NOT_FOUND
    );
    let listing = app.raw(Method::GET, "/api/v1/app", &headers, None).await;
    assert_eq!(listing.status, StatusCode::FORBIDDEN);
    assert_eq!(listing.json()["code"], "insufficient access");
    let message = app
        .raw(Method::POST, &format!("/api/v1/app/{mine}/msg"), &headers, Some(r#"{"eventType":"a.b","payload":{}}"#))
        .await;
    // Sending messages takes an organisation token, as in Svix.
    assert_eq!(message.status, StatusCode::FORBIDDEN);
    let endpoints = app.raw(Method::GET, &format!("/api/v1/app/{mine}/endpoint"), &headers, None).await;
    assert_eq!(endpoints.status, StatusCode::OK);
}

#[tokio::test]
async fn health_needs_no_token() {
    let app = TestApp::new().await;
    let response = app.raw(Method::GET, "/api/v1/health", &[("authorization", "")], None).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.json(),
        json!({"database": {"status": "ok"}, "queue": {"status": "ok"}, "cache": {"status": "ok"}})
    );
    let ping = app.raw(Method::GET, "/api/v1/health/ping", &[("authorization", "")], None).await;
    assert_eq!(ping.status, StatusCode::NO_CONTENT);
    let head = app.raw(Method::HEAD, "/api/v1/health/", &[("authorization", "")], None).await;
    assert_eq!(head.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = TestApp::new().await;
    let (status, body) = app.get("/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"code": "not_found", "detail": "Entity not found"}));
    let (status, body) = app.call(Method::DELETE, "/api/v1/app", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["code"], "method_not_allowed");
}
