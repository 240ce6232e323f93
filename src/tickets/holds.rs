//! Holds (shows service): seats taken for a booking in flight, with an id and an expiry,
//! then confirmed (the seats become reserved), released (pending seats go back) or
//! canceled (a booked reservation was canceled: its seats go back).
//!
//! ```text
//!            hold             confirm
//!   (none) ───────► pending ──────────► confirmed
//!                      │ release            │ cancel
//!                      ▼                    ▼
//!                  released             canceled   ◄── cancel (pending, api died)
//! ```
//!
//! Every transition is one batch conditioned on the record it moves, so it happens once;
//! repeating a transition that already happened succeeds (idempotent), and asking for one
//! the hold can no longer make is a Conflict. The shows service never expires a hold by
//! itself: see the module above for why the api's reconciler settles expired holds.

use serde::{Deserialize, Serialize};

use super::{
    HELD, HOLDS, SEATS, SETTLED, Tickets, check_count, check_id, child_key, from_json, not_enough,
    now_ms, show_key, to_json,
};
use crate::batch::{Expect, WriteBatch};
use crate::error::{Error, Result};
use crate::store::Scan;

/// A pending hold as answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The show.
    #[serde(rename = "showID")]
    pub show_id: String,
    /// The hold's id, chosen by the caller.
    #[serde(rename = "holdID")]
    pub hold_id: String,
    /// Seats held.
    pub count: i64,
    /// When it expires, ms since the Unix epoch.
    #[serde(rename = "expiresAt")]
    pub expires_at: i64,
}

/// What stays of a hold once it is settled.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Settled {
    count: i64,
    state: Settle,
}

/// How a hold is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Settle {
    /// Pending -> confirmed: the held seats become reserved.
    #[serde(rename = "confirmed")]
    Confirm,
    /// Pending -> released: the held seats go back on sale.
    #[serde(rename = "released")]
    Release,
    /// Confirmed (or still pending) -> canceled: the booking's seats go back on sale.
    #[serde(rename = "canceled")]
    Cancel,
}

impl Settle {
    /// The state's name, as stored and answered.
    pub fn state(self) -> &'static str {
        match self {
            Settle::Confirm => "confirmed",
            Settle::Release => "released",
            Settle::Cancel => "canceled",
        }
    }
}

impl Tickets {
    /// Takes `n` seats of show `id` under the caller's hold id until `expires_at`. A repeat
    /// of a pending hold answers it again; a settled hold id is a Conflict.
    pub fn hold(&self, id: &str, hold_id: &str, n: i64, expires_at: i64) -> Result<Hold> {
        check_id("holdID", hold_id)?;
        check_count("count", n)?;
        let record = self.record(id)?;
        let key = child_key(id, hold_id);
        let hold = Hold {
            show_id: id.to_owned(),
            hold_id: hold_id.to_owned(),
            count: n,
            expires_at,
        };
        let mut batch = WriteBatch::new();
        batch
            .expect(HOLDS, &key, Expect::Absent)
            .expect(SETTLED, &key, Expect::Absent)
            .incr_within(SEATS, show_key(id), n, 0..=record.house_size)
            .incr(HELD, show_key(id), n)
            .put(HOLDS, &key, to_json(&hold));
        match self.store.write(batch) {
            Ok(_) => Ok(hold),
            Err(Error::OutOfBounds { current, .. }) => {
                Err(not_enough(n, record.house_size, current))
            }
            Err(Error::Conflict(_)) => match self.store.get(HOLDS, &key)? {
                Some(b) => from_json("hold", &b),
                None => Err(Error::Conflict(format!(
                    "hold {hold_id} was already settled"
                ))),
            },
            Err(e) => Err(e),
        }
    }

    /// Settles hold `hold_id` of show `id` (see the module docs); returns the show after.
    pub fn settle(&self, id: &str, hold_id: &str, how: Settle) -> Result<super::Show> {
        check_id("holdID", hold_id)?;
        let record = self.record(id)?;
        let key = child_key(id, hold_id);
        for _ in 0..super::RETRIES {
            let pending = self.store.get(HOLDS, &key)?;
            let settled = self.store.get(SETTLED, &key)?;
            let done = |state: Settle| Settled { count: 0, state };
            let result = match (pending, settled) {
                (Some(bytes), _) => {
                    let hold: Hold = from_json("hold", &bytes)?;
                    let n = hold.count;
                    let end = to_json(&Settled {
                        count: n,
                        ..done(how)
                    });
                    let mut batch = WriteBatch::new();
                    batch
                        .expect(HOLDS, &key, Expect::Equals(bytes.clone()))
                        .delete(HOLDS, &key)
                        .incr(HELD, show_key(id), -n)
                        .put(SETTLED, &key, &end);
                    if how == Settle::Confirm {
                        self.store.write(batch).map(drop)
                    } else {
                        self.give_back(id, record.house_size, n, batch)
                    }
                }
                (None, Some(bytes)) => {
                    let was: Settled = from_json("settled hold", &bytes)?;
                    match (was.state, how) {
                        (a, b) if a == b => return self.show(id),
                        (Settle::Confirm, Settle::Cancel) => {
                            let mut batch = WriteBatch::new();
                            batch
                                .expect(SETTLED, &key, Expect::Equals(bytes.clone()))
                                .put(SETTLED, &key, to_json(&done(Settle::Cancel)));
                            self.give_back(id, record.house_size, was.count, batch)
                        }
                        (state, _) => {
                            return Err(Error::Conflict(format!(
                                "hold {hold_id} is already {}; it cannot be {}",
                                state.state(),
                                how.state()
                            )));
                        }
                    }
                }
                (None, None) => {
                    return Err(Error::NotFound(format!(
                        "no hold {hold_id:?} on show {id:?}"
                    )));
                }
            };
            match result {
                Ok(()) => return self.show(id),
                // The hold moved under us: look again.
                Err(Error::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(format!(
            "hold {hold_id} kept changing; try again"
        )))
    }

    /// Pending holds that expired at or before `now`, at most `limit`.
    pub fn expired_holds(&self, now: i64, limit: usize) -> Result<Vec<Hold>> {
        let mut out = Vec::new();
        for (_, v) in self.store.scan(HOLDS, Scan::all())? {
            let hold: Hold = from_json("hold", &v)?;
            if hold.expires_at <= now {
                out.push(hold);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Every pending hold of show `id`.
    pub fn holds_of(&self, id: &str) -> Result<Vec<Hold>> {
        check_id("showID", id)?;
        self.store
            .scan(HOLDS, Scan::prefix(child_key(id, "")))?
            .iter()
            .map(|(_, v)| from_json("hold", v))
            .collect()
    }

    /// The expiry `ttl_ms` from now.
    pub fn expiry(ttl_ms: i64) -> i64 {
        now_ms().saturating_add(ttl_ms)
    }
}
