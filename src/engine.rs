//! The engine ties the stages together: event → customer state → score → rules → outputs.
//!
//! It is plain synchronous code with no I/O and no clock: time enters only as event timestamps
//! and as the argument of [`Engine::advance_to`]. One engine holds one input partition's
//! customers; the Kafka shell runs one per partition, `replay` runs one for everything.
//!
//! Time: the engine's *stream time* is the largest event time seen less the allowed lateness.
//! Each customer has one timer on a daily grid (offset by a hash of its id, so a partition's
//! customers are spread over the day instead of all waking at midnight). When stream time passes
//! a timer the customer is re-scored as of that instant, so a customer who goes silent still
//! decays to red and raises `gone_quiet` with no new event. Advancing costs one evaluation per
//! timer that comes due, never a scan of all customers.

use std::mem::MaybeUninit;
use std::sync::Arc;

use serde::Serialize;

use crate::event::{parse, parse_known, Event, EventKind, KnownTime, Millis, RejectReason, Rejection, Source, DAY_MS};
use crate::hash::event_id;
use crate::learn::{LearnConfig, Learner, Sighting};
use crate::memory::prefetch_bytes;
use crate::output::{round_to, Alert, ComponentOut, EmitReason, Output, ScoreChanged};
use crate::rules::{Firing, RuleId, RuleInput, Trigger};
use crate::score::{Band, ComponentScore, Population, Scorecard, Stage};
use crate::signal::SourceSet;
use crate::state::{ChurnStats, Customer, SignalParams, Store, Timers, HISTORY_DAYS};
use crate::window::{day_of, window_start};

/// Engine settings that are not part of the scorecard.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
/// Unknown keys are reported by the loader (`pipeline::config`), which lists them all.
#[serde(default)]
pub struct EngineConfig {
    /// How far behind the largest event time stream time runs, in seconds. Timers fire only once
    /// stream time passes them, so an event this late still lands before its customer is judged.
    pub allowed_lateness_secs: u32,
    /// A customer with no event for this many days is scored a last time and evicted. Must
    /// exceed the longest window (90 days) so silence is scored before it is forgotten.
    pub retention_days: u32,
    /// A usage event that changes nothing the score reads in steps (a new active day, user or
    /// feature) re-scores its customer only if the last score is at least this many seconds of
    /// event time old. Usage arrives in bursts of dozens of events per customer, each moving the
    /// score by a hair; this keeps the work per event small without delaying any step change.
    /// 0 re-scores on every event.
    pub usage_rescore_secs: u32,
    /// Longest input accepted, in bytes; longer ones are rejected as `too_large` before they are
    /// parsed. Events are ~200 bytes; the default (1 MiB) leaves room for producers' metadata.
    pub max_event_bytes: u32,
    /// How far ahead of the wall clock an event may be dated, in seconds; later ones are
    /// rejected as `in_future`. The shell gives the engine the wall clock
    /// ([`Engine::set_wall_clock`]); with none given there is no such bound. 0 turns it off.
    pub max_future_secs: u32,
    /// How far one event may move stream time ahead of the partition's latest event at once, in
    /// seconds. An event further ahead is applied to its customer, but stream time only follows
    /// once another event (another customer, or another time) within this distance of it
    /// confirms the leap: so no single message (a clock typo, a hostile `2099`) can fire every
    /// timer of the partition, evict every customer and make every later event `too_late`. A
    /// real gap (an outage) costs the first event after it one event's delay. 0 turns it off.
    pub max_lead_secs: u32,
    /// Most customers one engine (one input partition) holds; an event of a new customer beyond
    /// it is rejected as `capacity` (existing customers are still served, and a slot frees when a
    /// customer is evicted). Refusing, rather than evicting the least recently seen, keeps the
    /// state of real customers whole when a producer floods random ids. 0 means no bound.
    pub max_customers: u32,
    /// Online learning (`[engine.learn]`, see [`crate::learn`]); off by default.
    pub learn: LearnConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            allowed_lateness_secs: 3600,
            retention_days: 120,
            usage_rescore_secs: 3600,
            max_event_bytes: 1 << 20,
            max_future_secs: 86_400,
            max_lead_secs: 2 * 86_400,
            max_customers: 1_000_000,
            learn: LearnConfig::default(),
        }
    }
}

impl EngineConfig {
    /// Checks the settings; each problem as (key, reason).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if self.retention_days <= HISTORY_DAYS as u32 {
            issues.push((
                "retention_days".into(),
                format!("must exceed the longest window ({HISTORY_DAYS} days), got {}", self.retention_days),
            ));
        }
        if self.allowed_lateness_secs > 7 * 86_400 {
            issues.push(("allowed_lateness_secs".into(), "must be at most 7 days (604800)".into()));
        }
        if self.max_event_bytes < 256 {
            issues.push((
                "max_event_bytes".into(),
                format!("must be at least 256 (an event is ~200 bytes), got {}", self.max_event_bytes),
            ));
        }
        issues.extend(self.learn.validate().into_iter().map(|(k, r)| (format!("learn.{k}"), r)));
        issues
    }
}

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

    fn add(&mut self, band: Band, stage: Stage, segment: u8) {
        let i = Census::cell(band, stage, segment);
        if i >= self.cells.len() {
            self.cells.resize(i + 1, 0);
        }
        self.cells[i] += 1;
    }

    fn remove(&mut self, band: Band, stage: Stage, segment: u8) {
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

/// One customer's standing as of its last evaluation: what `/customers?band=` lists.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Standing {
    pub customer_id: String,
    pub score: f64,
    pub band: Band,
    pub stage: &'static str,
    pub segment: Arc<str>,
    #[serde(serialize_with = "crate::output::rfc3339")]
    pub scored_at: Millis,
}

/// A customer's score explained as of its last evaluation: what `/customers/{id}` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    #[serde(flatten)]
    pub standing: Standing,
    #[serde(serialize_with = "crate::output::rfc3339")]
    pub last_event: Millis,
    /// Score change over 7 days, when the customer was scored a week before.
    pub trend_7d: Option<f64>,
    pub components: Vec<ComponentOut>,
    pub top_drivers: Vec<Arc<str>>,
    pub caps: Vec<Arc<str>>,
    /// Rules that fired for this customer within their memory (the cooldown), latest first.
    pub recent_alerts: Vec<RecentAlert>,
    pub model_version: Arc<str>,
}

