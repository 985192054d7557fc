use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::spawn_gateway;

fn spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).expect("openapi.yaml parses")
}

#[test]
fn every_gateway_route_is_in_the_spec_and_every_spec_route_exists() {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "patch", "head", "options", "trace",
    ];
    let spec = spec();
    let documented: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(move |m| (path.clone(), m.to_uppercase()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = api_gateway::routes::documented_routes()
        .into_iter()
        .map(|(path, method)| (path.to_owned(), method.to_string()))
        .collect();
    let missing_from_spec: Vec<_> = served.difference(&documented).collect();
    let missing_from_gateway: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing_from_spec.is_empty(),
        "served but not in openapi.yaml: {missing_from_spec:?}"
    );
    assert!(
        missing_from_gateway.is_empty(),
        "in openapi.yaml but not served: {missing_from_gateway:?}"
    );
}

#[tokio::test]
async fn the_spec_and_swagger_ui_are_served_from_the_binary() {
    let gateway = spawn_gateway().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let yaml = http.get(gateway.url("/openapi.yaml")).send().await.unwrap();
    assert_eq!(yaml.status(), 200);
    let served: Value = serde_norway::from_str(&yaml.text().await.unwrap()).unwrap();
    assert_eq!(
        served,
        spec(),
        "the served spec is the repository's openapi.yaml"
    );
    let json: Value = test_support::get_json(&http, gateway.url("/openapi.json")).await;
    assert_eq!(json, spec());

    let redirect = http.get(gateway.url("/docs")).send().await.unwrap();
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "/docs/");
    let index = http.get(gateway.url("/docs/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    assert!(index.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(index.text().await.unwrap().contains("swagger-ui"));
    let initializer =
        test_support::get_text(&http, gateway.url("/docs/swagger-initializer.js")).await;
    assert!(
        initializer.contains("/openapi.yaml"),
        "Swagger UI loads our spec"
    );
    let bundle = http
        .get(gateway.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200);
    assert!(
        bundle.bytes().await.unwrap().len() > 100_000,
        "the real Swagger UI bundle"
    );
    let missing = http.get(gateway.url("/docs/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}
