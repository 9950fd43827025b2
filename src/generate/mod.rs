//! Deterministic synthetic customer populations: realistic event histories with ground truth.
//!
//! [`Generator`] simulates `customers` SaaS accounts over `days` days ending at `end` and yields
//! their events as contract JSON lines, in non-decreasing time order, one UTC day at a time. Only
//! one day of events (plus the few already scheduled for later, such as ticket resolutions and
//! re-sent duplicates) is held in memory, so a run can be as long as needed. The same
//! [`GenConfig`], seed included, always yields byte-identical output.
//!
//! # Personas
//!
//! Each customer gets one [`Persona`] in the proportions of [`PERSONA_MIX`] (counts are rounded,
//! then shuffled, so small populations still contain every persona):
//!
//! - **Healthy**: steady usage of most core features, few low/normal tickets resolved within hours
//!   or a day or two, CSAT 4–5, NPS mostly 7–10. Some have a bad week (low usage, a grumpier
//!   ticket) or a week of holiday, and a few have a card decline that is fixed within days.
//! - **Declining**: from a random onset, usage and active users decay over 3–8 weeks, the feature
//!   set narrows to the one or two they use most, tickets get more frequent and more often
//!   high/urgent, take days to resolve and get reopened, CSAT and NPS fall. Three in four cancel
//!   (with a reason) some weeks after the decline began; the rest level off, some recover, some
//!   downgrade.
//! - **Silent churner**: ordinary usage that stops abruptly, without tickets or complaints;
//!   invoices are still paid until they cancel 3–8 weeks later.
//! - **Expanding**: active users grow past the seat count, then a `subscription_changed` adds
//!   seats and MRR (and moves up a plan when the seats outgrow it); NPS 9–10.
//! - **Onboarding**: signs up inside the history (`subscription_started`) and ramps up over the
//!   first weeks; one in four stalls and cancels within two months.
//! - **Payment trouble**: ordinary usage, then an invoice fails (`payment_failed`, a retry,
//!   weekly `invoice_overdue`). About half pay it late (`invoice_paid` of the same invoice, with
//!   `days_overdue`) and may fail again later; the others cancel.
//!
//! Every persona gets randomized rates and onsets, so the signal is realistic, not separable.
//!
//! # Conventions
//!
//! - Contracts are annual: `renewal_date` is the start date plus 365 days. Invoices are monthly,
//!   on the day of the month the contract started (capped at the 28th), for the current MRR.
//!   Invoice ids are `inv_<customer number>_<YYYYMM>`, ticket ids `tkt_<customer number>_<n>`.
//! - A customer whose contract started before the history opens it with a snapshot: at the first
//!   instant of the history, a `subscription_changed` (plan, MRR, seats) followed 1 ms later by a
//!   `subscription_renewed` whose `renewal_date` is the end of the current contract year. Only
//!   onboarding customers have a `subscription_started`.
//! - [`CustomerProfile::plan`] and `seats` are the contract when the history starts (onboarding
//!   customers: at signup). [`CustomerProfile::churn_at`] is the time of `subscription_cancelled`;
//!   it may lie after `end`, in which case the stream has no cancellation but the labels still
//!   list the customer: they are the ground truth of the simulation, so a back-test can ask who
//!   churns within N days of any point, including the end. After `churn_at` a customer sends no
//!   more events. A cancellation's `effective_date` is the next invoice date.
//! - Customers live in time zones from UTC−8 to UTC+10 (no daylight saving); usage follows their
//!   local working day and week. User ids `u_<n>` are unique across the whole population.
//! - Bad lines ([`GenConfig::bad_input_rate`]) are extra lines a broken producer sent next to a
//!   good event: truncated or non-JSON text, no `event_id`, an unknown `type`, an invalid ticket
//!   `priority`, a negative `duration_seconds`, or a 1970 timestamp (including seconds read as
//!   milliseconds). Duplicates ([`GenConfig::duplicate_rate`]) are a good line re-sent verbatim a
//!   few seconds to half an hour later. For both, [`GeneratedEvent::timestamp`] is the time the
//!   line was sent. Their randomness comes from a stream of its own, so changing either rate
//!   leaves the good events untouched.
//! - Randomness is ChaCha8, one stream per customer, drawn only through `gen::<u64>()` and
//!   `gen::<f64>()` so that the output does not depend on `rand`'s distribution algorithms. The
//!   shapes use `exp`, `ln` and `cos` from the platform's libm, so another OS could, rarely, round
//!   a draw differently; on one platform the output is byte-identical.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::event::{format_rfc3339, Millis, Source, DAY_MS};

const HOUR_MS: Millis = 3_600_000;
const MINUTE_MS: Millis = 60_000;

/// 2026-11-01T00:00:00Z, where the default history ends.
pub const DEFAULT_END: Millis = 1_793_491_200_000;

/// What to generate. The same config always yields the same bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenConfig {
    pub customers: u32,
    pub days: u32,
    pub seed: u64,
    /// The history ends here (exclusive) and starts `days` days earlier.
    pub end: Millis,
    /// Extra malformed lines, as a fraction of good events.
    pub bad_input_rate: f64,
    /// Good lines sent twice, as a fraction of good events.
    pub duplicate_rate: f64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            customers: 1000,
            days: 120,
            seed: 42,
            end: DEFAULT_END,
            bad_input_rate: 0.001,
            duplicate_rate: 0.002,
        }
    }
}

impl GenConfig {
    /// The first instant of the history.
    pub fn start(&self) -> Millis {
        self.end - self.days as Millis * DAY_MS
    }
}

/// The behaviour a simulated customer follows; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Persona {
    Healthy,
    Declining,
    SilentChurner,
    Expanding,
    Onboarding,
    PaymentTrouble,
}

impl Persona {
    pub const ALL: [Persona; 6] = [
        Persona::Healthy,
        Persona::Declining,
        Persona::SilentChurner,
        Persona::Expanding,
        Persona::Onboarding,
        Persona::PaymentTrouble,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Persona::Healthy => "healthy",
            Persona::Declining => "declining",
            Persona::SilentChurner => "silent_churner",
            Persona::Expanding => "expanding",
            Persona::Onboarding => "onboarding",
            Persona::PaymentTrouble => "payment_trouble",
        }
    }
}

/// The share of each persona in a population.
pub const PERSONA_MIX: [(Persona, f64); 6] = [
    (Persona::Healthy, 0.45),
    (Persona::Declining, 0.15),
    (Persona::SilentChurner, 0.10),
    (Persona::Expanding, 0.10),
    (Persona::Onboarding, 0.12),
    (Persona::PaymentTrouble, 0.08),
];

/// The ground truth about one simulated customer.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerProfile {
    pub customer_id: String,
    pub persona: Persona,
    /// The plan when the history starts (onboarding customers: at signup).
    pub plan: &'static str,
    /// The seats when the history starts (onboarding customers: at signup).
    pub seats: u32,
    /// When the customer cancels, if it does; may lie after the end of the history.
    pub churn_at: Option<Millis>,
}

/// One line of output: a contract event, or a malformed or duplicate line a producer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedEvent {
    /// The topic the producer sent the line to.
    pub source: Source,
    pub customer_id: String,
    /// When the line was sent: the event time, except for duplicates and bad lines.
    pub timestamp: Millis,
    /// One JSON line (or what a broken producer sent instead), no trailing newline.
    pub json: String,
}

/// Counts of the lines generated so far (including those buffered but not yet yielded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenStats {
    pub lines: u64,
    pub bad_lines: u64,
    pub duplicates: u64,
}

pub const CORE_FEATURES: [&str; 4] = ["dashboards", "reports", "integrations", "alerts"];
pub const OTHER_FEATURES: [&str; 12] = [
    "export",
    "api",
    "sharing",
    "comments",
    "search",
    "automation",
    "sso",
    "audit_log",
    "templates",
    "notifications",
    "mobile",
    "workflows",
];

struct PlanSpec {
    name: &'static str,
    seats: (u32, u32),
    price_per_seat: (f64, f64),
    mrr: (u32, u32),
}

const PLANS: [PlanSpec; 3] = [
    PlanSpec { name: "starter", seats: (3, 10), price_per_seat: (15.0, 30.0), mrr: (50, 300) },
    PlanSpec { name: "pro", seats: (10, 50), price_per_seat: (25.0, 40.0), mrr: (300, 2_000) },
    PlanSpec { name: "enterprise", seats: (50, 500), price_per_seat: (35.0, 45.0), mrr: (2_000, 20_000) },
];

/// UTC offsets in hours and their weights: mostly the Americas and Europe, some Asia-Pacific.
const TIME_ZONES: [(f64, f64); 10] = [
    (-8.0, 0.14),
    (-7.0, 0.04),
    (-6.0, 0.08),
    (-5.0, 0.24),
    (0.0, 0.14),
    (1.0, 0.20),
    (2.0, 0.06),
    (5.5, 0.04),
    (9.0, 0.03),
    (10.0, 0.03),
];

