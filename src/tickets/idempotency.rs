//! The api's `Idempotency-Key` records: the first request with a key claims it (pending,
//! with its hold id), and its answer is stored under the key before it is sent, so a retry
//! gets the same answer and books nothing more. A pending record older than its lease
//! belongs to a request whose api died; a retry takes it over (compare-and-set) and learns
//! from the old hold id whether the first attempt's reservation exists.

use serde::{Deserialize, Serialize};

use super::{IDEMPOTENCY, Tickets, check_id, from_json, now_ms, to_json};
use crate::batch::{Expect, WriteBatch};
use crate::error::{Error, Result};

/// What is stored under an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The request it answers (show, name, count), so a key reused for another request is
    /// refused.
    pub request: String,
    /// The hold id the attempt in progress uses.
    #[serde(rename = "holdID")]
    pub hold_id: String,
    /// When the attempt started, ms since the epoch.
    pub started: i64,
    /// The answer, once there is one: status and JSON body, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<(u16, String)>,
}

/// What a request with an idempotency key should do.
#[derive(Debug)]
pub enum Begin {
    /// Book, with this record claimed.
    Fresh,
    /// A previous attempt died: book, and treat a reservation made under `old_hold` as this
    /// request's own.
    TakeOver {
        /// The dead attempt's hold id.
        old_hold: String,
    },
    /// Answer this (status, JSON body), as the first time.
    Done(u16, String),
    /// Another attempt is in flight; retry later.
    InProgress,
}

impl Tickets {
    /// Claims `key` for `request` using `hold_id`; see [`Begin`]. A pending claim older than
    /// `lease_ms` is taken over. A key used for another request is a Conflict.
    pub fn begin_idempotent(
        &self,
        key: &str,
        request: &str,
        hold_id: &str,
        lease_ms: i64,
    ) -> Result<Begin> {
        check_id("Idempotency-Key", key)?;
        let mine = IdempotencyRecord {
            request: request.to_owned(),
            hold_id: hold_id.to_owned(),
            started: now_ms(),
            answer: None,
        };
        let mut batch = WriteBatch::new();
        batch
            .expect(IDEMPOTENCY, key, Expect::Absent)
            .put(IDEMPOTENCY, key, to_json(&mine));
        match self.store.write(batch) {
            Ok(_) => return Ok(Begin::Fresh),
            Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        let Some(bytes) = self.store.get(IDEMPOTENCY, key)? else {
            return Ok(Begin::InProgress);
        };
        let theirs: IdempotencyRecord = from_json("idempotency record", &bytes)?;
        if theirs.request != request {
            return Err(Error::InvalidInput(format!(
                "Idempotency-Key {key:?} was already used for another request ({})",
                theirs.request
            )));
        }
        if let Some((status, body)) = theirs.answer {
            return Ok(Begin::Done(status, body));
        }
        if now_ms() - theirs.started < lease_ms {
            return Ok(Begin::InProgress);
        }
        let mut batch = WriteBatch::new();
        batch
            .expect(IDEMPOTENCY, key, Expect::Equals(bytes))
            .put(IDEMPOTENCY, key, to_json(&mine));
        match self.store.write(batch) {
            Ok(_) => Ok(Begin::TakeOver {
                old_hold: theirs.hold_id,
            }),
            Err(Error::Conflict(_)) => Ok(Begin::InProgress),
            Err(e) => Err(e),
        }
    }

    /// Stores the answer of the attempt that holds `key` with `hold_id`.
    pub fn finish_idempotent(
        &self,
        key: &str,
        hold_id: &str,
        status: u16,
        body: &str,
    ) -> Result<()> {
        let Some(bytes) = self.store.get(IDEMPOTENCY, key)? else {
            return Ok(());
        };
        let mut record: IdempotencyRecord = from_json("idempotency record", &bytes)?;
        if record.hold_id != hold_id {
            // Taken over by a retry after our lease ran out: its answer wins.
            return Ok(());
        }
        record.answer = Some((status, body.to_owned()));
        let mut batch = WriteBatch::new();
        batch.expect(IDEMPOTENCY, key, Expect::Equals(bytes)).put(
            IDEMPOTENCY,
            key,
            to_json(&record),
        );
        self.store.write(batch).map(drop)
    }

    /// Forgets the claim of an attempt that booked nothing, so a retry starts afresh.
    pub fn abandon_idempotent(&self, key: &str, hold_id: &str) -> Result<()> {
        let Some(bytes) = self.store.get(IDEMPOTENCY, key)? else {
            return Ok(());
        };
        let record: IdempotencyRecord = from_json("idempotency record", &bytes)?;
        if record.hold_id != hold_id || record.answer.is_some() {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        batch
            .expect(IDEMPOTENCY, key, Expect::Equals(bytes))
            .delete(IDEMPOTENCY, key);
        match self.store.write(batch) {
            Ok(_) | Err(Error::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
