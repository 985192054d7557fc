use actix_web::{web, HttpRequest, HttpResponse};
use common::request_id::RequestId;

use crate::{error::GatewayError, inventory::InventoryClient};

/// Every `/api/movies` route: passed through to inventory-app.
pub async fn proxy_to_inventory(
    req: HttpRequest,
    body: web::Bytes,
    inventory: web::Data<InventoryClient>,
    request_id: RequestId,
) -> Result<HttpResponse, GatewayError> {
    inventory.forward(&req, body, &request_id).await
}
