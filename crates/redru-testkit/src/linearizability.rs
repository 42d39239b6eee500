//! A linearizability checker for one register (one key): the Wing & Gong
//! search with Lowe's memoization of (linearized set, value) states.
//! Histories are checked per key (a key-value store is linearizable iff
//! each key is, the P-compositionality the checkers in Jepsen's Knossos and
//! Porcupine use), which keeps each search small.
//!
//! An operation whose outcome is unknown (the client gave up, the reply was
//! "outcome unknown") has no completion: a write of that kind may take
//! effect at any time after its call, or never; a read of that kind tells
//! nothing and is dropped.

use std::collections::HashSet;
use std::hash::Hash;

/// What a client did to the register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op<V> {
    /// Wrote a value.
    Write(V),
    /// Read, and saw a value (`None`: the key was absent).
    Read(Option<V>),
}

/// One operation: when it was called, when it completed (`None`: unknown
/// outcome), what it was. Times are any monotonic clock, shared by all clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<V> {
    /// Invocation time.
    pub call: u64,
    /// Completion time, or `None` if the outcome is unknown.
    pub ret: Option<u64>,
    /// The operation and, for a read, its result.
    pub op: Op<V>,
}

/// The checker's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations, each taking effect inside its interval,
    /// explains every result.
    Linearizable,
    /// None does; the message names the furthest the search got.
    Violation(String),
    /// The search exceeded its budget of states.
    TooLarge,
}

/// The most states explored before giving up with [`Verdict::TooLarge`].
pub const BUDGET: usize = 2_000_000;

struct Search<'h, V> {
    ops: Vec<&'h Event<V>>,
    /// Operations that must be linearized (known completion).
    required: usize,
    seen: HashSet<(Vec<u64>, Option<V>)>,
    explored: usize,
    deepest: usize,
}

/// Checks `history` of one register that starts as `initial`.
pub fn check<V: Clone + Eq + Hash + std::fmt::Debug>(initial: Option<V>, history: &[Event<V>]) -> Verdict {
    // A read with an unknown outcome constrains nothing.
    let ops: Vec<&Event<V>> = history.iter().filter(|e| !(matches!(e.op, Op::Read(_)) && e.ret.is_none())).collect();
    let required = ops.iter().filter(|e| e.ret.is_some()).count();
    let mut search = Search { ops, required, seen: HashSet::new(), explored: 0, deepest: 0 };
    let mut done = vec![0u64; search.ops.len().div_ceil(64)];
    match search.step(&mut done, 0, initial) {
        Some(true) => Verdict::Linearizable,
        Some(false) => Verdict::Violation(format!(
            "no linearization: at most {} of {} completed operations could be ordered",
            search.deepest, search.required
        )),
        None => Verdict::TooLarge,
    }
}

