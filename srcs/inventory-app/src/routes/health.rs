use actix_web::HttpResponse;

/// Liveness: the process serves requests. No dependency is checked, so a database outage never
/// gets a healthy process restarted.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}
