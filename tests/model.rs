//! Model-based test: random operation sequences against a `BTreeMap`, on both routing schemes
//! with random shard counts, through two `Store` handles on one directory, with reopens.
//!
//! After every step the store must equal the model: every collection scans to the model's
//! entries in the model's order, and every key lives in the shard the router names. The model
//! and its checker are shared with the fuzz target (`tests/common/model.rs`).

mod common;

use common::model::{
    BatchOp, COLLECTIONS, KEY_FORMS, KEY_PARTS, Model, Step, Sut, VALUES, apply_model, key_form,
};
use proptest::prelude::*;
use proptest::test_runner::Config;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

/// A plain key (a route).
fn plain_key() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop::sample::select(KEY_PARTS.to_vec()), 1..3)
        .prop_map(|parts| parts.concat())
}

/// A key in one of the forms that route by a plain key (itself, or through a hash tag).
fn key() -> impl Strategy<Value = String> {
    (0..KEY_FORMS.len(), plain_key()).prop_map(|(form, route)| key_form(form, &route))
}

fn value() -> impl Strategy<Value = String> {
    prop::sample::select(VALUES.to_vec()).prop_map(str::to_owned)
}

fn collection() -> impl Strategy<Value = &'static str> {
    prop::sample::select(COLLECTIONS.to_vec())
}

fn scheme() -> impl Strategy<Value = String> {
    prop_oneof![
        (1usize..=8).prop_map(|n| format!("hash:{n}")),
        proptest::collection::btree_set(
            prop::sample::select(vec!["b", "m", "ma", "n", "t", "z"]),
            0..4
        )
        .prop_map(|splits| {
            if splits.is_empty() {
                "alpha:a-z".to_owned()
            } else {
                format!("alpha:{}", splits.into_iter().collect::<Vec<_>>().join(","))
            }
        }),
    ]
}

#[derive(Clone, Debug)]
struct Reference {
    scheme: String,
    data: Model,
}

struct Machine;

impl ReferenceStateMachine for Machine {
    type State = Reference;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Reference> {
        scheme()
            .prop_map(|scheme| Reference {
                scheme,
                data: Model::new(),
            })
            .boxed()
    }

    fn transitions(state: &Reference) -> BoxedStrategy<Step> {
        // Known keys make preconditions hit existing entries, not only absent ones.
        let known: Vec<String> = state.data.keys().map(|(_, k)| k.clone()).collect();
        let key = if known.is_empty() {
            key().boxed()
        } else {
            prop_oneof![key(), prop::sample::select(known)].boxed()
        };
        let current = state.data.values().cloned().collect::<Vec<_>>();
        let expected = if current.is_empty() {
            proptest::option::of(value()).boxed()
        } else {
            proptest::option::of(prop_oneof![value(), prop::sample::select(current)]).boxed()
        };
        let delta = prop_oneof![-3i64..=3, Just(i64::MAX)];
        let h = 0usize..2;
        // A batch's keys are forms of one route; now and then one key has another route, and
        // the store must refuse the whole batch.
        let batch_key = |route: String| {
            prop_oneof![
                12 => (0..KEY_FORMS.len()).prop_map(move |form| key_form(form, &route)),
                1 => crate::key(),
            ]
        };
        let (expected_in_batch, delta_in_batch) = (expected.clone(), delta.clone());
        let batch_op = move |route: String| {
            let (expected, delta) = (expected_in_batch.clone(), delta_in_batch.clone());
            let k = batch_key(route);
            prop_oneof![
                (collection(), k.clone(), expected.clone())
                    .prop_map(|(c, k, v)| BatchOp::Expect(c, k, v)),
                (collection(), k.clone(), value()).prop_map(|(c, k, v)| BatchOp::Put(c, k, v)),
                (collection(), k.clone()).prop_map(|(c, k)| BatchOp::Delete(c, k)),
                (collection(), k.clone(), delta.clone())
                    .prop_map(|(c, k, d)| BatchOp::Incr(c, k, d)),
                (collection(), k, -3i64..=3, -2i64..=0, 0i64..=3)
                    .prop_map(|(c, k, d, lo, hi)| BatchOp::IncrWithin(c, k, d, lo, hi)),
            ]
        };
        let batch = plain_key()
            .prop_flat_map(move |route| proptest::collection::vec(batch_op(route), 1..5));
        let bound = proptest::option::of(key.clone());
        prop_oneof![
            4 => (h.clone(), collection(), key.clone(), value()).prop_map(|(h, c, k, v)| Step::Put(h, c, k, v)),
            2 => (h.clone(), collection(), key.clone(), value()).prop_map(|(h, c, k, v)| Step::Insert(h, c, k, v)),
            2 => (h.clone(), collection(), key.clone(), expected.clone(), proptest::option::of(value()))
                .prop_map(|(h, c, k, e, n)| Step::Cas(h, c, k, e, n)),
            2 => (h.clone(), collection(), key.clone()).prop_map(|(h, c, k)| Step::Delete(h, c, k)),
            3 => (h.clone(), collection(), key.clone(), delta).prop_map(|(h, c, k, d)| Step::Incr(h, c, k, d)),
            3 => (h.clone(), batch).prop_map(|(h, ops)| Step::Batch(h, ops)),
            2 => (h.clone(), collection(), key).prop_map(|(h, c, k)| Step::Get(h, c, k)),
            2 => (h.clone(), collection(), bound.clone(), bound.clone(), bound, 0usize..6)
                .prop_map(|(h, c, lo, hi, after, limit)| Step::Scan(h, c, lo, hi, after, limit)),
            1 => h.prop_map(Step::Reopen),
        ]
        .boxed()
    }

    fn apply(mut state: Reference, step: &Step) -> Reference {
        apply_model(&mut state.data, step);
        state
    }
}

struct StoreMachine;

impl StateMachineTest for StoreMachine {
    type SystemUnderTest = Sut;
    type Reference = Machine;

    fn init_test(reference: &Reference) -> Sut {
        Sut::new(&reference.scheme.parse().unwrap())
    }

    fn apply(mut sut: Sut, after: &Reference, step: Step) -> Sut {
        sut.apply(&step);
        assert_eq!(
            sut.model, after.data,
            "the checker's model drifted from the reference"
        );
        sut
    }

    fn check_invariants(sut: &Sut, _: &Reference) {
        sut.check();
    }
}

prop_state_machine! {
    #![proptest_config(Config {
        cases: 48,
        max_shrink_iters: 2048,
        failure_persistence: None,
        .. Config::default()
    })]

    #[test]
    fn store_matches_btreemap_model(sequential 1..40 => StoreMachine);
}