const DECLINE_REASONS: [&str; 5] =
    ["too_expensive", "missing_features", "switched_to_competitor", "poor_support", "low_adoption"];
const ONBOARDING_REASONS: [&str; 3] = ["not_a_fit", "too_complex", "low_adoption"];
const SILENT_REASONS: [&str; 2] = ["no_longer_needed", "other"];

/// Local days are counted from the Unix epoch; day 0 (1970-01-01) was a Thursday.
fn weekday(day: i64) -> i64 {
    (day + 3).rem_euclid(7)
}

fn date_of(day: i64) -> time::Date {
    time::Date::from_julian_day((day + 2_440_588) as i32).expect("generated dates lie in 1970..2100")
}

fn date_str(day: i64) -> String {
    format_rfc3339(day * DAY_MS)[..10].to_string()
}

// Sampling helpers. They only use `gen::<f64>()`, whose output rand documents as stable.

fn unit(r: &mut ChaCha8Rng) -> f64 {
    r.gen::<f64>()
}

fn uniform(r: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * unit(r)
}

/// An integer in `lo..hi`.
fn range(r: &mut ChaCha8Rng, lo: i64, hi: i64) -> i64 {
    lo + ((hi - lo) as f64 * unit(r)) as i64
}

fn chance(r: &mut ChaCha8Rng, p: f64) -> bool {
    unit(r) < p
}

fn normal(r: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - unit(r);
    let u2 = unit(r);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn lognormal(r: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(r)).exp()
}

fn poisson(r: &mut ChaCha8Rng, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda > 30.0 {
        return (lambda + lambda.sqrt() * normal(r)).round().max(0.0) as u32;
    }
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p = unit(r);
    while p > limit {
        k += 1;
        p *= unit(r);
    }
    k
}

fn pick<T: Copy>(r: &mut ChaCha8Rng, items: &[T]) -> T {
    items[range(r, 0, items.len() as i64) as usize]
}

