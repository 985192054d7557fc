use std::sync::Arc;

use actix_web::{
    http::{header::IF_NONE_MATCH, Method},
    web, HttpRequest, HttpResponse,
};
use common::{auth::Admin, request_id::RequestId};

use crate::{
    catalogue_cache::{CacheKey, CatalogueCache, Change, Followed, Miss},
    error::GatewayError,
    upstream::Upstreams,
};

/// Reads of the catalogue: from the cache when it has the answer, from inventory-app otherwise
/// (and kept for the next read if the answer is a 200). A read's body, which means nothing, is
/// neither read nor passed on (`request_limits` closes the connection after the answer): the
/// body extractor alone would reserve 8 KiB for every read waiting for inventory.
pub(crate) async fn read_catalogue(
    req: HttpRequest,
    upstreams: web::Data<Upstreams>,
    cache: Option<web::Data<CatalogueCache>>,
    request_id: RequestId,
) -> Result<HttpResponse, GatewayError> {
    let forward = upstreams
        .inventory
        .forward(&req, web::Bytes::new(), &request_id);
    let (Some(cache), Some(key)) = (cache, CacheKey::of(&req)) else {
        return Ok(forward.await?.into_response());
    };
    let ticket = match cache.lookup(&req, key) {
        Ok(hit) => return Ok(hit),
        Err(ticket) => ticket,
    };
    // Only a plain GET's answer can be given to others (not a HEAD's, nor a 304).
    let may_lead = req.method() == Method::GET && !req.headers().contains_key(IF_NONE_MATCH);
    let leader = match cache.miss(ticket, may_lead) {
        Miss::Lead(leader) => Some(leader),
        Miss::Follow(follower) => match follower.follow(&req).await {
            Followed::Answered(answer) => return Ok(answer),
            Followed::AskYourself => None,
            Followed::LeaderFailed => return Err(GatewayError::SameReadFailed),
            Followed::ClientGone => return Err(GatewayError::ClientGone),
        },
    };
    let answer = match forward.await {
        Ok(answer) => Arc::new(answer),
        Err(e) => {
            if let Some(leader) = leader {
                leader.fail(matches!(e, GatewayError::ClientGone));
            }
            return Err(e);
        }
    };
    if let Some(leader) = leader {
        leader.finish(&answer);
    }
    Ok(answer.respond(None, &answer.body))
}

/// Writes to the catalogue: only with the admin token, which is passed on to inventory-app (it
/// checks it too). Whatever came of it, this gateway's cache forgets what the write may have
/// changed before it answers: a client reads its own writes.
pub(crate) async fn write_catalogue(
    _: Admin,
    req: HttpRequest,
    body: web::Bytes,
    upstreams: web::Data<Upstreams>,
    cache: Option<web::Data<CatalogueCache>>,
    request_id: RequestId,
) -> Result<HttpResponse, GatewayError> {
    let result = upstreams.inventory.forward(&req, body, &request_id).await;
    if let Some(cache) = cache {
        cache.invalidate(change_made_by(&req));
    }
    Ok(result?.into_response())
}

/// What a write through this gateway may have changed.
fn change_made_by(req: &HttpRequest) -> Change {
    match req.match_info().get("id") {
        Some(id) => id.parse().map_or(Change::Everything, Change::Movie),
        None if req.method() == Method::POST => Change::Pages,
        None => Change::Everything,
    }
}
