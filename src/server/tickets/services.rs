//! Routes of the monolith (`/tickets`), the shows service and the reservations service.
//! Handlers check their input, call [`Tickets`] on the blocking pool, and answer JSON.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::fields::Fields;
use crate::registry::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::server::AppState;
use crate::server::error::ApiError;
use crate::server::routes::{Path, Query};
use crate::tickets::{Recorded, Reservation, Settle, Show, Tickets, check_id};

/// The answer to a booking, fields in the lesson's order.
#[derive(Serialize)]
struct Booked<'a> {
    success: bool,
    #[serde(rename = "showID")]
    show_id: &'a str,
    name: &'a str,
    guests: i64,
}

/// The answer to a cancel, fields in the lesson's order.
#[derive(Serialize)]
pub(super) struct Canceled<'a> {
    pub canceled: bool,
    #[serde(rename = "showID")]
    pub show_id: &'a str,
    pub name: &'a str,
    pub guests: i64,
    #[serde(rename = "holdID", skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<&'a str>,
}

/// The lesson's `GET /`: shows, and the reservations of each show that has some.
#[derive(Serialize)]
struct Overview {
    shows: Vec<Show>,
    reservations: BTreeMap<String, Vec<Reservation>>,
}

/// Runs storage work on tokio's blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let outcome = tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "storage task failed");
        ApiError::unavailable("the request could not be completed")
    })?;
    outcome.map_err(ApiError::from)
}

fn tickets_of(state: &AppState) -> Tickets {
    Tickets::new(state.registry().store().clone())
}

/// The monolith's routes, mounted under `/tickets`: a show, its seats and its reservations
/// in one store, every booking and cancel one atomic batch.
pub fn monolith(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/shows", post(create_show))
        .route("/show/{id}", get(show))
        .route("/hold-seats", put(hold_seats))
        .route("/release-seats", put(release_seats))
        .route("/reserveTickets", post(reserve))
        .route("/cancel", delete(cancel))
        .route("/reservations/{id}", get(show_reservations))
        .with_state(tickets_of(state))
}

/// The shows service: the lesson's routes, plus holds for the api's two-step booking.
pub(super) fn shows(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(list_shows))
        .route("/shows", post(create_show))
        .route("/show/{id}", get(show))
        .route("/hold-seats", put(hold_seats))
        .route("/release-seats", put(release_seats))
        .route("/holds", post(hold))
        .route("/holds/expired", get(expired_holds))
        .route("/holds/{action}", put(settle))
        .with_state(tickets_of(state))
}

/// The reservations service: records reservations (and which hold each used); seats are the
/// shows service's business.
pub(super) fn reservations(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(all_reservations))
        .route("/reserveTickets", post(record))
        .route("/cancel", delete(remove))
        .route("/reservations/{id}", get(reservations_of))
        .route("/holds/void", put(void_hold))
        .route(
            "/cancellations",
            get(cancellations).delete(finish_cancellation),
        )
        .with_state(tickets_of(state))
}

/// `limit` and `after` of a listing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    limit: Option<String>,
    after: Option<String>,
}

impl Page {
    fn limit(&self) -> Result<usize, ApiError> {
        match self.limit.as_deref() {
            None => Ok(DEFAULT_LIMIT),
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_request(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}, not {text:?}"
                ))),
            },
        }
    }
}

async fn overview(
    State(t): State<Tickets>,
    Query(page): Query<Page>,
) -> Result<Json<Overview>, ApiError> {
    let limit = page.limit()?;
    let answer = blocking(move || {
        let shows = t.shows(page.after.as_deref(), limit)?;
        let mut reservations = BTreeMap::new();
        for s in &shows {
            let list = t.reservations(&s.id)?;
            if !list.is_empty() {
                reservations.insert(s.id.clone(), list);
            }
        }
        Ok(Overview {
            shows,
            reservations,
        })
    })
    .await?;
    Ok(Json(answer))
}

async fn list_shows(
    State(t): State<Tickets>,
    Query(page): Query<Page>,
) -> Result<Json<Vec<Show>>, ApiError> {
    let limit = page.limit()?;
    Ok(Json(
        blocking(move || t.shows(page.after.as_deref(), limit)).await?,
    ))
}

async fn create_show(State(t): State<Tickets>, body: Fields) -> Result<Response, ApiError> {
    let name = body.name("name")?;
    let house = body.count("houseSize")?;
    let show = blocking(move || t.create_show(&name, house)).await?;
    Ok((StatusCode::CREATED, Json(show)).into_response())
}

async fn show(State(t): State<Tickets>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let show = blocking(move || t.show(&id)).await?;
    Ok(Json(show).into_response())
}

async fn hold_seats(State(t): State<Tickets>, body: Fields) -> Result<Response, ApiError> {
    let (id, n) = (body.id("showID")?, body.count("count")?);
    Ok(Json(blocking(move || t.hold_seats(&id, n)).await?).into_response())
}

async fn release_seats(State(t): State<Tickets>, body: Fields) -> Result<Response, ApiError> {
    let (id, n) = (body.id("showID")?, body.count("count")?);
    Ok(Json(blocking(move || t.release_seats(&id, n)).await?).into_response())
}

