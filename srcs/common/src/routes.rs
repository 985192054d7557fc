//! How every service registers its routes: a table of (method, path, handler) rows, turned into
//! one resource per path, so that another method on a known path gets 405 with `Allow`, and
//! listed for the check that `openapi.yaml` documents exactly the public routes. Every `GET`
//! answers `HEAD` too (the same handler; the HTTP layer sends no body).

use actix_web::{
    body::MessageBody,
    dev::{ServiceFactory, ServiceRequest, ServiceResponse},
    http::Method,
    web, FromRequest, Handler, Resource, Responder, Route,
};

/// Who calls a route: decides whether it is documented and whether a client limit applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Probes and scrapers (`/health`, `/ready`, `/metrics`): called on a schedule, never limited.
    Operations,
    /// The service's API (the gateway's is the public one, documented in `openapi.yaml`).
    Clients,
    /// Pages for people (the Swagger UI): limited like the API, not part of it.
    Documentation,
}

struct Row {
    method: Method,
    path: &'static str,
    route: Route,
    audience: Audience,
}

/// A service's routes.
pub struct Routes {
    rows: Vec<Row>,
}

impl Routes {
    /// `GET /health` (the process answers), `GET /ready` (its dependencies do) and
    /// `GET /metrics`, the same three in every service.
    pub fn operations<R, RArgs, M, MArgs>(ready: R, metrics: M) -> Self
    where
        R: Handler<RArgs>,
        RArgs: FromRequest + 'static,
        R::Output: Responder + 'static,
        M: Handler<MArgs>,
        MArgs: FromRequest + 'static,
        M::Output: Responder + 'static,
    {
        let routes = Self { rows: Vec::new() };
        routes
            .add(
                Audience::Operations,
                Method::GET,
                "/health",
                crate::health::liveness,
            )
            .add(Audience::Operations, Method::GET, "/ready", ready)
            .add(Audience::Operations, Method::GET, "/metrics", metrics)
    }

    /// A route of the API.
    pub fn api<F, Args>(self, method: Method, path: &'static str, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Audience::Clients, method, path, handler)
    }

    /// A route of the documentation pages.
    pub fn documentation<F, Args>(self, path: &'static str, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Audience::Documentation, Method::GET, path, handler)
    }

    fn add<F, Args>(
        mut self,
        audience: Audience,
        method: Method,
        path: &'static str,
        handler: F,
    ) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        assert!(
            self.rows
                .iter()
                .all(|row| row.path != path || (row.audience == audience && row.method != method)),
            "{method} {path} is registered once, for one audience"
        );
        if method == Method::GET {
            self.rows.push(Row {
                method: Method::HEAD,
                path,
                route: web::method(Method::HEAD).to(handler.clone()),
                audience,
            });
        }
        let route = web::method(method.clone()).to(handler);
        self.rows.push(Row {
            method,
            path,
            route,
            audience,
        });
        self
    }

    /// Every documented route (operations and API) as (path, method).
    pub fn documented(&self) -> Vec<(&'static str, Method)> {
        self.rows
            .iter()
            .filter(|row| row.audience != Audience::Documentation)
            .map(|row| (row.path, row.method.clone()))
            .collect()
    }

    /// Registers one resource per path, each passed through `wrap` with its audience (to attach
    /// what depends on it, such as a rate limit: attached to the route the router matched, never
    /// decided from the path as a client spelled it).
    pub fn register<T, B>(
        self,
        cfg: &mut web::ServiceConfig,
        wrap: impl Fn(Audience, Resource) -> Resource<T>,
    ) where
        T: ServiceFactory<
                ServiceRequest,
                Config = (),
                Response = ServiceResponse<B>,
                Error = actix_web::Error,
                InitError = (),
            > + 'static,
        B: MessageBody + 'static,
    {
        let mut paths: Vec<(&'static str, Audience, Vec<Method>, Vec<Route>)> = Vec::new();
        for row in self.rows {
            match paths.iter_mut().find(|(path, ..)| *path == row.path) {
                Some((_, _, methods, routes)) => {
                    methods.push(row.method);
                    routes.push(row.route);
                }
                None => paths.push((row.path, row.audience, vec![row.method], vec![row.route])),
            }
        }
        // Paths are tried in order, and each templated one is a regex match (twice per request:
        // routing, then the metrics' route label); fixed paths first keep the busiest routes
        // from paying for it.
        paths.sort_by_key(|(path, ..)| path.contains('{'));
        for (path, audience, methods, routes) in paths {
            let resource = routes
                .into_iter()
                .fold(web::resource(path), |resource, route| resource.route(route))
                .default_service(crate::http::method_not_allowed(&methods));
            cfg.service(wrap(audience, resource));
        }
    }
}
