use serde_json::Value;

use crate::helpers::{assert_problem, spawn_app};

fn titles(page: &Value) -> Vec<String> {
    page["movies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn following_next_links_visits_every_movie_once_in_order() {
    let app = spawn_app().await;
    let all: Vec<String> = (1..=7).map(|i| format!("Movie {i}")).collect();
    for title in &all {
        app.create_movie(title).await;
    }
    let mut seen = Vec::new();
    let mut next = Some("/api/movies?limit=3".to_owned());
    let mut pages = 0;
    while let Some(path) = next {
        let page: Value = app.get(&path).await.json().await.unwrap();
        assert_eq!(page["limit"], 3);
        seen.extend(titles(&page));
        next = page["next"].as_str().map(str::to_owned);
        if next.is_some() {
            assert!(page["next_cursor"].is_string());
        }
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, all);
}

#[tokio::test]
async fn default_limit_offset_and_exact_last_page() {
    let app = spawn_app().await;
    for i in 1..=4 {
        app.create_movie(&format!("M{i}")).await;
    }
    let page: Value = app.get("/api/movies").await.json().await.unwrap();
    assert_eq!(page["limit"], 50);
    assert_eq!(titles(&page).len(), 4);
    assert!(page["next"].is_null() && page["next_cursor"].is_null());

    let page: Value = app
        .get("/api/movies?limit=2&offset=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(titles(&page), ["M3", "M4"]);
    assert!(
        page["next"].is_null(),
        "a page that ends exactly at the last movie has no next"
    );
}

#[tokio::test]
async fn title_search_is_case_insensitive_and_treats_wildcards_literally() {
    let app = spawn_app().await;
    for title in [
        "The Matrix",
        "The Matrix Reloaded",
        "Heat",
        "100% Love",
        "1000 Love",
    ] {
        app.create_movie(title).await;
    }
    let page: Value = app.get("/api/movies?q=matrix").await.json().await.unwrap();
    assert_eq!(titles(&page), ["The Matrix", "The Matrix Reloaded"]);
    let page: Value = app.get("/api/movies?q=100%25").await.json().await.unwrap();
    assert_eq!(titles(&page), ["100% Love"]);
    let page: Value = app
        .get("/api/movies?q=matrix&limit=1")
        .await
        .json()
        .await
        .unwrap();
    let next = page["next"].as_str().unwrap();
    assert!(next.contains("q=matrix"), "{next}");
    let page: Value = app.get(next).await.json().await.unwrap();
    assert_eq!(titles(&page), ["The Matrix Reloaded"]);
}

#[tokio::test]
async fn bad_paging_parameters_are_field_errors() {
    let app = spawn_app().await;
    for query in [
        "limit=0",
        "limit=501",
        "limit=ten",
        "offset=-1",
        "cursor=x",
        "limit=07",
        "q=a%00b",
    ] {
        let problem = assert_problem(app.get(&format!("/api/movies?{query}")).await, 400).await;
        assert_eq!(problem["type"], "/problems/validation-error", "{query}");
    }
    let page: Value = app.get("/api/movies?limit=500").await.json().await.unwrap();
    assert_eq!(page["limit"], 500);
}