/// A rule that fired for a customer, and the day it last did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecentAlert {
    pub rule: &'static str,
    pub kind: &'static str,
    /// `YYYY-MM-DD`.
    pub last_fired: String,
}

/// The scoring engine for one partition of customers. `Clone` gives a consistent copy of the
/// whole state (for snapshots taken off the processing path, and for benchmarks).
#[derive(Clone)]
pub struct Engine {
    config: EngineConfig,
    scorecard: Arc<Scorecard>,
    store: Store,
    timers: Timers,
    max_event_time: Millis,
    stream_time: Millis,
    /// Events dated after this are `in_future` (the wall clock plus `max_future_secs`).
    accept_until: Millis,
    /// Leaps not yet confirmed: (customer hash, event time) of events more than `max_lead_secs`
    /// ahead of the partition (see [`EngineConfig::max_lead_secs`]); a few, oldest first.
    leads: Vec<(u64, Millis)>,
    /// The reference population of the scorecard's relative curves, refreshed daily.
    population: Population,
    /// The input sources this partition has received an event of (see [`SourceSet`]).
    sources: SourceSet,
    stats: EngineStats,
    /// Online learning, when `config.learn.enabled` (boxed: most engines have none).
    learner: Option<Box<Learner>>,
    // Scratch space reused across evaluations: no allocation per event.
    parts: Vec<ComponentScore>,
    caps: Vec<usize>,
    firings: Vec<Firing>,
}

impl Engine {
    pub fn new(scorecard: Arc<Scorecard>, config: EngineConfig) -> Engine {
        let population = Population::new(&scorecard.relative_signals, scorecard.segments.len());
        let learner = config.learn.enabled.then(|| Box::new(Learner::new(config.learn.clone())));
        Engine {
            learner,
            population,
            sources: SourceSet::default(),
            config,
            scorecard,
            store: Store::default(),
            timers: Timers::default(),
            max_event_time: Millis::MIN,
            stream_time: Millis::MIN,
            accept_until: Millis::MAX,
            leads: Vec::new(),
            stats: EngineStats::default(),
            parts: Vec::new(),
            caps: Vec::new(),
            firings: Vec::new(),
        }
    }

    pub fn scorecard(&self) -> &Arc<Scorecard> {
        &self.scorecard
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Stream time: the largest event time seen less the allowed lateness, or the latest time
    /// given to [`Engine::advance_to`]. `None` before anything happened.
    pub fn stream_time(&self) -> Option<Millis> {
        (self.stream_time != Millis::MIN).then_some(self.stream_time)
    }

    /// The latest event time that moved stream time: the end of the history this engine has
    /// accepted (an unconfirmed leap does not count). `None` before any event.
    pub fn latest_event_time(&self) -> Option<Millis> {
        (self.max_event_time != Millis::MIN).then_some(self.max_event_time)
    }

    /// Tells the engine the wall clock (Unix ms): events dated more than `max_future_secs` after
    /// it are then rejected as `in_future`. The service calls it before each batch; `replay`
    /// once, with the time it starts. Time stays an argument: the engine reads no clock.
    pub fn set_wall_clock(&mut self, now: Millis) {
        if self.config.max_future_secs > 0 {
            self.accept_until = now.saturating_add(self.config.max_future_secs as Millis * 1000);
        }
    }

    /// The input sources this partition has received an event of.
    pub fn sources(&self) -> SourceSet {
        self.sources
    }

    /// The reference population relative curves rank customers in (see [`crate::score::population`]).
    pub fn population(&self) -> &Population {
        &self.population
    }

    pub fn customer_count(&self) -> usize {
        self.store.len()
    }

    pub fn customer(&self, id: &str) -> Option<&Customer> {
        self.store.get(self.store.find(id)?)
    }

    pub fn customers(&self) -> impl Iterator<Item = &Customer> + '_ {
        self.store.iter()
    }

    /// The engine's state for a snapshot, in [`STATE_SECTIONS`] sections encoded in parallel
    /// (postcard): the first starts with the stream clock, each holds its customer count and
    /// then its customers. Timers, the index and statistics are not written:
    /// [`Engine::from_state`] rebuilds the first two from the customers, and the statistics are
    /// process counters. Sections let both encoding (the part of a snapshot that pauses
    /// processing) and decoding use every core. Unpacked: each section is one plain frame (see
    /// [`Engine::encode_state_packed`]).
    pub fn encode_state(&self) -> Vec<Vec<u8>> {
        self.encode_state_packed(&|raw, out| out.extend_from_slice(raw), usize::MAX).0
    }

    /// [`Engine::encode_state`], with each section cut into frames of about `frame_bytes`
    /// (always between two customers) that `pack` appends to the section, e.g. compressed.
    /// Only one frame per section is ever uncompressed in memory, so a snapshot does not
    /// allocate (and fault in) a second copy of the whole state before compressing it. Returns
    /// the packed sections and the state's size before packing.
    pub fn encode_state_packed(&self, pack: Pack<'_>, frame_bytes: usize) -> (Vec<Vec<u8>>, u64) {
        let slots = self.store.slots();
        let per = slots.len().div_ceil(STATE_SECTIONS).max(1);
        let mut parts: Vec<&[Option<Customer>]> = slots.chunks(per).collect();
        parts.resize(STATE_SECTIONS, &[]);
        let learner = self.learner.as_ref().map(|l| l.encode()).unwrap_or_default();
        let clock =
            (self.max_event_time, self.stream_time, &self.leads, self.population.encode(), self.sources, learner);
        let sections = crate::parallel::map(&parts, |i, part| {
            // Capacity is only address space until written: generous, so it never regrows.
            let mut out = Vec::with_capacity(part.len() * 640 + 64);
            let mut raw = Vec::with_capacity(frame_bytes.min(part.len() * 640 + 64));
            let mut total = 0u64;
            let mut flush = |raw: &mut Vec<u8>, out: &mut Vec<u8>| {
                total += raw.len() as u64;
                pack(raw, out);
                raw.clear();
            };
            if i == 0 {
                append_postcard(&clock, &mut raw);
            }
            append_postcard(&(part.iter().flatten().count() as u64), &mut raw);
            for c in part.iter().flatten() {
                append_postcard(c, &mut raw);
                if raw.len() >= frame_bytes {
                    flush(&mut raw, &mut out);
                }
            }
            if !raw.is_empty() {
                flush(&mut raw, &mut out);
            }
            (out, total)
        });
        let total = sections.iter().map(|(_, n)| n).sum();
        (sections.into_iter().map(|(s, _)| s).collect(), total)
    }

