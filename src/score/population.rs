//! Population-relative curves: where a customer's value stands among the partition's live
//! customers of its segment and lifecycle stage.
//!
//! An absolute curve (`bad = 2, good = 16` active days) encodes one product's usage volumes:
//! on a daily-use product nearly everyone gets full points, on a weekly-use one nearly nobody
//! does, and either way the score cannot rank customers. A relative curve scores the customer's
//! mid-rank percentile instead, so it spreads any product's population over 0–100 without
//! knowing its volumes.
//!
//! How the reference is kept, and why this way:
//! - Each customer's value of every relatively-scored signal enters a DDSketch (a mergeable
//!   quantile sketch with 1 % relative accuracy, `sketches-ddsketch`) once per UTC day, at its
//!   first evaluation of the day; every live customer is evaluated at least daily by its timer.
//!   A sketch cannot forget a value, and a customer's value changes every day as its windows
//!   slide, so the sketches are not kept forever: they *fill* for one stream-time day and are
//!   then *frozen* into 101 percentile knots (the [`References`] scoring reads) and started
//!   afresh. The reference is therefore yesterday's population, refreshed daily in stream time.
//! - Sketches fill per (signal, stage, segment). Freezing falls back to the segment across
//!   stages, then to the whole partition, when a cell holds fewer than [`MIN_REFERENCE`]
//!   customers: a percentile among a handful of customers is noise.
//! - Before the first refresh there is no reference: relative components count as missing data
//!   (skipped or neutral, as the component says).
//! - Everything is driven by stream time and the order of evaluations, and both the knots and the
//!   filling sketches are in the snapshot, so replay and the service compute the same scores.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};

use super::Stage;
use crate::event::{Millis, DAY_MS};
use crate::signal::{Signal, Signals};

/// The fewest customers a reference is built from; smaller cells fall back to a wider one.
pub const MIN_REFERENCE: u64 = 30;

/// Percentile knots per reference: the 0th to the 100th.
const KNOTS: usize = 101;

/// Which customers a reference describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// The customer's segment and lifecycle stage.
    StageAndSegment,
    /// The customer's segment, every stage (its stage had too few customers).
    Segment,
    /// Every customer of the partition (its segment had too few).
    All,
}

/// The distribution of one signal in one population, as percentile knots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// The values at the 0th, 1st, … 100th percentile, ascending, on the sketch's value grid.
    knots: Vec<f64>,
    /// Customers it was built from.
    pub count: u64,
    pub scope: Scope,
}

/// Where a value stands in a [`Reference`]: the shares (0–1) of the reference customers with a
/// lower and with a higher value. Ties count in neither.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rank {
    pub below: f64,
    pub above: f64,
    pub scope: Scope,
}

impl Rank {
    /// Points for a value: full marks when no peer does better, none when every peer does better
    /// (or as well, at the bottom), otherwise the mid-rank percentile.
    ///
    /// Why the ends: a product used every day puts many customers at the top value (30 active days
    /// of 30, 0 days since the last use). Mid-rank would give that tie only 1 − share/2 of the
    /// points, so a population in which everyone is healthy would all be yellow; "as good as the
    /// best of your peers" is what a CS person calls full marks. The same at the bottom: a customer
    /// tied with the many at zero use has the worst standing there is.
    pub fn points(&self, higher_is_better: bool) -> f64 {
        let (better, worse) = if higher_is_better { (self.above, self.below) } else { (self.below, self.above) };
        if better <= 0.0 {
            return 100.0;
        }
        if worse <= 0.0 {
            return 0.0;
        }
        (100.0 * (worse + (1.0 - better)) / 2.0).clamp(0.0, 100.0)
    }
}

impl Reference {
    fn from_sketch(sketch: &DDSketch, scope: Scope) -> Option<Reference> {
        let count = sketch.count() as u64;
        if count < MIN_REFERENCE {
            return None;
        }
        let knots = (0..KNOTS)
            .map(|i| quantize(sketch.quantile(i as f64 / (KNOTS - 1) as f64).ok().flatten().unwrap_or(0.0)))
            .collect();
        Some(Reference { knots, count, scope })
    }

