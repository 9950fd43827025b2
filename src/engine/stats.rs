//! The engine's running counts: [`EngineStats`], the [`Census`] of where scored customers stand,
//! and the [`Outcome`] of an applied input. Counters only: they are bumped by the core loop and
//! by evaluation, and may not score, schedule or change a customer.

use super::Engine;
use crate::event::RejectReason;
use crate::score::{Band, Stage};
use crate::state::ChurnStats;

/// What happened to an input that was not rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Seen before (same `event_id` among the customer's recent events): counted, not applied.
    Duplicate,
}

/// Running counts, for metrics and summaries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub applied: u64,
    pub duplicates: u64,
    pub rejected: [u64; RejectReason::ALL.len()],
    pub evaluations: u64,
    pub score_changes: u64,
    pub alerts: u64,
    pub evicted: u64,
    /// Events that would have moved stream time more than `max_lead_secs` ahead alone, held
    /// until another event confirmed the leap (or for good).
    pub held_leaps: u64,
    /// How customers stood before they cancelled, counted on each cancellation (the live
    /// accuracy of the score: does red come before churn?).
    pub churn: ChurnStats,
    /// Where the scored customers stand now.
    pub census: Census,
}

/// How many scored customers stand in each (band, stage, segment): a gauge kept in step as
/// customers are scored and evicted, so reading it (a metrics scrape) never walks the customers.
/// Segments are the scorecard's, by index; the table grows to the highest one seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    cells: Vec<u64>,
}

impl Census {
    fn cell(band: Band, stage: Stage, segment: u8) -> usize {
        (segment as usize * Stage::ALL.len() + stage as usize) * Band::ALL.len() + band as usize
    }

    pub(super) fn add(&mut self, band: Band, stage: Stage, segment: u8) {
        let i = Census::cell(band, stage, segment);
        if i >= self.cells.len() {
            self.cells.resize(i + 1, 0);
        }
        self.cells[i] += 1;
    }

    pub(super) fn remove(&mut self, band: Band, stage: Stage, segment: u8) {
        if let Some(n) = self.cells.get_mut(Census::cell(band, stage, segment)) {
            *n = n.saturating_sub(1);
        }
    }

    /// Customers now in (band, stage, segment).
    pub fn count(&self, band: Band, stage: Stage, segment: u8) -> u64 {
        self.cells.get(Census::cell(band, stage, segment)).copied().unwrap_or(0)
    }

    /// Customers now in `band`, over every stage and segment.
    pub fn band_total(&self, band: Band) -> u64 {
        self.cells.iter().skip(band as usize).step_by(Band::ALL.len()).sum()
    }

    /// Adds `other`'s counts to these (the census of several partitions).
    pub fn merge(&mut self, other: &Census) {
        if other.cells.len() > self.cells.len() {
            self.cells.resize(other.cells.len(), 0);
        }
        for (a, b) in self.cells.iter_mut().zip(&other.cells) {
            *a += b;
        }
    }
}

impl Engine {
    /// Recounts the census from the customers' own record of where they were counted. The
    /// census is kept incrementally; this is for state that arrives whole (a restored
    /// snapshot), and for tests that check the incremental count against a fresh one.
    pub fn recount_census(&mut self) {
        let mut census = Census::default();
        for c in self.store.iter() {
            if let (Some(band), Some(stage)) = (c.score.band, c.score.stage) {
                census.add(band, stage, c.score.segment);
            }
        }
        self.stats.census = census;
    }
}
