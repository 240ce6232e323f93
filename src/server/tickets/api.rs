//! The api service: books across the shows and reservations services without overselling
//! or leaking seats, even when a service is down or the api dies between steps.
//!
//! `POST /reserve` `{"showID","name","count"}`:
//!
//! 1. **hold** `count` seats on the shows service under a fresh hold id H, expiring after
//!    `--hold-ttl`. Refused (404, 409) -> that answer; nothing held.
//! 2. **reserve** on the reservations service, naming H: the reservation and its claim on H
//!    are one batch there. Refused (409 name taken, 410 H already voided) or never sent
//!    (service unreachable) -> release H now, answer 409 / 503. Sent but unanswered -> 503,
//!    and H is left to the reconciler: the reservation may exist.
//! 3. **confirm** H: its seats become reserved. Once step 2 succeeded the booking is made
//!    (201) even if confirm fails: the reconciler confirms H after its TTL.
//!
//! **The reconciler** (every api worker, about once a second) settles what a dead api or a
//! down service left: for each hold past its TTL it first *voids* H at the reservations
//! service (only possible if no reservation claimed it, and then none ever can), then
//! releases H; if a reservation did claim H, it confirms H instead. It also gives back the
//! seats of canceled bookings whose cancel did not reach the shows service. So, while all
//! three services run: nothing stays held much past the TTL, and no reservation lacks its
//! seats.
//!
//! **`Idempotency-Key`** on `POST /reserve`: the first request's answer is stored in the
//! api's own store before it is sent, and a retry with the same key gets it again without
//! booking; a retry while the first is in flight gets 409, and one after the first attempt's
//! api died (its lease expired) takes over. The record keeps the hold id of every attempt;
//! before holding anything, a takeover voids each earlier hold at the reservations service,
//! which answers atomically either "void" (no reservation can ever use it: its seats are
//! released) or the reservation that claimed it (this request's booking: it is confirmed
//! and answered 201). If that cannot be decided (a service is down) the answer is 503 and
//! the key stays claimed, so no answer is stored that the booking might contradict.
//!
//! `DELETE /cancel` `{"showID","name"}`: removes the reservation (which leaves a pending
//! cancellation in the same batch there), gives its seats back (cancel H), then forgets the
//! pending cancellation.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::ServiceOptions;
use super::client::{CALL_TIMEOUT, CallError, Http, Upstream};
use super::fields::Fields;
use super::services::{Canceled, blocking, booked};
use crate::error::{Error, Result};
use crate::server::AppState;
use crate::server::error::ApiError;
use crate::server::routes::Path;
use crate::tickets::{Begin, Tickets, check_id, new_id, now_ms};

/// How often the reconciler looks for expired holds and unfinished cancellations.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// A cancellation younger than this is still being finished by the api that made it.
const CANCEL_GRACE_MS: i64 = 2_000;

struct Api {
    tickets: Tickets,
    http: Http,
    shows: Upstream,
    reservations: Upstream,
    ttl: Duration,
}

/// The api's routes; starts its reconciler (call inside the worker's runtime).
pub(super) fn routes(options: &ServiceOptions, state: &AppState) -> Result<Router<AppState>> {
    let upstream = |name, url: &str| Upstream::new(name, url).map_err(Error::InvalidInput);
    let api = Arc::new(Api {
        tickets: Tickets::new(state.registry().store().clone()),
        http: Http::new(),
        shows: upstream("shows", &options.shows_url)?,
        reservations: upstream("reservations", &options.reservations_url)?,
        ttl: options.hold_ttl,
    });
    tokio::spawn(reconcile_forever(api.clone()));
    Ok(Router::new()
        .route("/", get(list_shows))
        .route("/show/{id}", get(show))
        .route("/reserve", post(reserve))
        .route("/cancel", delete(cancel))
        .with_state(api))
}