    /// Where `value` stands. The value is first put on the sketch's grid, so a customer tied with
    /// many others (30 active days of 30) is ranked as tied, not just above or below them.
    pub fn rank(&self, value: f64) -> Rank {
        let v = quantize(value);
        let k = &self.knots;
        let last = k.len() - 1;
        // The share at or below a position between knots, interpolated linearly.
        let share = |n: usize| -> f64 {
            match n {
                0 => 0.0,
                n if n > last => 1.0,
                n => {
                    let (lo, hi) = (k[n - 1], k[n]);
                    let frac = if hi > lo { ((v - lo) / (hi - lo)).clamp(0.0, 1.0) } else { 1.0 };
                    ((n - 1) as f64 + frac) / last as f64
                }
            }
        };
        let below = share(k.partition_point(|&x| x < v));
        let at_or_below = share(k.partition_point(|&x| x <= v));
        Rank { below: below.min(at_or_below), above: 1.0 - at_or_below, scope: self.scope }
    }

    /// Knots, for tests and the docs.
    pub fn knots(&self) -> &[f64] {
        &self.knots
    }
}

/// The sketch's value grid: the value its bucket stands for (0 for values too small to index).
fn quantize(v: f64) -> f64 {
    let c = sketch_config();
    if v > c.min_possible() {
        c.value(c.key(v))
    } else if v < -c.min_possible() {
        -c.value(c.key(-v))
    } else {
        0.0
    }
}

fn sketch_config() -> Config {
    Config::defaults()
}

/// The frozen references scoring reads, per (relative signal, stage, segment).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct References {
    signals: Vec<Signal>,
    segments: usize,
    cells: Vec<Option<Arc<Reference>>>,
    /// Stream time they were frozen at (`Millis::MIN`: never).
    pub frozen_at: Millis,
}

impl References {
    /// The reference of `signal` for a customer of `stage` and `segment`, if there is one.
    pub fn get(&self, signal: Signal, stage: Stage, segment: u8) -> Option<&Reference> {
        let s = self.signals.iter().position(|&x| x == signal)?;
        let seg = (segment as usize).min(self.segments.saturating_sub(1));
        self.cells.get(cell(s, stage, seg, self.segments))?.as_deref()
    }
}

fn cell(signal: usize, stage: Stage, segment: usize, segments: usize) -> usize {
    (signal * Stage::ALL.len() + stage as usize) * segments + segment
}

/// A partition's reference population: the references in force and the sketches filling for
/// the next refresh. Part of the engine's state.
#[derive(Clone)]
pub struct Population {
    refs: Arc<References>,
    filling: Vec<DDSketch>,
    /// The next refresh: the first UTC midnight of stream time after the last one.
    next_refresh: Millis,
}

/// How a [`Population`] is written in a snapshot: sketches in DDSketch's portable encoding
/// (the one its Java and Go implementations share), not the crate's in-memory layout.
#[derive(Serialize, Deserialize)]
struct PopulationState {
    refs: References,
    filling: Vec<Vec<u8>>,
    next_refresh: Millis,
}

impl Population {
    /// An empty population for a scorecard's relative signals and segment count.
    pub fn new(signals: &[Signal], segments: usize) -> Population {
        let segments = segments.max(1);
        let refs = References {
            signals: signals.to_vec(),
            segments,
            cells: vec![None; signals.len() * Stage::ALL.len() * segments],
            frozen_at: Millis::MIN,
        };
        let filling = (0..refs.cells.len()).map(|_| DDSketch::new(sketch_config())).collect();
        Population { refs: Arc::new(refs), filling, next_refresh: Millis::MIN }
    }

    /// Whether this population is laid out for these signals and segments (a restored one may
    /// come from another scorecard).
    pub fn fits(&self, signals: &[Signal], segments: usize) -> bool {
        self.refs.signals == signals && self.refs.segments == segments.max(1)
    }

    pub fn references(&self) -> &Arc<References> {
        &self.refs
    }

    /// Whether any signal is scored relatively (if not, the population costs nothing).
    pub fn is_active(&self) -> bool {
        !self.refs.signals.is_empty()
    }

    /// Adds one customer's values (once per customer and day: the caller's rule).
    pub fn add(&mut self, signals: &Signals, stage: Stage, segment: u8) {
        let segments = self.refs.segments;
        let seg = (segment as usize).min(segments - 1);
        for (s, &signal) in self.refs.signals.iter().enumerate() {
            if let Some(v) = signals.get(signal).filter(|v| v.is_finite()) {
                self.filling[cell(s, stage, seg, segments)].add(v);
            }
        }
    }

    /// Whether stream time `t` has reached the next refresh.
    pub fn due(&self, t: Millis) -> bool {
        self.is_active() && t >= self.next_refresh
    }

