//! One customer's windows and current facts, updated by events and read as [`Signals`].

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::event::{Event, EventKind, Invoice, Millis, Priority, DAY_MS};
use crate::hash::{hash64, key32};
use crate::memory::prefetch_bytes;
use crate::rules::RULE_COUNT;
use crate::score::{Band, Stage};
use crate::signal::{Signal, Signals, SourceSet};
use crate::window::{day_of, window_start, DailyRing, Day, DayLog, RecencySet};

use super::lookback::{BandHistory, ChurnLookback};

/// Days of history the windows keep: the longest window.
pub const HISTORY_DAYS: usize = 90;
/// Recent event ids remembered per customer for de-duplication.
pub const DEDUP_IDS: usize = 16;

/// Caps that keep one noisy customer from growing without bound. Generous for real accounts;
/// past them the least recent entries make room.
const MAX_USERS: usize = 512;
const MAX_FEATURES: usize = 128;
const MAX_LOG: usize = 256;
const MAX_OPEN_TICKETS: usize = 64;
const MAX_OVERDUE: usize = 32;
const MAX_CLOSED_TICKETS: usize = 8;

/// Usage in one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageDay {
    pub events: u32,
    pub session_seconds: u32,
}

/// A customer's daily usage over the longest window (720 bytes, inside the customer).
pub type UsageRing = DailyRing<UsageDay, HISTORY_DAYS>;

/// Rare dated facts kept in the customer's [`DayLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fact {
    TicketOpened,
    TicketReopened,
    /// Value: hours from open to resolved.
    TicketResolved,
    /// Value: the rating.
    Csat,
    PaymentFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenTicket {
    pub key: u32,
    pub opened: Millis,
    pub priority: Priority,
}

/// The scoring state the engine keeps between evaluations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreState {
    /// The current band (after hysteresis); `None` before the first score.
    pub band: Option<Band>,
    /// The score last emitted in a `score_changed`, in tenths of a point.
    pub last_emitted_tenths: Option<u16>,
    /// Daily scores in tenths plus one (0: no score that day), for trends and sharp drops.
    pub history: DailyRing<u16, 32>,
    /// The day each rule last fired (0: never), for cooldowns.
    pub last_fired: [Day; RULE_COUNT],
    /// The latest evaluation time; outputs of one customer never go back in time.
    pub last_eval: Millis,
    /// The band of each of the last 96 days, so a cancellation can say how the customer stood
    /// 30 and 90 days before (24 bytes; the daily scores above cover only 32 days).
    pub bands: BandHistory,
    /// The stage and segment of the last evaluation: where the engine's census counts this
    /// customer, so it can move the count when either changes, or the customer leaves.
    pub stage: Option<Stage>,
    pub segment: u8,
}

impl Default for ScoreState {
    fn default() -> Self {
        ScoreState {
            band: None,
            last_emitted_tenths: None,
            history: DailyRing::default(),
            last_fired: [0; RULE_COUNT],
            last_eval: Millis::MIN,
            bands: BandHistory::default(),
            stage: None,
            segment: 0,
        }
    }
}

impl ScoreState {
    /// The score of `day` (its last evaluation that day), if the customer was scored then and
    /// the day is still within the kept history.
    pub fn score_on(&self, day: Day) -> Option<f64> {
        self.history.fold(day, day, None, |_, v| (*v > 0).then(|| (*v - 1) as f64 / 10.0))
    }

    /// The score of the latest evaluation; `None` before the first.
    pub fn current(&self) -> Option<f64> {
        (self.last_eval != Millis::MIN).then(|| self.score_on(day_of(self.last_eval))).flatten()
    }
}

