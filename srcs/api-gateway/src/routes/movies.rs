use actix_web::{web, HttpRequest, HttpResponse};
use common::request_id::RequestId;

use crate::{auth::AdminToken, error::GatewayError, startup::Upstreams};

/// Reads of the catalogue: passed through to inventory-app.
pub async fn proxy_to_inventory(
    req: HttpRequest,
    body: web::Bytes,
    upstreams: web::Data<Upstreams>,
    request_id: RequestId,
) -> Result<HttpResponse, GatewayError> {
    upstreams.inventory.forward(&req, body, &request_id).await
}

/// Writes to the catalogue: the admin token first, then passed through to inventory-app.
pub async fn proxy_write_to_inventory(
    req: HttpRequest,
    body: web::Bytes,
    upstreams: web::Data<Upstreams>,
    admin: web::Data<AdminToken>,
    request_id: RequestId,
) -> Result<HttpResponse, GatewayError> {
    admin.require(&req)?;
    upstreams.inventory.forward(&req, body, &request_id).await
}
