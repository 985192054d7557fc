//! Conditional requests on the catalogue: ETag, If-None-Match (304), If-Match (412), HEAD.

use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, TestApp};

fn etag(response: &reqwest::Response) -> String {
    response.headers()[header::ETAG]
        .to_str()
        .unwrap()
        .to_owned()
}

impl TestApp {
    async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        request.send().await.unwrap()
    }

    async fn put_movie(
        &self,
        id: &Value,
        body: &Value,
        if_match: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .put(self.url(&format!("/api/movies/{id}")))
            .json(body);
        if let Some(tag) = if_match {
            request = request.header(header::IF_MATCH, tag);
        }
        self.send(request).await
    }
}

#[tokio::test]
async fn a_movie_carries_an_etag_and_a_current_copy_gets_304() {
    let app = spawn_app().await;
    let movie = app.create_movie("Alien").await;
    let path = format!("/api/movies/{}", movie["id"]);
    assert_eq!(movie["version"], 1);

    let response = app.get(&path).await;
    assert_eq!(response.status(), StatusCode::OK);
    let tag = etag(&response);
    assert!(
        tag.starts_with("\"1."),
        "the version, then a random part: {tag}"
    );
    assert_eq!(
        response.headers()[header::CACHE_CONTROL],
        "public, no-cache"
    );

    let weak = format!("W/{tag}");
    let listed = format!("\"0.x\", {tag}");
    for current in [tag.as_str(), weak.as_str(), listed.as_str(), "*"] {
        let response = app
            .send(
                app.http
                    .get(app.url(&path))
                    .header(header::IF_NONE_MATCH, current),
            )
            .await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{current}");
        assert_eq!(etag(&response), tag);
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "public, no-cache"
        );
        assert!(response.bytes().await.unwrap().is_empty());
    }
    let stale = app
        .send(
            app.http
                .get(app.url(&path))
                .header(header::IF_NONE_MATCH, "\"7.x\""),
        )
        .await;
    assert_eq!(stale.status(), StatusCode::OK);
    let body: Value = stale.json().await.unwrap();
    assert_eq!(body["title"], "Alien");

    // Not a list of entity tags: names no copy, so the full answer.
    let unreadable = app
        .send(
            app.http
                .get(app.url(&path))
                .header(header::IF_NONE_MATCH, "1"),
        )
        .await;
    assert_eq!(unreadable.status(), StatusCode::OK);
}

#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let app = spawn_app().await;
    let movie = app.create_movie("Heat").await;
    for path in [
        format!("/api/movies/{}", movie["id"]),
        "/api/movies".to_owned(),
    ] {
        let get = app.get(&path).await;
        let head = app.send(app.http.head(app.url(&path))).await;
        assert_eq!(head.status(), StatusCode::OK, "{path}");
        assert_eq!(etag(&head), etag(&get), "{path}");
        assert_eq!(head.headers()[header::CONTENT_TYPE], "application/json");
        assert!(head.bytes().await.unwrap().is_empty(), "{path}");
    }
    let missing = app.send(app.http.head(app.url("/api/movies/999999"))).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        missing.headers()[header::CACHE_CONTROL],
        "no-store",
        "an error is for now only"
    );
    let allow = app.send(app.http.patch(app.url("/api/movies"))).await;
    assert_eq!(allow.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(allow.headers()[header::ALLOW]
        .to_str()
        .unwrap()
        .contains("HEAD"));
}

#[tokio::test]
async fn a_page_etag_changes_with_what_the_page_shows() {
    let app = spawn_app().await;
    let first = app.create_movie("One").await;
    let page = app.get("/api/movies?limit=10").await;
    let tag = etag(&page);
    assert_eq!(etag(&app.get("/api/movies?limit=10").await), tag, "stable");
    let cached = app
        .send(
            app.http
                .get(app.url("/api/movies?limit=10"))
                .header(header::IF_NONE_MATCH, &tag),
        )
        .await;
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);

    app.put_movie(&first["id"], &json!({"title": "One, renamed"}), None)
        .await;
    let changed = app
        .send(
            app.http
                .get(app.url("/api/movies?limit=10"))
                .header(header::IF_NONE_MATCH, &tag),
        )
        .await;
    assert_eq!(
        changed.status(),
        StatusCode::OK,
        "a changed movie changes the page"
    );
    assert_ne!(etag(&changed), tag);
    assert_ne!(
        etag(&app.get("/api/movies?limit=5").await),
        etag(&changed),
        "another page"
    );
}