async fn reserve(State(t): State<Tickets>, body: Fields) -> Result<Response, ApiError> {
    let (id, name, n) = (body.id("showID")?, body.name("name")?, body.count("count")?);
    let shown = id.clone();
    let r = blocking(move || t.reserve(&id, &name, n)).await?;
    Ok(booked(&shown, &r.name, r.guests))
}

/// The 201 of a booking.
pub(super) fn booked(id: &str, name: &str, guests: i64) -> Response {
    let body = Booked {
        success: true,
        show_id: id,
        name,
        guests,
    };
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn cancel(State(t): State<Tickets>, body: Fields) -> Result<Response, ApiError> {
    let (id, name) = (body.id("showID")?, body.name("name")?);
    let shown = id.clone();
    let r = blocking(move || t.cancel(&id, &name)).await?;
    Ok(Json(Canceled {
        canceled: true,
        show_id: &shown,
        name: &r.name,
        guests: r.guests,
        hold_id: None,
    })
    .into_response())
}

async fn show_reservations(
    State(t): State<Tickets>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Reservation>>, ApiError> {
    let list = blocking(move || {
        t.show(&id)?;
        t.reservations(&id)
    })
    .await?;
    Ok(Json(list))
}

async fn hold(State(t): State<Tickets>, body: Fields) -> Result<Response, ApiError> {
    let (id, hold_id, n) = (body.id("showID")?, body.id("holdID")?, body.count("count")?);
    let ttl = body.optional_ms("ttlMs")?.unwrap_or(30_000);
    let hold = blocking(move || t.hold(&id, &hold_id, n, Tickets::expiry(ttl))).await?;
    Ok((StatusCode::CREATED, Json(hold)).into_response())
}

async fn settle(
    State(t): State<Tickets>,
    Path(action): Path<String>,
    body: Fields,
) -> Result<Json<Value>, ApiError> {
    let how = match action.as_str() {
        "confirm" => Settle::Confirm,
        "release" => Settle::Release,
        "cancel" => Settle::Cancel,
        _ => return Err(ApiError::new(StatusCode::NOT_FOUND, "no such route")),
    };
    let (id, hold_id) = (body.id("showID")?, body.id("holdID")?);
    let show = blocking(move || t.settle(&id, &hold_id, how)).await?;
    Ok(Json(json!({ "state": how.state(), "show": show })))
}

async fn expired_holds(State(t): State<Tickets>) -> Result<Json<Value>, ApiError> {
    let holds = blocking(move || t.expired_holds(crate::tickets::now_ms(), 1000)).await?;
    Ok(Json(json!(holds)))
}

async fn all_reservations(
    State(t): State<Tickets>,
    Query(page): Query<Page>,
) -> Result<Json<BTreeMap<String, Vec<Reservation>>>, ApiError> {
    let limit = page.limit()?;
    let all = blocking(move || t.all_reservations(page.after.as_deref(), limit)).await?;
    Ok(Json(all.into_iter().collect()))
}

async fn record(State(t): State<Tickets>, body: Fields) -> Result<Response, ApiError> {
    let (id, name, n) = (body.id("showID")?, body.name("name")?, body.count("count")?);
    let hold_id = body.optional_id("holdID")?;
    let shown = id.clone();
    match blocking(move || t.record_reservation(&id, &name, n, hold_id.as_deref())).await? {
        Recorded::Reserved(r) => Ok(booked(&shown, &r.name, r.guests)),
        // A voided hold is gone, not a clash of names: say so with its own status.
        Recorded::HoldVoided(why) => Err(ApiError::new(StatusCode::GONE, why)),
    }
}

async fn remove(State(t): State<Tickets>, body: Fields) -> Result<Response, ApiError> {
    let (id, name) = (body.id("showID")?, body.name("name")?);
    let shown = id.clone();
    let r = blocking(move || t.remove_reservation(&id, &name)).await?;
    Ok(Json(Canceled {
        canceled: true,
        show_id: &shown,
        name: &r.name,
        guests: r.guests,
        hold_id: r.hold_id.as_deref(),
    })
    .into_response())
}

async fn reservations_of(
    State(t): State<Tickets>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Reservation>>, ApiError> {
    Ok(Json(blocking(move || t.reservations(&id)).await?))
}

async fn void_hold(State(t): State<Tickets>, body: Fields) -> Result<Json<Value>, ApiError> {
    let (id, hold_id) = (body.id("showID")?, body.id("holdID")?);
    Ok(Json(json!(
        blocking(move || t.void_hold(&id, &hold_id)).await?
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Before {
    before: Option<String>,
}

async fn cancellations(
    State(t): State<Tickets>,
    Query(q): Query<Before>,
) -> Result<Json<Value>, ApiError> {
    let before = match q.before.as_deref() {
        None => i64::MAX,
        Some(text) => text
            .parse()
            .map_err(|_| ApiError::bad_request("before must be ms since the epoch"))?,
    };
    Ok(Json(json!(
        blocking(move || t.pending_cancellations(before, 1000)).await?
    )))
}

async fn finish_cancellation(
    State(t): State<Tickets>,
    body: Fields,
) -> Result<StatusCode, ApiError> {
    let (id, hold_id) = (body.id("showID")?, body.id("holdID")?);
    check_id("holdID", &hold_id)?;
    blocking(move || t.finish_cancellation(&id, &hold_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