    /// Freezes the filling sketches into the references in force and starts new ones; the next
    /// refresh is the first UTC midnight after `t`. The first call only sets that time: a
    /// history's first (partial) day is not a population yet.
    pub fn refresh(&mut self, t: Millis) {
        let first = self.next_refresh == Millis::MIN;
        self.next_refresh = (t.div_euclid(DAY_MS) + 1) * DAY_MS;
        if first {
            // What was added before the clock started is a partial day: it would under-represent the population.
            self.filling.iter_mut().for_each(|sketch| *sketch = DDSketch::new(sketch_config()));
            return;
        }
        let (n_signals, segments) = (self.refs.signals.len(), self.refs.segments);
        let mut cells = vec![None; self.filling.len()];
        for s in 0..n_signals {
            let mut all = DDSketch::new(sketch_config());
            let mut by_segment = Vec::with_capacity(segments);
            for seg in 0..segments {
                let mut merged = DDSketch::new(sketch_config());
                for stage in Stage::ALL {
                    let _ = merged.merge(&self.filling[cell(s, stage, seg, segments)]);
                }
                let _ = all.merge(&merged);
                by_segment.push(merged);
            }
            let all = Reference::from_sketch(&all, Scope::All).map(Arc::new);
            for (seg, merged) in by_segment.iter().enumerate() {
                let segment = Reference::from_sketch(merged, Scope::Segment).map(Arc::new);
                for stage in Stage::ALL {
                    let i = cell(s, stage, seg, segments);
                    cells[i] = Reference::from_sketch(&self.filling[i], Scope::StageAndSegment)
                        .map(Arc::new)
                        .or_else(|| segment.clone())
                        .or_else(|| all.clone());
                }
            }
        }
        self.refs = Arc::new(References { signals: self.refs.signals.clone(), segments, cells, frozen_at: t });
        for sketch in &mut self.filling {
            *sketch = DDSketch::new(sketch_config());
        }
    }

    /// Bytes for the snapshot (postcard).
    pub fn encode(&self) -> Vec<u8> {
        let state = PopulationState {
            refs: (*self.refs).clone(),
            filling: self.filling.iter().map(DDSketch::to_java_bytes).collect(),
            next_refresh: self.next_refresh,
        };
        postcard::to_allocvec(&state).expect("a population encodes")
    }

