//! Reservations: the monolith's booking and cancel (reservation and seats in one batch), and
//! the reservations service's records (reservations, hold claims, pending cancellations).

use serde::{Deserialize, Serialize};

use super::{
    CANCELLATIONS, CLAIMS, MAX_NAME_BYTES, RESERVATIONS, RETRIES, SEATS, Tickets, check_count,
    check_id, child_key, from_json, not_enough, now_ms, show_key, to_json,
};
use crate::batch::{Expect, WriteBatch};
use crate::error::{Error, Result};
use crate::registry::check_field;
use crate::store::Scan;

/// A reservation: `guests` seats for `name`. `holdID` names the hold that carries its seats
/// when it was booked through the api.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Who booked; unique per show.
    pub name: String,
    /// Seats.
    pub guests: i64,
    /// The api's hold for these seats, if booked through the api.
    #[serde(rename = "holdID", default, skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<String>,
}

/// Who used a hold, as the reservations service recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "claim", rename_all = "lowercase")]
pub enum Claim {
    /// A reservation under this name used the hold: its seats must be confirmed.
    Reserved {
        /// The reservation's name.
        name: String,
    },
    /// The hold was voided before any reservation used it: its seats may be released.
    Void,
}

/// How [`Tickets::record_reservation`] ended, other than by an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// The reservation exists (now, or already from a retry of the same request).
    Reserved(Reservation),
    /// Its hold was voided first: nothing was recorded, and none ever will be under it.
    /// The message says so in the user's words.
    HoldVoided(String),
}

/// A canceled api booking whose seats the shows service has not taken back yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    /// The show.
    #[serde(rename = "showID")]
    pub show_id: String,
    /// The hold that carried the seats.
    #[serde(rename = "holdID")]
    pub hold_id: String,
    /// Seats to give back.
    pub guests: i64,
    /// When it was canceled, ms since the epoch.
    pub at: i64,
}

fn already_booked(name: &str) -> Error {
    Error::Conflict(format!("{name} already holds a reservation for this show"))
}

impl Tickets {
    /// Monolith: books `n` seats for `name` — the reservation and the seats in one atomic
    /// batch. 409 if the name already holds a reservation or too few seats are left at the
    /// booking's turn; 404 for an unknown show.
    pub fn reserve(&self, id: &str, name: &str, n: i64) -> Result<Reservation> {
        check_field("name", name, MAX_NAME_BYTES)?;
        check_count("count", n)?;
        let record = self.record(id)?;
        let reservation = Reservation {
            name: name.to_owned(),
            guests: n,
            hold_id: None,
        };
        let key = child_key(id, name);
        let mut batch = WriteBatch::new();
        batch
            .expect(RESERVATIONS, &key, Expect::Absent)
            .incr_within(SEATS, show_key(id), n, 0..=record.house_size)
            .put(RESERVATIONS, &key, to_json(&reservation));
        match self.store.write(batch) {
            Ok(_) => Ok(reservation),
            Err(Error::Conflict(_)) => Err(already_booked(name)),
            Err(Error::OutOfBounds { current, .. }) => {
                Err(not_enough(n, record.house_size, current))
            }
            Err(e) => Err(e),
        }
    }

    /// The reservation of `name` for show `id`, if any.
    pub fn reservation(&self, id: &str, name: &str) -> Result<Option<(Reservation, Vec<u8>)>> {
        check_id("showID", id)?;
        check_field("name", name, MAX_NAME_BYTES)?;
        match self.store.get(RESERVATIONS, child_key(id, name))? {
            None => Ok(None),
            Some(b) => Ok(Some((from_json("reservation", &b)?, b))),
        }
    }

    fn no_reservation(id: &str, name: &str) -> Error {
        Error::NotFound(format!("{name} holds no reservation for show {id:?}"))
    }

    /// Monolith: cancels `name`'s reservation and gives its seats back, in one batch.
    pub fn cancel(&self, id: &str, name: &str) -> Result<Reservation> {
        let record = self.record(id)?;
        self.take_reservation(id, name, |reservation, batch| {
            self.give_back(id, record.house_size, reservation.guests, batch)
        })
    }

