//! The ticket system over HTTP: the monolith under `/tickets` (in [`app`]), and
//! the lesson's decomposed services, each the whole app of its own cluster:
//!
//! ```text
//!  client ──► api :3000 ──► shows :3001          (own data dir: shows, seats, holds)
//!                      └──► reservations :3002   (own data dir: reservations, claims)
//! ```
//!
//! Bodies are JSON or form-encoded (as the lesson's Express services accept); `count` is a
//! whole number from 1 to [`MAX_HOUSE`](crate::tickets::MAX_HOUSE), as a JSON number or a
//! decimal string; names follow the dog registry's rules. Every error is JSON with its 4xx
//! (unknown ids are 404), or 503 when a service is down. What a client can rely on is in
//! [`crate::tickets`]; how the api books across services is in [`api`].

pub mod api;
mod client;
mod fields;
mod services;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::get;

use super::{AppState, MAX_BODY_BYTES, app, routes};
use crate::error::{Error, Result};

pub use services::monolith;

/// Which part of the ticket system a cluster serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Service {
    /// Everything in one app: counter, dogs, and the monolith under `/tickets`.
    #[default]
    All,
    /// The shows service.
    Shows,
    /// The reservations service.
    Reservations,
    /// The api, which books across the other two.
    Api,
}

impl Service {
    /// The lesson's port: 3000 for all and api, 3001 shows, 3002 reservations.
    pub fn default_port(self) -> u16 {
        match self {
            Service::All | Service::Api => 3000,
            Service::Shows => 3001,
            Service::Reservations => 3002,
        }
    }

    /// The default data directory: each service keeps its own.
    pub fn default_data(self) -> &'static str {
        match self {
            Service::All => "shards",
            Service::Shows => "shards-shows",
            Service::Reservations => "shards-reservations",
            Service::Api => "shards-api",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::All => "all",
            Service::Shows => "shows",
            Service::Reservations => "reservations",
            Service::Api => "api",
        })
    }
}

impl FromStr for Service {
    type Err = Error;

    fn from_str(s: &str) -> Result<Service> {
        match s {
            "all" => Ok(Service::All),
            "shows" => Ok(Service::Shows),
            "reservations" => Ok(Service::Reservations),
            "api" => Ok(Service::Api),
            other => Err(Error::InvalidInput(format!(
                "unknown service {other:?}: use all, shows, reservations or api"
            ))),
        }
    }
}

/// The longest hold the shows service accepts, and so the longest `--hold-ttl`.
pub const MAX_HOLD_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a worker serves, and where the api finds the other services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceOptions {
    /// The service.
    pub service: Service,
    /// The shows service's base URL (api only).
    pub shows_url: String,
    /// The reservations service's base URL (api only).
    pub reservations_url: String,
    /// How long the api's holds last before its reconciler settles them.
    pub hold_ttl: Duration,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            service: Service::All,
            shows_url: "http://127.0.0.1:3001".into(),
            reservations_url: "http://127.0.0.1:3002".into(),
            hold_ttl: Duration::from_secs(30),
        }
    }
}

impl ServiceOptions {
    /// The arguments that pass these options to a worker process.
    pub fn worker_args(&self) -> Vec<String> {
        vec![
            "--service".into(),
            self.service.to_string(),
            "--shows-url".into(),
            self.shows_url.clone(),
            "--reservations-url".into(),
            self.reservations_url.clone(),
            "--hold-ttl".into(),
            format!("{}ms", self.hold_ttl.as_millis()),
        ]
    }

    /// Checks the URLs and TTL before anything starts.
    pub fn validate(&self) -> Result<()> {
        for (what, url) in [
            ("--shows-url", &self.shows_url),
            ("--reservations-url", &self.reservations_url),
        ] {
            client::Upstream::new("service", url)
                .map_err(|e| Error::InvalidInput(format!("{what}: {e}")))?;
        }
        // The shows service takes a hold's TTL up to a day (`ttlMs`): a longer one would
        // make every booking a 400.
        if self.hold_ttl < Duration::from_millis(100) || self.hold_ttl > MAX_HOLD_TTL {
            return Err(Error::InvalidInput(
                "--hold-ttl must be from 100ms to 24h".into(),
            ));
        }
        Ok(())
    }
}

/// The app a worker of this service serves. Call it inside the worker's runtime: the api
/// starts its reconciler here.
pub fn router(options: &ServiceOptions, state: AppState) -> Result<Router> {
    state.set_service(options.service.to_string());
    let routes = match options.service {
        Service::All => return Ok(app(state)),
        Service::Shows => services::shows(&state),
        Service::Reservations => services::reservations(&state),
        Service::Api => api::routes(options, &state)?,
    };
    Ok(layered(routes, state))
}

/// A service's routes with the health, stats and dashboard routes and the middleware of
/// [`app`]: `x-worker-pid`, JSON errors, body limit, timeouts, draining.
fn layered(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .route("/stats", get(routes::stats))
        .route("/metrics", get(routes::prometheus))
        .route("/healthz", get(routes::healthz))
        .route("/dashboard", get(super::dashboard::page))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::observe,
        ))
        .with_state(state)
}
