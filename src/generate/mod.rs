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
//!
//! # Files
//!
//! This file holds the public types and the [`Generator`], which runs every customer one UTC day
//! at a time and yields the lines in order. The simulation itself:
//! - `customer`: the population model: a customer set up from its persona, and the shapes
//!   (usage, mood) its behaviour follows over time;
//! - `activity`: what a customer does on each day: usage, tickets and surveys, billing and dunning;
//! - `emit`: rendering events as lines, the noise a broken producer adds (bad lines, duplicates),
//!   and the order the lines are yielded in;
//! - `draw`: the random streams and the draws made from them.

mod activity;
mod customer;
mod draw;
mod emit;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufWriter, Write};

use self::customer::Customer;
use self::draw::{range, rng_for};
use self::emit::{Item, Out};
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
