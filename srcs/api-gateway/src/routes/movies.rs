use actix_web::{web, HttpRequest, HttpResponse};
use common::request_id::RequestId;

use common::auth::Admin;

use crate::{error::GatewayError, upstream::Upstreams};

/// Reads of the catalogue: passed through to inventory-app.
pub(crate) async fn proxy_to_inventory(
    req: HttpRequest,
    body: web::Bytes,
    upstreams: web::Data<Upstreams>,
    request_id: RequestId,
) -> Result<HttpResponse, GatewayError> {
    upstreams.inventory.forward(&req, body, &request_id).await
}

/// Writes to the catalogue: only with the admin token, which is passed on to inventory-app (it
/// checks it too).
pub(crate) async fn proxy_write_to_inventory(
    _: Admin,
    req: HttpRequest,
    body: web::Bytes,
    upstreams: web::Data<Upstreams>,
    request_id: RequestId,
) -> Result<HttpResponse, GatewayError> {
    proxy_to_inventory(req, body, upstreams, request_id).await
}