/// Everything the engine knows about one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// Inline up to 24 bytes: the index compares ids on every lookup, and an id behind a pointer
    /// would cost a cache miss per event.
    pub id: CompactString,
    pub id_hash: u64,
    pub first_seen: Millis,
    /// Latest event of any kind (retention counts from here).
    pub last_event: Millis,
    /// Latest product usage, if any.
    pub last_usage: Option<Millis>,
    pub usage: UsageRing,
    pub users: RecencySet,
    pub features: RecencySet,
    pub log: DayLog<Fact>,
    pub open_tickets: Vec<OpenTicket>,
    /// Recently resolved tickets, so a reopen gets its priority back.
    pub closed_tickets: Vec<(u32, Priority)>,
    pub last_nps: Option<u8>,
    pub plan: Option<Box<str>>,
    /// The scorecard segment of `plan`, cached.
    pub segment: u8,
    pub mrr: Option<f64>,
    /// (day, MRR from that day on), oldest first; one point at or before the 90-day window start.
    pub mrr_history: Vec<(Day, f64)>,
    pub seats: Option<u32>,
    pub renewal: Option<Millis>,
    /// The contract's term in days (0 unknown): from the start to the first renewal date, then
    /// between successive renewal dates. Tells a monthly plan, always within weeks of a
    /// renewal, from an annual contract whose renewal is a decision.
    pub term_days: u16,
    pub started: Option<Millis>,
    /// When a cancellation takes effect; the customer is scored a last time and evicted then.
    pub cancel_at: Option<Millis>,
    /// Event time of the latest subscription fact applied: an older one arriving late does not
    /// overwrite a newer plan.
    pub subscription_as_of: Millis,
    pub overdue: Vec<u32>,
    recent_ids: [u64; DEDUP_IDS],
    recent_pos: u8,
    pub score: ScoreState,
    /// The time of the customer's pending timer.
    pub next_due: Millis,
}

/// Signal settings that come from the scorecard.
pub struct SignalParams<'a> {
    pub core_feature_keys: &'a [u32],
    pub falling_usage_pct: f64,
    /// The sources the partition receives: signals of the others are missing.
    pub sources: SourceSet,
}

impl Customer {
    pub fn new(id: &str, now: Millis) -> Customer {
        Customer {
            id: CompactString::new(id),
            id_hash: hash64(id),
            first_seen: now,
            last_event: now,
            last_usage: None,
            usage: DailyRing::default(),
            users: RecencySet::default(),
            features: RecencySet::default(),
            log: DayLog::default(),
            open_tickets: Vec::new(),
            closed_tickets: Vec::new(),
            last_nps: None,
            plan: None,
            segment: 0,
            mrr: None,
            mrr_history: Vec::new(),
            seats: None,
            renewal: None,
            term_days: 0,
            started: None,
            cancel_at: None,
            subscription_as_of: Millis::MIN,
            overdue: Vec::new(),
            recent_ids: [0; DEDUP_IDS],
            recent_pos: 0,
            score: ScoreState::default(),
            next_due: Millis::MAX,
        }
    }

    /// Asks the CPU to start loading the heap data that applying `event` (or, with `None`,
    /// re-scoring on a timer on `day`) will read: the day's usage bucket, the entries of the
    /// user and feature sets that the event's keys will probe (for a timer, the start of both
    /// sets, which scoring scans), the log and the MRR history. It reads the customer's own
    /// fields to find them, so call it once [`Store::prefetch`] has had time to bring those in.
    /// A hint only; it changes nothing.
    ///
    /// [`Store::prefetch`]: super::Store::prefetch
    pub fn prefetch(&self, day: Day, event: Option<&EventKind<'_>>, rescore: bool) {
        prefetch_bytes(self.usage.bucket_ptr(day), 8);
        // The usage windows a re-score sums (the last 60 days, 12 cache lines), when the caller
        // expects one.
        if rescore {
            let today = day.max(self.usage.head());
            let (a, b) = self.usage.slices(window_start(today, 60), today);
            prefetch_bytes(a.as_ptr() as *const u8, std::mem::size_of_val(a));
            prefetch_bytes(b.as_ptr() as *const u8, std::mem::size_of_val(b));
        }
        match event {
            Some(EventKind::FeatureUsed { feature, user_id, .. }) => {
                prefetch_bytes(self.features.probe_ptr(key32(feature)), 8);
                if let Some(user) = user_id {
                    prefetch_bytes(self.users.probe_ptr(key32(user)), 8);
                }
            }
            Some(EventKind::Session { user_id: Some(user), .. }) => {
                prefetch_bytes(self.users.probe_ptr(key32(user)), 8);
            }
            Some(_) => {}
            None => {
                prefetch_bytes(self.users.entries().as_ptr() as *const u8, self.users.len().min(64) * 8);
                prefetch_bytes(self.features.entries().as_ptr() as *const u8, self.features.len().min(32) * 8);
            }
        }
        prefetch_bytes(self.log.marks().as_ptr() as *const u8, self.log.marks().len().min(32) * 8);
        prefetch_bytes(self.mrr_history.as_ptr() as *const u8, 8);
        if !self.open_tickets.is_empty() {
            prefetch_bytes(self.open_tickets.as_ptr() as *const u8, 8);
        }
    }

