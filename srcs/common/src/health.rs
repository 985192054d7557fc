//! Liveness and readiness answers, the same shape in every service.

use actix_web::HttpResponse;
use serde_json::{json, Map, Value};

/// `GET /health`: the process serves requests. It checks no dependency, so an outage elsewhere
/// never gets a healthy process restarted.
pub async fn liveness() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /ready`: 200 when every dependency is up, else 503; the body names each and its state,
/// and (`connected_to`) the node each connection is to, where a dependency has several.
pub fn readiness(checks: &[(&str, bool)], connected_to: &[(&str, Option<String>)]) -> HttpResponse {
    let ready = checks.iter().all(|(_, up)| *up);
    let states: Map<String, Value> = checks
        .iter()
        .map(|(name, up)| ((*name).to_owned(), json!(if *up { "up" } else { "down" })))
        .collect();
    let mut body = json!({"status": if ready { "ready" } else { "not ready" }, "checks": states});
    let nodes: Map<String, Value> = connected_to
        .iter()
        .filter_map(|(name, node)| Some(((*name).to_owned(), json!(node.as_ref()?))))
        .collect();
    if !nodes.is_empty() {
        body["connected_to"] = Value::Object(nodes);
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
