//! The ticket system of the Node lesson, on the store: shows, their seats, reservations,
//! and the holds that let a booking span two services without overselling or leaking seats.
//!
//! # Schema
//!
//! Every key of a show carries the show's id as its hash tag, so a show, its counters, its
//! reservations and its holds live in one shard and any set of them is written in **one
//! atomic single-shard batch** (see [`route_of`](crate::shard_by::route_of)).
//!
//! | collection | key | value | service |
//! |---|---|---|---|
//! | `shows` | `{id}` | `{"_id","name","houseSize"}` | all, shows |
//! | `seats` | `{id}` | taken = booked + held + by hand, bounded `0..=houseSize` | all, shows |
//! | `held` | `{id}` | seats in pending holds | shows |
//! | `hand_seats` | `{id}` | seats taken by `hold-seats` and not released yet | all, shows |
//! | `holds` | `{id}\0hold` | pending hold `{"count","expiresAt"}` | shows |
//! | `settled_holds` | `{id}\0hold` | `{"count","state"}`: confirmed, released, canceled | shows |
//! | `reservations` | `{id}\0name` | `{"name","guests","holdID"?}` | all, reservations |
//! | `hold_claims` | `{id}\0hold` | who used a hold: a reservation's name, or void | reservations |
//! | `cancellations` | `{id}\0hold` | a canceled booking whose seats are not back yet | reservations |
//! | `idempotency` | header value | a `POST /reserve`'s first answer | api |
//!
//! # Invariants
//!
//! - **Never oversold, always:** `reserved + seats in live holds <= houseSize`. Every seat
//!   taken goes through one bounded increment of `seats` (`incr_within(.., 0..=houseSize)`);
//!   concurrent bookings in one group commit succeed or fail in turn, never abort each other.
//!   `reserved` as answered is `seats - held`: confirmed seats (and seats taken by hand).
//! - **Seats go back only to whoever took them:** `seats == booked + held + hand_seats`
//!   (booked: the guests of the show's reservations, or confirmed holds). A cancel or a
//!   release gives back exactly the seats of its booking or hold; the lesson's
//!   `release-seats` gives back only seats taken by hand (`hold-seats`), at most
//!   `hand_seats`, so it can never free a booked or held seat for a second sale.
//! - **At rest** (every service up, nothing in flight, holds past their TTL resolved):
//!   `reserved == sum of guests + hand_seats`: the lesson's `hold-seats` and
//!   `release-seats` move `reserved` by hand, outside any reservation, as in the lesson.
//! - A monolith booking (reservation + seats) and a monolith cancel (reservation gone +
//!   seats back) are each one atomic batch. A name holds at most one reservation per show.
//!
//! # Booking across services (the api; see `server::tickets::api`)
//!
//! ```text
//! api ── hold H (expires) ──► shows        seats += n, held += n, holds/H pending
//!     ── reserve (H) ───────► reservations reservation + hold_claims/H = name, one batch
//!     ── confirm H ─────────► shows        held -= n, settled_holds/H confirmed
//! ```
//!
//! The claim is the pivot: for every hold, the reservations service records atomically
//! either the reservation that used it or that it is void, never both. The shows service
//! never releases a hold on its own: once a hold has expired, the api's reconciler **voids**
//! it at the reservations service first and releases its seats only if that succeeded; if a
//! reservation claimed it, the reconciler confirms it instead. So a late reservation request
//! can never land on released seats, no confirmed reservation lacks its seats, and an
//! expired hold is settled within a reconciler tick of its TTL while the api and the
//! reservations service run (until then it keeps its seats out of sale: never oversold).

mod booking;
mod holds;
mod idempotency;

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::batch::{Expect, WriteBatch};
use crate::error::{Error, Result};
use crate::registry::check_field;
use crate::store::{Scan, Store};

pub use booking::{Claim, Recorded, Reservation};
pub use holds::{Hold, Settle};
pub use idempotency::{Begin, IdempotencyRecord};