/// A JSON answer with this status and body, byte for byte.
fn relay(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let mut response = (status, body.into()).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// An answer of another service that is an error, as ours: its 4xx and message as is; a
/// 5xx means that service is in trouble: 503.
fn refused(to: &Upstream, status: StatusCode, body: &Value) -> ApiError {
    let message = body["error"].as_str().unwrap_or("no reason given");
    if status.is_client_error() {
        ApiError::new(status, message)
    } else {
        ApiError::unavailable(format!(
            "the {} service failed ({status}): {message}",
            to.name
        ))
    }
}

fn down(to: &Upstream, e: &CallError) -> ApiError {
    tracing::warn!(
        service = to.name,
        error = e.describe(),
        "service call failed"
    );
    ApiError::unavailable(format!(
        "the {} service is unavailable; try again later",
        to.name
    ))
}

async fn list_shows(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    match api.http.call_raw(&api.shows, Method::GET, "/", None).await {
        Ok((status, body)) if status.is_success() => Ok(relay(status, body)),
        Ok((status, body)) => Err(refused(&api.shows, status, &parse(&body))),
        Err(e) => Err(down(&api.shows, &e)),
    }
}

async fn show(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    check_id("showID", &id)?;
    match api
        .http
        .call_raw(
            &api.shows,
            Method::GET,
            &format!("/show/{}", segment(&id)),
            None,
        )
        .await
    {
        Ok((status, body)) if status.is_success() => Ok(relay(status, body)),
        Ok((status, body)) => Err(refused(&api.shows, status, &parse(&body))),
        Err(e) => Err(down(&api.shows, &e)),
    }
}

/// How a booking attempt ended, for the idempotency record.
enum Outcome {
    /// A final answer (booked, or refused for the client's reason): stored under the key.
    Final(Response),
    /// Failed having booked nothing: a retry may start afresh.
    NothingBooked(ApiError),
    /// Failed with a reservation possibly made: the key stays claimed until its lease ends.
    InDoubt(ApiError),
}

async fn reserve(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Fields,
) -> Result<Response, ApiError> {
    let (id, name, n) = (body.id("showID")?, body.name("name")?, body.count("count")?);
    let hold = new_id();
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?;
            check_id("Idempotency-Key", k)?;
            Some(k.to_owned())
        }
    };
    // Its own task: a client that hangs up mid-booking must not cut the steps short (the
    // handler's future would be dropped), which would leave its hold to the reconciler.
    tokio::spawn(book_to_the_end(api, id, name, n, hold, key))
        .await
        .map_err(|_| ApiError::unavailable("the booking could not be completed"))?
}

async fn book_to_the_end(
    api: Arc<Api>,
    id: String,
    name: String,
    n: i64,
    hold: String,
    key: Option<String>,
) -> Result<Response, ApiError> {
    let mut old_holds = Vec::new();
    if let Some(key) = &key {
        let request = json!([id, name, n]).to_string();
        let lease = (api.ttl + 3 * CALL_TIMEOUT).as_millis() as i64;
        let (t, k, h) = (api.tickets.clone(), key.clone(), hold.clone());
        match blocking(move || t.begin_idempotent(&k, &request, &h, lease)).await? {
            Begin::Fresh => {}
            Begin::TakeOver { old_holds: h } => old_holds = h,
            Begin::Done(status, body) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                let mut answer = relay(status, body);
                answer
                    .headers_mut()
                    .insert("idempotent-replayed", "true".parse().expect("valid"));
                return Ok(answer);
            }
            Begin::InProgress => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "a request with this Idempotency-Key is still in progress; retry shortly",
                ));
            }
        }
    }
    let outcome = match api.take_over(&id, &name, n, &old_holds).await {
        Some(outcome) => outcome,
        None => api.book(&id, &name, n, &hold).await,
    };
    let Some(key) = key else {
        return match outcome {
            Outcome::Final(r) => Ok(r),
            Outcome::NothingBooked(e) | Outcome::InDoubt(e) => Err(e),
        };
    };
    let t = api.tickets.clone();
    match outcome {
        Outcome::Final(response) => {
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .map_err(|_| ApiError::unavailable("could not read the answer"))?;
            let body = String::from_utf8_lossy(&bytes).into_owned();
            let stored = body.clone();
            blocking(move || t.finish_idempotent(&key, &hold, status.as_u16(), &stored)).await?;
            Ok(relay(status, body))
        }
        Outcome::NothingBooked(e) => {
            blocking(move || t.abandon_idempotent(&key, &hold)).await?;
            Err(e)
        }
        Outcome::InDoubt(e) => Err(e),
    }
}