fn pick_weighted<T: Copy>(r: &mut ChaCha8Rng, items: &[(T, f64)]) -> T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = unit(r) * total;
    for &(item, w) in items {
        if x < w {
            return item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

fn mrr_for(plan: usize, seats: u32, price: f64) -> u32 {
    let (lo, hi) = PLANS[plan].mrr;
    ((seats as f64 * price / 5.0).round() as u32 * 5).clamp(lo, hi)
}

fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// An output line with the order key that makes the output deterministic: time, then the order
/// of generation.
struct Item {
    ts: Millis,
    seq: u64,
    ev: GeneratedEvent,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        (self.ts, self.seq) == (other.ts, other.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.ts, self.seq).cmp(&(other.ts, other.seq))
    }
}

/// Where customers put their lines: the day being built, the next day (local days of customers
/// west of UTC run into it), or the heap of lines due later still.
struct Out {
    start: Millis,
    end: Millis,
    batch_end: Millis,
    bad_rate: f64,
    dup_rate: f64,
    seq: u64,
    batch: Vec<Item>,
    tomorrow: Vec<Item>,
    later: BinaryHeap<Reverse<Item>>,
    stats: GenStats,
    /// `YYYY-MM-DDT` of recent days, by day modulo 4: lines cluster on a day or two.
    dates: [(i64, [u8; 11]); 4],
}

impl Out {
    /// Queues a line; false when it falls outside the history and is dropped.
    fn push(&mut self, ts: Millis, source: Source, customer_id: &str, json: String) -> bool {
        if ts < self.start || ts >= self.end {
            return false;
        }
        debug_assert!(ts >= self.batch_end - DAY_MS, "a line for a day already yielded");
        let ev = GeneratedEvent { source, customer_id: customer_id.to_owned(), timestamp: ts, json };
        let item = Item { ts, seq: self.seq, ev };
        self.seq += 1;
        self.stats.lines += 1;
        if ts < self.batch_end {
            self.batch.push(item);
        } else if ts < self.batch_end + DAY_MS {
            self.tomorrow.push(item);
        } else {
            self.later.push(Reverse(item));
        }
        true
    }

    /// Appends `format_rfc3339(ts)` to `s` without allocating: the date part comes from
    /// `format_rfc3339` itself and is cached, the time of day is plain arithmetic.
    fn write_timestamp(&mut self, ts: Millis, s: &mut String) {
        let day = ts.div_euclid(DAY_MS);
        let slot = &mut self.dates[day.rem_euclid(4) as usize];
        if slot.0 != day {
            slot.0 = day;
            slot.1.copy_from_slice(&format_rfc3339(day * DAY_MS).as_bytes()[..11]);
        }
        let ms = ts - day * DAY_MS;
        let (h, m, sec, milli) = (ms / HOUR_MS, ms / MINUTE_MS % 60, ms / 1000 % 60, ms % 1000);
        let mut buf = [0u8; 24];
        buf[..11].copy_from_slice(&slot.1);
        for (at, value, digits) in [(11, h, 2), (14, m, 2), (17, sec, 2), (20, milli, 3)] {
            let mut v = value;
            for i in (0..digits).rev() {
                buf[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        buf[13] = b':';
        buf[16] = b':';
        buf[19] = b'.';
        buf[23] = b'Z';
        s.push_str(std::str::from_utf8(&buf).expect("ASCII"));
    }
}

/// Appends 16 lowercase hex digits.
fn write_hex(value: u64, s: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[(value >> (60 - 4 * i)) as usize & 15];
    }
    s.push_str(std::str::from_utf8(&buf).expect("ASCII"));
}

struct PlanChange {
    day: i64,
    plan: usize,
    seats: u32,
    mrr: u32,
}

/// How usage develops; days are counted from the customer's first local day of the history.
enum Trajectory {
    Steady,
    Declining {
        onset: f64,
        decay: f64,
        floor: f64,
        recover_at: Option<f64>,
    },
    Silent {
        stop: f64,
    },
    /// The user pool grows from `p0` to `p1` times the original seats over `span` days.
    Expanding {
        p0: f64,
        p1: f64,
        span: f64,
    },
    /// Days counted from signup; failing customers stall at `peak` of the full ramp, then fade.
    Onboarding {
        tau: f64,
        peak: Option<f64>,
    },
    PaymentTrouble,
}

struct Trouble {
    /// The local day of the first invoice that fails.
    first_invoice: i64,
    /// Days until the failed invoice is paid, or `None` for customers that never pay and cancel.
    pays_after: Option<i64>,
    /// Chance that a later invoice fails too.
    repeat: f64,
}

/// A week of low usage: first day, usage factor, and whether the customer is also unhappy.
struct Dip {
    day: i64,
    factor: f64,
    unhappy: bool,
}

struct Customer {
    id: String,
    num: String,
    /// User `n` (from 1) of this customer is `u_<uid_base + n>`.
    uid_base: u64,
    rng: ChaCha8Rng,
    /// Bad lines and duplicates only, so the rates do not change the good events.
    noise: ChaCha8Rng,
    /// Local time minus UTC.
    tz: Millis,
    /// The local day containing the start of the history.
    h0: i64,
    next_day: i64,
    snapshot_done: bool,
    active_from: Millis,
    churn_at: Option<Millis>,
    churn_day: i64,
    cancel_reason: Option<&'static str>,
    plan: usize,
    seats: u32,
    /// Seats when the history starts; expanding customers' user growth is measured against it.
    seats0: f64,
    mrr: u32,
    start_day: i64,
    started_in_history: bool,
    renewal_day: i64,
    bill_dom: u8,
    bill_hour: Millis,
    change: Option<PlanChange>,
    /// Propensity to be active on a given day, one per potential user.
    users: Vec<f64>,
    pool0: f64,
    dau: f64,
    per_session: f64,
    weekend: f64,
    /// Features by decreasing weight, with cumulative weights, so narrowing keeps the favourites.
    features: Vec<&'static str>,
    feature_cum: Vec<f64>,
    trajectory: Trajectory,
    dip: Option<Dip>,
    mood0: f64,
    ticket_rate: f64,
    tickets: u32,
    nps_next: i64,
    card_fail: f64,
    trouble: Option<Trouble>,
}

impl Customer {
    fn new(cfg: &GenConfig, index: u32, persona: Persona, width: usize) -> (Customer, CustomerProfile) {
        let mut r = rng_for(cfg.seed, 2 * index as u64 + 1);
        let noise = rng_for(cfg.seed, 2 * index as u64 + 2);
        let num = format!("{:0width$}", index + 1);
        let id = format!("cus_{num}");
        let days = cfg.days as f64;
        let start = cfg.start();

        let tz = (pick_weighted(&mut r, &TIME_ZONES) * HOUR_MS as f64) as Millis;
        let h0 = (start + tz).div_euclid(DAY_MS);
        let local_start = |day: i64| day * DAY_MS - tz;
        // A local day at a fraction of the way through the history.
        let into_history = |fraction: f64| h0 + (days * fraction).round() as i64;

        let plan_mix: [(usize, f64); 3] = match persona {
            Persona::Onboarding => [(0, 0.60), (1, 0.35), (2, 0.05)],
            Persona::Expanding => [(0, 0.45), (1, 0.40), (2, 0.15)],
            _ => [(0, 0.50), (1, 0.36), (2, 0.14)],
        };
        let plan = pick_weighted(&mut r, &plan_mix);
        let (lo, hi) = PLANS[plan].seats;
        let seats = if plan == 0 {
            range(&mut r, lo as i64, hi as i64 + 1) as u32
        } else {
            // Log-uniform: many small pro and enterprise accounts, a few very large ones.
            ((lo as f64).ln() + unit(&mut r) * ((hi as f64).ln() - (lo as f64).ln())).exp().round() as u32
        };
        let price = uniform(&mut r, PLANS[plan].price_per_seat.0, PLANS[plan].price_per_seat.1);
        let mrr = mrr_for(plan, seats, price);

        let (start_day, started_in_history) = if persona == Persona::Onboarding {
            (into_history(uniform(&mut r, 0.03, 0.7)), true)
        } else {
            (h0 - range(&mut r, 20, 1100), false)
        };
        let active_from =
            if started_in_history { local_start(start_day) + range(&mut r, 9 * HOUR_MS, 12 * HOUR_MS) } else { start };
        let bill_dom = date_of(start_day).day().min(28);
        let renewal_day =
            if started_in_history { start_day + 365 } else { start_day + 365 * ((h0 - start_day + 364) / 365).max(1) };

        // Large organisations have a smaller share of their seats in regular use.
        let pool_share = match plan {
            0 => uniform(&mut r, 0.6, 1.0),
            1 => uniform(&mut r, 0.5, 0.9),
            _ => uniform(&mut r, 0.25, 0.6),
        };
        let pool0 = (seats as f64 * pool_share).max(1.0);

        let mut churn_day = None;
        let mut cancel_reason = None;
        let mut change = None;
        let mut trouble = None;
        let mut mood0 = uniform(&mut r, 0.78, 0.95);
        let trajectory = match persona {
            Persona::Healthy => Trajectory::Steady,
            Persona::Declining => {
                mood0 = uniform(&mut r, 0.6, 0.85);
                let onset = days * uniform(&mut r, 0.08, 0.55);
                let decay = uniform(&mut r, 21.0, 56.0);
                if chance(&mut r, 0.75) {
                    let churn = onset + decay + uniform(&mut r, 10.0, 35.0);
                    churn_day = Some(h0 + churn as i64);
                    cancel_reason = Some(pick(&mut r, &DECLINE_REASONS));
                    Trajectory::Declining { onset, decay, floor: uniform(&mut r, 0.03, 0.2), recover_at: None }
                } else {
                    let recover_at = chance(&mut r, 0.45).then(|| onset + decay + uniform(&mut r, 7.0, 21.0));
                    if chance(&mut r, 0.35) {
                        let day = h0 + (onset + decay * uniform(&mut r, 0.5, 1.2)) as i64;
                        let mut new_seats = ((seats as f64 * uniform(&mut r, 0.5, 0.8)).round() as u32).max(3);
                        let (mut new_plan, mut new_price) = (plan, price);
                        if plan > 0 && new_seats < PLANS[plan].seats.0 {
                            new_plan = plan - 1;
                            new_seats = new_seats.min(PLANS[new_plan].seats.1);
                            let (lo, hi) = PLANS[new_plan].price_per_seat;
                            new_price = uniform(&mut r, lo, hi);
                        }
                        let mrr = mrr_for(new_plan, new_seats, new_price);
                        change = Some(PlanChange { day, plan: new_plan, seats: new_seats, mrr });
                    }
                    Trajectory::Declining { onset, decay, floor: uniform(&mut r, 0.3, 0.55), recover_at }
                }
            }
            Persona::SilentChurner => {
                mood0 = uniform(&mut r, 0.68, 0.85);
                // Whole days, so that the last active day is at least three weeks before churning.
                let stop = (days * uniform(&mut r, 0.15, 0.75)).floor();
                churn_day = Some(h0 + stop as i64 + range(&mut r, 21, 57));
                cancel_reason = chance(&mut r, 0.5).then(|| pick(&mut r, &SILENT_REASONS));
                Trajectory::Silent { stop }
            }
            Persona::Expanding => {
                mood0 = uniform(&mut r, 0.88, 0.97);
                let p0 = uniform(&mut r, 0.55, 0.8);
                let p1 = uniform(&mut r, 1.2, 1.5);
                let cross = uniform(&mut r, 0.98, 1.1);
                let day = h0 + (days * (cross - p0) / (p1 - p0)) as i64;
                let mut new_plan = plan;
                let mut new_price = price;
                let new_seats = (seats as f64 * uniform(&mut r, 1.4, 2.2)).ceil() as u32;
                while new_plan < 2 && new_seats > PLANS[new_plan].seats.1 {
                    new_plan += 1;
                    let (lo, hi) = PLANS[new_plan].price_per_seat;
                    new_price = uniform(&mut r, lo, hi);
                }
                change = Some(PlanChange {
                    day,
                    plan: new_plan,
                    seats: new_seats,
                    mrr: mrr_for(new_plan, new_seats, new_price),
                });
                Trajectory::Expanding { p0, p1, span: days }
            }
            Persona::Onboarding => {
                mood0 = uniform(&mut r, 0.7, 0.88);
                let tau = uniform(&mut r, 6.0, 20.0);
                let peak = if chance(&mut r, 0.25) {
                    churn_day = Some(start_day + range(&mut r, 21, 61));
                    cancel_reason = Some(pick(&mut r, &ONBOARDING_REASONS));
                    Some(uniform(&mut r, 0.1, 0.3))
                } else {
                    None
                };
                Trajectory::Onboarding { tau, peak }
            }
            Persona::PaymentTrouble => {
                mood0 = uniform(&mut r, 0.6, 0.85);
                let mut first = into_history(uniform(&mut r, 0.05, 0.5));
                while date_of(first).day() != bill_dom {
                    first += 1;
                }
                let pays_after = if chance(&mut r, 0.45) {
                    churn_day = Some(first + range(&mut r, 15, 41));
                    cancel_reason = Some("payment_failed");
                    None
                } else {
                    Some(range(&mut r, 4, 26))
                };
                trouble = Some(Trouble { first_invoice: first, pays_after, repeat: uniform(&mut r, 0.15, 0.4) });
                Trajectory::PaymentTrouble
            }
        };
        let churn_at = churn_day.map(|d| local_start(d) + range(&mut r, 8 * HOUR_MS + 30 * MINUTE_MS, 18 * HOUR_MS));

        let dip_chance = if persona == Persona::Healthy { 0.3 } else { 0.1 };
        let dip = chance(&mut r, dip_chance).then(|| {
            let day = into_history(uniform(&mut r, 0.0, 0.95));
            if chance(&mut r, 0.35) {
                Dip { day, factor: uniform(&mut r, 0.03, 0.15), unhappy: false }
            } else {
                Dip { day, factor: uniform(&mut r, 0.2, 0.5), unhappy: true }
            }
        });

        let max_pool = match persona {
            Persona::Expanding => seats as f64 * 1.5,
            _ => pool0,
        };
        let mut users: Vec<f64> =
            (0..max_pool.ceil() as usize + 1).map(|_| lognormal(&mut r, 1.0, 0.5).clamp(0.1, 1.8)).collect();
        // Every account has a champion who logs in nearly every working day.
        users[0] = users[0].max(1.5);

        // Core features first; struggling customers later narrow down to their top few.
        let mut weighted: Vec<(&'static str, f64)> = Vec::new();
        for f in CORE_FEATURES {
            if chance(&mut r, 0.85) || weighted.is_empty() {
                weighted.push((f, uniform(&mut r, 1.0, 3.0)));
            }
        }
        let extra = range(&mut r, 2, 9);
        for _ in 0..extra {
            let f = pick(&mut r, &OTHER_FEATURES);
            if !weighted.iter().any(|(g, _)| *g == f) {
                weighted.push((f, uniform(&mut r, 0.1, 1.0)));
            }
        }
        weighted.sort_by(|a, b| b.1.total_cmp(&a.1));
        let features = weighted.iter().map(|(f, _)| *f).collect();
        let feature_cum = weighted
            .iter()
            .scan(0.0, |acc, (_, w)| {
                *acc += w;
                Some(*acc)
            })
            .collect();

        let profile = CustomerProfile { customer_id: id.clone(), persona, plan: PLANS[plan].name, seats, churn_at };
        let customer = Customer {
            id,
            num,
            uid_base: 0,
            tz,
            h0,
            next_day: h0,
            snapshot_done: started_in_history,
            active_from,
            churn_at,
            churn_day: churn_day.unwrap_or(i64::MAX),
            cancel_reason,
            plan,
            seats,
            seats0: seats as f64,
            mrr,
            start_day,
            started_in_history,
            renewal_day,
            bill_dom,
            bill_hour: range(&mut r, HOUR_MS, 6 * HOUR_MS),
            change,
            users,
            pool0,
            dau: uniform(&mut r, 0.45, 0.7),
            per_session: lognormal(&mut r, 1.9, 0.3),
            weekend: uniform(&mut r, 0.04, 0.25),
            features,
            feature_cum,
            trajectory,
            dip,
            mood0,
            ticket_rate: 0.045 * (seats as f64).sqrt() * uniform(&mut r, 0.5, 1.5),
            tickets: 0,
            // Surveys go out quarterly; new customers get their first after settling in.
            nps_next: if started_in_history { start_day + range(&mut r, 30, 75) } else { h0 + range(&mut r, 0, 90) },
            card_fail: if persona == Persona::Healthy { 0.03 } else { 0.015 },
            trouble,
            noise,
            rng: r,
        };
        (customer, profile)
    }

    fn local_start(&self, day: i64) -> Millis {
        day * DAY_MS - self.tz
    }

    /// Generates every local day that starts before `until`.
    fn generate_until(&mut self, out: &mut Out, until: Millis) {
        while self.next_day <= self.churn_day && self.local_start(self.next_day) < until {
            let day = self.next_day;
            self.day(out, day);
            self.next_day += 1;
        }
    }

    /// Renders and queues one event (plus, at the configured rates, a bad line or a duplicate).
    /// Events before the account exists or after it cancels are dropped.
    fn emit(&mut self, out: &mut Out, ts: Millis, source: Source, kind: &str, payload: impl FnOnce(&mut String)) {
        let event_id: u64 = self.rng.gen();
        if ts < self.active_from || self.churn_at.is_some_and(|c| ts > c) || ts < out.start || ts >= out.end {
            return;
        }
        let mut json = String::with_capacity(192);
        json.push_str(r#"{"event_id":"evt_"#);
        write_hex(event_id, &mut json);
        json.push_str(r#"","customer_id":""#);
        json.push_str(&self.id);
        json.push_str(r#"","timestamp":""#);
        out.write_timestamp(ts, &mut json);
        json.push_str(r#"","type":""#);
        json.push_str(kind);
        json.push('"');
        payload(&mut json);
        json.push('}');
        let duplicate = unit(&mut self.noise) < out.dup_rate;
        let bad = unit(&mut self.noise) < out.bad_rate;
        if bad {
            self.bad_line(out, ts, source, &json);
        }
        if duplicate {
            let delay = if chance(&mut self.noise, 0.8) {
                range(&mut self.noise, 100, 30_000)
            } else {
                range(&mut self.noise, MINUTE_MS, 30 * MINUTE_MS)
            };
            if out.push(ts + delay, source, &self.id, json.clone()) {
                out.stats.duplicates += 1;
            }
        }
        out.push(ts, source, &self.id, json);
    }

    /// A malformed line sent next to the good line `json`, as producer bugs do.
    fn bad_line(&mut self, out: &mut Out, ts: Millis, source: Source, json: &str) {
        let n = &mut self.noise;
        let sent = ts + range(n, 0, 2_000);
        let fresh_id: u64 = n.gen();
        let head = |kind: &str| {
            format!(
                r#"{{"event_id":"evt_{fresh_id:016x}","customer_id":"{}","timestamp":"{}","type":"{kind}""#,
                self.id,
                format_rfc3339(ts)
            )
        };
        let (source, line) = match range(n, 0, 6) {
            0 => {
                if chance(n, 0.75) {
                    // Cut off mid-write: a proper prefix of an object is never valid JSON.
                    (source, json[..range(n, 12, json.len() as i64 - 1) as usize].to_string())
                } else {
                    let garbage = pick(
                        n,
                        &[
                            "<html><head><title>502 Bad Gateway</title></head></html>",
                            "Internal Server Error",
                            "type=session&customer_id=unknown",
                        ],
                    );
                    (Source::ProductUsage, garbage.to_string())
                }
            }
            // The event id field has a fixed width: `{"event_id":"evt_` + 16 hex digits + `",`.
            1 => (source, format!("{{{}", &json[35..])),
            2 => {
                let kind = pick(n, &["page_view", "login", "feature_usage", "user_invited"]);
                let user = self.uid_base + 1;
                (Source::ProductUsage, format!(r#"{},"user_id":"u_{user}"}}"#, head(kind)))
            }
            3 => {
                let priority = pick(n, &["P1", "critical", "HIGH", "medium"]);
                let ticket = range(n, 0, 10_000);
                (
                    Source::Support,
                    format!(
                        r#"{},"ticket_id":"tkt_{}_x{ticket}","priority":"{priority}"}}"#,
                        head("ticket_opened"),
                        self.num
                    ),
                )
            }
            4 => {
                let user = self.uid_base + 1;
                let seconds = range(n, 1, 3_600);
                (
                    Source::ProductUsage,
                    format!(r#"{},"user_id":"u_{user}","duration_seconds":-{seconds}}}"#, head("session")),
                )
            }
            _ => {
                // The epoch itself, or seconds sent where milliseconds belong.
                let wrong = if chance(n, 0.5) { 0 } else { ts / 1000 };
                let at = json.find(r#""timestamp":""#).expect("every line has a timestamp") + 13;
                (source, format!("{}{}{}", &json[..at], format_rfc3339(wrong), &json[at + 24..]))
            }
        };
        if out.push(sent, source, &self.id, line) {
            out.stats.bad_lines += 1;
        }
    }

    /// Milliseconds into a local day at which someone does something.
    fn work_time(&mut self, workday: bool) -> Millis {
        let r = &mut self.rng;
        let hour = if !workday {
            uniform(r, 9.0, 22.0)
        } else {
            let x = unit(r);
            if x < 0.45 {
                10.5 + 1.4 * normal(r)
            } else if x < 0.9 {
                14.5 + 1.6 * normal(r)
            } else {
                uniform(r, 7.0, 23.0)
            }
        };
        (hour.clamp(0.0, 23.99) * HOUR_MS as f64) as Millis
    }

    fn declining_level(onset: f64, decay: f64, floor: f64, recover_at: Option<f64>, t: f64) -> f64 {
        if t < onset {
            return 1.0;
        }
        let mut level = floor + (1.0 - floor) * (-3.0 * (t - onset) / decay).exp();
        if let Some(r) = recover_at.filter(|&r| t > r) {
            level += (0.85 - level) * (1.0 - (-(t - r) / 14.0).exp());
        }
        level
    }

    /// Usage on a local day: users in the pool, activity per user (1 = the customer's normal), and
    /// the share of the feature set in use.
    fn usage_shape(&self, day: i64) -> (f64, f64, f64) {
        let t = (day - self.h0) as f64;
        let (pool, mut activity, breadth) = match self.trajectory {
            Trajectory::Steady => (self.pool0, 1.0, 1.0),
            Trajectory::PaymentTrouble => {
                // Customers on their way out already use the product a little less.
                let leaving = self.churn_day != i64::MAX && day + 14 >= self.churn_day;
                (self.pool0, if leaving { 0.6 } else { 1.0 }, 1.0)
            }
            Trajectory::Declining { onset, decay, floor, recover_at } => {
                let level = Self::declining_level(onset, decay, floor, recover_at, t);
                // Both the people and their activity fade; together they multiply to `level`.
                let people = 0.35 + 0.65 * level;
                (self.pool0 * people, level / people, 0.2 + 0.8 * level)
            }
            Trajectory::Silent { stop } => {
                if t >= stop {
                    (0.0, 0.0, 0.0)
                } else {
                    (self.pool0, 1.0, 1.0)
                }
            }
            Trajectory::Expanding { p0, p1, span } => {
                let f = (t / span).clamp(0.0, 1.0);
                (self.seats0 * (p0 + (p1 - p0) * f), 1.0 + 0.3 * f, 0.8 + 0.2 * f)
            }
            Trajectory::Onboarding { tau, peak } => {
                let s = (day - self.start_day) as f64;
                let ramp = 1.0 - (-s / tau).exp();
                match peak {
                    None => (1.0 + (self.pool0 - 1.0) * ramp, 0.4 + 0.6 * ramp, 0.2 + 0.8 * ramp),
                    Some(peak) => {
                        let fade = (-(s - 2.0 * tau).max(0.0) / 10.0).exp();
                        let g = peak * ramp * fade;
                        (1.0 + (self.pool0 - 1.0) * g, (0.3 + 0.7 * g) * fade, 0.2 + 0.3 * ramp)
                    }
                }
            }
        };
        if let Some(dip) = self.dip.as_ref().filter(|d| (d.day..d.day + 7).contains(&day)) {
            activity *= dip.factor;
        }
        (pool, activity, breadth)
    }

    /// How happy the customer is, 0 to 1: drives ticket volume and priority, CSAT and NPS.
    fn mood(&self, day: i64) -> f64 {
        let t = (day - self.h0) as f64;
        let mut mood = match self.trajectory {
            Trajectory::Declining { onset, decay, floor, recover_at } => {
                let level = Self::declining_level(onset, decay, floor, recover_at, t);
                0.15 + (self.mood0 - 0.15) * ((level - floor) / (1.0 - floor)).clamp(0.0, 1.0)
            }
            Trajectory::Onboarding { tau, peak: Some(_) } => {
                let s = (day - self.start_day) as f64;
                0.35 + (self.mood0 - 0.35) * (-(s - tau).max(0.0) / 15.0).exp()
            }
            Trajectory::PaymentTrouble => match &self.trouble {
                Some(tr) if tr.pays_after.is_none() && day >= tr.first_invoice => self.mood0 - 0.25,
                _ => self.mood0,
            },
            _ => self.mood0,
        };
        if self.dip.as_ref().is_some_and(|d| d.unhappy && (d.day..d.day + 7).contains(&day)) {
            mood = mood.min(0.4);
        }
        mood
    }

    fn day(&mut self, out: &mut Out, day: i64) {
        if !self.snapshot_done {
            self.snapshot_done = true;
            let ts = out.start + range(&mut self.rng, 0, 1_000);
            let (plan, mrr, seats) = (PLANS[self.plan].name, self.mrr, self.seats);
            self.emit(out, ts, Source::Billing, "subscription_changed", |j| {
                let _ = write!(j, r#","plan":"{plan}","mrr":{mrr},"seats":{seats}"#);
            });
            let renewal = date_str(self.renewal_day);
            self.emit(out, ts + 1, Source::Billing, "subscription_renewed", |j| {
                let _ = write!(j, r#","renewal_date":"{renewal}""#);
            });
        }
        if day < self.start_day {
            return;
        }
        let day0 = self.local_start(day);
        let workday = weekday(day) < 5;
        if self.started_in_history && day == self.start_day {
            let (plan, mrr, seats) = (PLANS[self.plan].name, self.mrr, self.seats);
            let renewal = date_str(self.renewal_day);
            self.emit(out, self.active_from, Source::Billing, "subscription_started", |j| {
                let _ = write!(j, r#","plan":"{plan}","mrr":{mrr},"seats":{seats},"renewal_date":"{renewal}""#);
            });
        }
        self.billing(out, day, day0);
        let (pool, activity, breadth) = self.usage_shape(day);
        let pool = if pool > 0.0 { (pool.round() as usize).clamp(1, self.users.len()) } else { 0 };
        self.usage(out, day0, workday, pool, activity, breadth);
        let mood = self.mood(day);
        self.support(out, day, day0, workday, mood);
        self.nps(out, day, day0, pool, mood);
        if day == self.churn_day {
            if let Some(at) = self.churn_at {
                let reason = self.cancel_reason;
                let mut effective = day + 1;
                while date_of(effective).day() != self.bill_dom {
                    effective += 1;
                }
                let effective = date_str(effective);
                self.emit(out, at, Source::Billing, "subscription_cancelled", |j| {
                    if let Some(reason) = reason {
                        let _ = write!(j, r#","reason":"{reason}""#);
                    }
                    let _ = write!(j, r#","effective_date":"{effective}""#);
                });
            }
        }
    }

    fn usage(&mut self, out: &mut Out, day0: Millis, workday: bool, pool: usize, activity: f64, breadth: f64) {
        if pool == 0 || activity <= 0.0 {
            return;
        }
        let mut dau = self.dau * activity.sqrt();
        let mut intensity = activity.sqrt();
        if !workday {
            dau *= self.weekend;
        }
        // Now and then a launch, an audit or a migration: several times the usual volume.
        if chance(&mut self.rng, 0.025) {
            intensity *= uniform(&mut self.rng, 2.0, 4.0);
            dau *= 1.3;
        }
        let k = ((self.features.len() as f64 * breadth).ceil() as usize).clamp(1, self.features.len());
        for user in 0..pool {
            let p = (self.users[user] * dau).min(0.97);
            if chance(&mut self.rng, p) {
                self.user_day(out, day0, workday, user, intensity, k);
            }
        }
    }

    fn user_day(&mut self, out: &mut Out, day0: Millis, workday: bool, user: usize, intensity: f64, k: usize) {
        let uid = self.uid_base + user as u64 + 1;
        let sessions = 1 + poisson(&mut self.rng, 0.2 * intensity.min(4.0));
        for _ in 0..sessions {
            let start = day0 + self.work_time(workday);
            let duration = lognormal(&mut self.rng, 20.0 * MINUTE_MS as f64, 0.9).clamp(20_000.0, 5.0 * HOUR_MS as f64);
            let actions = poisson(&mut self.rng, self.per_session * intensity);
            for _ in 0..actions {
                let ts = start + (unit(&mut self.rng) * duration) as Millis;
                let x = unit(&mut self.rng) * self.feature_cum[k - 1];
                let feature = self.features[self.feature_cum[..k].partition_point(|&c| c <= x).min(k - 1)];
                let (by_user, quantity) = self.feature_shape(feature);
                self.emit(out, ts, Source::ProductUsage, "feature_used", |j| {
                    let _ = write!(j, r#","feature":"{feature}""#);
                    if by_user {
                        let _ = write!(j, r#","user_id":"u_{uid}""#);
                    }
                    if let Some(q) = quantity {
                        let _ = write!(j, r#","quantity":{q}"#);
                    }
                });
            }
            let seconds = duration as i64 / 1000;
            self.emit(out, start + duration as Millis, Source::ProductUsage, "session", |j| {
                let _ = write!(j, r#","user_id":"u_{uid}","duration_seconds":{seconds}"#);
            });
        }
    }

    /// Whether a feature use is attributed to a person (machine traffic often is not) and its
    /// quantity when it is not the default 1.
    fn feature_shape(&mut self, feature: &str) -> (bool, Option<u32>) {
        let r = &mut self.rng;
        let (p_user, p_quantity, lo, hi) = match feature {
            "api" => (0.3, 0.75, 1, 0),
            "integrations" | "automation" => (0.5, 0.3, 1, 20),
            "export" => (1.0, 0.4, 1, 10),
            "reports" => (1.0, 0.25, 1, 6),
            _ => (1.0, 0.06, 2, 4),
        };
        let by_user = chance(r, p_user);
        let quantity = chance(r, p_quantity).then(|| {
            if hi == 0 {
                lognormal(r, 40.0, 1.0).clamp(1.0, 5_000.0) as u32
            } else {
                range(r, lo, hi + 1) as u32
            }
        });
        (by_user, quantity)
    }

    fn support(&mut self, out: &mut Out, day: i64, day0: Millis, workday: bool, mood: f64) {
        let t = (day - self.h0) as f64;
        let mut rate = self.ticket_rate * (1.0 + 4.0 * (1.0 - mood).powi(2));
        if let Trajectory::Silent { stop } = self.trajectory {
            // Silent churners do not complain, before or after they stop.
            rate *= if t >= stop { 0.0 } else { 0.4 };
        }
        if let Trajectory::Onboarding { tau, .. } = self.trajectory {
            // New customers ask how-to questions while they set up.
            rate *= 1.0 + 2.0 * (-((day - self.start_day) as f64) / tau).exp();
        }
        if !workday {
            rate *= 0.15;
        }
        if chance(&mut self.rng, rate) {
            self.ticket(out, day0, workday, mood);
        }
    }

    fn ticket(&mut self, out: &mut Out, day0: Millis, workday: bool, mood: f64) {
        self.tickets += 1;
        let ticket = format!("tkt_{}_{:04}", self.num, self.tickets);
        let unhappy = (1.0 - mood).powi(2);
        let r = &mut self.rng;
        let (priority, speed) = if chance(r, 0.04 + 0.75 * unhappy) {
            if chance(r, 0.15 + 0.35 * (1.0 - mood)) {
                ("urgent", 0.35)
            } else {
                ("high", 0.6)
            }
        } else if chance(r, 0.4) {
            ("low", 1.5)
        } else {
            ("normal", 1.0)
        };
        let base = (4.0 + 70.0 * unhappy) * speed * HOUR_MS as f64;
        let opened = day0 + self.work_time(workday);
        let tk = ticket.as_str();
        self.emit(out, opened, Source::Support, "ticket_opened", |j| {
            let _ = write!(j, r#","ticket_id":"{tk}","priority":"{priority}""#);
        });
        let mut t =
            opened + lognormal(&mut self.rng, base, 0.8).clamp(10.0 * MINUTE_MS as f64, 30.0 * DAY_MS as f64) as Millis;
        self.emit(out, t, Source::Support, "ticket_resolved", |j| {
            let _ = write!(j, r#","ticket_id":"{tk}""#);
        });
        let mut reopens = 0;
        while reopens < 2 && chance(&mut self.rng, 0.03 + 0.45 * unhappy) {
            reopens += 1;
            t += lognormal(&mut self.rng, 20.0 * HOUR_MS as f64, 0.7) as Millis;
            self.emit(out, t, Source::Support, "ticket_reopened", |j| {
                let _ = write!(j, r#","ticket_id":"{tk}""#);
            });
            t += lognormal(&mut self.rng, 0.7 * base, 0.8).max(10.0 * MINUTE_MS as f64) as Millis;
            self.emit(out, t, Source::Support, "ticket_resolved", |j| {
                let _ = write!(j, r#","ticket_id":"{tk}""#);
            });
        }
        if chance(&mut self.rng, 0.45) {
            t += range(&mut self.rng, 10 * MINUTE_MS, 20 * HOUR_MS);
            let m = mood - 0.15 * reopens as f64;
            let rating = (0.6 + 4.6 * m + 0.7 * normal(&mut self.rng)).round().clamp(1.0, 5.0) as u8;
            self.emit(out, t, Source::Support, "csat_response", |j| {
                let _ = write!(j, r#","rating":{rating},"ticket_id":"{tk}""#);
            });
        }
    }

    /// A quarterly NPS survey: a few of the current users answer over the next days.
    fn nps(&mut self, out: &mut Out, day: i64, day0: Millis, pool: usize, mood: f64) {
        if day < self.nps_next {
            return;
        }
        self.nps_next += 90;
        if pool == 0 {
            return;
        }
        let p = (0.5 / pool as f64).clamp(0.15, 0.6);
        for _ in 0..pool {
            if chance(&mut self.rng, p) {
                let ts = day0 + range(&mut self.rng, 0, 3) * DAY_MS + self.work_time(true);
                let score = (mood * 10.6 - 0.3 + 1.5 * normal(&mut self.rng)).round().clamp(0.0, 10.0) as u8;
                self.emit(out, ts, Source::Support, "nps_response", |j| {
                    let _ = write!(j, r#","score":{score}"#);
                });
            }
        }
    }

    fn billing(&mut self, out: &mut Out, day: i64, day0: Millis) {
        if let Some(change) = self.change.take_if(|c| c.day == day) {
            let ts = day0 + self.work_time(true);
            self.plan = change.plan;
            self.seats = change.seats;
            self.mrr = change.mrr;
            let (plan, mrr, seats) = (PLANS[self.plan].name, self.mrr, self.seats);
            self.emit(out, ts, Source::Billing, "subscription_changed", |j| {
                let _ = write!(j, r#","plan":"{plan}","mrr":{mrr},"seats":{seats}"#);
            });
        }
        if day == self.renewal_day {
            let ts = day0 + self.bill_hour + range(&mut self.rng, 0, 10 * MINUTE_MS);
            self.renewal_day += 365;
            let renewal = date_str(self.renewal_day);
            self.emit(out, ts, Source::Billing, "subscription_renewed", |j| {
                let _ = write!(j, r#","renewal_date":"{renewal}""#);
            });
        }
        let date = date_of(day);
        if date.day() != self.bill_dom {
            return;
        }
        let ts = if self.started_in_history && day == self.start_day {
            self.active_from + range(&mut self.rng, MINUTE_MS, 10 * MINUTE_MS)
        } else {
            day0 + self.bill_hour + range(&mut self.rng, 0, 30 * MINUTE_MS)
        };
        let invoice = format!("inv_{}_{}{:02}", self.num, date.year(), date.month() as u8);
        let amount = self.mrr;
        let dunning = match &self.trouble {
            Some(tr) if day == tr.first_invoice => Some(tr.pays_after),
            Some(tr) if day > tr.first_invoice => match tr.pays_after {
                None => Some(None),
                Some(_) => {
                    let repeat = tr.repeat;
                    chance(&mut self.rng, repeat).then(|| Some(range(&mut self.rng, 2, 9)))
                }
            },
            _ => None,
        };
        let inv = invoice.as_str();
        match dunning {
            Some(pays_after) => self.dunning(out, ts, inv, amount, pays_after),
            None if chance(&mut self.rng, self.card_fail) => {
                // An expired card, fixed within days.
                self.emit(out, ts, Source::Billing, "payment_failed", |j| {
                    let _ = write!(j, r#","invoice_id":"{inv}","amount":{amount}"#);
                });
                let delay = range(&mut self.rng, 4 * HOUR_MS, 3 * DAY_MS);
                let overdue = delay / DAY_MS;
                self.emit(out, ts + delay, Source::Billing, "invoice_paid", |j| {
                    let _ = write!(j, r#","invoice_id":"{inv}","amount":{amount}"#);
                    if overdue > 0 {
                        let _ = write!(j, r#","days_overdue":{overdue}"#);
                    }
                });
            }
            None => {
                let ts = ts + range(&mut self.rng, 5_000, 5 * MINUTE_MS);
                self.emit(out, ts, Source::Billing, "invoice_paid", |j| {
                    let _ = write!(j, r#","invoice_id":"{inv}","amount":{amount}"#);
                });
            }
        }
    }

    /// A failed invoice: a retry after three days, weekly overdue notices, and payment after
    /// `pays_after` days (never, for customers who cancel instead; the cancellation cuts it off).
    fn dunning(&mut self, out: &mut Out, t0: Millis, inv: &str, amount: u32, pays_after: Option<i64>) {
        self.emit(out, t0, Source::Billing, "payment_failed", |j| {
            let _ = write!(j, r#","invoice_id":"{inv}","amount":{amount}"#);
        });
        for (days, kind) in [
            (3, "payment_failed"),
            (7, "invoice_overdue"),
            (14, "invoice_overdue"),
            (21, "invoice_overdue"),
            (30, "invoice_overdue"),
            (45, "invoice_overdue"),
            (60, "invoice_overdue"),
        ] {
            if pays_after.is_some_and(|p| days >= p) {
                break;
            }
            let ts = t0 + days * DAY_MS + range(&mut self.rng, 0, 2 * HOUR_MS);
            self.emit(out, ts, Source::Billing, kind, |j| {
                let _ = write!(j, r#","invoice_id":"{inv}","amount":{amount},"days_overdue":{days}"#);
            });
        }
        if let Some(days) = pays_after {
            let ts = t0 + days * DAY_MS + range(&mut self.rng, 5 * HOUR_MS, 14 * HOUR_MS);
            self.emit(out, ts, Source::Billing, "invoice_paid", |j| {
                let _ = write!(j, r#","invoice_id":"{inv}","amount":{amount},"days_overdue":{days}"#);
            });
        }
    }
}

/// Streams a synthetic population's events in non-decreasing [`GeneratedEvent::timestamp`] order.
pub struct Generator {
    cfg: GenConfig,
    profiles: Vec<CustomerProfile>,
    customers: Vec<Customer>,
    out: Out,
    next_batch: u32,
    /// The current day's lines, latest first, so that yielding is a `pop`.
    ready: Vec<Item>,
}

impl Generator {
    pub fn new(cfg: GenConfig) -> Self {
        let n = cfg.customers as usize;
        let mut r = rng_for(cfg.seed, 0);
        // Exact counts (largest remainder), shuffled: small populations still get every persona.
        let mut counts: Vec<(Persona, usize, f64)> =
            PERSONA_MIX.iter().map(|&(p, share)| (p, (share * n as f64) as usize, share * n as f64)).collect();
        let mut missing = n - counts.iter().map(|c| c.1).sum::<usize>();
        let mut order: Vec<usize> = (0..counts.len()).collect();
        order.sort_by(|&a, &b| {
            let fa = counts[a].2 - counts[a].1 as f64;
            let fb = counts[b].2 - counts[b].1 as f64;
            fb.total_cmp(&fa).then(a.cmp(&b))
        });
        for &i in order.iter().cycle() {
            if missing == 0 {
                break;
            }
            counts[i].1 += 1;
            missing -= 1;
        }
        let mut personas: Vec<Persona> = counts.iter().flat_map(|&(p, c, _)| std::iter::repeat_n(p, c)).collect();
        for i in (1..personas.len()).rev() {
            let j = range(&mut r, 0, i as i64 + 1) as usize;
            personas.swap(i, j);
        }

        let width = cfg.customers.max(1).to_string().len();
        let (mut customers, profiles): (Vec<Customer>, Vec<_>) =
            personas.iter().enumerate().map(|(i, &p)| Customer::new(&cfg, i as u32, p, width)).unzip();
        // User numbers are global, handed out in blocks; short ids keep the lines short.
        let mut next_user = 0;
        for c in &mut customers {
            c.uid_base = next_user;
            next_user += c.users.len() as u64;
        }
        let out = Out {
            start: cfg.start(),
            end: cfg.end,
            batch_end: cfg.start(),
            bad_rate: cfg.bad_input_rate,
            dup_rate: cfg.duplicate_rate,
            seq: 0,
            batch: Vec::new(),
            tomorrow: Vec::new(),
            later: BinaryHeap::new(),
            stats: GenStats::default(),
            dates: [(i64::MIN, [0; 11]); 4],
        };
        Generator { cfg, profiles, customers, out, next_batch: 0, ready: Vec::new() }
    }

    /// The ground truth for every customer, in customer-id order.
    pub fn profiles(&self) -> &[CustomerProfile] {
        &self.profiles
    }

    pub fn config(&self) -> &GenConfig {
        &self.cfg
    }

    /// Lines generated so far; the totals once the iterator is exhausted.
    pub fn stats(&self) -> GenStats {
        self.out.stats
    }

    /// Builds the next UTC day: every customer's local days that start in it, plus the lines
    /// scheduled earlier that fall due in it.
    fn fill(&mut self) {
        let out = &mut self.out;
        out.batch_end = self.cfg.start() + (self.next_batch as Millis + 1) * DAY_MS;
        self.next_batch += 1;
        // The lines queued for tomorrow yesterday are today's; reuse the spent buffer for tomorrow.
        out.batch = std::mem::replace(&mut out.tomorrow, std::mem::take(&mut self.ready));
        debug_assert!(out.batch.iter().all(|item| item.ts < out.batch_end));
        for c in &mut self.customers {
            c.generate_until(out, out.batch_end);
        }
        while out.later.peek().is_some_and(|Reverse(item)| item.ts < out.batch_end) {
            let Reverse(item) = out.later.pop().expect("peeked");
            out.batch.push(item);
        }
        out.batch.sort_unstable_by(|a, b| b.cmp(a));
        self.ready = std::mem::take(&mut out.batch);
    }
}

impl Iterator for Generator {
    type Item = GeneratedEvent;

    fn next(&mut self) -> Option<GeneratedEvent> {
        loop {
            if let Some(item) = self.ready.pop() {
                return Some(item.ev);
            }
            if self.next_batch >= self.cfg.days {
                return None;
            }
            self.fill();
        }
    }
}

/// Writes the population's lines as NDJSON; returns the number of lines.
pub fn write_ndjson(cfg: GenConfig, w: &mut impl Write) -> io::Result<u64> {
    let mut w = BufWriter::with_capacity(1 << 16, w);
    let mut lines = 0;
    for ev in Generator::new(cfg) {
        w.write_all(ev.json.as_bytes())?;
        w.write_all(b"\n")?;
        lines += 1;
    }
    w.flush()?;
    Ok(lines)
}

/// Writes the churn labels: `customer_id,churn_date` (UTC date of the cancellation), one row per
/// customer that cancels, including those that cancel after the end of the history.
pub fn write_labels_csv(profiles: &[CustomerProfile], w: &mut impl Write) -> io::Result<()> {
    writeln!(w, "customer_id,churn_date")?;
    for p in profiles {
        if let Some(at) = p.churn_at {
            writeln!(w, "{},{}", p.customer_id, &format_rfc3339(at)[..10])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::event::{parse, parse_rfc3339, EventKind, RejectReason};

    fn small(customers: u32, days: u32) -> GenConfig {
        GenConfig { customers, days, ..GenConfig::default() }
    }

    #[test]
    fn default_config_ends_on_the_first_of_november() {
        let cfg = GenConfig::default();
        assert_eq!(Some(cfg.end), parse_rfc3339("2026-11-01T00:00:00Z"));
        assert_eq!(format_rfc3339(cfg.start()), "2026-07-04T00:00:00.000Z");
        assert_eq!((cfg.customers, cfg.days, cfg.seed), (1000, 120, 42));
    }

    #[test]
    fn same_config_same_bytes() {
        let cfg = GenConfig { bad_input_rate: 0.01, duplicate_rate: 0.01, ..small(25, 40) };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let n = write_ndjson(cfg, &mut a).unwrap();
        assert_eq!(write_ndjson(cfg, &mut b).unwrap(), n);
        assert!(n > 1000);
        assert!(a == b, "two runs of the same config differ");
        let mut c = Vec::new();
        write_ndjson(GenConfig { seed: 7, ..cfg }, &mut c).unwrap();
        assert!(a != c, "the seed changes nothing");
    }

    #[test]
    fn noise_rates_leave_the_good_events_alone() {
        let clean: Vec<_> = Generator::new(GenConfig { bad_input_rate: 0.0, duplicate_rate: 0.0, ..small(15, 30) })
            .map(|e| e.json)
            .collect();
        let mut seen = HashSet::new();
        let noisy: Vec<_> = Generator::new(GenConfig { bad_input_rate: 0.05, duplicate_rate: 0.05, ..small(15, 30) })
            .filter(|e| parse(e.json.as_bytes(), Some(e.source)).is_ok() && seen.insert(e.json.clone()))
            .map(|e| e.json)
            .collect();
        assert_eq!(clean, noisy);
    }

    #[test]
    fn timestamps_never_go_back() {
        let cfg = GenConfig { duplicate_rate: 0.02, bad_input_rate: 0.02, ..small(40, 60) };
        let mut last = Millis::MIN;
        let mut n = 0;
        for e in Generator::new(cfg) {
            assert!(e.timestamp >= last, "{} after {}", format_rfc3339(e.timestamp), format_rfc3339(last));
            assert!((cfg.start()..cfg.end).contains(&e.timestamp));
            last = e.timestamp;
            n += 1;
        }
        assert!(n > 10_000);
    }

    #[test]
    fn good_lines_parse_and_bad_lines_do_not() {
        let cfg = GenConfig { bad_input_rate: 0.01, duplicate_rate: 0.01, ..small(40, 60) };
        let mut g = Generator::new(cfg);
        let (mut lines, mut bad, mut dups) = (0u64, 0u64, 0u64);
        let mut ids = HashSet::new();
        let mut types = HashSet::new();
        for e in &mut g {
            lines += 1;
            assert!(!e.json.contains('\n'));
            match parse(e.json.as_bytes(), Some(e.source)) {
                Err(_) => bad += 1,
                Ok(ev) => {
                    assert_eq!(ev.customer_id, e.customer_id);
                    assert_eq!(ev.kind.source(), e.source);
                    assert!(ev.event_id.len() == 20 && ev.event_id.starts_with("evt_"), "{}", ev.event_id);
                    assert!(ev.event_id[4..].bytes().all(|b| b.is_ascii_hexdigit()));
                    types.insert(ev.kind.type_name());
                    if ids.insert(ev.event_id.to_string()) {
                        assert_eq!(ev.timestamp, e.timestamp, "an original is sent at its event time");
                    } else {
                        dups += 1;
                        assert!(ev.timestamp < e.timestamp && e.timestamp - ev.timestamp <= 30 * MINUTE_MS);
                    }
                }
            }
        }
        let stats = g.stats();
        assert_eq!(stats.lines, lines);
        assert_eq!(stats.bad_lines, bad, "every bad line fails and every good one parses");
        assert_eq!(stats.duplicates, dups);
        let good = (lines - bad - dups) as f64;
        assert!((0.8..1.2).contains(&(bad as f64 / good / cfg.bad_input_rate)), "{bad} bad of {good}");
        assert!((0.8..1.2).contains(&(dups as f64 / good / cfg.duplicate_rate)), "{dups} duplicates of {good}");
        for t in ["feature_used", "session", "ticket_opened", "ticket_resolved", "csat_response", "nps_response"] {
            assert!(types.contains(t), "no {t}");
        }
        for t in ["subscription_changed", "subscription_renewed", "subscription_started", "invoice_paid"] {
            assert!(types.contains(t), "no {t}");
        }
    }

    #[test]
    fn every_kind_of_bad_line_is_rejected() {
        let cfg = GenConfig { bad_input_rate: 1.0, duplicate_rate: 0.0, ..small(4, 6) };
        let mut reasons = HashMap::new();
        let mut fields = HashSet::new();
        for e in Generator::new(cfg) {
            if let Err(r) = parse(e.json.as_bytes(), Some(e.source)) {
                *reasons.entry(r.reason).or_insert(0) += 1;
                fields.extend(r.field);
            }
        }
        for reason in [
            RejectReason::NotJson,
            RejectReason::MissingField,
            RejectReason::UnknownType,
            RejectReason::InvalidField,
            RejectReason::TimestampOutOfRange,
        ] {
            assert!(reasons.get(&reason).is_some_and(|&n| n > 10), "{reason}: {reasons:?}");
        }
        assert!(!reasons.contains_key(&RejectReason::WrongTopic), "bad lines go to their producer's topic");
        for field in ["event_id", "type", "priority", "duration_seconds", "timestamp"] {
            assert!(fields.contains(field), "no line with a bad {field}");
        }
    }

    #[test]
    fn personas_follow_the_mix_and_ids_are_padded() {
        let g = Generator::new(small(100, 30));
        let count = |p| g.profiles().iter().filter(|c| c.persona == p).count();
        let counts: Vec<_> = Persona::ALL.iter().map(|&p| count(p)).collect();
        assert_eq!(counts, [45, 15, 10, 10, 12, 8]);
        assert_eq!(g.profiles()[0].customer_id, "cus_001");
        assert_eq!(g.profiles()[99].customer_id, "cus_100");
        assert_eq!(Generator::new(small(1000, 1)).profiles()[41].customer_id, "cus_0042");
        for p in g.profiles() {
            let plan = PLANS.iter().find(|s| s.name == p.plan).unwrap();
            assert!((plan.seats.0..=plan.seats.1).contains(&p.seats), "{p:?}");
        }
        assert!(g.profiles().iter().all(|p| p.persona != Persona::Healthy || p.churn_at.is_none()));
        assert!(g.profiles().iter().all(|p| p.persona != Persona::Expanding || p.churn_at.is_none()));
        assert!(g.profiles().iter().all(|p| p.persona != Persona::SilentChurner || p.churn_at.is_some()));
    }

    /// One customer's good events, originals only.
    #[derive(Default)]
    struct History {
        usage: Vec<(Millis, Option<String>)>,
        other: Vec<(Millis, String, EventKind<'static>)>,
    }

    /// Good events per customer. Usage lines are not parsed: that is slow in debug builds, and
    /// `good_lines_parse_and_bad_lines_do_not` already checks them.
    fn histories(cfg: GenConfig) -> (Vec<CustomerProfile>, HashMap<String, History>) {
        assert_eq!((cfg.bad_input_rate, cfg.duplicate_rate), (0.0, 0.0));
        let g = Generator::new(cfg);
        let profiles = g.profiles().to_vec();
        let mut out: HashMap<String, History> = HashMap::new();
        for e in g {
            let h = out.entry(e.customer_id.clone()).or_default();
            if e.source == Source::ProductUsage {
                let user = e.json.split_once(r#""user_id":""#).and_then(|(_, rest)| rest.split_once('"'));
                h.usage.push((e.timestamp, user.map(|(u, _)| u.to_string())));
            } else {
                let value = serde_json::from_str::<serde_json::Value>(&e.json).unwrap();
                let kind = crate::event::parse_value(&value, Some(e.source)).unwrap().kind;
                h.other.push((e.timestamp, kind.type_name().to_string(), kind));
            }
        }
        (profiles, out)
    }

    #[test]
    fn personas_behave() {
        let cfg = GenConfig { bad_input_rate: 0.0, duplicate_rate: 0.0, ..small(100, 120) };
        let (start, end) = (cfg.start(), cfg.end);
        let (profiles, hist) = histories(cfg);
        let usage_in =
            |h: &History, from: Millis, to: Millis| h.usage.iter().filter(|u| (from..to).contains(&u.0)).count();
        let users_in = |h: &History, from: Millis, to: Millis| {
            h.usage
                .iter()
                .filter(|u| (from..to).contains(&u.0))
                .filter_map(|u| u.1.clone())
                .collect::<HashSet<_>>()
                .len()
        };
        let empty = History::default();
        let (mut decl_first, mut decl_last, mut decl_n) = (0, 0, 0);
        let (mut exp_first, mut exp_last) = (0, 0);
        let (mut nps, mut csat) = (HashMap::<Persona, Vec<u8>>::new(), HashMap::<Persona, Vec<u8>>::new());
        for p in &profiles {
            let h = hist.get(&p.customer_id).unwrap_or(&empty);
            let last = h.usage.iter().map(|u| u.0).chain(h.other.iter().map(|o| o.0)).max();
            let cancels: Vec<_> = h.other.iter().filter(|o| o.1 == "subscription_cancelled").collect();
            for (_, _, kind) in &h.other {
                match kind {
                    EventKind::NpsResponse { score } => nps.entry(p.persona).or_default().push(*score),
                    EventKind::CsatResponse { rating, .. } => csat.entry(p.persona).or_default().push(*rating),
                    _ => {}
                }
            }
            match p.churn_at {
                Some(at) if at < end => {
                    assert_eq!(cancels.len(), 1, "{p:?}");
                    assert_eq!(cancels[0].0, at);
                    assert_eq!(last, Some(at), "{} sends events after cancelling", p.customer_id);
                }
                _ => assert!(cancels.is_empty(), "{p:?}"),
            }
            match p.persona {
                Persona::SilentChurner => {
                    let at = p.churn_at.unwrap();
                    assert!(usage_in(h, start, at) > 0, "{} never used the product", p.customer_id);
                    assert_eq!(usage_in(h, at - 21 * DAY_MS, at), 0, "{} was not silent", p.customer_id);
                    let quiet = h.other.iter().filter(|o| o.0 >= at - 21 * DAY_MS && o.0 < at);
                    assert!(quiet.clone().all(|o| !o.1.starts_with("ticket_")), "{} complained", p.customer_id);
                }
                Persona::Declining => {
                    if let Some(at) = p.churn_at.filter(|&at| at < end && at >= start + 60 * DAY_MS) {
                        decl_first += usage_in(h, start, start + 30 * DAY_MS);
                        decl_last += usage_in(h, at - 30 * DAY_MS, at);
                        decl_n += 1;
                    }
                }
                Persona::Expanding => {
                    exp_first += users_in(h, start, start + 30 * DAY_MS);
                    exp_last += users_in(h, end - 30 * DAY_MS, end);
                    let upgraded = h.other.iter().any(|o| {
                        matches!(o.2, EventKind::SubscriptionChanged { seats: Some(s), .. } if s > p.seats)
                            && o.0 > start
                    });
                    assert!(upgraded, "{} never upgraded", p.customer_id);
                }
                Persona::Onboarding => {
                    let first = h.other.iter().map(|o| o.0).chain(h.usage.iter().map(|u| u.0)).min().unwrap();
                    let started = h.other.iter().find(|o| o.1 == "subscription_started").expect("signs up");
                    assert_eq!(started.0, first, "{} used the product before signing up", p.customer_id);
                }
                Persona::PaymentTrouble => {
                    assert!(h.other.iter().any(|o| o.1 == "payment_failed"), "{}", p.customer_id);
                }
                Persona::Healthy => {
                    let weeks = (end - start) / (7 * DAY_MS);
                    assert!(usage_in(h, start, end) as i64 > weeks, "{} barely used the product", p.customer_id);
                }
            }
        }
        assert!(decl_n >= 3, "too few declining churners to judge: {decl_n}");
        assert!(decl_last * 3 < decl_first, "declining usage {decl_first} -> {decl_last}");
        assert!(exp_last * 10 > exp_first * 13, "expanding users {exp_first} -> {exp_last}");
        let mean = |v: &Vec<u8>| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        assert!(mean(&nps[&Persona::Healthy]) > 7.5, "healthy NPS {}", mean(&nps[&Persona::Healthy]));
        assert!(mean(&nps[&Persona::Expanding]) > 8.5);
        assert!(mean(&nps[&Persona::Declining]) < mean(&nps[&Persona::Healthy]) - 1.5);
        assert!(mean(&csat[&Persona::Healthy]) >= 4.0, "healthy CSAT {}", mean(&csat[&Persona::Healthy]));
        assert!(mean(&csat[&Persona::Declining]) < 3.0);
    }

    #[test]
    fn labels_list_every_churner() {
        let g = Generator::new(small(100, 120));
        let mut csv = Vec::new();
        write_labels_csv(g.profiles(), &mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        let mut rows = csv.lines();
        assert_eq!(rows.next(), Some("customer_id,churn_date"));
        let churners: Vec<_> = g.profiles().iter().filter(|p| p.churn_at.is_some()).collect();
        assert!(churners.len() > 10);
        for (row, p) in rows.zip(&churners) {
            assert_eq!(row, format!("{},{}", p.customer_id, &format_rfc3339(p.churn_at.unwrap())[..10]));
        }
        assert_eq!(csv.lines().count(), churners.len() + 1);
    }

    #[test]
    fn timestamps_are_written_as_format_rfc3339_writes_them() {
        let mut out = Generator::new(small(1, 1)).out;
        let mut r = rng_for(1, 1);
        for i in 0..20_000 {
            let ts = if i < 10 { DEFAULT_END - 5 + i } else { range(&mut r, 946_684_800_000, 4_102_444_800_000) };
            let mut s = String::new();
            out.write_timestamp(ts, &mut s);
            assert_eq!(s, format_rfc3339(ts));
        }
    }

    #[test]
    fn holds_about_a_day_in_memory() {
        let mut g = Generator::new(small(60, 30));
        let mut most = 0;
        while g.next().is_some() {
            most = most.max(g.ready.len() + g.out.tomorrow.len() + g.out.later.len());
        }
        let per_day = g.stats().lines as usize / 30;
        assert!(most < 2 * per_day, "{most} lines buffered, {per_day} a day");
    }
}
