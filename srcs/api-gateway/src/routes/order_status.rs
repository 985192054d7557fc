use actix_web::{web, HttpRequest, HttpResponse};
use common::request_id::RequestId;

use crate::{
    error::GatewayError,
    upstream::{UpstreamAnswer, Upstreams},
};

/// `GET /api/billing/{order_id}`: the order as billed (200) or not yet (404), from billing-app.
pub(crate) async fn order_status(
    req: HttpRequest,
    upstreams: web::Data<Upstreams>,
    request_id: RequestId,
) -> Result<HttpResponse, GatewayError> {
    upstreams
        .billing
        .forward(&req, web::Bytes::new(), &request_id)
        .await
        .map(UpstreamAnswer::into_response)
}