    /// An engine holding the state [`Engine::encode_state`] wrote, scored with `scorecard` (which
    /// may be a newer model than the one the state was built under: segments are re-derived
    /// from the plans, and the next evaluation of each customer uses the new model).
    pub fn from_state(scorecard: Arc<Scorecard>, config: EngineConfig, sections: &[Vec<u8>]) -> Result<Engine, String> {
        let sections: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
        Engine::from_state_packed(scorecard, config, &sections, &|packed, raw| {
            raw.clear();
            raw.extend_from_slice(packed);
            Ok(packed.len())
        })
    }

    /// [`Engine::from_state`] for sections [`Engine::encode_state_packed`] wrote: `unpack`
    /// replaces its buffer's content with the frame at the start of what it is given and returns
    /// the packed bytes that frame took. Each section is unpacked frame by frame into one small
    /// buffer and decoded from there.
    pub fn from_state_packed(
        scorecard: Arc<Scorecard>,
        config: EngineConfig,
        sections: &[&[u8]],
        unpack: Unpack<'_>,
    ) -> Result<Engine, String> {
        if sections.is_empty() {
            return Err("no state sections".into());
        }
        // The first frame of each section: the stream clock (first section) and the count.
        let mut clock: Clock = (Millis::MIN, Millis::MIN, Vec::new(), Vec::new(), SourceSet::default(), Vec::new());
        let mut bodies = Vec::with_capacity(sections.len());
        for (i, packed) in sections.iter().enumerate() {
            if packed.is_empty() {
                return Err(format!("section {i} is empty"));
            }
            let mut raw = Vec::new();
            let used = unpack(packed, &mut raw).map_err(|e| format!("section {i}: {e}"))?;
            let mut at: &[u8] = &raw;
            if i == 0 {
                let (c, rest) = postcard::take_from_bytes(at).map_err(|e| format!("stream clock: {e}"))?;
                (clock, at) = (c, rest);
            }
            let (count, rest): (u64, &[u8]) =
                postcard::take_from_bytes(at).map_err(|e| format!("section {i}: customer count: {e}"))?;
            // Not trusting a count for an allocation: a customer takes at least 16 bytes, and
            // packing shrinks nothing more than 255 times.
            if count > (packed.len() as u64).saturating_mul(255) / 16 {
                return Err(format!("section {i}: {count} customers in {} bytes", packed.len()));
            }
            let start = raw.len() - rest.len();
            bodies.push((count as usize, raw, start, &packed[used..]));
        }
        let (max_event_time, stream_time, mut leads, population, sources, learner) = clock;
        leads.truncate(MAX_LEADS);
        // The learner's state comes back only where learning is on; a scorecard it promoted
        // comes back only over the configured scorecard it replaced.
        let learner = match (config.learn.enabled, learner.is_empty()) {
            (false, _) => None,
            (true, true) => Some(Box::new(Learner::new(config.learn.clone()))),
            (true, false) => Some(Box::new(Learner::decode(config.learn.clone(), &learner)?)),
        };
        let scorecard = match learner.as_ref().and_then(|l| l.promoted_for(&scorecard.version)) {
            Some(text) => Arc::new(Scorecard::from_toml(text, "(promoted)").map_err(|e| format!("learner: {e}"))?),
            None => scorecard,
        };
        // A population kept for another scorecard's relative signals or segments is dropped:
        // the new one fills from the next evaluations and serves from the next refresh.
        let population = Population::decode(&population)?;
        let population = if population.fits(&scorecard.relative_signals, scorecard.segments.len()) {
            population
        } else {
            Population::new(&scorecard.relative_signals, scorecard.segments.len())
        };
        let total: usize = bodies.iter().map(|b| b.0).sum();
        let mut slots: Vec<Option<Customer>> = Vec::with_capacity(total);
        crate::state::advise_huge_pages(&slots);
        // Each section decodes straight into its own part of the slots, so the first touch of
        // the memory (page faults: most of a restore's cost) happens on every core at once.
        let mut parts: Vec<SectionDecode<'_>> = Vec::with_capacity(bodies.len());
        let mut free = &mut slots.spare_capacity_mut()[..total];
        for (count, raw, start, rest) in bodies {
            let (part, others) = free.split_at_mut(count);
            parts.push((part, raw, start, rest));
            free = others;
        }
        let decoded = crate::parallel::map_mut(&mut parts, |i, (part, raw, at, rest)| {
            let mut written = 0;
            let result = (|| {
                let count = part.len();
                for (j, slot) in part.iter_mut().enumerate() {
                    while *at == raw.len() {
                        if rest.is_empty() {
                            return Err(format!("section {i}: ends after {j} of {count} customers"));
                        }
                        let used = unpack(rest, raw).map_err(|e| format!("section {i}: {e}"))?;
                        (*at, *rest) = (0, &rest[used..]);
                    }
                    let (mut c, left): (Customer, &[u8]) = postcard::take_from_bytes(&raw[*at..])
                        .map_err(|e| format!("section {i}: customer {j}: {e}"))?;
                    *at = raw.len() - left.len();
                    c.id_hash = crate::hash::hash64(&c.id);
                    c.segment = scorecard.segment_of(c.plan.as_deref());
                    if c.score.segment as usize >= scorecard.segments.len() {
                        c.score.segment = c.segment; // a scorecard with fewer segments than before
                    }
                    slot.write(Some(c));
                    written += 1;
                }
                match raw.len() - *at + rest.len() {
                    0 => Ok(()),
                    n => Err(format!("section {i}: {n} bytes after the last customer")),
                }
            })();
            if result.is_err() {
                for slot in &mut part[..written] {
                    // SAFETY: the first `written` slots of this part were initialised above and
                    // are dropped once, here; the vector's length never covers them.
                    unsafe { slot.assume_init_drop() };
                }
            }
            (written, result)
        });
        if decoded.iter().any(|(_, r)| r.is_err()) {
            let mut first_error = None;
            for (k, (written, result)) in decoded.into_iter().enumerate() {
                match result {
                    Ok(()) => {
                        for slot in &mut parts[k].0[..written] {
                            // SAFETY: as above: initialised by a section that succeeded, dropped once.
                            unsafe { slot.assume_init_drop() };
                        }
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            return Err(first_error.expect("a section failed"));
        }
        drop(parts);
        // SAFETY: every section succeeded, so each of the first `total` slots was written once.
        unsafe { slots.set_len(total) };
        let mut engine = Engine::new(scorecard, config);
        engine.max_event_time = max_event_time;
        engine.stream_time = stream_time;
        engine.leads = leads;
        engine.population = population;
        engine.sources = sources;
        engine.learner = learner;
        // The index and the timers are built side by side: both only read the slots.
        let (index, timers) = std::thread::scope(|scope| {
            let timers = scope.spawn(|| {
                let mut timers = Timers::default();
                for (slot, c) in slots.iter().enumerate() {
                    if let Some(c) = c.as_ref().filter(|c| c.next_due != Millis::MAX) {
                        timers.schedule(c.next_due, c.id_hash, slot as u32);
                    }
                }
                timers
            });
            let index = Store::index_of(&slots);
            (index, timers.join().expect("the timer rebuild does not panic"))
        });
        let index = index.map_err(|id| format!("customer {id} appears twice"))?;
        engine.store = Store::from_parts(slots, index);
        engine.timers = timers;
        engine.recount_census();
        Ok(engine)
    }

    /// Approximate bytes of state: customers, index and timers.
    pub fn memory_bytes(&self) -> usize {
        self.store.iter().map(Customer::memory_bytes).sum::<usize>()
            + self.store.overhead_bytes()
            + self.timers.memory_bytes()
    }

    /// Parses and applies one raw input. `topic` is the topic it arrived on, if known.
    pub fn apply_bytes(
        &mut self,
        bytes: &[u8],
        topic: Option<Source>,
        out: &mut Vec<Output>,
    ) -> Result<Outcome, Rejection> {
        let result =
            self.check_size(bytes).and_then(|()| parse(bytes, topic)).and_then(|event| self.apply_event(&event, out));
        if let Err(r) = &result {
            // apply_event counted too_late itself.
            if r.reason != RejectReason::TooLate {
                self.stats.rejected[r.reason as usize] += 1;
            }
        }
        result
    }

    /// Parses and applies a batch of raw inputs in order, pushing one result per input to
    /// `results`. Same outcome as calling [`Engine::apply_bytes`] on each in turn, but faster
    /// on large populations: every input is parsed first and the memory of the customers it
    /// touches is prefetched, so the cache misses of a batch overlap instead of coming one at a
    /// time (with 100,000 customers, state lookups, not arithmetic, dominate the cost of an event).
    /// Each input may carry the event time its shell read to order it ([`KnownTime`]), which
    /// spares parsing the timestamp twice.
    pub fn apply_batch(
        &mut self,
        inputs: &[(&[u8], Option<Source>, Option<KnownTime>)],
        results: &mut Vec<Result<Outcome, Rejection>>,
        out: &mut Vec<Output>,
    ) {
        // The inputs' bytes are fetched a few inputs ahead of the parse: in the Kafka shell they
        // were copied by another thread moments ago, so they are not in this core's cache, and
        // records lie scattered where no hardware prefetcher guesses them (a quarter of the
        // parse's time was that wait).
        const AHEAD: usize = 8;
        for (bytes, _, _) in inputs.iter().take(AHEAD) {
            prefetch_bytes(bytes.as_ptr(), bytes.len());
        }
        let parsed: Vec<Result<Event<'_>, Rejection>> = inputs
            .iter()
            .enumerate()
            .map(|(i, (b, topic, known))| {
                if let Some((ahead, _, _)) = inputs.get(i + AHEAD) {
                    prefetch_bytes(ahead.as_ptr(), ahead.len());
                }
                self.check_size(b).and_then(|()| parse_known(b, *topic, *known))
            })
            .collect();
        // The customers whose timers the batch's events will fire, as stream time moves on.
        let mut due: Vec<(u32, Millis, Option<&EventKind<'_>>)> = Vec::new();
        let batch_end = parsed.iter().filter_map(|p| p.as_ref().ok().map(|e| e.timestamp)).max();
        if let Some(t) = batch_end.map(|end| end.max(self.max_event_time) - self.lateness()) {
            if t > self.stream_time {
                self.timers.for_each_due(t, |slot| {
                    if due.len() < MAX_PREFETCHED_TIMERS {
                        due.push((slot, t, None));
                    }
                });
            }
        }
        for &(slot, _, _) in &due {
            self.store.prefetch(slot);
        }
        // Index lookups that do not touch the customers, so their misses overlap; the id is
        // checked when the event is applied.
        let mut hints = Vec::with_capacity(parsed.len());
        for p in &parsed {
            let slot = p.as_ref().ok().and_then(|event| {
                let slot = self.store.candidate(&event.customer_id)?;
                self.store.prefetch(slot);
                due.push((slot, event.timestamp, Some(&event.kind)));
                Some(slot)
            });
            hints.push(slot);
        }
        // Their heap data, now that their structs (which point to it) are on the way. The
        // usage windows a re-score sums only for what will likely be re-scored: a timer, a
        // support or billing event, or usage that starts a day or comes an interval after the
        // last score (most usage events are none of these).
        let rescore_after = self.rescore_after();
        for &(slot, ts, event) in &due {
            if let Some(c) = self.store.get(slot) {
                let rescore = match event {
                    Some(EventKind::FeatureUsed { .. } | EventKind::Session { .. }) => {
                        day_of(ts) > c.usage.head() || ts.saturating_sub(c.score.last_eval) >= rescore_after
                    }
                    _ => true,
                };
                c.prefetch(day_of(ts), event, rescore);
            }
        }
        for (p, hint) in parsed.into_iter().zip(hints) {
            let result = p.and_then(|event| self.apply_event_with_hint(&event, hint, out));
            if let Err(r) = &result {
                if r.reason != RejectReason::TooLate {
                    self.stats.rejected[r.reason as usize] += 1;
                }
            }
            results.push(result);
        }
    }

    /// Applies one event, appending any outputs it causes (including those of timers that stream
    /// time passes on the way) to `out`.
    pub fn apply_event(&mut self, event: &Event<'_>, out: &mut Vec<Output>) -> Result<Outcome, Rejection> {
        self.apply_event_with_hint(event, None, out)
    }

    /// [`Engine::apply_event`] with the slot a batch lookup found for the customer; checked
    /// before use (timers may have evicted the customer since), so a stale hint costs nothing.
    fn apply_event_with_hint(
        &mut self,
        event: &Event<'_>,
        hint: Option<u32>,
        out: &mut Vec<Output>,
    ) -> Result<Outcome, Rejection> {
        let ts = event.timestamp;
        let rescore_after = self.rescore_after();
        let horizon = HISTORY_DAYS as Millis * DAY_MS;
        if self.stream_time != Millis::MIN && ts < self.stream_time - horizon {
            return Err(self.too_late(ts));
        }
        if ts > self.accept_until {
            return Err(Rejection::new(
                RejectReason::InFuture,
                Some("timestamp"),
                format!(
                    "event time {} is more than max_future_secs ({}) ahead of the wall clock",
                    crate::event::format_rfc3339(ts),
                    self.config.max_future_secs
                ),
            ));
        }
        self.observe(ts, &event.customer_id, out);

        let hinted = hint.filter(|&s| self.store.get(s).is_some_and(|c| c.id == *event.customer_id));
        let slot = match hinted.or_else(|| self.store.find(&event.customer_id)) {
            Some(slot) => slot,
            None => {
                let max = self.config.max_customers as usize;
                if max > 0 && self.store.len() >= max {
                    return Err(Rejection::new(
                        RejectReason::Capacity,
                        Some("customer_id"),
                        format!("a new customer, and this partition already holds max_customers ({max})"),
                    ));
                }
                let mut customer = Customer::new(&event.customer_id, ts);
                customer.next_due = first_timer(customer.id_hash, ts);
                let (due, hash) = (customer.next_due, customer.id_hash);
                let slot = self.store.insert(customer);
                self.timers.schedule(due, hash, slot);
                slot
            }
        };
        let customer = self.store.get_mut(slot).expect("slot just found");
        if customer.too_late(ts) {
            return Err(self.too_late(ts));
        }
        if !customer.remember_id(&event.event_id) {
            self.stats.duplicates += 1;
            return Ok(Outcome::Duplicate);
        }
        if matches!(event.kind, EventKind::SubscriptionCancelled { .. }) && customer.cancel_at.is_none() {
            // Read before the cancellation is applied and scored: how it stood before churning.
            self.stats.churn.record(&customer.churn_lookback(ts, self.scorecard.rules.warmup_days));
            if let Some(learner) = self.learner.as_mut() {
                learner.cancelled(customer.id_hash, ts);
            }
        }
        let step = customer.apply(event);
        if matches!(event.kind, EventKind::SubscriptionStarted { .. } | EventKind::SubscriptionChanged { .. }) {
            customer.segment = self.scorecard.segment_of(customer.plan.as_deref());
        }
        self.stats.applied += 1;
        self.sources.insert(event.kind.source());
        let amount = match &event.kind {
            EventKind::InvoicePaid(i) | EventKind::PaymentFailed(i) | EventKind::InvoiceOverdue(i) => Some(i.amount),
            _ => None,
        };
        let now = ts.max(customer.score.last_eval);
        if step || now - customer.score.last_eval >= rescore_after {
            self.evaluate(slot, now, Trigger::Event { type_name: event.kind.type_name(), amount }, out);
        }
        Ok(Outcome::Applied)
    }

    /// `too_large` for an input over `max_event_bytes`, before any parser reads it.
    fn check_size(&self, bytes: &[u8]) -> Result<(), Rejection> {
        let max = self.config.max_event_bytes as usize;
        if bytes.len() > max {
            return Err(Rejection::new(
                RejectReason::TooLarge,
                None,
                format!("{} bytes, more than max_event_bytes ({max})", bytes.len()),
            ));
        }
        Ok(())
    }

    fn too_late(&mut self, ts: Millis) -> Rejection {
        self.stats.rejected[RejectReason::TooLate as usize] += 1;
        Rejection::new(
            RejectReason::TooLate,
            Some("timestamp"),
            format!(
                "event time {} is more than {HISTORY_DAYS} days behind stream time {}",
                crate::event::format_rfc3339(ts),
                crate::event::format_rfc3339(self.stream_time.max(self.max_event_time - self.lateness())),
            ),
        )
    }

    fn lateness(&self) -> Millis {
        self.config.allowed_lateness_secs as Millis * 1000
    }

    /// How long after its last score plain usage re-scores a customer (`usage_rescore_secs`).
    fn rescore_after(&self) -> Millis {
        self.config.usage_rescore_secs as Millis * 1000
    }

    /// Moves the largest event time seen, and with it stream time, unless `ts` is a leap no
    /// other event has confirmed yet (see [`EngineConfig::max_lead_secs`]).
    fn observe(&mut self, ts: Millis, customer_id: &str, out: &mut Vec<Output>) {
        if ts <= self.max_event_time {
            return;
        }
        let lead = self.config.max_lead_secs as Millis * 1000;
        let mut to = ts;
        if lead > 0 && self.max_event_time != Millis::MIN {
            // Idle advance moves stream time without events: the partition is there too.
            let frontier = self.max_event_time.max(self.stream_time.saturating_add(self.lateness()));
            if ts > frontier.saturating_add(lead) {
                let hash = crate::hash::hash64(customer_id);
                // A redelivered copy of the same event (same customer, same time) confirms nothing.
                let other = self.leads.iter().position(|&(h, t)| (h != hash || t != ts) && (t - ts).abs() <= lead);
                match other {
                    Some(i) => to = ts.max(self.leads[i].1),
                    None => {
                        if self.leads.len() == MAX_LEADS {
                            self.leads.remove(0);
                        }
                        self.leads.push((hash, ts));
                        self.stats.held_leaps += 1;
                        return;
                    }
                }
            }
        }
        self.max_event_time = to;
        if !self.leads.is_empty() {
            self.leads.retain(|&(_, t)| t > to.saturating_add(lead));
        }
        self.advance_to(to - self.lateness(), out);
    }

    /// Moves stream time forward to `t` (never back), re-evaluating every customer whose timer
    /// comes due on the way, in due order. The shell calls this with the wall clock (less the
    /// lateness) when input is idle, so silence is noticed even when nothing arrives.
    pub fn advance_to(&mut self, t: Millis, out: &mut Vec<Output>) {
        if t <= self.stream_time {
            return;
        }
        // The learner's instants on the way: timers up to each fire first, so an observation
        // sees every customer as the service had scored it then.
        // With no customer left there is nothing to observe: the schedule skips ahead on its
        // grid, so advancing far (the end of a replay) costs nothing.
        while let Some(at) = self.learner.as_mut().and_then(|l| l.due(t)) {
            self.run_timers(at, out);
            if self.store.is_empty() {
                self.learner.as_mut().expect("learning").skip_to(t);
                break;
            }
            self.learn_at(at);
        }
        self.run_timers(t, out);
        if self.population.due(t) {
            self.population.refresh(t);
        }
    }

    /// Fires every timer due by `t` in due order, with stream time at `t`.
    fn run_timers(&mut self, t: Millis, out: &mut Vec<Output>) {
        self.stream_time = self.stream_time.max(t);
        let retention = self.config.retention_days as Millis * DAY_MS;
        while let Some((due, hash, slot)) = self.timers.pop_due(t) {
            if self.population.due(due) {
                self.population.refresh(due);
            }
            let Some(c) = self.store.get_mut(slot) else { continue };
            if c.id_hash != hash || c.next_due != due {
                continue; // stale entry: the customer left, or its slot was reused
            }
            if day_of(due) % 7 == 0 {
                c.prune(day_of(due)); // weekly is enough: windows never read what has aged out
            }
            let last = c.cancel_at.is_some_and(|at| at <= due) || due - c.last_event >= retention;
            let now = due.max(c.score.last_eval);
            self.evaluate(slot, now, if last { Trigger::Final } else { Trigger::Timer }, out);
            if last {
                if let Some(gone) = self.store.remove(slot) {
                    if let (Some(band), Some(stage)) = (gone.score.band, gone.score.stage) {
                        self.stats.census.remove(band, stage, gone.score.segment);
                    }
                }
                self.stats.evicted += 1;
            } else {
                let c = self.store.get_mut(slot).expect("still there");
                c.next_due = due + DAY_MS;
                self.timers.schedule(c.next_due, hash, slot);
            }
        }
    }

    /// The learner's work at `at`: observe the live customers (on an observation instant),
    /// label what the horizon has passed, refit when due, and promote what it returns.
    fn learn_at(&mut self, at: Millis) {
        let Some(learner) = self.learner.as_mut() else { return };
        if learner.observes_at(at) {
            let sc: &Scorecard = &self.scorecard;
            let params = SignalParams {
                core_feature_keys: &sc.core_feature_keys,
                falling_usage_pct: sc.falling_usage_pct,
                sources: self.sources,
            };
            let refs = self.population.references().clone();
            let (parts, caps) = (&mut self.parts, &mut self.caps);
            let sightings = self
                .store
                .iter()
                .filter(|c| learner.wants(at, c.first_seen, c.cancel_at.is_some()))
                .map(|c| {
                    let signals = c.signals(at, &params);
                    let (stage, raw) = sc.evaluate(&signals, c.segment, &refs, parts, caps);
                    Sighting::new(c.id_hash, &signals, (raw * 10.0).round() / 10.0, c.segment, stage)
                })
                .collect();
            learner.observe(at, refs, sightings);
        }
        learner.label(at);
        if let Some(sc) = learner.refit(at, &self.scorecard) {
            self.promote(Arc::new(sc));
        }
    }

    /// Scores with `sc` from each customer's next evaluation on (a promoted candidate).
    fn promote(&mut self, sc: Arc<Scorecard>) {
        if !self.population.fits(&sc.relative_signals, sc.segments.len()) {
            self.population = Population::new(&sc.relative_signals, sc.segments.len());
        }
        for c in self.store.iter_mut() {
            c.segment = sc.segment_of(c.plan.as_deref());
        }
        self.scorecard = sc;
    }

    /// The learner, when learning is on.
    pub fn learner(&self) -> Option<&Learner> {
        self.learner.as_deref()
    }

    /// Scores one customer as of `now` and appends what that changes: a `score_changed` when
    /// the band changed or the score moved enough, and any alerts.
    fn evaluate(&mut self, slot: u32, now: Millis, trigger: Trigger, out: &mut Vec<Output>) {
        let Engine { scorecard, store, parts, caps, firings, stats, population, sources, .. } = self;
        let sc: &Scorecard = scorecard;
        let c = store.get_mut(slot).expect("evaluated customers exist");
        stats.evaluations += 1;

        let params = SignalParams {
            core_feature_keys: &sc.core_feature_keys,
            falling_usage_pct: sc.falling_usage_pct,
            sources: *sources,
        };
        let signals = c.signals(now, &params);
        let (stage, raw) = sc.evaluate(&signals, c.segment, population.references(), parts, caps);
        // Each customer joins the filling reference once per UTC day: its first evaluation.
        if population.is_active() && (c.score.last_eval == Millis::MIN || day_of(c.score.last_eval) != day_of(now)) {
            population.add(&signals, stage, c.segment);
        }
        let tenths = (raw * 10.0).round() as u16;
        let score = tenths as f64 / 10.0;
        let previous_band = c.score.band;
        let band = sc.bands.classify(score, previous_band);
        let today = day_of(now);

        let history = &c.score.history;
        let max_within = |days: u32| {
            history
                .fold(window_start(today, days + 1), today, None, |m: Option<u16>, v| {
                    if *v == 0 {
                        m
                    } else {
                        Some(m.map_or(*v - 1, |m| m.max(*v - 1)))
                    }
                })
                .map(|t| t as f64 / 10.0)
        };
        let week_ago = c.score.score_on(today.saturating_sub(7));
        firings.clear();
        let input = RuleInput {
            signals: &signals,
            score,
            band,
            previous_band,
            max_score_within: &max_within,
            ever_active: c.last_usage.is_some(),
            observed_days: ((now - c.first_seen) / DAY_MS) as u32,
            trigger,
            today,
            cancelled: c.cancel_at.is_some(),
        };
        sc.rules.evaluate(&input, &mut c.score.last_fired, firings);

        let reason = match c.score.last_emitted_tenths {
            _ if trigger == Trigger::Final => Some(EmitReason::Final),
            None => Some(EmitReason::FirstScore),
            Some(_) if previous_band != Some(band) => Some(EmitReason::BandChanged),
            Some(last) if (tenths as f64 - last as f64).abs() >= sc.min_score_delta * 10.0 => {
                Some(EmitReason::ScoreMoved)
            }
            Some(_) => None,
        };

        if let Some(reason) = reason {
            let components = component_outs(sc, stage, c.segment, parts);
            let ts = now.to_string();
            out.push(Output::ScoreChanged(ScoreChanged {
                kind: (),
                event_id: event_id(&[c.id.as_bytes(), b"score_changed", ts.as_bytes(), &tenths.to_le_bytes()]),
                customer_id: c.id.to_string(),
                timestamp: now,
                score,
                previous_score: c.score.last_emitted_tenths.map(|t| t as f64 / 10.0),
                band,
                previous_band,
                trend_7d: week_ago.map(|w| round_to(score - w, 1)),
                stage: stage.as_str(),
                segment: sc.segments[c.segment as usize].name.clone(),
                components,
                top_drivers: top_drivers(sc, stage, c.segment, parts),
                caps: caps.iter().map(|&i| sc.caps[i].name.clone()).collect(),
                model_version: sc.version.clone(),
                churn_probability: sc.probability.map(|p| p.of(score)),
                churn_horizon_days: sc.probability.map(|p| p.horizon_days),
                reason,
            }));
            c.score.last_emitted_tenths = Some(tenths);
            stats.score_changes += 1;
        }

        for f in firings.drain(..) {
            let rule = &sc.rules.rules[f.rule as usize];
            let ts = now.to_string();
            let mut dedupe_key = format!("{}/{}", c.id, f.rule.as_str());
            if f.rule == crate::rules::RuleId::BandDowngrade {
                dedupe_key.push('/');
                dedupe_key.push_str(band.as_str());
            }
            out.push(Output::Alert(Alert {
                kind_tag: (),
                event_id: event_id(&[c.id.as_bytes(), b"alert", f.rule.as_str().as_bytes(), ts.as_bytes()]),
                customer_id: c.id.to_string(),
                timestamp: now,
                rule: f.rule,
                kind: f.rule.kind(),
                severity: f.severity,
                message: f.message,
                score,
                band,
                evidence: f.evidence,
                playbook: rule.playbook.clone(),
                dedupe_key,
                model_version: sc.version.clone(),
            }));
            stats.alerts += 1;
        }

        if let (Some(was), Some(stage)) = (c.score.band, c.score.stage) {
            stats.census.remove(was, stage, c.score.segment);
        }
        stats.census.add(band, stage, c.segment);
        c.score.stage = Some(stage);
        c.score.segment = c.segment;
        c.score.band = Some(band);
        c.score.bands.set(today, band);
        if let Some(b) = c.score.history.at_mut(today) {
            *b = tenths + 1;
        }
        c.score.last_eval = now;
    }
}

/// Queries for the HTTP API: read-only, and they never move time (the clock is the shell's).
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

    /// `id`'s score explained as of its last evaluation, recomputed from its state (scoring is
    /// a pure function of state and time, so this equals what that evaluation computed).
    /// `None` when the customer is unknown here or not scored yet.
    pub fn explain(&self, id: &str) -> Option<Explanation> {
        let sc: &Scorecard = &self.scorecard;
        let c = self.customer(id)?;
        let (band, score) = (c.score.band?, c.score.current()?);
        let now = c.score.last_eval;
        let params = SignalParams {
            core_feature_keys: &sc.core_feature_keys,
            falling_usage_pct: sc.falling_usage_pct,
            sources: self.sources,
        };
        let signals = c.signals(now, &params);
        let (mut parts, mut caps) = (Vec::new(), Vec::new());
        let segment = c.score.segment;
        let (stage, _) = sc.evaluate(&signals, segment, self.population.references(), &mut parts, &mut caps);
        let mut recent_alerts: Vec<(u32, RecentAlert)> = RuleId::ALL
            .iter()
            .zip(c.score.last_fired)
            .filter(|(_, day)| *day > 0)
            .map(|(rule, day)| {
                let date = crate::event::format_rfc3339(day as Millis * DAY_MS)[..10].to_string();
                (day, RecentAlert { rule: rule.as_str(), kind: rule.kind().as_str(), last_fired: date })
            })
            .collect();
        recent_alerts.sort_by_key(|(day, _)| std::cmp::Reverse(*day));
        Some(Explanation {
            standing: Standing {
                customer_id: c.id.to_string(),
                score,
                band,
                stage: stage.as_str(),
                segment: sc.segments[segment as usize].name.clone(),
                scored_at: now,
            },
            last_event: c.last_event,
            trend_7d: c.score.score_on(day_of(now).saturating_sub(7)).map(|w| round_to(score - w, 1)),
            components: component_outs(sc, stage, segment, &parts),
            top_drivers: top_drivers(sc, stage, segment, &parts),
            caps: caps.iter().map(|&i| sc.caps[i].name.clone()).collect(),
            recent_alerts: recent_alerts.into_iter().map(|(_, a)| a).collect(),
            model_version: sc.version.clone(),
        })
    }

    /// Up to `limit` scored customers (of `band`, or any), worst score first (ties by id).
    /// One pass with a bounded heap: O(customers × log limit), no copy of the population.
    pub fn worst(&self, band: Option<Band>, limit: usize) -> Vec<Standing> {
        use std::collections::BinaryHeap;
        if limit == 0 {
            return Vec::new();
        }
        // Max-heap on (score tenths, id): the root is the best of the worst so far.
        let mut heap: BinaryHeap<(u16, &str)> = BinaryHeap::with_capacity(limit + 1);
        for c in self.store.iter() {
            let (Some(b), Some(score)) = (c.score.band, c.score.current()) else { continue };
            if band.is_some_and(|want| want != b) {
                continue;
            }
            let key = ((score * 10.0).round() as u16, c.id.as_str());
            if heap.len() < limit {
                heap.push(key);
            } else if heap.peek().is_some_and(|top| key < *top) {
                heap.pop();
                heap.push(key);
            }
        }
        let sc: &Scorecard = &self.scorecard;
        heap.into_sorted_vec()
            .into_iter()
            .filter_map(|(_, id)| {
                let c = self.customer(id)?;
                Some(Standing {
                    customer_id: c.id.to_string(),
                    score: c.score.current()?,
                    band: c.score.band?,
                    stage: c.score.stage?.as_str(),
                    segment: sc.segments[c.score.segment as usize].name.clone(),
                    scored_at: c.score.last_eval,
                })
            })
            .collect()
    }
}

/// A score's components as output events and the API show them (rounded, so bytes are stable).
fn component_outs(sc: &Scorecard, stage: Stage, segment: u8, parts: &[ComponentScore]) -> Vec<ComponentOut> {
    sc.components(stage, segment)
        .iter()
        .zip(parts.iter())
        .map(|(comp, part)| ComponentOut {
            name: comp.name.clone(),
            signal: comp.signal.name(),
            value: part.value.map(|v| round_to(v, 2)),
            points: part.points.map(|p| round_to(p, 1)),
            weight: round_to(part.weight, 4),
            contribution: round_to(part.contribution, 2),
            peers: part.rank.zip(part.value).map(|(r, v)| peers_note(comp.signal.name(), v, &r, sc, stage, segment)),
        })
        .collect()
}

/// A relative component's standing in words a CS person reads: "events_30d 14: 80 % of
/// onboarding customers in segment default have more, 12 % less".
fn peers_note(
    signal: &str,
    value: f64,
    rank: &crate::score::Rank,
    sc: &Scorecard,
    stage: Stage,
    segment: u8,
) -> String {
    use crate::score::Scope;
    let seg = &sc.segments[segment as usize].name;
    let who = match rank.scope {
        Scope::StageAndSegment => format!("{} customers in segment {seg}", stage.as_str()),
        Scope::Segment => format!("customers in segment {seg}"),
        Scope::All => "all customers".to_string(),
    };
    let pct = |x: f64| (x * 100.0).round() as u32;
    format!("{signal} {}: {} % of {who} have more, {} % less", round_to(value, 2), pct(rank.above), pct(rank.below))
}

/// At most this many customers whose timers a batch will fire are prefetched: past that (a jump
/// in event time firing thousands at once), the first ones would leave the cache before use.
const MAX_PREFETCHED_TIMERS: usize = 64;

/// Unconfirmed leaps remembered per engine (see [`EngineConfig::max_lead_secs`]): a few are
/// enough for a second event to find the first, and a flood of them cannot grow memory.
const MAX_LEADS: usize = 16;

/// The first timer of a customer first seen at `ts`: the next instant after `ts` on its daily
/// grid, which is offset from midnight by a hash of its id.
fn first_timer(id_hash: u64, ts: Millis) -> Millis {
    let offset = (id_hash % DAY_MS as u64) as Millis;
    (ts - offset).div_euclid(DAY_MS) * DAY_MS + offset + DAY_MS
}

/// Up to three components that cost the most points (weight × points lost), worst first.
fn top_drivers(sc: &Scorecard, stage: crate::score::Stage, segment: u8, parts: &[ComponentScore]) -> Vec<Arc<str>> {
    let mut lost: Vec<(f64, usize)> = parts
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.points.map(|pts| ((100.0 - pts) * p.weight, i)))
        .filter(|(l, _)| *l >= 0.5)
        .collect();
    lost.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let comps = sc.components(stage, segment);
    lost.iter().take(3).map(|(_, i)| comps[*i].name.clone()).collect()
}

/// A customer slot a restore has yet to write.
type UninitSlot = MaybeUninit<Option<Customer>>;

/// One section being restored: the slots its customers go to, its current unpacked frame and
/// the position in it, and its packed frames still to unpack.
type SectionDecode<'a> = (&'a mut [UninitSlot], Vec<u8>, usize, &'a [u8]);

/// Sections a snapshot of the engine's state is cut into (see [`Engine::encode_state`]): a
/// few per core of a typical host. Fixed, so a snapshot reads the same on any machine.
pub const STATE_SECTIONS: usize = 4;

/// The first frame of a state's first section: largest event time, stream time, unconfirmed
/// leaps, the population and the sources, and the learner (empty when learning is off).
type Clock = (Millis, Millis, Vec<(u64, Millis)>, Vec<u8>, SourceSet, Vec<u8>);

/// Appends a frame of encoded state (`raw`) to a packed section (`out`); see
/// [`Engine::encode_state_packed`].
pub type Pack<'a> = &'a (dyn Fn(&[u8], &mut Vec<u8>) + Sync);

/// Replaces `raw`'s content with the frame at the start of a packed section and returns the
/// packed bytes it took; see [`Engine::from_state_packed`].
pub type Unpack<'a> = &'a (dyn Fn(&[u8], &mut Vec<u8>) -> Result<usize, String> + Sync);

/// Appends `value` in postcard to `out`, straight into the `Vec` (postcard's own `to_extend`
/// goes through `Extend` a byte at a time, which made encoding a snapshot slower than cloning
/// the engine).
fn append_postcard<T: serde::Serialize>(value: &T, out: &mut Vec<u8>) {
    postcard::serialize_with_flavor(value, Append(out)).expect("writing to a Vec cannot fail");
}

/// postcard's output target for [`append_postcard`].
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}
