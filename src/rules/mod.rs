//! Alert and opportunity rules: they read a customer's fresh score and signals and say what a
//! customer-success team should act on, each at most once per cooldown (in event time).
//!
//! An alert is worth sending only if it is read, so three limits hold the volume down (the
//! alert fatigue every CS platform warns about): a customer gets at most
//! `risk_alerts_per_30d` risk alerts in any 30 days, the most severe first, with `critical`
//! ones always through; `renewal_at_risk` fires once per renewal cycle unless the band
//! worsens; and a customer who has cancelled gets no more alerts (the cancellation is the
//! news; its final score still goes out).

mod config;

use std::sync::Arc;

use serde::Serialize;

use crate::band::Band;
use crate::round::round_to;
use crate::signal::{Signal, Signals};
use crate::window::Day;

pub use self::config::{RuleFile, RulesFile};

/// The built-in rules. The `as_str` names are the `rule` field of alerts and scorecard keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    BandDowngrade,
    SharpDrop,
    UrgentTicketUsageCollapse,
    PaymentFailed,
    RenewalAtRisk,
    GoneQuiet,
    ExpansionReady,
    AdvocateCandidate,
}

pub const RULE_COUNT: usize = RuleId::ALL.len();

impl RuleId {
    pub const ALL: [RuleId; 8] = [
        RuleId::BandDowngrade,
        RuleId::SharpDrop,
        RuleId::UrgentTicketUsageCollapse,
        RuleId::PaymentFailed,
        RuleId::RenewalAtRisk,
        RuleId::GoneQuiet,
        RuleId::ExpansionReady,
        RuleId::AdvocateCandidate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::BandDowngrade => "band_downgrade",
            RuleId::SharpDrop => "sharp_drop",
            RuleId::UrgentTicketUsageCollapse => "urgent_ticket_usage_collapse",
            RuleId::PaymentFailed => "payment_failed",
            RuleId::RenewalAtRisk => "renewal_at_risk",
            RuleId::GoneQuiet => "gone_quiet",
            RuleId::ExpansionReady => "expansion_ready",
            RuleId::AdvocateCandidate => "advocate_candidate",
        }
    }

    pub fn kind(self) -> AlertKind {
        match self {
            RuleId::ExpansionReady | RuleId::AdvocateCandidate => AlertKind::Opportunity,
            _ => AlertKind::Risk,
        }
    }

    pub fn from_name(name: &str) -> Option<RuleId> {
        RuleId::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    Risk,
    Opportunity,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Risk => "risk",
            AlertKind::Opportunity => "opportunity",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    fn raised(self) -> Severity {
        match self {
            Severity::Low => Severity::Medium,
            Severity::Medium => Severity::High,
            _ => Severity::Critical,
        }
    }
}

/// One rule, checked and ready. `threshold` and `days` mean what each rule's doc says.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: RuleId,
    pub enabled: bool,
    pub cooldown_days: u32,
    pub severity: Severity,
    pub playbook: Arc<str>,
    pub threshold: f64,
    pub days: u32,
}

/// Every built-in rule, indexed by `RuleId as usize`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    pub rules: [Rule; RULE_COUNT],
    /// Rules that judge a state stay quiet until the customer has been observed this many days:
    /// a customer first seen through a billing event has no usage windows yet, and its first
    /// scores say more about missing history than about health. `payment_failed` (an event, not
    /// a state) is never held back.
    pub warmup_days: u32,
    /// At most this many risk alerts per customer in any 30 days (0: no limit); `critical`
    /// ones are not held back. When several rules fire at once, the most severe go first (then
    /// those of plain facts before the score's movements: see `budget_rank`); a rule held back keeps no cooldown and fires once the
    /// budget allows, if its condition still holds. Counted from each rule's last firing, so
    /// a budget above 1 counts distinct rules within the 30 days.
    pub risk_alerts_per_30d: u32,
}

/// Which of two equally severe risk firings the budget lets through first: the plainest facts
/// a CSM can act on (a failed payment, silence, a renewal) before the score's own movements,
/// and of those the band crossing before a drop (a drop is the noisiest: the same points lost
/// mean less for a volatile customer).
fn budget_rank(rule: RuleId) -> u8 {
    match rule {
        RuleId::UrgentTicketUsageCollapse => 0,
        RuleId::PaymentFailed => 1,
        RuleId::GoneQuiet => 2,
        RuleId::RenewalAtRisk => 3,
        RuleId::BandDowngrade => 4,
        RuleId::SharpDrop => 5,
        RuleId::ExpansionReady | RuleId::AdvocateCandidate => 6,
    }
}

/// The window the alert budget counts over.
const BUDGET_DAYS: Day = 30;

/// What set off an evaluation; some rules fire on events rather than on state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// An applied input event of this `type`; `amount` for billing events.
    Event { type_name: &'static str, amount: Option<f64> },
    /// Stream time passed the customer's timer.
    Timer,
    /// The last evaluation before the customer is evicted.
    Final,
}

