//! Applications: shapes, uid lookups, conflicts, PUT/PATCH/DELETE, validation, pagination.

use http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, assert_timestamp, keys};

#[tokio::test]
async fn create_returns_svix_shape() {
    let app = TestApp::new().await;
    let (status, body) = app
        .post("/api/v1/app", json!({"name": "My app", "uid": "my-app", "throttleRate": 10, "metadata": {"k": "v"}}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(keys(&body), ["createdAt", "id", "metadata", "name", "rateLimit", "throttleRate", "uid", "updatedAt"]);
    assert!(herald_store::ids::has_prefix(body["id"].as_str().expect("id"), "app"), "{body}");
    assert_eq!(body["name"], "My app");
    assert_eq!(body["uid"], "my-app");
    assert_eq!(body["throttleRate"], 10);
    assert_eq!(body["rateLimit"], 10);
    assert_eq!(body["metadata"], json!({"k": "v"}));
    assert_timestamp(&body["createdAt"]);
    assert_timestamp(&body["updatedAt"]);

    // Minimal body: uid and rateLimit are left out, throttleRate is null, metadata is {}.
    let (status, body) = app.post("/api/v1/app", json!({"name": "Bare"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(keys(&body), ["createdAt", "id", "metadata", "name", "throttleRate", "updatedAt"]);
    assert_eq!(body["throttleRate"], json!(null));
    assert_eq!(body["metadata"], json!({}));
}

#[tokio::test]
async fn uid_lookup_conflict_and_get_if_exists() {
    let app = TestApp::new().await;
    let id = app.app("One", Some("one")).await;
    let (status, by_uid) = app.get("/api/v1/app/one").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_uid["id"], id.as_str());
    let (_, by_id) = app.get(&format!("/api/v1/app/{id}/")).await;
    assert_eq!(by_id, by_uid);

    let (status, body) = app.post("/api/v1/app", json!({"name": "Again", "uid": "one"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body, json!({"code": "conflict", "detail": "An application with that id or uid already exists"}));

    let (status, body) = app.post("/api/v1/app?get_if_exists=true", json!({"name": "Again", "uid": "one"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, by_uid);

    let (status, _) = app.get("/api/v1/app/missing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn put_patch_delete() {
    let app = TestApp::new().await;
    let id = app.app("Old", Some("old")).await;

    let (status, body) = app.put("/api/v1/app/old", json!({"name": "New", "uid": "new", "metadata": {"a": "b"}})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((body["id"].as_str(), &body["name"], &body["uid"]), (Some(id.as_str()), &json!("New"), &json!("new")));

    let (status, created) = app.put("/api/v1/app/brand-new", json!({"name": "Made by PUT", "uid": "brand-new"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(created["id"], body["id"]);

    let (status, patched) = app.patch(&format!("/api/v1/app/{id}"), json!({"throttleRate": 5})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["name"], "New");
    assert_eq!(patched["uid"], "new");
    assert_eq!(patched["metadata"], json!({"a": "b"}));
    assert_eq!(patched["throttleRate"], 5);

    let (status, patched) = app.patch("/api/v1/app/new", json!({"uid": null, "throttleRate": null})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(patched.get("uid").is_none(), "{patched}");
    assert_eq!(patched["throttleRate"], json!(null));

    let (status, body) = app.delete(&format!("/api/v1/app/{id}")).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, json!(null)));
    let (status, _) = app.get(&format!("/api/v1/app/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.delete(&format!("/api/v1/app/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn validation_errors_list_every_bad_field() {
    let app = TestApp::new().await;
    let (status, body) =
        app.post("/api/v1/app", json!({"name": "", "uid": "app_looks_like_an_id", "throttleRate": 0})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let locs: Vec<&serde_json::Value> = body["detail"].as_array().expect("items").iter().map(|i| &i["loc"]).collect();
    assert!(locs.contains(&&json!(["body", "name"])), "{body}");
    assert!(locs.contains(&&json!(["body", "uid"])), "{body}");
    assert!(locs.contains(&&json!(["body", "throttleRate"])), "{body}");
    for item in body["detail"].as_array().expect("items") {
        assert_eq!(keys(item), ["loc", "msg", "type"]);
    }

    let (status, body) = app.post("/api/v1/app", json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body,
        json!({"detail": [{"loc": ["body", "name"], "msg": "field required", "type": "value_error.missing"}]})
    );

    let (status, body) = app.post("/api/v1/app", json!({"name": 5})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "name"]));
    assert_eq!(body["detail"][0]["type"], "value_error.jsondecode");

    let (status, _) = app.post("/api/v1/app", json!(["not", "an", "object"])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let response = app.raw(Method::POST, "/api/v1/app", &[], Some("{not json")).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.json()["code"], "generic_error");

    let (status, body) = app.get("/api/v1/app?limit=251").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["query", "limit"]));
    let (status, _) = app.get("/api/v1/app?limit=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // None of it created anything.
    let (_, list) = app.get("/api/v1/app").await;
    assert_eq!(list["data"], json!([]));
}

#[tokio::test]
async fn pagination_walks_three_pages_and_back() {
    let app = TestApp::new().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.app(&format!("app {i}"), None).await);
    }
    // Listings are in id order.
    ids.sort();

    let (status, page1) = app.get("/api/v1/app?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&page1), ["data", "done", "iterator", "prevIterator"]);
    let names = |page: &serde_json::Value| -> Vec<String> {
        page["data"].as_array().expect("data").iter().map(|a| a["id"].as_str().expect("id").to_owned()).collect()
    };
    assert_eq!(names(&page1), ids[0..2]);
    assert_eq!(page1["done"], false);
    assert_eq!(page1["iterator"], ids[1].as_str());
    assert_eq!(page1["prevIterator"], format!("-{}", ids[0]));

    let (_, page2) = app.get(&format!("/api/v1/app?limit=2&iterator={}", ids[1])).await;
    assert_eq!(names(&page2), ids[2..4]);
    assert_eq!(page2["done"], false);

    let (_, page3) =
        app.get(&format!("/api/v1/app?limit=2&iterator={}", page2["iterator"].as_str().expect("it"))).await;
    assert_eq!(names(&page3), ids[4..5]);
    assert_eq!(page3["done"], true);

    // Back from page 3 with its prevIterator gives page 2 again.
    let prev = page3["prevIterator"].as_str().expect("prev");
    let (_, back) = app.get(&format!("/api/v1/app?limit=2&iterator={prev}")).await;
    assert_eq!(names(&back), ids[2..4]);

    let (_, descending) = app.get("/api/v1/app?limit=2&order=descending").await;
    assert_eq!(names(&descending), vec![ids[4].clone(), ids[3].clone()]);
    let (status, _) = app.get("/api/v1/app?order=sideways").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
