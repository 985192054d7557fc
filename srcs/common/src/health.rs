//! Liveness and readiness answers, the same shape in every service.

use actix_web::HttpResponse;
use serde_json::{json, Map, Value};

/// `GET /health`: the process serves requests. It checks no dependency, so an outage elsewhere
/// never gets a healthy process restarted.
pub async fn liveness() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /ready`: 200 when every dependency is up, else 503; the body names each and its state.
pub fn readiness(checks: &[(&str, bool)]) -> HttpResponse {
    let ready = checks.iter().all(|(_, up)| *up);
    let states: Map<String, Value> = checks
        .iter()
        .map(|(name, up)| ((*name).to_owned(), json!(if *up { "up" } else { "down" })))
        .collect();
    let body = json!({"status": if ready { "ready" } else { "not ready" }, "checks": states});
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