    /// Remembers `event_id`; `false` if it was seen among this customer's recent events.
    /// Redelivered events come in a burst, so a short per-customer memory catches them while
    /// keeping memory bounded (a duplicate more than [`DEDUP_IDS`] events later is not caught).
    pub fn remember_id(&mut self, event_id: &str) -> bool {
        let h = hash64(event_id) | 1; // 0 marks an empty slot
        if self.recent_ids.contains(&h) {
            return false;
        }
        self.recent_ids[self.recent_pos as usize] = h;
        self.recent_pos = ((self.recent_pos as usize + 1) % DEDUP_IDS) as u8;
        true
    }

    /// Whether an event at `ts` is older than this customer's windows (too late to count).
    pub fn too_late(&self, ts: Millis) -> bool {
        (self.usage.head() as i64 - day_of(ts) as i64) >= HISTORY_DAYS as i64
    }

    /// Applies an event to the windows and facts. Returns whether it changed something the score
    /// reads in steps: every support and billing event does; a usage event does when it starts
    /// an active day or brings a user or feature not seen in 30 days. The engine re-scores on
    /// those at once and batches the rest (more of the same usage) in event time.
    pub fn apply(&mut self, event: &Event<'_>) -> bool {
        let ts = event.timestamp;
        let day = day_of(ts);
        self.last_event = self.last_event.max(ts);
        self.first_seen = self.first_seen.min(ts);
        match &event.kind {
            EventKind::FeatureUsed { feature, user_id, quantity } => {
                // An event stands for `quantity` uses (at least one: it is activity all the same).
                let uses = quantity.round().clamp(1.0, u32::MAX as f64) as u32;
                let step = self.touch_usage(ts, uses, 0, user_id.as_deref());
                let before = self.features.touch(key32(feature), day, MAX_FEATURES);
                return step || is_new_in_month(before, day);
            }
            EventKind::Session { user_id, duration_seconds } => {
                return self.touch_usage(ts, 1, duration_seconds.min(u32::MAX as f64) as u32, user_id.as_deref());
            }
            EventKind::TicketOpened { ticket_id, priority } => {
                self.log.push(day, Fact::TicketOpened, 0, MAX_LOG);
                self.open_ticket(key32(ticket_id), ts, *priority);
            }
            EventKind::TicketResolved { ticket_id } => {
                let key = key32(ticket_id);
                if let Some(i) = self.open_tickets.iter().position(|t| t.key == key) {
                    let t = self.open_tickets.swap_remove(i);
                    let hours = ((ts - t.opened).max(0) / 3_600_000).min(u16::MAX as i64) as u16;
                    self.log.push(day, Fact::TicketResolved, hours, MAX_LOG);
                    if self.closed_tickets.len() >= MAX_CLOSED_TICKETS {
                        self.closed_tickets.remove(0);
                    }
                    self.closed_tickets.push((key, t.priority));
                }
            }
            EventKind::TicketReopened { ticket_id } => {
                let key = key32(ticket_id);
                self.log.push(day, Fact::TicketReopened, 0, MAX_LOG);
                let priority = self.closed_tickets.iter().find(|(k, _)| *k == key).map_or(Priority::Normal, |t| t.1);
                self.open_ticket(key, ts, priority);
            }
            EventKind::CsatResponse { rating, .. } => self.log.push(day, Fact::Csat, *rating as u16, MAX_LOG),
            EventKind::NpsResponse { score } => self.last_nps = Some(*score),
            EventKind::SubscriptionStarted { plan, mrr, seats, renewal_date } => {
                self.started = Some(self.started.map_or(ts, |s| s.min(ts)));
                self.cancel_at = None; // a restart after a cancellation reactivates
                if self.newer_subscription_fact(ts) {
                    self.set_plan(plan, *mrr, *seats, day);
                    if let Some(r) = *renewal_date {
                        self.set_term(ts, r);
                        self.renewal = Some(r);
                    }
                }
            }
            EventKind::SubscriptionChanged { plan, mrr, seats } => {
                if self.newer_subscription_fact(ts) {
                    self.set_plan(plan, *mrr, *seats, day);
                }
            }
            EventKind::SubscriptionRenewed { renewal_date } => {
                if let Some(previous) = self.renewal {
                    self.set_term(previous, *renewal_date);
                }
                self.renewal = Some(self.renewal.map_or(*renewal_date, |r| r.max(*renewal_date)));
            }
            EventKind::SubscriptionCancelled { effective_date, .. } => {
                self.cancel_at = Some(effective_date.map_or(ts, |e| e.max(ts)));
            }
            EventKind::InvoicePaid(Invoice { invoice_id, .. }) => {
                let key = key32(invoice_id);
                self.overdue.retain(|k| *k != key);
            }
            EventKind::PaymentFailed(_) => self.log.push(day, Fact::PaymentFailed, 0, MAX_LOG),
            EventKind::InvoiceOverdue(Invoice { invoice_id, .. }) => {
                let key = key32(invoice_id);
                if !self.overdue.contains(&key) && self.overdue.len() < MAX_OVERDUE {
                    self.overdue.push(key);
                }
            }
        }
        true
    }

