use actix_web::HttpResponse;

/// Liveness: the process serves requests. No dependency is checked, so an outage elsewhere
/// never gets a healthy gateway restarted.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}
