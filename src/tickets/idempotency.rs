//! The api's `Idempotency-Key` records: the first request with a key claims it (pending,
//! with its hold id), and its answer is stored under the key before it is sent, so a retry
//! gets the same answer and books nothing more. A pending record older than its lease
//! belongs to a request whose api died; a retry takes it over (compare-and-set), keeping
//! the hold ids of every earlier attempt: before booking anything it must settle each of
//! them (void it, or find the reservation that claimed it), since any may carry this
//! request's booking.

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
    /// The hold ids of earlier attempts that died, oldest first: any of them may have
    /// booked, so none is ever forgotten.
    #[serde(
        rename = "earlierHolds",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub earlier_holds: Vec<String>,
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
    /// Earlier attempts died: a reservation made under any of `old_holds` is this request's
    /// own; settle them all before booking.
    TakeOver {
        /// The dead attempts' hold ids, oldest first.
        old_holds: Vec<String>,
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
        let mut mine = IdempotencyRecord {
            request: request.to_owned(),
            hold_id: hold_id.to_owned(),
            earlier_holds: Vec::new(),
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
        mine.earlier_holds = theirs.earlier_holds;
        mine.earlier_holds.push(theirs.hold_id);
        let mut batch = WriteBatch::new();
        batch
            .expect(IDEMPOTENCY, key, Expect::Equals(bytes))
            .put(IDEMPOTENCY, key, to_json(&mine));
        match self.store.write(batch) {
            Ok(_) => Ok(Begin::TakeOver {
                old_holds: mine.earlier_holds,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// Regression: each takeover used to replace the record's hold id, so after two the
    /// first attempt's hold (the one that may have booked) was forgotten.
    #[test]
    fn every_takeover_keeps_the_hold_ids_of_all_earlier_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::shard_by("hash:2".parse().unwrap()).open(dir.path());
        let t = Tickets::new(store.unwrap());
        let request = r#"["show","alice",2]"#;
        assert!(matches!(
            t.begin_idempotent("k", request, "h1", 0).unwrap(),
            Begin::Fresh
        ));
        let Begin::TakeOver { old_holds } = t.begin_idempotent("k", request, "h2", 0).unwrap()
        else {
            panic!("a claim past its lease is taken over");
        };
        assert_eq!(old_holds, ["h1"]);
        let Begin::TakeOver { old_holds } = t.begin_idempotent("k", request, "h3", 0).unwrap()
        else {
            panic!("a claim past its lease is taken over");
        };
        assert_eq!(old_holds, ["h1", "h2"]);
        // Within its lease the claim is another attempt's; its answer is final for all.
        assert!(matches!(
            t.begin_idempotent("k", request, "h4", 60_000).unwrap(),
            Begin::InProgress
        ));
        t.finish_idempotent("k", "h3", 201, "{}").unwrap();
        assert!(matches!(
            t.begin_idempotent("k", request, "h5", 0).unwrap(),
            Begin::Done(201, ref body) if body == "{}"
        ));
    }
}