    /// A population [`Population::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Population, String> {
        let state: PopulationState = postcard::from_bytes(bytes).map_err(|e| format!("population: {e}"))?;
        let refs = state.refs;
        if refs.segments == 0 || refs.cells.len() != refs.signals.len() * Stage::ALL.len() * refs.segments {
            return Err("population: cells do not match its signals and segments".into());
        }
        if state.filling.len() != refs.cells.len() {
            return Err("population: sketches do not match its cells".into());
        }
        let ok = |r: &Reference| r.knots.len() == KNOTS && r.knots.windows(2).all(|w| w[0] <= w[1]);
        if !refs.cells.iter().flatten().all(|r| ok(r)) {
            return Err("population: a reference's knots are not 101 ascending values".into());
        }
        let filling = state
            .filling
            .iter()
            .map(|b| DDSketch::from_java_bytes(b).map_err(|e| format!("population: sketch: {e:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Population { refs: Arc::new(refs), filling, next_refresh: state.next_refresh })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals(v: f64) -> Signals {
        let mut s = Signals::default();
        s.set(Signal::Events30d, Some(v));
        s
    }

    fn population_of(values: impl IntoIterator<Item = (f64, Stage)>) -> Population {
        let mut p = Population::new(&[Signal::Events30d], 1);
        p.refresh(0);
        for (v, stage) in values {
            p.add(&signals(v), stage, 0);
        }
        p.refresh(DAY_MS);
        p
    }

    #[test]
    fn relative_points_follow_a_known_ranking() {
        // 1..=1000: a value's points are its percentile, within the sketch's 1 %.
        let p = population_of((1..=1000).map(|v| (v as f64, Stage::Mature)));
        let r = p.references().get(Signal::Events30d, Stage::Mature, 0).expect("a reference");
        assert_eq!((r.count, r.scope), (1000, Scope::StageAndSegment));
        for (v, want) in [(1.0, 0.0), (100.0, 10.0), (500.0, 50.0), (900.0, 90.0), (1000.0, 100.0)] {
            let got = r.rank(v).points(true);
            assert!((got - want).abs() <= 1.5, "{v}: {got} points, want about {want}");
            assert!((r.rank(v).points(false) - (100.0 - got)).abs() < 1e-9);
        }
        // Monotone: more is never fewer points.
        let pts: Vec<f64> = (0..1200).map(|v| r.rank(v as f64).points(true)).collect();
        assert!(pts.windows(2).all(|w| w[0] <= w[1] + 1e-9));
        assert_eq!(r.rank(-5.0).points(true), 0.0);
        assert_eq!(r.rank(1e9).points(true), 100.0);
    }

    #[test]
    fn a_tie_at_the_top_is_full_marks_at_the_bottom_none_and_between_its_mid_rank() {
        // 30 customers silent (0 active days), 40 at 10 days, 30 every day (30 of 30).
        let value = |i: usize| match i {
            0..30 => 0.0,
            30..70 => 10.0,
            _ => 30.0,
        };
        let p = population_of((0..100).map(|i| (value(i), Stage::Mature)));
        let r = p.references().get(Signal::Events30d, Stage::Mature, 0).unwrap();
        let top = r.rank(30.0);
        assert_eq!(top.above, 0.0, "nobody is above the maximum: {top:?}");
        assert!((top.below - 0.70).abs() < 0.02, "70 % are below: {top:?}");
        assert_eq!((top.points(true), top.points(false)), (100.0, 0.0), "no peer does better");
        assert_eq!((r.rank(0.0).points(true), r.rank(0.0).points(false)), (0.0, 100.0), "every peer does as well");
        let middle = r.rank(10.0);
        assert!((middle.below - 0.30).abs() < 0.02 && (middle.above - 0.30).abs() < 0.02, "{middle:?}");
        assert!((middle.points(true) - 50.0).abs() < 1.5, "the middle of its tie: {}", middle.points(true));
        // A whole population tied (everyone uses the product every day) is all full marks.
        let p = population_of((0..100).map(|_| (30.0, Stage::Mature)));
        assert_eq!(p.references().get(Signal::Events30d, Stage::Mature, 0).unwrap().rank(30.0).points(true), 100.0);
    }

    #[test]
    fn small_cells_fall_back_to_the_segment_then_nothing() {
        // 50 mature, 10 onboarding: onboarding is judged among the whole segment.
        let p = population_of(
            (0..50).map(|v| (v as f64, Stage::Mature)).chain((0..10).map(|v| (v as f64, Stage::Onboarding))),
        );
        let refs = p.references();
        assert_eq!(refs.get(Signal::Events30d, Stage::Mature, 0).unwrap().scope, Scope::StageAndSegment);
        let onboarding = refs.get(Signal::Events30d, Stage::Onboarding, 0).unwrap();
        assert_eq!((onboarding.scope, onboarding.count), (Scope::Segment, 60));
        assert!(refs.get(Signal::Events7d, Stage::Mature, 0).is_none(), "not a relative signal");
        let tiny = population_of((0..20).map(|v| (v as f64, Stage::Mature)));
        assert!(tiny.references().get(Signal::Events30d, Stage::Mature, 0).is_none(), "20 customers are too few");
    }

    #[test]
    fn the_first_refresh_only_starts_the_clock_and_a_refresh_starts_new_sketches() {
        let mut p = Population::new(&[Signal::Events30d], 1);
        for v in 0..100 {
            p.add(&signals(v as f64), Stage::Mature, 0);
        }
        p.refresh(5 * DAY_MS + 7);
        assert!(p.references().get(Signal::Events30d, Stage::Mature, 0).is_none(), "a partial first day");
        assert!(!p.due(6 * DAY_MS - 1) && p.due(6 * DAY_MS));
        for v in 0..100 {
            p.add(&signals(v as f64), Stage::Mature, 0);
        }
        p.refresh(6 * DAY_MS);
        assert_eq!(p.references().get(Signal::Events30d, Stage::Mature, 0).unwrap().count, 100);
        p.refresh(7 * DAY_MS);
        assert!(p.references().get(Signal::Events30d, Stage::Mature, 0).is_none(), "an empty day has no reference");
    }

    #[test]
    fn a_population_survives_encode_and_decode() {
        let mut p = population_of((0..500).map(|v| ((v % 37) as f64, Stage::ALL[v % 3])));
        for v in 0..77 {
            p.add(&signals(v as f64 * 1.5), Stage::Renewal, 0);
        }
        let back = Population::decode(&p.encode()).expect("decodes");
        assert_eq!(back.references(), p.references());
        assert_eq!(back.next_refresh, p.next_refresh);
        let (mut a, mut b) = (p.clone(), back);
        a.refresh(3 * DAY_MS);
        b.refresh(3 * DAY_MS);
        assert_eq!(a.references(), b.references(), "the filling sketches came back too");
        assert!(Population::decode(&[1, 2, 3]).is_err());
    }
}
