//! The inventory-app client: one pooled HTTP client with connect and request timeouts, and a
//! faithful pass-through of status, body and the headers that matter.

use std::time::Duration;

use actix_web::{
    http::{header::HeaderName, StatusCode},
    web::Bytes,
    HttpRequest, HttpResponse,
};
use common::request_id::{RequestId, REQUEST_ID_HEADER};

use crate::error::GatewayError;

/// Request headers passed on to inventory.
const FORWARDED_REQUEST_HEADERS: [&str; 3] = ["content-type", "accept", "traceparent"];
/// Response headers passed back to the client.
const FORWARDED_RESPONSE_HEADERS: [&str; 4] = ["content-type", "location", "retry-after", "allow"];
/// Inventory's largest answer is a 500-movie page; anything far beyond that is a fault.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct InventoryClient {
    http: reqwest::Client,
    base_url: String,
}

impl InventoryClient {
    pub fn new(base_url: String, connect_timeout: Duration, request_timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds with these settings");
        Self { http, base_url }
    }

    /// Sends the client's request on to inventory (same method, path and query) and answers
    /// with inventory's answer.
    pub async fn forward(&self, req: &HttpRequest, body: Bytes, request_id: &RequestId) -> Result<HttpResponse, GatewayError> {
        let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
            .expect("actix methods are valid methods");
        let mut upstream = self
            .http
            .request(method, format!("{}{path_and_query}", self.base_url))
            .header(REQUEST_ID_HEADER.as_str(), request_id.as_str());
        for name in FORWARDED_REQUEST_HEADERS {
            if let Some(value) = req.headers().get(name) {
                upstream = upstream.header(name, value.as_bytes());
            }
        }
        if !body.is_empty() {
            upstream = upstream.body(body);
        }
        let mut response = upstream.send().await.map_err(classify)?;

        let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut answer = HttpResponse::build(status);
        for name in FORWARDED_RESPONSE_HEADERS {
            if let Some(value) = response.headers().get(name) {
                answer.insert_header((HeaderName::from_static(name), value.as_bytes()));
            }
        }
        let mut bytes = Vec::with_capacity(response.content_length().unwrap_or(0).min(1 << 20) as usize);
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(GatewayError::InventoryAnswerTooLarge(MAX_ANSWER_BYTES));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(answer.body(bytes))
    }
}

fn classify(e: reqwest::Error) -> GatewayError {
    if e.is_timeout() {
        GatewayError::InventoryTimeout(e)
    } else if e.is_connect() {
        GatewayError::InventoryUnreachable(e)
    } else {
        GatewayError::InventoryBadAnswer(e)
    }
}