/// Shows, keyed `{id}`.
pub const SHOWS: &str = "shows";
/// Seats taken (reserved + held) per show, keyed `{id}`.
pub const SEATS: &str = "seats";
/// Seats in pending holds per show, keyed `{id}`.
pub const HELD: &str = "held";
/// Seats taken by hand (`hold-seats`) and not released yet, per show, keyed `{id}`.
pub const HAND: &str = "hand_seats";
/// Pending holds, keyed `{id}\0hold`.
pub const HOLDS: &str = "holds";
/// Holds that were confirmed, released or canceled, keyed `{id}\0hold`.
pub const SETTLED: &str = "settled_holds";
/// Reservations, keyed `{id}\0name`.
pub const RESERVATIONS: &str = "reservations";
/// Which reservation used a hold, or that it is void, keyed `{id}\0hold`.
pub const CLAIMS: &str = "hold_claims";
/// Canceled bookings whose seats the shows service has not given back yet.
pub const CANCELLATIONS: &str = "cancellations";
/// The api's idempotency records, keyed by the `Idempotency-Key` header.
pub const IDEMPOTENCY: &str = "idempotency";

/// Largest house, and so the largest count of one booking.
pub const MAX_HOUSE: i64 = 1_000_000;
/// Longest show id, hold id or idempotency key, in bytes.
pub const MAX_ID_BYTES: usize = 64;
/// Longest show or guest name, in bytes (the dog registry's rule).
pub const MAX_NAME_BYTES: usize = crate::registry::MAX_NAME_BYTES;

/// A show as answered: `reserved` counts confirmed seats; `held`, seats in pending holds,
/// appears only when there are some (never in the monolith).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Show {
    /// Generated, unique.
    #[serde(rename = "_id")]
    pub id: String,
    /// The show's name.
    pub name: String,
    /// Seats in the house.
    #[serde(rename = "houseSize")]
    pub house_size: i64,
    /// Confirmed seats.
    pub reserved: i64,
    /// Seats in pending holds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub held: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// What `shows` stores: the parts of a show that never change.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ShowRecord {
    #[serde(rename = "_id")]
    id: String,
    name: String,
    #[serde(rename = "houseSize")]
    house_size: i64,
}

/// The ticket system over a [`Store`]. Cheap to clone. Each service uses the part of it
/// that is its business; the monolith uses shows, seats and reservations.
#[derive(Clone, Debug)]
pub struct Tickets {
    store: Store,
}

/// `{id}`: the key of a show in `shows`, `seats` and `held`.
fn show_key(id: &str) -> String {
    format!("{{{id}}}")
}

/// `{id}\0part`: a reservation (part = name) or a hold (part = hold id) of a show.
fn child_key(id: &str, part: &str) -> String {
    format!("{{{id}}}\0{part}")
}

/// Checks a show id, hold id or idempotency key.
pub fn check_id(what: &str, id: &str) -> Result<()> {
    check_field(what, id, MAX_ID_BYTES)
}

/// Checks a count of seats: 1..=[`MAX_HOUSE`].
pub fn check_count(what: &str, n: i64) -> Result<()> {
    if (1..=MAX_HOUSE).contains(&n) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "{what} must be a whole number from 1 to {MAX_HOUSE}, not {n}"
        )))
    }
}

/// A new random id: 16 hex digits. Uniqueness is enforced by the writes that use it
/// (`Expect::Absent`), not assumed.
pub fn new_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("ticket records serialize")
}

fn from_json<T: for<'a> Deserialize<'a>>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Corrupted(format!("stored {what} is not valid: {e}")))
}

fn parse_count(bytes: Option<Vec<u8>>) -> Result<i64> {
    match bytes {
        None => Ok(0),
        Some(b) => crate::shard::parse_counter(&b)
            .ok_or_else(|| Error::Corrupted("a seat counter is not an integer".into())),
    }
}

/// The 409 of the lesson, with the seats left at the booking's turn.
fn not_enough(n: i64, house: i64, taken: i64) -> Error {
    Error::Conflict(format!(
        "cannot reserve {n} seats. Only {} remaining.",
        (house - taken).max(0)
    ))
}

/// A seat counter would drop below the bookings it counts: never, for data this code
/// wrote (see the module's invariants).
fn seats_below_bookings(id: &str) -> Error {
    Error::Corrupted(format!(
        "the seat counter of show {id:?} is lower than its bookings"
    ))
}

/// How often a write that lost a race is rebuilt before giving up.
const RETRIES: usize = 32;

impl Tickets {
    /// The ticket system on an open store.
    pub fn new(store: Store) -> Tickets {
        Tickets { store }
    }