    /// Deletes `name`'s reservation as it reads now, in one batch that `commit` completes
    /// with its own effects and writes; retried while the reservation changes under it (a
    /// `Conflict` from `commit`). Returns the reservation deleted.
    fn take_reservation(
        &self,
        id: &str,
        name: &str,
        mut commit: impl FnMut(&Reservation, WriteBatch) -> Result<()>,
    ) -> Result<Reservation> {
        for _ in 0..RETRIES {
            let Some((reservation, bytes)) = self.reservation(id, name)? else {
                return Err(Self::no_reservation(id, name));
            };
            let key = child_key(id, name);
            let mut batch = WriteBatch::new();
            batch
                .expect(RESERVATIONS, &key, Expect::Equals(bytes))
                .delete(RESERVATIONS, &key);
            match commit(&reservation, batch) {
                Ok(()) => return Ok(reservation),
                Err(Error::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(format!(
            "the reservation of {name} kept changing; try again"
        )))
    }

    /// The reservations of show `id`, sorted by name (an unknown show has none).
    pub fn reservations(&self, id: &str) -> Result<Vec<Reservation>> {
        check_id("showID", id)?;
        self.store
            .scan(RESERVATIONS, Scan::prefix(child_key(id, "")))?
            .iter()
            .map(|(_, v)| from_json("reservation", v))
            .collect()
    }

    /// Every show id that has reservations, with them, in id order: up to `limit` shows
    /// after `after`.
    pub fn all_reservations(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<Reservation>)>> {
        let mut scan = Scan::all();
        if let Some(after) = after {
            check_id("after", after)?;
            // Past every key `{after}\0name` of the show `after`.
            scan = scan.after(format!("{{{after}}}\u{1}"));
        }
        let mut out: Vec<(String, Vec<Reservation>)> = Vec::new();
        for (key, value) in self.store.scan(RESERVATIONS, scan)? {
            let id = crate::shard_by::route_of(&key);
            let id = String::from_utf8_lossy(id).into_owned();
            let reservation: Reservation = from_json("reservation", &value)?;
            if let Some((last, list)) = out.last_mut()
                && *last == id
            {
                list.push(reservation);
            } else if out.len() == limit {
                break;
            } else {
                out.push((id, vec![reservation]));
            }
        }
        Ok(out)
    }

    /// Reservations service: records a reservation. With a hold id, the reservation claims
    /// the hold in the same batch; a claim already made for this reservation makes a retry
    /// succeed, and a voided hold refuses it with [`Recorded::HoldVoided`] (the seats may be
    /// gone). A name that already holds another reservation is a Conflict.
    pub fn record_reservation(
        &self,
        id: &str,
        name: &str,
        n: i64,
        hold_id: Option<&str>,
    ) -> Result<Recorded> {
        check_id("showID", id)?;
        check_field("name", name, MAX_NAME_BYTES)?;
        check_count("count", n)?;
        if let Some(h) = hold_id {
            check_id("holdID", h)?;
        }
        let reservation = Reservation {
            name: name.to_owned(),
            guests: n,
            hold_id: hold_id.map(str::to_owned),
        };
        let key = child_key(id, name);
        let mut batch = WriteBatch::new();
        batch.expect(RESERVATIONS, &key, Expect::Absent);
        if let Some(h) = hold_id {
            let claim = Claim::Reserved {
                name: name.to_owned(),
            };
            batch.expect(CLAIMS, child_key(id, h), Expect::Absent).put(
                CLAIMS,
                child_key(id, h),
                to_json(&claim),
            );
        }
        batch.put(RESERVATIONS, &key, to_json(&reservation));
        match self.store.write(batch) {
            Ok(_) => Ok(Recorded::Reserved(reservation)),
            Err(Error::Conflict(_)) => {
                if let Some(h) = hold_id {
                    if let Some((existing, _)) = self.reservation(id, name)?
                        && existing == reservation
                    {
                        return Ok(Recorded::Reserved(existing));
                    }
                    if self.claim(id, h)? == Some(Claim::Void) {
                        return Ok(Recorded::HoldVoided(format!(
                            "hold {h} expired before the reservation was recorded"
                        )));
                    }
                }
                Err(already_booked(name))
            }
            Err(e) => Err(e),
        }
    }

    /// Reservations service: who used hold `hold` of show `id`, if anyone decided yet.
    pub fn claim(&self, id: &str, hold: &str) -> Result<Option<Claim>> {
        check_id("showID", id)?;
        check_id("holdID", hold)?;
        self.store
            .get(CLAIMS, child_key(id, hold))?
            .map(|b| from_json("hold claim", &b))
            .transpose()
    }

    /// Reservations service: voids a hold no reservation used yet, so none ever will; or
    /// reports the reservation that did. Exactly one of the two is ever recorded.
    pub fn void_hold(&self, id: &str, hold: &str) -> Result<Claim> {
        check_id("showID", id)?;
        check_id("holdID", hold)?;
        let mut batch = WriteBatch::new();
        batch
            .expect(CLAIMS, child_key(id, hold), Expect::Absent)
            .put(CLAIMS, child_key(id, hold), to_json(&Claim::Void));
        match self.store.write(batch) {
            Ok(_) => Ok(Claim::Void),
            Err(Error::Conflict(_)) => self
                .claim(id, hold)?
                .ok_or_else(|| Error::Corrupted("a hold claim vanished".into())),
            Err(e) => Err(e),
        }
    }

    /// Reservations service: removes a reservation. One booked through the api leaves a
    /// pending cancellation in the same batch, so its seats are given back even if the api
    /// dies before telling the shows service.
    pub fn remove_reservation(&self, id: &str, name: &str) -> Result<Reservation> {
        self.take_reservation(id, name, |reservation, mut batch| {
            if let Some(h) = &reservation.hold_id {
                let pending = Cancellation {
                    show_id: id.to_owned(),
                    hold_id: h.clone(),
                    guests: reservation.guests,
                    at: now_ms(),
                };
                batch.put(CANCELLATIONS, child_key(id, h), to_json(&pending));
            }
            self.store.write(batch).map(|_| ())
        })
    }

    /// Reservations service: cancellations made before `before_ms` whose seats may not be
    /// back yet, oldest keys first, at most `limit`.
    pub fn pending_cancellations(&self, before_ms: i64, limit: usize) -> Result<Vec<Cancellation>> {
        let mut out = Vec::new();
        for (_, v) in self.store.scan(CANCELLATIONS, Scan::all())? {
            let c: Cancellation = from_json("cancellation", &v)?;
            if c.at < before_ms {
                out.push(c);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Reservations service: forgets a cancellation once its seats are back.
    pub fn finish_cancellation(&self, id: &str, hold: &str) -> Result<()> {
        check_id("showID", id)?;
        check_id("holdID", hold)?;
        self.store.delete(CANCELLATIONS, child_key(id, hold))?;
        Ok(())
    }
}