    /// Records the term of a contract running `from` (a start, or the renewal date just reached)
    /// to `to` (the next renewal date); a date that does not move forward says nothing.
    fn set_term(&mut self, from: Millis, to: Millis) {
        if to > from {
            let days = ((to - from) as f64 / DAY_MS as f64).round();
            self.term_days = days.clamp(1.0, u16::MAX as f64) as u16;
        }
    }

    /// Counts usage; returns whether it started an active day or brought a new user.
    fn touch_usage(&mut self, ts: Millis, uses: u32, session_seconds: u32, user: Option<&str>) -> bool {
        let day = day_of(ts);
        let mut step = false;
        if let Some(b) = self.usage.at_mut(day) {
            step = b.events == 0;
            b.events = b.events.saturating_add(uses);
            b.session_seconds = b.session_seconds.saturating_add(session_seconds);
        }
        self.last_usage = Some(self.last_usage.map_or(ts, |l| l.max(ts)));
        if let Some(user) = user {
            step |= is_new_in_month(self.users.touch(key32(user), day, MAX_USERS), day);
        }
        step
    }

    fn open_ticket(&mut self, key: u32, ts: Millis, priority: Priority) {
        if let Some(t) = self.open_tickets.iter_mut().find(|t| t.key == key) {
            t.priority = t.priority.max(priority);
        } else if self.open_tickets.len() < MAX_OPEN_TICKETS {
            self.open_tickets.push(OpenTicket { key, opened: ts, priority });
        }
    }

    fn newer_subscription_fact(&mut self, ts: Millis) -> bool {
        if ts < self.subscription_as_of {
            return false;
        }
        self.subscription_as_of = ts;
        true
    }

    fn set_plan(&mut self, plan: &str, mrr: f64, seats: Option<u32>, day: Day) {
        if self.plan.as_deref() != Some(plan) {
            self.plan = Some(plan.into());
        }
        if seats.is_some() {
            self.seats = seats;
        }
        self.mrr = Some(mrr);
        match self.mrr_history.last_mut() {
            Some(last) if last.0 >= day => last.1 = mrr,
            _ => self.mrr_history.push((day, mrr)),
        }
    }

