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
//!
//! The module is cut by what each part owns; every part is an `impl Engine` block or the types
//! it serves, and none does I/O:
//! - this file: the [`Engine`] struct, its constructor and accessors, and the core loop
//!   (apply inputs, move stream time, fire timers, the learner's instants);
//! - `evaluate`: re-scoring one customer and building its `score_changed` / alert outputs;
//! - `config`: [`EngineConfig`], its defaults and validation;
//! - `stats`: [`EngineStats`], the [`Census`] and [`Outcome`];
//! - `snapshot`: encoding the state for a snapshot and restoring an engine from it;
//! - `query`: the read-only queries of the HTTP API ([`Standing`], [`Explanation`]).

mod config;
mod evaluate;
mod query;
mod snapshot;
mod stats;

pub use config::EngineConfig;
pub use query::{Explanation, RecentAlert, Standing};
pub use snapshot::{Pack, Unpack, STATE_SECTIONS};
pub use stats::{Census, EngineStats, Outcome};

use std::sync::Arc;

use crate::event::{parse, parse_known, Event, EventKind, KnownTime, Millis, RejectReason, Rejection, Source, DAY_MS};
use crate::learn::{Learner, Sighting};
use crate::memory::prefetch_bytes;
use crate::output::Output;
use crate::rules::{Firing, Trigger};
use crate::score::{ComponentScore, Population, Scorecard};
use crate::signal::SourceSet;
use crate::state::{Customer, SignalParams, Store, Timers, HISTORY_DAYS};
use crate::window::day_of;

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