/// What the rules see of a customer at one evaluation.
pub struct RuleInput<'a> {
    pub signals: &'a Signals,
    pub score: f64,
    pub band: Band,
    /// The band before this evaluation (`None` on the first score).
    pub previous_band: Option<Band>,
    /// The highest daily score in the last `n` days (including earlier today), for `sharp_drop`.
    pub max_score_within: &'a dyn Fn(u32) -> Option<f64>,
    /// Whether the customer ever used the product (silence only means something after use).
    pub ever_active: bool,
    /// Whole days since the engine first saw the customer.
    pub observed_days: u32,
    pub trigger: Trigger,
    pub today: Day,
    /// The customer has cancelled (the cancellation takes effect now or later): no alerts.
    pub cancelled: bool,
}

/// A rule that fired: the parts of an alert that the rule decides.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub rule: RuleId,
    pub severity: Severity,
    pub message: String,
    pub evidence: Vec<(&'static str, Evidence)>,
}

/// One piece of evidence: a number, a word, or a missing value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Evidence {
    Number(f64),
    Text(&'static str),
    Missing(Option<()>),
}

impl From<Option<f64>> for Evidence {
    fn from(v: Option<f64>) -> Self {
        v.map(Evidence::Number).unwrap_or(Evidence::Missing(None))
    }
}

/// A signal as evidence, rounded to 2 decimals so outputs carry no float noise.
fn ev(signals: &Signals, s: Signal) -> (&'static str, Evidence) {
    (s.name(), signals.get(s).map(|v| round_to(v, 2)).into())
}

impl RuleSet {
    /// Runs every enabled rule not in cooldown; appends what fired to `out` and stamps its
    /// cooldown. `last_fired[i]` is the day rule `i` last fired (0: never).
    pub fn evaluate(&self, input: &RuleInput<'_>, last_fired: &mut [Day; RULE_COUNT], out: &mut Vec<Firing>) {
        if input.cancelled {
            return;
        }
        let start = out.len();
        for rule in &self.rules {
            if !rule.enabled {
                continue;
            }
            if rule.id != RuleId::PaymentFailed && input.observed_days < self.warmup_days {
                continue;
            }
            let fired = last_fired[rule.id as usize];
            if fired != 0 && input.today < fired + rule.cooldown_days {
                continue;
            }
            if rule.id == RuleId::RenewalAtRisk && fired != 0 && rule.fired_this_cycle(fired, input) {
                continue;
            }
            if let Some(firing) = rule.check(input) {
                out.push(firing);
            }
        }
        self.keep_within_budget(input.today, last_fired, out, start);
        for firing in &out[start..] {
            last_fired[firing.rule as usize] = input.today.max(1);
        }
    }

    /// Drops from `out[start..]` the risk firings beyond the budget (see
    /// [`RuleSet::risk_alerts_per_30d`]), keeping the most severe.
    fn keep_within_budget(&self, today: Day, last_fired: &[Day; RULE_COUNT], out: &mut Vec<Firing>, start: usize) {
        if self.risk_alerts_per_30d == 0 {
            return;
        }
        let recent = RuleId::ALL
            .iter()
            .filter(|r| r.kind() == AlertKind::Risk)
            .filter(|r| last_fired[**r as usize] != 0 && today < last_fired[**r as usize] + BUDGET_DAYS)
            .count() as u32;
        let mut left = self.risk_alerts_per_30d.saturating_sub(recent);
        let mut fresh: Vec<Firing> = out.drain(start..).collect();
        fresh.sort_by_key(|f| (std::cmp::Reverse(f.severity), budget_rank(f.rule)));
        for firing in fresh {
            let risk = firing.rule.kind() == AlertKind::Risk;
            if !risk || firing.severity == Severity::Critical {
                out.push(firing);
            } else if left > 0 {
                left -= 1;
                out.push(firing);
            }
        }
        // Back in rule order, as outputs were before the budget.
        out[start..].sort_by_key(|f| f.rule);
    }
}

impl Rule {
    /// Whether `renewal_at_risk`, last fired on day `fired`, already warned of the renewal now
    /// ahead (fired inside this renewal's window of `days`), and the band has not worsened
    /// since: one warning per renewal cycle, not one per cooldown.
    fn fired_this_cycle(&self, fired: Day, input: &RuleInput<'_>) -> bool {
        let Some(to_renewal) = input.signals.get(Signal::DaysToRenewal) else { return false };
        if to_renewal < 0.0 {
            return false;
        }
        let renewal = input.today as f64 + to_renewal;
        let worsened = input.previous_band.is_some_and(|p| input.band < p);
        fired as f64 >= renewal - self.days as f64 && !worsened
    }