#[tokio::test]
async fn if_match_lets_a_write_through_only_on_the_version_it_names() {
    let app = spawn_app().await;
    let movie = app.create_movie("Up").await;
    let id = &movie["id"];
    let path = format!("/api/movies/{id}");
    let v1 = etag(&app.get(&path).await);

    let replaced = app.put_movie(id, &json!({"title": "Up!"}), Some(&v1)).await;
    assert_eq!(replaced.status(), StatusCode::OK);
    let v2 = etag(&replaced);
    assert_ne!(v2, v1);
    let body: Value = replaced.json().await.unwrap();
    assert_eq!(
        (body["title"].as_str(), body["version"].as_i64()),
        (Some("Up!"), Some(2))
    );

    // A copy that is out of date, or not exactly the current tag: refused, nothing written.
    let weak_v2 = format!("W/{v2}");
    let padded = v2.replacen('2', "02", 1);
    for stale in [
        v1.as_str(),
        weak_v2.as_str(),
        padded.as_str(),
        "\"something-else\"",
        "v2",
        "0",
    ] {
        let refused = app
            .put_movie(id, &json!({"title": "Lost update"}), Some(stale))
            .await;
        let problem = assert_problem(refused, 412).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("If-Match"),
            "{stale}"
        );
    }
    let stored: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(
        (stored["title"].as_str(), stored["version"].as_i64()),
        (Some("Up!"), Some(2))
    );

    // `*`: any version; no If-Match: as before, last writer wins.
    let any = app
        .put_movie(id, &json!({"title": "Up (any)"}), Some("*"))
        .await;
    assert_eq!(any.status(), StatusCode::OK);
    let v3 = etag(&any);
    let plain = app
        .put_movie(id, &json!({"title": "Up (plain)"}), None)
        .await;
    assert_eq!(plain.status(), StatusCode::OK);
    let v4 = etag(&plain);

    // A precondition on a movie that does not exist is no reason to hide the 404.
    let missing = app
        .put_movie(&json!(999_999), &json!({"title": "x"}), Some(&v4))
        .await;
    assert_problem(missing, 404).await;

    let delete = |tag: &str| {
        app.http
            .delete(app.url(&path))
            .header(header::IF_MATCH, tag)
    };
    assert_problem(app.send(delete(&v3)).await, 412).await;
    assert_eq!(app.get(&path).await.status(), StatusCode::OK);
    assert_eq!(app.send(delete(&v4)).await.status(), StatusCode::NO_CONTENT);
    assert_problem(app.send(delete(&v4)).await, 404).await;
}

#[tokio::test]
async fn if_none_match_on_a_write_refuses_the_version_it_names() {
    let app = spawn_app().await;
    let movie = app.create_movie("Ran").await;
    let path = format!("/api/movies/{}", movie["id"]);
    let current = etag(&app.get(&path).await);
    for refused in ["*", current.as_str()] {
        let put = app
            .http
            .put(app.url(&path))
            .header(header::IF_NONE_MATCH, refused)
            .json(&json!({"title": "Ran (overwritten)"}));
        assert_problem(app.send(put).await, 412).await;
        let delete = app
            .http
            .delete(app.url(&path))
            .header(header::IF_NONE_MATCH, refused);
        assert_problem(app.send(delete).await, 412).await;
    }
    let other = app
        .http
        .put(app.url(&path))
        .header(header::IF_NONE_MATCH, "\"1.other\"")
        .json(&json!({"title": "Ran (1985)"}));
    assert_eq!(app.send(other).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_whole_catalogue_matches_only_if_match_star() {
    let app = spawn_app().await;
    app.create_movie("Kept").await;
    for (name, value) in [
        (header::IF_MATCH, "\"1.abc\""),
        (header::IF_NONE_MATCH, "*"),
    ] {
        let delete_all = app
            .http
            .delete(app.url("/api/movies"))
            .header(name.clone(), value);
        let problem = assert_problem(app.send(delete_all).await, 412).await;
        assert!(problem["detail"]
            .as_str()
            .unwrap()
            .contains("no entity tag"));
        let create = app
            .http
            .post(app.url("/api/movies"))
            .header(name, value)
            .json(&json!({"title": "Not created"}));
        assert_problem(app.send(create).await, 412).await;
    }
    let page: Value = app.get("/api/movies").await.json().await.unwrap();
    assert_eq!(
        page["movies"].as_array().unwrap().len(),
        1,
        "nothing deleted or created"
    );
    let star = app
        .http
        .delete(app.url("/api/movies"))
        .header(header::IF_MATCH, "*");
    assert_eq!(app.send(star).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn any_writer_changes_the_tag_and_no_tag_is_reused() {
    let app = spawn_app().await;
    let movie = app.create_movie("Tag").await;
    let id = movie["id"].as_i64().unwrap();
    let path = format!("/api/movies/{id}");
    let before = etag(&app.get(&path).await);
    // A writer that knows nothing of versions (an older release, a hand-written UPDATE).
    let client = app.db.client().await;
    client
        .execute("UPDATE movies SET title = 'Tag (by hand)'", &[])
        .await
        .unwrap();
    let after = app.get(&path).await;
    assert_ne!(etag(&after), before);
    let body: Value = after.json().await.unwrap();
    assert_eq!(body["version"], 2);
    let cached = app
        .send(
            app.http
                .get(app.url(&path))
                .header(header::IF_NONE_MATCH, &before),
        )
        .await;
    assert_eq!(
        cached.status(),
        StatusCode::OK,
        "the old copy is not current"
    );
    // Versions can repeat (a restored backup; an old id given to a new movie): tags do not.
    client.execute("DELETE FROM movies", &[]).await.unwrap();
    client
        .execute(
            "INSERT INTO movies (id, title) OVERRIDING SYSTEM VALUE VALUES ($1, 'Tag')",
            &[&id],
        )
        .await
        .unwrap();
    let again = etag(&app.get(&path).await);
    assert!(again.starts_with("\"1."), "{again}");
    assert_ne!(again, before, "same id and version, another tag");
}

#[tokio::test]
async fn of_fifty_concurrent_writers_with_the_same_version_exactly_one_wins() {
    let app = spawn_app().await;
    let movie = app.create_movie("Race").await;
    let v1 = etag(&app.get(&format!("/api/movies/{}", movie["id"])).await);
    let writes = (0..50).map(|i| {
        let title = format!("Writer {i}");
        let (app, id, v1) = (&app, &movie["id"], &v1);
        async move {
            app.put_movie(id, &json!({ "title": title }), Some(v1))
                .await
                .status()
        }
    });
    let statuses = futures_util::future::join_all(writes).await;
    let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
        .count();
    assert_eq!((won, refused), (1, 49), "{statuses:?}");
    let stored: Value = app
        .get(&format!("/api/movies/{}", movie["id"]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["version"], 2);
}