impl Api {
    /// A retry taking over from dead attempts: decides each of their holds at the
    /// reservations service before anything is booked. `None`: every one is void (their
    /// seats released), so book afresh. Otherwise the final answer (the booking one of them
    /// made) or 503 in doubt.
    async fn take_over(&self, id: &str, name: &str, n: i64, old: &[String]) -> Option<Outcome> {
        let mut booked_under = None;
        for h in old {
            let body = json!({ "showID": id, "holdID": h });
            let call = self
                .http
                .call(&self.reservations, Method::PUT, "/holds/void", Some(&body))
                .await;
            let claim = match call {
                Ok((status, claim)) if status.is_success() => claim,
                Ok((status, _)) => {
                    tracing::warn!(hold = h.as_str(), %status, "could not void an earlier attempt's hold");
                    return Some(Outcome::InDoubt(ApiError::unavailable(
                        "the reservations service could not settle an earlier attempt of this \
                         request; try again later",
                    )));
                }
                Err(e) => return Some(Outcome::InDoubt(down(&self.reservations, &e))),
            };
            if claim["claim"] == "void" {
                // Never usable now; a hold that was never taken is a logged 404.
                self.settle(id, h, "release").await;
            } else if claim["claim"] == "reserved" && claim["name"] == name {
                booked_under = Some(h);
            } else {
                tracing::warn!(hold = h.as_str(), %claim, "unexpected claim of an earlier hold");
                return Some(Outcome::InDoubt(ApiError::unavailable(
                    "an earlier attempt of this request could not be settled; try again later",
                )));
            }
        }
        let h = booked_under?;
        // Its reservation exists: the booking is made; confirming is redone by the
        // reconciler if it fails here.
        self.settle(id, h, "confirm").await;
        Some(Outcome::Final(booked(id, name, n)))
    }

    async fn book(&self, id: &str, name: &str, n: i64, hold: &str) -> Outcome {
        let ttl_ms = self.ttl.as_millis() as i64;
        let held = self
            .http
            .call(
                &self.shows,
                Method::POST,
                "/holds",
                Some(&json!({ "showID": id, "holdID": hold, "count": n, "ttlMs": ttl_ms })),
            )
            .await;
        match held {
            Ok((StatusCode::CREATED, _)) => {}
            Ok((status, body)) if status.is_client_error() => {
                return Outcome::Final(refused(&self.shows, status, &body).into_response());
            }
            // The hold may exist; no reservation can use it, so the reconciler releases it.
            Ok((status, body)) => {
                return Outcome::NothingBooked(refused(&self.shows, status, &body));
            }
            Err(e) => return Outcome::NothingBooked(down(&self.shows, &e)),
        }
        crash_point("api::after-hold", name);

        let reserved = self
            .http
            .call(
                &self.reservations,
                Method::POST,
                "/reserveTickets",
                Some(&json!({ "showID": id, "name": name, "count": n, "holdID": hold })),
            )
            .await;
        match reserved {
            Ok((StatusCode::CREATED, _)) => {}
            Ok((StatusCode::GONE, body)) => {
                self.settle(id, hold, "release").await;
                let why = body["error"].as_str().unwrap_or_default();
                tracing::warn!(hold, why, "booking outlived its hold");
                return Outcome::NothingBooked(ApiError::unavailable(format!(
                    "the booking took longer than the seats could be held; try again ({why})"
                )));
            }
            Ok((status, body)) if status.is_client_error() => {
                self.settle(id, hold, "release").await;
                return Outcome::Final(refused(&self.reservations, status, &body).into_response());
            }
            Ok((status, body)) => {
                return Outcome::InDoubt(refused(&self.reservations, status, &body));
            }
            Err(e @ CallError::Unreachable(_)) => {
                self.settle(id, hold, "release").await;
                return Outcome::NothingBooked(down(&self.reservations, &e));
            }
            Err(e) => return Outcome::InDoubt(down(&self.reservations, &e)),
        }
        crash_point("api::after-reserve", name);

        // The booking is made: the reservation holds its claim on H. Confirming is
        // bookkeeping the reconciler redoes if it fails here.
        self.settle(id, hold, "confirm").await;
        Outcome::Final(booked(id, name, n))
    }

    /// Confirms, releases or cancels a hold; a failure is logged and left to the reconciler.
    async fn settle(&self, id: &str, hold: &str, action: &str) -> bool {
        let path = format!("/holds/{action}");
        let body = json!({ "showID": id, "holdID": hold });
        match self
            .http
            .call(&self.shows, Method::PUT, &path, Some(&body))
            .await
        {
            Ok((status, _)) if status.is_success() => true,
            Ok((status, answer)) => {
                tracing::warn!(hold, action, %status, answer = %answer, "could not settle a hold");
                false
            }
            Err(e) => {
                tracing::warn!(
                    hold,
                    action,
                    error = e.describe(),
                    "could not settle a hold"
                );
                false
            }
        }
    }

