//! Event types: create, conflict, archive and unarchive, expunge, PUT/PATCH, listing options.

use http::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_timestamp, keys};

#[tokio::test]
async fn create_conflict_archive_unarchive() {
    let app = TestApp::new().await;
    let schemas = json!({"1": {"type": "object"}});
    let (status, body) = app
        .post(
            "/api/v1/event-type",
            json!({"name": "user.signup", "description": "A user signed up", "schemas": schemas}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        keys(&body),
        ["archived", "createdAt", "deprecated", "description", "featureFlag", "name", "schemas", "updatedAt"]
    );
    assert_eq!(body["name"], "user.signup");
    assert_eq!(body["archived"], false);
    assert_eq!(body["deprecated"], false);
    assert_eq!(body["schemas"], schemas);
    assert_eq!(body["featureFlag"], json!(null));
    assert_timestamp(&body["createdAt"]);

    let (status, body) = app.post("/api/v1/event-type", json!({"name": "user.signup", "description": "again"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body, json!({"code": "event_type_exists", "detail": "An event_type with this name already exists"}));

    let (status, _) = app.delete("/api/v1/event-type/user.signup").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, archived) = app.get("/api/v1/event-type/user.signup").await;
    assert_eq!(archived["archived"], true);
    let (_, list) = app.get("/api/v1/event-type").await;
    assert_eq!(list["data"], json!([]));
    let (_, list) = app.get("/api/v1/event-type?include_archived=true").await;
    assert_eq!(list["data"].as_array().expect("data").len(), 1);

    // Creating an archived type unarchives it.
    let (status, body) = app.post("/api/v1/event-type", json!({"name": "user.signup", "description": "back"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!((&body["archived"], &body["description"]), (&json!(false), &json!("back")));

    let (status, _) = app.delete("/api/v1/event-type/user.signup?expunge=true").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get("/api/v1/event-type/user.signup").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.delete("/api/v1/event-type/user.signup").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn put_patch_and_list_content() {
    let app = TestApp::new().await;
    let (status, body) =
        app.put("/api/v1/event-type/order.paid", json!({"description": "Paid", "schemas": {"1": {}}})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["name"], "order.paid");
    let (status, body) = app.put("/api/v1/event-type/order.paid", json!({"description": "Paid!"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["schemas"], json!(null));

    let (status, body) =
        app.patch("/api/v1/event-type/order.paid", json!({"schemas": {"2": {"type": "object"}}})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["description"], "Paid!");
    assert_eq!(body["schemas"], json!({"2": {"type": "object"}}));
    let (status, body) = app.patch("/api/v1/event-type/order.paid", json!({"archived": true})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["archived"], true);
    let (status, _) = app.patch("/api/v1/event-type/nope", json!({"archived": true})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    app.event_type("a.first").await;
    let (_, list) = app.get("/api/v1/event-type").await;
    assert_eq!(list["data"][0]["name"], "a.first");
    assert_eq!(list["data"][0]["schemas"], json!(null));
    let (_, list) = app.get("/api/v1/event-type?include_archived=true&with_content=true").await;
    let names: Vec<&str> =
        list["data"].as_array().expect("data").iter().map(|e| e["name"].as_str().expect("n")).collect();
    assert_eq!(names, ["a.first", "order.paid"]);
    assert_eq!(list["data"][1]["schemas"], json!({"2": {"type": "object"}}));
    assert_eq!(list["done"], true);
}

#[tokio::test]
async fn names_are_validated() {
    let app = TestApp::new().await;
    let (status, body) = app.post("/api/v1/event-type", json!({"name": "bad name!", "description": "x"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "name"]));
    let (status, body) = app.post("/api/v1/event-type", json!({"name": "ok.name"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "description"]));
    let (status, _) =
        app.post("/api/v1/event-type", json!({"name": "ok.name", "description": "x", "schemas": [1]})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = app.put("/api/v1/event-type/bad%20name", json!({"description": "x"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["path", "event_type_name"]));
}
