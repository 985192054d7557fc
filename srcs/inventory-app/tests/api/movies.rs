use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn create_answers_201_with_location_and_the_stored_movie() {
    let app = spawn_app().await;
    let response = app
        .post_movie(&json!({"title": "The Matrix", "description": "Sci-Fi Classic"}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["title"], "The Matrix");
    assert_eq!(created["description"], "Sci-Fi Classic");
    assert_eq!(created["genres"], json!([]));
    assert!(created["release_year"].is_null());
    assert_eq!(location, format!("/api/movies/{}", created["id"]));
    assert_eq!(created["created_at"], created["updated_at"]);

    let fetched: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(fetched, created);
}

#[tokio::test]
async fn optional_fields_are_stored_and_unicode_survives() {
    let app = spawn_app().await;
    let body = json!({
        "title": "  千と千尋の神隠し  ",
        "description": "Line one\nLine two — ünïcødé",
        "release_year": 2001,
        "genres": ["Animation", "Fantasy"],
        "runtime_minutes": 125
    });
    let created: Value = app.post_movie(&body).await.json().await.unwrap();
    assert_eq!(created["title"], "千と千尋の神隠し", "title is trimmed");
    assert_eq!(created["description"], "Line one\nLine two — ünïcødé");
    assert_eq!(created["release_year"], 2001);
    assert_eq!(created["genres"], json!(["Animation", "Fantasy"]));
    assert_eq!(created["runtime_minutes"], 125);
}

#[tokio::test]
async fn invalid_movies_get_field_level_messages_and_nothing_is_stored() {
    let app = spawn_app().await;
    let cases = [
        (json!({}), vec!["title"]),
        (json!({"title": ""}), vec!["title"]),
        (json!({"title": "   "}), vec!["title"]),
        (json!({"title": "x".repeat(201)}), vec!["title"]),
        (
            json!({"title": "ok", "description": "d".repeat(5001)}),
            vec!["description"],
        ),
        (
            json!({"title": 7, "description": false}),
            vec!["title", "description"],
        ),
        (
            json!({"title": "ok", "director": "Nobody"}),
            vec!["director"],
        ),
        (
            json!({"title": "ok", "release_year": 1500, "runtime_minutes": -5}),
            vec!["release_year", "runtime_minutes"],
        ),
    ];
    for (body, fields) in cases {
        let problem = assert_problem(app.post_movie(&body).await, 400).await;
        assert_eq!(problem["type"], "/problems/validation-error");
        let reported: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(reported, fields, "for {body}");
        assert!(problem["errors"][0]["message"].as_str().unwrap().len() > 3);
    }
    let list: Value = app.get("/api/movies").await.json().await.unwrap();
    assert_eq!(list["movies"], json!([]));
}

#[tokio::test]
async fn malformed_oversized_and_non_json_bodies_are_refused_clearly() {
    let app = spawn_app().await;
    let post = |body: String, content_type: &'static str| {
        app.http
            .post(app.url("/api/movies"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let problem = assert_problem(
        post("{\"title\": ".into(), "application/json")
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Malformed JSON"),
        "{problem}"
    );
    let problem = assert_problem(
        post("[1, 2]".into(), "application/json").await.unwrap(),
        400,
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("invalid type"),
        "{problem}"
    );
    assert_problem(
        post("title=x".into(), "application/x-www-form-urlencoded")
            .await
            .unwrap(),
        415,
    )
    .await;
    let huge = json!({"title": "x", "description": "d".repeat(70 * 1024)}).to_string();
    assert_problem(post(huge, "application/json").await.unwrap(), 413).await;
}

#[tokio::test]
async fn missing_and_malformed_ids() {
    let app = spawn_app().await;
    let problem = assert_problem(app.get("/api/movies/999999").await, 404).await;
    assert_eq!(problem["detail"], "No movie with id 999999.");
    for bad in ["abc", "0", "-1", "1.5"] {
        assert_problem(app.get(&format!("/api/movies/{bad}")).await, 400).await;
        let put = app
            .http
            .put(app.url(&format!("/api/movies/{bad}")))
            .json(&json!({"title": "x"}))
            .send()
            .await
            .unwrap();
        assert_problem(put, 400).await;
        let delete = app
            .http
            .delete(app.url(&format!("/api/movies/{bad}")))
            .send()
            .await
            .unwrap();
        assert_problem(delete, 400).await;
    }
}

#[tokio::test]
async fn put_replaces_every_field() {
    let app = spawn_app().await;
    let created: Value = app
        .post_movie(&json!({"title": "Alien", "description": "In space", "release_year": 1979}))
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/api/movies/{}", created["id"]);
    let response = app
        .http
        .put(app.url(&path))
        .json(&json!({"title": "Aliens", "genres": ["Action"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["id"], created["id"]);
    assert_eq!(updated["title"], "Aliens");
    assert!(
        updated["description"].is_null(),
        "omitted optional fields are cleared"
    );
    assert!(updated["release_year"].is_null());
    assert_eq!(updated["genres"], json!(["Action"]));
    assert_eq!(updated["created_at"], created["created_at"]);
    assert_ne!(updated["updated_at"], created["updated_at"]);
    assert_eq!(app.get(&path).await.json::<Value>().await.unwrap(), updated);

    let invalid = app
        .http
        .put(app.url(&path))
        .json(&json!({"title": ""}))
        .send()
        .await
        .unwrap();
    assert_problem(invalid, 400).await;
    let missing = app
        .http
        .put(app.url("/api/movies/424242"))
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(missing, 404).await;
}

#[tokio::test]
async fn delete_one_then_it_is_gone() {
    let app = spawn_app().await;
    let movie = app.create_movie("Heat").await;
    let path = format!("/api/movies/{}", movie["id"]);
    let response = app.http.delete(app.url(&path)).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_problem(app.get(&path).await, 404).await;
    let again = app.http.delete(app.url(&path)).send().await.unwrap();
    assert_problem(again, 404).await;
}

#[tokio::test]
async fn delete_all_says_how_many_went() {
    let app = spawn_app().await;
    for title in ["A", "B", "C"] {
        app.create_movie(title).await;
    }
    let response = app
        .http
        .delete(app.url("/api/movies"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"deleted": 3})
    );
    let list: Value = app.get("/api/movies").await.json().await.unwrap();
    assert_eq!(list["movies"], json!([]));
    let response = app
        .http
        .delete(app.url("/api/movies"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"deleted": 0})
    );
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_get_problems() {
    let app = spawn_app().await;
    let problem = assert_problem(app.get("/api/nothing-here").await, 404).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("/api/nothing-here"));
    let patch = app.http.patch(app.url("/api/movies")).send().await.unwrap();
    assert_eq!(patch.headers()["allow"], "HEAD, GET, POST, DELETE");
    assert_problem(patch, 405).await;
    let post_one = app
        .http
        .post(app.url("/api/movies/1"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(post_one, 405).await;
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url("/api/movies/77"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
    let problem = assert_problem(response, 404).await;
    assert_eq!(problem["request_id"], "trace-me-123");

    let response = app
        .http
        .get(app.url("/health"))
        .header("x-request-id", "bad id\u{7f}")
        .send()
        .await;
    // reqwest refuses to send an invalid header value; a sane but odd one is replaced instead.
    assert!(response.is_err());
    let response = app
        .http
        .get(app.url("/health"))
        .header("x-request-id", "has space")
        .send()
        .await
        .unwrap();
    let generated = response.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(generated, "has space");
    assert_eq!(generated.len(), 36, "a UUID is generated");
}

#[tokio::test]
async fn writes_without_the_admin_token_are_refused_even_from_inside_the_firewall() {
    let app = spawn_app().await;
    let movie = app.create_movie("Kept").await;
    let path = format!("/api/movies/{}", movie["id"]);
    let anonymous = reqwest::Client::new();
    let wrong = format!("Bearer {}x", test_support::ADMIN_TOKEN);
    for authorization in [None, Some(wrong.as_str()), Some("Basic YWRtaW46YWRtaW4=")] {
        let with = |request: reqwest::RequestBuilder| match authorization {
            Some(value) => request.header("authorization", value),
            None => request,
        };
        let attempts = [
            with(anonymous.post(app.url("/api/movies"))).json(&json!({"title": "Intruder"})),
            with(anonymous.put(app.url(&path))).json(&json!({"title": "Defaced"})),
            with(anonymous.delete(app.url(&path))),
            with(anonymous.delete(app.url("/api/movies"))),
        ];
        for attempt in attempts {
            let response = attempt.send().await.unwrap();
            assert!(response.headers().contains_key("www-authenticate"));
            assert_problem(response, 401).await;
        }
    }
    let kept: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(kept, movie, "nothing changed");
    let list: Value = app.get("/api/movies").await.json().await.unwrap();
    assert_eq!(list["movies"].as_array().unwrap().len(), 1);
    // The scheme name is case-insensitive (RFC 9110).
    let lower = anonymous
        .delete(app.url(&path))
        .header(
            "authorization",
            format!("bearer {}", test_support::ADMIN_TOKEN),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), 204);
}

#[tokio::test]
async fn a_field_sent_twice_is_refused_naming_it() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(app.url("/api/movies"))
        .header("content-type", "application/json")
        .body(r#"{"title": "Short", "runtime_minutes": 90, "runtime_minutes": 1440}"#)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 400).await;
    assert_eq!(
        problem["errors"][0]["field"], "runtime_minutes",
        "{problem}"
    );
    let list: Value = app.get("/api/movies").await.json().await.unwrap();
    assert_eq!(list["movies"], json!([]), "nothing stored");
}