impl<V: Clone + Eq + Hash> Search<'_, V> {
    /// Whether the operations not in `done` can be linearized from `value`
    /// (`None`: out of budget). `count` is how many required ones are done.
    fn step(&mut self, done: &mut Vec<u64>, count: usize, value: Option<V>) -> Option<bool> {
        if count == self.required {
            return Some(true);
        }
        self.deepest = self.deepest.max(count);
        self.explored += 1;
        if self.explored > BUDGET {
            return None;
        }
        if !self.seen.insert((done.clone(), value.clone())) {
            return Some(false);
        }
        let is_done = |done: &[u64], i: usize| done[i / 64] & (1 << (i % 64)) != 0;
        // An operation can go next only if no pending operation completed
        // before it was called.
        let horizon = (0..self.ops.len())
            .filter(|&i| !is_done(done, i))
            .filter_map(|i| self.ops[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        for i in 0..self.ops.len() {
            if is_done(done, i) || self.ops[i].call > horizon {
                continue;
            }
            let next = match &self.ops[i].op {
                Op::Write(v) => Some(v.clone()),
                Op::Read(seen) if *seen == value => value.clone(),
                Op::Read(_) => continue,
            };
            done[i / 64] |= 1 << (i % 64);
            let counted = count + usize::from(self.ops[i].ret.is_some());
            let found = self.step(done, counted, next);
            done[i / 64] &= !(1 << (i % 64));
            match found {
                Some(false) => {}
                other => return other,
            }
        }
        Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(call: u64, ret: u64, v: u32) -> Event<u32> {
        Event { call, ret: Some(ret), op: Op::Write(v) }
    }
    fn r(call: u64, ret: u64, v: Option<u32>) -> Event<u32> {
        Event { call, ret: Some(ret), op: Op::Read(v) }
    }

    #[test]
    fn sequential_histories_pass() {
        assert_eq!(
            check(None, &[r(0, 1, None), w(2, 3, 1), r(4, 5, Some(1)), w(6, 7, 2), r(8, 9, Some(2))]),
            Verdict::Linearizable
        );
    }

    #[test]
    fn overlapping_operations_may_take_effect_in_either_order() {
        // The read overlaps the write: old or new value are both fine.
        assert_eq!(check(None, &[w(0, 10, 1), r(5, 6, None)]), Verdict::Linearizable);
        assert_eq!(check(None, &[w(0, 10, 1), r(5, 6, Some(1))]), Verdict::Linearizable);
        // Two overlapping writes, then reads that see the later-ordered one.
        assert_eq!(
            check(None, &[w(0, 10, 1), w(1, 9, 2), r(11, 12, Some(1)), r(13, 14, Some(1))]),
            Verdict::Linearizable
        );
    }

    #[test]
    fn a_stale_read_is_a_violation() {
        // Write 2 completed before the read began, yet the read saw 1.
        let verdict = check(None, &[w(0, 1, 1), w(2, 3, 2), r(4, 5, Some(1))]);
        assert!(matches!(verdict, Verdict::Violation(_)), "{verdict:?}");
        // A read going back in time: 2, then 1, with no write of 1 in between.
        let verdict = check(None, &[w(0, 1, 1), w(2, 10, 2), r(3, 4, Some(2)), r(5, 6, Some(1))]);
        assert!(matches!(verdict, Verdict::Violation(_)), "{verdict:?}");
    }

    #[test]
    fn a_value_never_written_is_a_violation() {
        assert!(matches!(check(None, &[w(0, 1, 1), r(2, 3, Some(7))]), Verdict::Violation(_)));
        assert!(matches!(check(Some(3), &[r(0, 1, None)]), Verdict::Violation(_)));
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never() {
        let unknown = Event { call: 0, ret: None, op: Op::Write(9) };
        assert_eq!(check(None, &[unknown.clone(), r(1, 2, None), r(3, 4, Some(9))]), Verdict::Linearizable);
        assert_eq!(check(None, &[unknown.clone(), r(1, 2, None)]), Verdict::Linearizable);
        // ... but not before it was called.
        let late = Event { call: 5, ret: None, op: Op::Write(9) };
        assert!(matches!(check(None, &[r(1, 2, Some(9)), late]), Verdict::Violation(_)));
        // An unknown read says nothing.
        let read = Event { call: 0, ret: None, op: Op::Read(Some(42)) };
        assert_eq!(check(None, &[read]), Verdict::Linearizable);
    }

    #[test]
    fn a_long_concurrent_history_is_decided_quickly() {
        // 200 operations by 4 clients in overlapping rounds: the memo keeps it small.
        let mut history = Vec::new();
        for round in 0..50u64 {
            let t = round * 10;
            history.push(w(t, t + 5, round as u32));
            history.push(r(t + 1, t + 6, Some(round as u32)));
            history.push(r(t + 2, t + 4, if round == 0 { None } else { Some(round as u32 - 1) }));
            history.push(r(t + 7, t + 8, Some(round as u32)));
        }
        assert_eq!(check(None, &history), Verdict::Linearizable);
    }
}