    /// One pass of the reconciler (see the module docs).
    async fn reconcile(&self) -> std::result::Result<(), CallError> {
        let (status, expired) = self
            .http
            .call(&self.shows, Method::GET, "/holds/expired", None)
            .await?;
        for hold in expired
            .as_array()
            .filter(|_| status.is_success())
            .into_iter()
            .flatten()
        {
            let (Some(id), Some(h)) = (hold["showID"].as_str(), hold["holdID"].as_str()) else {
                continue;
            };
            let body = json!({ "showID": id, "holdID": h });
            let (status, claim) = self
                .http
                .call(&self.reservations, Method::PUT, "/holds/void", Some(&body))
                .await?;
            // Only a readable decision settles a hold: anything else leaves it held (never
            // oversold) for the next pass.
            let action = match claim["claim"].as_str() {
                Some("void") if status.is_success() => "release",
                Some("reserved") if status.is_success() => "confirm",
                _ => {
                    tracing::warn!(show = id, hold = h, %status, %claim, "no claim for an expired hold");
                    continue;
                }
            };
            if self.settle(id, h, action).await {
                tracing::info!(show = id, hold = h, action, "settled an expired hold");
            }
        }
        let path = format!("/cancellations?before={}", now_ms() - CANCEL_GRACE_MS);
        let (status, pending) = self
            .http
            .call(&self.reservations, Method::GET, &path, None)
            .await?;
        for c in pending
            .as_array()
            .filter(|_| status.is_success())
            .into_iter()
            .flatten()
        {
            let (Some(id), Some(h)) = (c["showID"].as_str(), c["holdID"].as_str()) else {
                continue;
            };
            if self.settle(id, h, "cancel").await {
                self.forget_cancellation(id, h).await;
                tracing::info!(show = id, hold = h, "gave back a canceled booking's seats");
            }
        }
        Ok(())
    }

    async fn forget_cancellation(&self, id: &str, hold: &str) {
        let body = json!({ "showID": id, "holdID": hold });
        if let Err(e) = self
            .http
            .call(
                &self.reservations,
                Method::DELETE,
                "/cancellations",
                Some(&body),
            )
            .await
        {
            tracing::warn!(error = e.describe(), "could not forget a cancellation");
        }
    }
}

async fn reconcile_forever(api: Arc<Api>) {
    let mut tick = tokio::time::interval(RECONCILE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = api.reconcile().await {
            tracing::debug!(error = e.describe(), "reconciler: a service is unavailable");
        }
    }
}

async fn cancel(State(api): State<Arc<Api>>, body: Fields) -> Result<Response, ApiError> {
    let (id, name) = (body.id("showID")?, body.name("name")?);
    // Its own task, as a booking: a client hanging up does not stop it halfway.
    tokio::spawn(cancel_to_the_end(api, id, name))
        .await
        .map_err(|_| ApiError::unavailable("the cancel could not be completed"))?
}

async fn cancel_to_the_end(api: Arc<Api>, id: String, name: String) -> Result<Response, ApiError> {
    let request = json!({ "showID": id, "name": name });
    let (status, answer) = api
        .http
        .call(&api.reservations, Method::DELETE, "/cancel", Some(&request))
        .await
        .map_err(|e| down(&api.reservations, &e))?;
    if !status.is_success() {
        return Err(refused(&api.reservations, status, &answer));
    }
    let guests = answer["guests"].as_i64().unwrap_or(0);
    if let Some(h) = answer["holdID"].as_str()
        && api.settle(&id, h, "cancel").await
    {
        api.forget_cancellation(&id, h).await;
    }
    Ok(Json(Canceled {
        canceled: true,
        show_id: &id,
        name: &name,
        guests,
        hold_id: None,
    })
    .into_response())
}

/// `id` as one path segment of a call to another service: the id was decoded from our own
/// path, so a space, `?`, `/` or `%` in it must be encoded again, or the call would ask for
/// another path (or none).
fn segment(id: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

/// Test builds only (feature `failpoints`): `FAILPOINTS=api::after-hold=return(PREFIX)` makes
/// the worker die at that step of a booking whose name starts with PREFIX, as a crash would.
#[cfg(feature = "failpoints")]
fn crash_point(point: &str, name: &str) {
    fail::fail_point!(point, |prefix: Option<String>| {
        if prefix.is_some_and(|p| name.starts_with(&p)) {
            tracing::warn!(point, name, "injected crash");
            std::process::exit(70);
        }
    });
}

#[cfg(not(feature = "failpoints"))]
fn crash_point(_point: &str, _name: &str) {}