    /// Forgets what has left every window as of `today`, so state stays small.
    pub fn prune(&mut self, today: Day) {
        let start = window_start(today, HISTORY_DAYS as u32);
        self.users.prune(start);
        self.features.prune(start);
        self.log.prune(start);
        // Keep the last MRR point at or before the window start: it is "MRR 90 days ago".
        let keep_from = self.mrr_history.iter().rposition(|(d, _)| *d <= start).unwrap_or(0);
        self.mrr_history.drain(..keep_from);
    }

    /// Every signal as of `now`.
    pub fn signals(&self, now: Millis, params: &SignalParams<'_>) -> Signals {
        let mut s = Signals::default();
        let today = day_of(now).max(self.usage.head());
        let d7 = window_start(today, 7);
        let d30 = window_start(today, 30);
        let d90 = window_start(today, 90);
        let first_day = day_of(self.first_seen);
        let days = |ms: Millis| ((now - ms) as f64 / DAY_MS as f64).floor();

        // Usage windows as sums over contiguous runs of the ring: [prev30_start, d30) is the
        // period before the last 30 days, [base_start, d7) the three weeks before the last 7.
        let (prev30_start, base_start) = (window_start(today, 60), window_start(today, 28));
        let usage = |from: Day, to: Day| -> (u64, u32, u64) {
            let (a, b) = self.usage.slices(from, to);
            let (mut events, mut active, mut secs) = (0u64, 0u32, 0u64);
            for day in a.iter().chain(b) {
                events += day.events as u64;
                active += (day.events > 0) as u32;
                secs += day.session_seconds as u64;
            }
            (events, active, secs)
        };
        let until = |from: Day, end: Day| if end > from { usage(from, end - 1) } else { (0, 0, 0) };
        let (events7, active7, secs7) = usage(d7, today);
        let (events8_30, active8_30, secs8_30) = until(d30, d7);
        let (events30, active30, secs30) = (events7 + events8_30, active7 + active8_30, secs7 + secs8_30);
        let prev30 = until(prev30_start, d30).0;
        let base21 = until(base_start, d7).0;
        s.set(Signal::ActiveDays7d, Some(active7 as f64));
        s.set(Signal::ActiveDays30d, Some(active30 as f64));
        s.set(Signal::Events7d, Some(events7 as f64));
        s.set(Signal::Events30d, Some(events30 as f64));
        s.set(Signal::SessionMinutes30d, Some((secs30 / 60) as f64));
        let users30 = self.users.count_since(d30);
        s.set(Signal::DistinctUsers30d, Some(users30 as f64));
        let (mut breadth, mut core) = (0u32, 0u32);
        for &(key, day) in self.features.entries() {
            if day >= d30 {
                breadth += 1;
                core += params.core_feature_keys.contains(&key) as u32;
            }
        }
        s.set(Signal::FeatureBreadth30d, Some(breadth as f64));
        if !params.core_feature_keys.is_empty() {
            s.set(Signal::CoreFeatureAdoptionPct, Some(100.0 * core as f64 / params.core_feature_keys.len() as f64));
        }
        // Trends need a full comparison period: a customer younger than it is ramping, not growing.
        if first_day <= prev30_start {
            s.set(Signal::UsageTrendPct, trend_pct(events30 as f64, prev30 as f64));
        }
        if first_day <= base_start {
            s.set(Signal::UsageTrend7dPct, trend_pct(events7 as f64, base21 as f64 / 3.0));
        }
        s.set(Signal::DaysSinceLastActivity, Some(days(self.last_usage.unwrap_or(self.first_seen)).max(0.0)));

        // One pass over the sparse log.
        let (mut opened30, mut reopens90, mut csat_sum, mut csat_n, mut failed90) = (0u32, 0u32, 0u32, 0u32, 0u32);
        let mut hours = [0u16; MAX_LOG];
        let mut resolved = 0usize;
        for m in self.log.marks() {
            if m.day < d90 || m.day > today {
                continue;
            }
            match m.kind {
                Fact::TicketOpened => opened30 += (m.day >= d30) as u32,
                Fact::TicketReopened => reopens90 += 1,
                Fact::TicketResolved => {
                    hours[resolved] = m.value;
                    resolved += 1;
                }
                Fact::Csat => {
                    csat_sum += m.value as u32;
                    csat_n += 1;
                }
                Fact::PaymentFailed => failed90 += 1,
            }
        }
        s.set(Signal::TicketsOpened30d, Some(opened30 as f64));
        s.set(Signal::OpenTickets, Some(self.open_tickets.len() as f64));
        let urgent = self.open_tickets.iter().filter(|t| t.priority == Priority::Urgent).count();
        s.set(Signal::OpenUrgentTickets, Some(urgent as f64));
        s.set(Signal::MedianResolutionHours90d, median(&mut hours[..resolved]));
        s.set(Signal::Reopens90d, Some(reopens90 as f64));
        s.set(Signal::CsatAvg90d, (csat_n > 0).then(|| csat_sum as f64 / csat_n as f64));
        s.set(Signal::LastNps, self.last_nps.map(f64::from));

        s.set(Signal::FailedPayments90d, Some(failed90 as f64));
        s.set(Signal::OpenOverdueInvoices, Some(self.overdue.len() as f64));
        s.set(Signal::Mrr, self.mrr);
        if let Some(mrr) = self.mrr {
            let then = self.mrr_history.iter().take_while(|(d, _)| *d <= d90).last().map(|p| p.1);
            s.set(Signal::MrrChange90dPct, then.filter(|t| *t > 0.0).map(|t| 100.0 * (mrr - t) / t));
        }
        s.set(Signal::DaysToRenewal, self.renewal.map(|r| ((r - now) as f64 / DAY_MS as f64).floor()));
        s.set(Signal::ContractTermDays, (self.term_days > 0).then_some(self.term_days as f64));
        s.set(
            Signal::SeatUtilisationPct,
            self.seats.filter(|s| *s > 0).map(|seats| 100.0 * users30 as f64 / seats as f64),
        );
        s.set(Signal::TenureDays, Some(days(self.started.unwrap_or(self.first_seen)).max(0.0)));
        let falling = s
            .get(Signal::UsageTrend7dPct)
            .or(s.get(Signal::UsageTrendPct))
            .is_some_and(|t| t <= params.falling_usage_pct);
        s.set(Signal::UrgentTicketWithFallingUsage, Some((urgent > 0 && falling) as u8 as f64));
        params.sources.mask(&mut s);
        s
    }

