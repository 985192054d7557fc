//! The API's own documentation: the OpenAPI spec (compiled in from the repository's
//! `openapi.yaml`, so there is one source) and Swagger UI (its files are inside the binary).

use std::sync::{Arc, LazyLock};

use actix_web::{http::header, web, HttpResponse};
use common::{problem::Problem, request_id::RequestId};

/// The repository's `openapi.yaml`, as built into this binary.
pub(crate) const OPENAPI_YAML: &str = include_str!("../../../../openapi.yaml");

static OPENAPI_JSON: LazyLock<String> = LazyLock::new(|| {
    let spec: serde_json::Value = serde_norway::from_str(OPENAPI_YAML)
        .expect("openapi.yaml is valid YAML (checked by tests)");
    serde_json::to_string(&spec).expect("JSON values serialise")
});

static SWAGGER_CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> = LazyLock::new(|| {
    Arc::new(utoipa_swagger_ui::Config::new(["/openapi.yaml"]).display_request_duration(true))
});

pub(crate) async fn openapi_yaml() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml")
        .body(OPENAPI_YAML)
}

pub(crate) async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI_JSON.as_str())
}

/// `/docs` → `/docs/`, so Swagger UI's relative asset paths resolve.
pub(crate) async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// `/docs/{file}`: Swagger UI's files.
pub(crate) async fn swagger_ui(file: web::Path<String>, request_id: RequestId) -> HttpResponse {
    match utoipa_swagger_ui::serve(&file, SWAGGER_CONFIG.clone()) {
        Ok(Some(file)) => HttpResponse::Ok()
            .content_type(file.content_type)
            .body(file.bytes.into_owned()),
        Ok(None) => Problem::new(actix_web::http::StatusCode::NOT_FOUND)
            .with_detail("No such documentation file.")
            .to_response(),
        Err(e) => {
            log::error!("request_id={request_id} swagger ui: {e}");
            Problem::internal().to_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_spec_parses_and_converts_to_json() {
        let json: serde_json::Value = serde_json::from_str(&OPENAPI_JSON).unwrap();
        assert_eq!(json["openapi"], "3.0.3");
        assert!(json["paths"]["/api/billing"]["post"].is_object());
    }
}
