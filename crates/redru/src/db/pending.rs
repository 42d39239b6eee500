//! `Pending`: the undos of records applied to the state but not yet known
//! durable, oldest first, kept in fixed-size chunks so that no writer pays
//! for the queue's size: growing it never copies it, and the undos a sync
//! made droppable are taken out a chunk at a time, to be dropped outside
//! the locks (a relaxed writer's million undos took 90-360 ms to drop).

use std::collections::VecDeque;

use crate::state::store::Undo;
use crate::storage::record::Seq;

/// Undos per chunk: a chunk is dropped whole once its last record is
/// durable, so a durable undo (and the old value it keeps alive) stays at
/// most this many writes longer than it must.
const CHUNK: usize = 64;

/// A run of consecutive undos, and the value bytes they keep alive.
pub(super) struct Chunk {
    undos: Vec<(Seq, Undo)>,
    held: usize,
}

/// The records applied but not known durable, with what undoes each: after
/// a failed log write or fsync they are taken back, so that no read shows a
/// write the disk may not have (docs/durability.md).
#[derive(Default)]
pub(super) struct Pending {
    chunks: VecDeque<Chunk>,
    /// Value bytes the undos keep alive.
    held: usize,
    /// The rollback ran (or a test asked that it never does): nothing more is kept.
    pub(super) rolled_back: bool,
}

impl Pending {
    /// Keeps how to undo record `seq`; returns the bytes held now.
    pub(super) fn push(&mut self, seq: Seq, undo: Undo) -> usize {
        let bytes = undo.held_bytes();
        if self.chunks.back().is_none_or(|c| c.undos.len() >= CHUNK) {
            self.chunks.push_back(Chunk { undos: Vec::with_capacity(CHUNK), held: 0 });
        }
        if let Some(chunk) = self.chunks.back_mut() {
            chunk.undos.push((seq, undo));
            chunk.held += bytes;
        }
        self.held += bytes;
        self.held
    }

    /// Takes out up to `max` whole chunks whose records are all durable (up
    /// to `durable`), oldest first, for the caller to drop once it has let go
    /// of the lock. The newest chunk stays: writes are still added to it.
    pub(super) fn take_durable(&mut self, durable: Seq, max: usize) -> Vec<Chunk> {
        let mut taken = Vec::new();
        while taken.len() < max
            && self.chunks.len() >= 2
            && self.chunks.front().and_then(|c| c.undos.last()).is_some_and(|(s, _)| *s <= durable)
        {
            if let Some(chunk) = self.chunks.pop_front() {
                self.held = self.held.saturating_sub(chunk.held);
                taken.push(chunk);
            }
        }
        taken
    }

    /// Takes out the newest undo (the rollback takes them back newest first).
    pub(super) fn pop_back(&mut self) -> Option<(Seq, Undo)> {
        loop {
            let chunk = self.chunks.back_mut()?;
            match chunk.undos.pop() {
                Some(last) => return Some(last),
                None => {
                    self.chunks.pop_back();
                }
            }
        }
    }

    /// Forgets every undo (after the rollback).
    pub(super) fn clear(&mut self) {
        self.chunks.clear();
        self.held = 0;
    }

    /// How many undos are kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.undos.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::store::State;
    use crate::storage::record::Record;

    /// An undo of setting `key`, as a write of it would produce.
    fn undo_of(state: &mut State, seq: u64, key: &str) -> Undo {
        let record = Record::Set(key.to_owned(), crate::state::doc::Doc::from(serde_json::json!(seq)));
        state.apply_undoable(Seq(seq), &record, None).1
    }

    #[test]
    fn only_whole_durable_chunks_are_taken_and_the_rest_pops_newest_first() {
        let mut state = State::default();
        let mut pending = Pending::default();
        let n = 3 * CHUNK as u64 + 5;
        for seq in 1..=n {
            let undo = undo_of(&mut state, seq, &format!("k{seq}"));
            pending.push(Seq(seq), undo);
        }
        assert_eq!(pending.len(), n as usize);
        // Durable to the middle of the second chunk: only the first goes.
        let taken = pending.take_durable(Seq(CHUNK as u64 + 3), usize::MAX);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].undos.first().map(|(s, _)| *s), Some(Seq(1)));
        // Everything durable: every chunk but the newest, at most `max` at a time.
        assert_eq!(pending.take_durable(Seq(n), 1).len(), 1);
        assert_eq!(pending.take_durable(Seq(n), usize::MAX).len(), 1);
        assert!(pending.take_durable(Seq(n), usize::MAX).is_empty());
        assert_eq!(pending.len(), 5);
        let seqs: Vec<u64> = std::iter::from_fn(|| pending.pop_back()).map(|(s, _)| s.0).collect();
        assert_eq!(seqs, (3 * CHUNK as u64 + 1..=n).rev().collect::<Vec<_>>());
        assert!(pending.pop_back().is_none());
    }

    #[test]
    fn held_bytes_follow_what_is_kept() {
        let mut state = State::default();
        let mut pending = Pending::default();
        let mut held = 0;
        for seq in 1..=2 * CHUNK as u64 {
            held = pending.push(Seq(seq), undo_of(&mut state, seq, "same key, replaced each time"));
        }
        let one_chunk: usize = pending.chunks.front().map_or(0, |c| c.held);
        assert!(one_chunk > 0 && held >= 2 * one_chunk - one_chunk / CHUNK);
        pending.take_durable(Seq(CHUNK as u64), usize::MAX);
        assert_eq!(pending.held, held - one_chunk);
        pending.clear();
        assert_eq!((pending.held, pending.len()), (0, 0));
    }
}