    /// How this customer stood before a cancellation at `now` (see [`ChurnLookback`]); bands
    /// from its first `warmup_days` in the stream do not count, as for the alert rules.
    pub fn churn_lookback(&self, now: Millis, warmup_days: u32) -> ChurnLookback {
        ChurnLookback::read(
            &self.score.bands,
            &self.score.last_fired,
            day_of(now),
            day_of(self.first_seen) + warmup_days,
        )
    }

    /// The approximate memory this customer holds, inline and on the heap.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Customer>()
            + if self.id.is_heap_allocated() { self.id.len() } else { 0 }
            + self.plan.as_ref().map_or(0, |p| p.len())
            + self.users.heap_bytes()
            + self.features.heap_bytes()
            + self.log.heap_bytes()
            + self.open_tickets.capacity() * std::mem::size_of::<OpenTicket>()
            + self.closed_tickets.capacity() * std::mem::size_of::<(u32, Priority)>()
            + self.mrr_history.capacity() * std::mem::size_of::<(Day, f64)>()
            + self.overdue.capacity() * 4
    }
}

/// Whether a key last seen on `before` (if ever) starts counting again in a 30-day window at `day`.
fn is_new_in_month(before: Option<Day>, day: Day) -> bool {
    before.is_none_or(|b| b < window_start(day, 30))
}

/// Percent change from `before` to `now`, capped at +500 %; `None` when both are zero.
fn trend_pct(now: f64, before: f64) -> Option<f64> {
    if before > 0.0 {
        Some((100.0 * (now - before) / before).min(500.0))
    } else if now > 0.0 {
        Some(100.0)
    } else {
        None
    }
}

fn median(v: &mut [u16]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] as f64 } else { (v[n / 2 - 1] as f64 + v[n / 2] as f64) / 2.0 })
}
