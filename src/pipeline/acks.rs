//! At-least-once commits that do not wait: which outputs the broker has acknowledged, counted
//! by the commit epoch they were produced in.
//!
//! At-least-once may commit an input offset only once every output of the records before it is
//! acknowledged; otherwise a crash after the commit loses those outputs. Waiting for that at
//! each commit (a producer flush: the linger, then a round trip) is what Kafka Streams does; it
//! kept our processing thread idle for a tenth of a drain, and that thread is the one that
//! limits throughput. Instead every output carries, as its delivery opaque, the epoch it was
//! produced in (the span between two commit ticks). A tick closes the open epoch with the
//! offsets reached; a later tick commits those offsets once all of the epoch's outputs are
//! acknowledged. At most one closed epoch waits at a time (a tick that finds it still waiting
//! leaves the open epoch open), so two counters suffice and offsets are committed in order.
//!
//! The cost: offsets are committed one tick later (a crash re-emits up to two ticks of
//! outputs, with the same `event_id`s, instead of one). Exactly-once does not use this: its
//! commit is the transaction's, which must wait for its outputs.

use std::sync::atomic::{AtomicI64, Ordering};

/// Outputs not yet acknowledged, per epoch parity: shared with the producer's delivery callback.
///
/// An epoch's counter goes down by one per delivery report (success or failure: failures are
/// counted apart, see `Stats::delivery_failures`) while the epoch is open, and up by the number
/// of outputs produced in it when it closes; from then on it is the number still in flight.
#[derive(Debug, Default)]
pub struct Acks {
    outstanding: [AtomicI64; 2],
}

impl Acks {
    /// A delivery report for an output produced in `epoch` (the record's delivery opaque).
    pub fn reported(&self, epoch: usize) {
        self.outstanding[epoch & 1].fetch_sub(1, Ordering::AcqRel);
    }

    fn close(&self, epoch: usize, produced: i64) {
        self.outstanding[epoch & 1].fetch_add(produced, Ordering::AcqRel);
    }

    /// Whether every output of the closed `epoch` has been reported.
    fn settled(&self, epoch: usize) -> bool {
        self.outstanding[epoch & 1].load(Ordering::Acquire) == 0
    }
}

/// An input's next offset to process: (source, partition, offset).
pub type Position = (usize, i32, i64);

/// The processing thread's side: the open epoch and the closed one waiting for its outputs.
#[derive(Debug, Default)]
pub struct Epochs {
    open: usize,
    /// Outputs produced in the open epoch.
    produced: i64,
    /// The closed epoch still in flight, with the offsets to commit once it is acknowledged
    /// (`None` when a flush and a commit since have made them moot).
    waiting: Option<(usize, Option<Vec<Position>>)>,
}

impl Epochs {
    /// The epoch an output produced now belongs to; call once per output produced.
    pub fn produce(&mut self) -> usize {
        self.produced += 1;
        self.open
    }

    /// A commit tick, with the positions reached (every input whose position is past its last
    /// commit): returns the positions that may be committed now, if any. Those of the waiting
    /// epoch when its outputs are all acknowledged; the given ones at once when nothing is in
    /// flight before them. Otherwise `positions` close the open epoch and wait (unless an
    /// epoch already waits: then the open one stays open).
    pub fn tick(&mut self, acks: &Acks, positions: Vec<Position>) -> Option<Vec<Position>> {
        let mut ready = None;
        if let Some((epoch, offsets)) = &mut self.waiting {
            if !acks.settled(*epoch) {
                return None;
            }
            ready = offsets.take();
            self.waiting = None;
        }
        if self.produced == 0 {
            // Nothing of the open epoch is in flight: its positions are as safe as the waiting
            // epoch's, and newer.
            return if positions.is_empty() { ready } else { Some(positions) };
        }
        acks.close(self.open, self.produced);
        self.waiting = Some((self.open, Some(positions)));
        self.open += 1;
        self.produced = 0;
        ready
    }

    /// Drops what the waiting epoch would commit: moot after a flush (every output produced so
    /// far is reported) and a commit of the positions then, and wrong after a rewind to the
    /// last commit. Its counter still settles on its own (a report may still be on its way to
    /// the callback), and the next epoch waits for that as usual.
    pub fn forget(&mut self) {
        if let Some((_, offsets)) = &mut self.waiting {
            *offsets = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(offset: i64) -> Vec<Position> {
        vec![(0, 0, offset)]
    }

    #[test]
    fn offsets_wait_for_their_epochs_outputs_and_commit_in_order() {
        let (acks, mut e) = (Acks::default(), Epochs::default());
        let first = e.produce();
        let second = e.produce();
        assert_eq!(e.tick(&acks, at(10)), None, "two outputs in flight");
        // Produced in the next epoch; its report may come before the older ones.
        let third = e.produce();
        acks.reported(third);
        acks.reported(first);
        assert_eq!(e.tick(&acks, at(20)), None, "one of the first epoch's outputs is still in flight");
        acks.reported(second);
        assert_eq!(e.tick(&acks, at(20)), Some(at(10)), "the first epoch's offsets, and only them");
        // The second epoch's only output was reported early, and nothing was produced since:
        // the newest positions are safe.
        assert_eq!(e.tick(&acks, at(30)), Some(at(30)));
        assert_eq!(e.tick(&acks, Vec::new()), None, "nothing moved");
    }

    #[test]
    fn a_failed_report_settles_too_and_a_flush_makes_waiting_offsets_moot() {
        let (acks, mut e) = (Acks::default(), Epochs::default());
        let epoch = e.produce();
        assert_eq!(e.tick(&acks, at(5)), None);
        e.forget();
        acks.reported(epoch);
        assert_eq!(e.tick(&acks, Vec::new()), None, "the flush's commit covered offset 5");
        let next = e.produce();
        assert_eq!(e.tick(&acks, at(9)), None);
        acks.reported(next);
        assert_eq!(e.tick(&acks, Vec::new()), Some(at(9)));
    }

    proptest! {
        /// Any interleaving of outputs produced, their reports (in any order) and ticks: an
        /// offset is committed only once every output produced before it was reached is
        /// reported, and committed offsets only go forward.
        #[test]
        fn no_offset_is_committed_before_the_outputs_before_it(ops in prop::collection::vec((0u8..3, any::<prop::sample::Index>()), 1..300)) {
            let (acks, mut e) = (Acks::default(), Epochs::default());
            // Outputs in flight: (epoch, the offset reached when it was produced).
            let mut in_flight: Vec<(usize, i64)> = Vec::new();
            // The offset reached: one more per tick, as if a record were processed between ticks.
            let (mut offset, mut last_committed) = (0i64, -1i64);
            for (op, pick) in ops {
                match op {
                    0 => in_flight.push((e.produce(), offset)),
                    1 if !in_flight.is_empty() => {
                        let (epoch, _) = in_flight.swap_remove(pick.index(in_flight.len()));
                        acks.reported(epoch);
                    }
                    _ => {
                        offset += 1;
                        if let Some(ready) = e.tick(&acks, at(offset)) {
                            let committed = ready[0].2;
                            prop_assert!(committed > last_committed, "{committed} after {last_committed}");
                            last_committed = committed;
                            // An output produced when the offset reached was below the committed
                            // one belongs to a record before it: it must have been reported.
                            prop_assert!(
                                in_flight.iter().all(|(_, at)| *at >= committed),
                                "committed {committed} with {in_flight:?} in flight"
                            );
                        }
                    }
                }
            }
        }
    }
}