    fn check(&self, input: &RuleInput<'_>) -> Option<Firing> {
        let s = input.signals;
        let get = |sig: Signal| s.get(sig);
        let fire = |severity: Severity, message: String, evidence: Vec<(&'static str, Evidence)>| {
            Some(Firing { rule: self.id, severity, message, evidence })
        };
        match self.id {
            RuleId::BandDowngrade => {
                let previous = input.previous_band?;
                if input.band >= previous {
                    return None;
                }
                let severity = if input.band == Band::Red { self.severity.raised() } else { self.severity };
                fire(
                    severity,
                    format!(
                        "health fell from {} to {} (score {:.1})",
                        previous.as_str(),
                        input.band.as_str(),
                        input.score
                    ),
                    vec![
                        ("previous_band", Evidence::Text(previous.as_str())),
                        ("band", Evidence::Text(input.band.as_str())),
                        ("score", Evidence::Number(round_to(input.score, 1))),
                    ],
                )
            }
            RuleId::SharpDrop => {
                // A drop that leaves the customer green is the score's noise, not a risk to act on.
                if input.band == Band::Green {
                    return None;
                }
                let peak = (input.max_score_within)(self.days)?;
                let drop = peak - input.score;
                if drop < self.threshold {
                    return None;
                }
                fire(
                    self.severity,
                    format!(
                        "score dropped {drop:.1} points within {} days ({peak:.1} → {:.1})",
                        self.days, input.score
                    ),
                    vec![
                        ("peak_score", Evidence::Number(round_to(peak, 1))),
                        ("score", Evidence::Number(round_to(input.score, 1))),
                        ("drop", Evidence::Number(round_to(drop, 1))),
                        ("within_days", Evidence::Number(self.days as f64)),
                    ],
                )
            }
            RuleId::UrgentTicketUsageCollapse => {
                let urgent = get(Signal::OpenUrgentTickets).unwrap_or(0.0);
                let trend = get(Signal::UsageTrend7dPct)?;
                if urgent < 1.0 || trend > -self.threshold {
                    return None;
                }
                fire(
                    self.severity,
                    format!("{urgent} urgent ticket(s) open while weekly usage fell {:.0}%", -trend),
                    vec![ev(s, Signal::OpenUrgentTickets), ev(s, Signal::UsageTrend7dPct), ev(s, Signal::ActiveDays7d)],
                )
            }
            RuleId::PaymentFailed => {
                let Trigger::Event { type_name: "payment_failed", amount } = input.trigger else { return None };
                let failures = get(Signal::FailedPayments90d).unwrap_or(1.0);
                let severity = if failures >= 2.0 { self.severity.raised() } else { self.severity };
                fire(
                    severity,
                    format!("payment failed ({failures} in the last 90 days)"),
                    vec![
                        ("amount", amount.into()),
                        ev(s, Signal::FailedPayments90d),
                        ev(s, Signal::OpenOverdueInvoices),
                    ],
                )
            }
            RuleId::RenewalAtRisk => {
                let days = get(Signal::DaysToRenewal)?;
                if !(0.0..=self.days as f64).contains(&days) || input.band == Band::Green {
                    return None;
                }
                // A contract no longer than the window is always near a renewal (a monthly plan
                // renews every 30 days): warning of it at each one would say nothing new, so
                // the rule is for terms longer than its window. An unknown term still warns.
                if s.get(Signal::ContractTermDays).is_some_and(|t| t <= self.days as f64) {
                    return None;
                }
                let severity = if input.band == Band::Red { self.severity.raised() } else { self.severity };
                fire(
                    severity,
                    format!("renewal in {days} days with a {} score of {:.1}", input.band.as_str(), input.score),
                    vec![
                        ev(s, Signal::DaysToRenewal),
                        ("score", Evidence::Number(round_to(input.score, 1))),
                        ev(s, Signal::Mrr),
                    ],
                )
            }
            RuleId::GoneQuiet => {
                let quiet = get(Signal::DaysSinceLastActivity)?;
                if !input.ever_active || quiet < self.days as f64 {
                    return None;
                }
                fire(
                    self.severity,
                    format!("no product usage for {quiet} days"),
                    vec![ev(s, Signal::DaysSinceLastActivity), ev(s, Signal::ActiveDays30d), ev(s, Signal::Mrr)],
                )
            }
            RuleId::ExpansionReady => {
                let used = get(Signal::SeatUtilisationPct)?;
                if input.band != Band::Green || used < self.threshold {
                    return None;
                }
                fire(
                    self.severity,
                    format!("healthy and using {used:.0}% of paid seats"),
                    vec![ev(s, Signal::SeatUtilisationPct), ev(s, Signal::DistinctUsers30d), ev(s, Signal::Mrr)],
                )
            }
            RuleId::AdvocateCandidate => {
                let nps = get(Signal::LastNps)?;
                if input.band != Band::Green || nps < self.threshold {
                    return None;
                }
                fire(
                    self.severity,
                    format!("healthy with an NPS of {nps}"),
                    vec![
                        ev(s, Signal::LastNps),
                        ev(s, Signal::CsatAvg90d),
                        ("score", Evidence::Number(round_to(input.score, 1))),
                    ],
                )
            }
        }
    }
}