    /// Creates a show with `reserved` 0 and a fresh unique id.
    pub fn create_show(&self, name: &str, house_size: i64) -> Result<Show> {
        check_field("name", name, MAX_NAME_BYTES)?;
        check_count("houseSize", house_size)?;
        for _ in 0..RETRIES {
            let record = ShowRecord {
                id: new_id(),
                name: name.to_owned(),
                house_size,
            };
            let key = show_key(&record.id);
            let mut batch = WriteBatch::new();
            batch
                .expect(SHOWS, &key, Expect::Absent)
                .put(SHOWS, &key, to_json(&record));
            match self.store.write(batch) {
                Ok(_) => return Ok(show_of(record, 0, 0)),
                Err(Error::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict("could not find a free show id".into()))
    }

    fn record(&self, id: &str) -> Result<ShowRecord> {
        check_id("showID", id)?;
        match self.store.get(SHOWS, show_key(id))? {
            Some(b) => from_json("show", &b),
            None => Err(Error::NotFound(format!("no show with id {id:?}"))),
        }
    }

    fn counters(&self, id: &str) -> Result<(i64, i64)> {
        let key = show_key(id);
        Ok((
            parse_count(self.store.get(SEATS, &key)?)?,
            parse_count(self.store.get(HELD, &key)?)?,
        ))
    }

    /// The show with this id; [`Error::NotFound`] if there is none.
    pub fn show(&self, id: &str) -> Result<Show> {
        let record = self.record(id)?;
        let (taken, held) = self.counters(id)?;
        Ok(show_of(record, taken, held))
    }

    /// Shows in id order: up to `limit`, starting after the id `after`.
    pub fn shows(&self, after: Option<&str>, limit: usize) -> Result<Vec<Show>> {
        let mut scan = Scan::all().limit(limit);
        if let Some(after) = after {
            check_id("after", after)?;
            scan = scan.after(show_key(after));
        }
        self.store
            .scan(SHOWS, scan)?
            .iter()
            .map(|(_, v)| {
                let record: ShowRecord = from_json("show", v)?;
                let (taken, held) = self.counters(&record.id)?;
                Ok(show_of(record, taken, held))
            })
            .collect()
    }

    /// The lesson's `hold-seats`: adds `n` to `reserved` directly, if that many are free.
    /// They are counted as taken by hand, so only `release-seats` gives them back.
    pub fn hold_seats(&self, id: &str, n: i64) -> Result<Show> {
        check_count("count", n)?;
        let record = self.record(id)?;
        let mut batch = WriteBatch::new();
        batch
            .incr_within(SEATS, show_key(id), n, 0..=record.house_size)
            .incr(HAND, show_key(id), n);
        match self.store.write(batch) {
            Err(Error::OutOfBounds { current, .. }) => {
                Err(not_enough(n, record.house_size, current))
            }
            other => other.map(drop),
        }?;
        self.show(id)
    }

    /// The lesson's `release-seats`: takes up to `n` from `reserved`, never below 0. Only
    /// seats taken by hand (`hold-seats`) are given back: a booked or held seat goes back
    /// only through its cancel or release, else it could be sold twice.
    pub fn release_seats(&self, id: &str, n: i64) -> Result<Show> {
        check_count("count", n)?;
        let record = self.record(id)?;
        let key = show_key(id);
        let mut delta = n;
        for _ in 0..RETRIES {
            if delta == 0 {
                return self.show(id);
            }
            // `seats` counts every hand seat, so it stays >= 0 when `hand_seats` does.
            let mut batch = WriteBatch::new();
            batch
                .incr_within(HAND, &key, -delta, 0..=record.house_size)
                .incr(SEATS, &key, -delta);
            match self.store.write(batch) {
                Ok(_) => return self.show(id),
                // Fewer seats were taken by hand: give back those.
                Err(Error::OutOfBounds { current, .. }) => delta = current.clamp(0, n),
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(format!(
            "show {id:?} kept changing under concurrent updates; try again"
        )))
    }

    /// Adds to `batch` the return of a booking's or hold's `n` seats to show `id`. Those
    /// seats are counted in `seats` until this write, so the bound only fails on a store
    /// whose counters are broken: that is [`Error::Corrupted`], never clamped (clamping
    /// would hand out seats that are still booked).
    fn give_back(&self, id: &str, house: i64, n: i64, mut batch: WriteBatch) -> Result<()> {
        batch.incr_within(SEATS, show_key(id), -n, 0..=house);
        match self.store.write(batch) {
            Err(Error::OutOfBounds { .. }) => Err(seats_below_bookings(id)),
            other => other.map(drop),
        }
    }
}

fn show_of(record: ShowRecord, taken: i64, held: i64) -> Show {
    Show {
        id: record.id,
        name: record.name,
        house_size: record.house_size,
        reserved: (taken - held).max(0),
        held,
    }
}
