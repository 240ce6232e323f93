//! Applying one caller's ops inside a group's transaction: preconditions, increments and
//! derived ops checked against the state the caller sees (the table, plus its own earlier
//! ops), staged in memory, and written only once all of them passed, so a batch is applied
//! whole or not at all (MultiWriter mode has no ephemeral savepoints to roll back to).

use std::borrow::Cow;
use std::collections::HashMap;

use redb::ReadableTable;

use super::{Table, table_def};
use crate::batch::{Expect, Op, Written, check_op};
use crate::error::{Error, Result};
use crate::shard_by::route_of;

/// A staged effect: collection, key, and the new value (`None` deletes). Borrowed from the
/// caller's ops, or owned when a derived op produced it.
type Staged<'a> = (Cow<'a, str>, Cow<'a, [u8]>, Option<Vec<u8>>);

/// Applies one caller's ops inside the group's transaction. The outer error is a storage
/// failure (the whole group fails); the inner one is this caller's alone, and then nothing of
/// its ops was written.
pub(super) fn apply<'o>(
    txn: &'o redb::WriteTransaction,
    tables: &mut HashMap<String, Table<'o>>,
    ops: &'o [Op],
    max_value_bytes: usize,
) -> Result<Result<Written>, redb::Error> {
    // Staged effects of this caller, read back by its own later ops.
    let mut staged: Vec<Staged<'o>> = Vec::new();
    let mut written = Written::default();
    for op in ops {
        if let Op::Derive { derive, .. } = op {
            // Computed from the value this caller sees now, in this transaction: nothing can
            // change it between the read and the writes.
            let now = current(txn, tables, &staged, op.collection(), op.key())?;
            let derived = match derive.call(now.as_deref()) {
                Ok(derived) => derived,
                Err(e) => return Ok(Err(e)),
            };
            for d in derived {
                if let Err(e) = check_derived(op, &d, max_value_bytes) {
                    return Ok(Err(e));
                }
                let now = current(txn, tables, &staged, d.collection(), d.key())?;
                match effect(&d, now, &mut written) {
                    Err(e) => return Ok(Err(e)),
                    Ok(None) => {}
                    Ok(Some(value)) => staged.push((
                        Cow::Owned(d.collection().to_owned()),
                        Cow::Owned(d.key().to_vec()),
                        value,
                    )),
                }
            }
            continue;
        }
        let now = current(txn, tables, &staged, op.collection(), op.key())?;
        match effect(op, now, &mut written) {
            Err(e) => return Ok(Err(e)),
            Ok(None) => {}
            Ok(Some(value)) => staged.push((
                Cow::Borrowed(op.collection()),
                Cow::Borrowed(op.key()),
                value,
            )),
        }
    }
    // Every check passed: make the staged effects real. Later entries win.
    for (collection, key, value) in staged {
        let table = table(txn, tables, &collection)?;
        match value {
            Some(v) => {
                table.insert(&*key, v.as_slice())?;
            }
            None => {
                table.remove(&*key)?;
            }
        }
    }
    Ok(Ok(written))
}

/// A derived op must be a plain op within the limits, on a key of the deriving op's route.
fn check_derived(op: &Op, derived: &Op, max_value_bytes: usize) -> Result<()> {
    if matches!(derived, Op::Derive { .. }) {
        return Err(Error::InvalidInput(
            "a derived op may not derive again".into(),
        ));
    }
    check_op(derived, max_value_bytes)?;
    if route_of(derived.key()) != route_of(op.key()) {
        return Err(Error::InvalidInput(format!(
            "an op derived from {:?} writes {:?}, which routes elsewhere",
            String::from_utf8_lossy(op.key()),
            String::from_utf8_lossy(derived.key())
        )));
    }
    Ok(())
}

/// The value a caller sees: its own staged effect on the key, or the table's.
fn current<'o>(
    txn: &'o redb::WriteTransaction,
    tables: &mut HashMap<String, Table<'o>>,
    staged: &[Staged<'_>],
    collection: &str,
    key: &[u8],
) -> Result<Option<Vec<u8>>, redb::Error> {
    match staged
        .iter()
        .rev()
        .find(|(c, k, _)| c == collection && **k == *key)
    {
        Some((_, _, v)) => Ok(v.clone()),
        None => Ok(table(txn, tables, collection)?
            .get(key)?
            .map(|v| v.value().to_vec())),
    }
}

/// What one plain op does to its key given its current value: `Ok(None)` leaves it alone,
/// `Ok(Some(v))` sets it to `v` (`None` deletes). An error fails the caller's batch.
fn effect(
    op: &Op,
    current: Option<Vec<u8>>,
    written: &mut Written,
) -> Result<Option<Option<Vec<u8>>>> {
    let (collection, key) = (op.collection(), op.key());
    let shown = || format!("{collection}/{}", String::from_utf8_lossy(key));
    match op {
        Op::Expect { expect, .. } => {
            let holds = match expect {
                Expect::Absent => current.is_none(),
                Expect::Present => current.is_some(),
                Expect::Equals(v) => current.as_deref() == Some(v.as_slice()),
            };
            if holds {
                return Ok(None);
            }
            let state = if current.is_some() {
                "exists"
            } else {
                "is absent"
            };
            Err(Error::Conflict(format!(
                "{} {state}, expected {}",
                shown(),
                match expect {
                    Expect::Absent => "absent",
                    Expect::Present => "present",
                    Expect::Equals(_) => "a specific value",
                }
            )))
        }
        Op::Put { value, .. } => Ok(Some(Some(value.clone()))),
        Op::Delete { .. } => Ok(Some(None)),
        Op::Incr { delta, bounds, .. } => {
            let old = match current.as_deref().map(parse_counter) {
                None => 0,
                Some(Some(n)) => n,
                Some(None) => {
                    return Err(Error::InvalidInput(format!(
                        "{} does not hold a decimal integer",
                        shown()
                    )));
                }
            };
            let Some(new) = old.checked_add(*delta) else {
                return Err(Error::InvalidInput(format!(
                    "{}: {old} + {delta} overflows a 64-bit integer",
                    shown()
                )));
            };
            if !bounds.contains(&new) {
                return Err(Error::OutOfBounds {
                    key: shown(),
                    current: old,
                    delta: *delta,
                    min: *bounds.start(),
                    max: *bounds.end(),
                });
            }
            written.values.push(new);
            Ok(Some(Some(new.to_string().into_bytes())))
        }
        Op::Derive { .. } => Err(Error::InvalidInput(
            "a derived op may not derive again".into(),
        )),
    }
}

/// The open table for a collection, opening (and creating) it once per transaction.
fn table<'a, 'txn>(
    txn: &'txn redb::WriteTransaction,
    tables: &'a mut HashMap<String, Table<'txn>>,
    collection: &str,
) -> Result<&'a mut Table<'txn>, redb::Error> {
    if !tables.contains_key(collection) {
        tables.insert(
            collection.to_owned(),
            txn.open_table(table_def(collection))?,
        );
    }
    Ok(tables.get_mut(collection).expect("inserted above"))
}

/// Counters are stored as decimal text, as Redis does, so they read back as themselves.
pub(crate) fn parse_counter(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}
