use actix_web::{web, HttpRequest, HttpResponse};
use common::request_id::RequestId;

use crate::{error::GatewayError, startup::Upstreams};

/// Every `/api/movies` route: passed through to inventory-app.
pub async fn proxy_to_inventory(
    req: HttpRequest,
    body: web::Bytes,
    upstreams: web::Data<Upstreams>,
    request_id: RequestId,
) -> Result<HttpResponse, GatewayError> {
    upstreams.inventory.forward(&req, body, &request_id).await
}
