//! The named measurements of a customer that a scorecard can weigh.
//!
//! [`crate::state`] computes them from a customer's windows and facts; [`crate::score`] and
//! [`crate::rules`] only read them. The names are what scorecards write, so they are part of the
//! contract: add signals, never rename them.

use crate::event::Source;

/// One measurable fact about a customer at an instant. Ratios are in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Signal {
    ActiveDays7d,
    ActiveDays30d,
    Events7d,
    Events30d,
    SessionMinutes30d,
    DistinctUsers30d,
    FeatureBreadth30d,
    CoreFeatureAdoptionPct,
    UsageTrendPct,
    UsageTrend7dPct,
    DaysSinceLastActivity,
    TicketsOpened30d,
    OpenTickets,
    OpenUrgentTickets,
    MedianResolutionHours90d,
    Reopens90d,
    CsatAvg90d,
    LastNps,
    FailedPayments90d,
    OpenOverdueInvoices,
    MrrChange90dPct,
    Mrr,
    DaysToRenewal,
    SeatUtilisationPct,
    TenureDays,
    UrgentTicketWithFallingUsage,
    ContractTermDays,
}

/// How many signals there are; the length of [`Signals`].
pub const SIGNAL_COUNT: usize = Signal::ALL.len();

impl Signal {
    pub const ALL: [Signal; 27] = [
        Signal::ActiveDays7d,
        Signal::ActiveDays30d,
        Signal::Events7d,
        Signal::Events30d,
        Signal::SessionMinutes30d,
        Signal::DistinctUsers30d,
        Signal::FeatureBreadth30d,
        Signal::CoreFeatureAdoptionPct,
        Signal::UsageTrendPct,
        Signal::UsageTrend7dPct,
        Signal::DaysSinceLastActivity,
        Signal::TicketsOpened30d,
        Signal::OpenTickets,
        Signal::OpenUrgentTickets,
        Signal::MedianResolutionHours90d,
        Signal::Reopens90d,
        Signal::CsatAvg90d,
        Signal::LastNps,
        Signal::FailedPayments90d,
        Signal::OpenOverdueInvoices,
        Signal::MrrChange90dPct,
        Signal::Mrr,
        Signal::DaysToRenewal,
        Signal::SeatUtilisationPct,
        Signal::TenureDays,
        Signal::UrgentTicketWithFallingUsage,
        Signal::ContractTermDays,
    ];

    /// The name scorecards and outputs use.
    pub fn name(self) -> &'static str {
        match self {
            Signal::ActiveDays7d => "active_days_7d",
            Signal::ActiveDays30d => "active_days_30d",
            Signal::Events7d => "events_7d",
            Signal::Events30d => "events_30d",
            Signal::SessionMinutes30d => "session_minutes_30d",
            Signal::DistinctUsers30d => "distinct_users_30d",
            Signal::FeatureBreadth30d => "feature_breadth_30d",
            Signal::CoreFeatureAdoptionPct => "core_feature_adoption_pct",
            Signal::UsageTrendPct => "usage_trend_pct",
            Signal::UsageTrend7dPct => "usage_trend_7d_pct",
            Signal::DaysSinceLastActivity => "days_since_last_activity",
            Signal::TicketsOpened30d => "tickets_opened_30d",
            Signal::OpenTickets => "open_tickets",
            Signal::OpenUrgentTickets => "open_urgent_tickets",
            Signal::MedianResolutionHours90d => "median_resolution_hours_90d",
            Signal::Reopens90d => "reopens_90d",
            Signal::CsatAvg90d => "csat_avg_90d",
            Signal::LastNps => "last_nps",
            Signal::FailedPayments90d => "failed_payments_90d",
            Signal::OpenOverdueInvoices => "open_overdue_invoices",
            Signal::MrrChange90dPct => "mrr_change_90d_pct",
            Signal::Mrr => "mrr",
            Signal::DaysToRenewal => "days_to_renewal",
            Signal::SeatUtilisationPct => "seat_utilisation_pct",
            Signal::TenureDays => "tenure_days",
            Signal::UrgentTicketWithFallingUsage => "urgent_ticket_with_falling_usage",
            Signal::ContractTermDays => "contract_term_days",
        }
    }

    /// What the signal measures, for `healthscore signals` and the docs.
    pub fn description(self) -> &'static str {
        match self {
            Signal::ActiveDays7d => "days with product usage in the last 7 days",
            Signal::ActiveDays30d => "days with product usage in the last 30 days",
            Signal::Events7d => "product uses in the last 7 days (a feature_used counts its quantity, a session 1)",
            Signal::Events30d => "product uses in the last 30 days (a feature_used counts its quantity, a session 1)",
            Signal::SessionMinutes30d => "session minutes in the last 30 days",
            Signal::DistinctUsers30d => "distinct users seen in the last 30 days",
            Signal::FeatureBreadth30d => "distinct features used in the last 30 days",
            Signal::CoreFeatureAdoptionPct => "share of the scorecard's core features used in the last 30 days (%)",
            Signal::UsageTrendPct => "product uses in the last 30 days against the 30 before (% change)",
            Signal::UsageTrend7dPct => {
                "product uses in the last 7 days against the weekly average of the 21 before (% change)"
            }
            Signal::DaysSinceLastActivity => "days since the last product usage (since first seen if never used)",
            Signal::TicketsOpened30d => "support tickets opened in the last 30 days",
            Signal::OpenTickets => "support tickets open now",
            Signal::OpenUrgentTickets => "urgent support tickets open now",
            Signal::MedianResolutionHours90d => {
                "median hours from open to resolved, tickets resolved in the last 90 days"
            }
            Signal::Reopens90d => "tickets reopened in the last 90 days",
            Signal::CsatAvg90d => "average CSAT rating (1-5) in the last 90 days",
            Signal::LastNps => "the latest NPS answer (0-10)",
            Signal::FailedPayments90d => "failed payments in the last 90 days",
            Signal::OpenOverdueInvoices => "invoices overdue and not yet paid",
            Signal::MrrChange90dPct => "MRR now against MRR 90 days ago (% change)",
            Signal::Mrr => "monthly recurring revenue now",
            Signal::DaysToRenewal => "days until the renewal date (negative once passed)",
            Signal::SeatUtilisationPct => "distinct users in the last 30 days per paid seat (%)",
            Signal::TenureDays => "days since the subscription started (or the customer was first seen)",
            Signal::UrgentTicketWithFallingUsage => "1 when an urgent ticket is open while usage falls, else 0",
            Signal::ContractTermDays => {
                "days between the last two renewal dates (or from the start to the first): ~30 monthly, ~365 annual"
            }
        }
    }

    pub fn from_name(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The input source the signal is measured from; `None` when any source informs it
    /// (tenure). A partition that has never received an event of a source has that source not
    /// connected, and its signals are missing rather than zero (see [`SourceSet`]).
    pub fn source(self) -> Option<Source> {
        use Signal::*;
        match self {
            ActiveDays7d
            | ActiveDays30d
            | Events7d
            | Events30d
            | SessionMinutes30d
            | DistinctUsers30d
            | FeatureBreadth30d
            | CoreFeatureAdoptionPct
            | UsageTrendPct
            | UsageTrend7dPct
            | DaysSinceLastActivity
            | SeatUtilisationPct => Some(Source::ProductUsage),
            TicketsOpened30d
            | OpenTickets
            | OpenUrgentTickets
            | MedianResolutionHours90d
            | Reopens90d
            | CsatAvg90d
            | LastNps
            | UrgentTicketWithFallingUsage => Some(Source::Support),
            FailedPayments90d | OpenOverdueInvoices | MrrChange90dPct | Mrr | DaysToRenewal | ContractTermDays => {
                Some(Source::Billing)
            }
            TenureDays => None,
        }
    }
}

/// The input sources a partition has received at least one event of. "No ticket" means
/// something only where tickets flow at all: where the support topic is not connected (a
/// product-only export, a company without a help desk feed) every customer would otherwise get
/// full points for "no urgent tickets", and those constant points would dilute the score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceSet(u8);

impl SourceSet {
    /// Every source: what scoring assumes when it is not told (tests, single-customer tools).
    pub const ALL: SourceSet = SourceSet(0b111);

    pub fn insert(&mut self, source: Source) {
        self.0 |= 1 << source as u8;
    }

    pub fn contains(self, source: Source) -> bool {
        self.0 & (1 << source as u8) != 0
    }

    /// Clears the signals of the sources not in the set.
    pub fn mask(self, signals: &mut Signals) {
        if self == SourceSet::ALL {
            return;
        }
        for s in Signal::ALL {
            if s.source().is_some_and(|src| !self.contains(src)) {
                signals.set(s, None);
            }
        }
    }
}

/// Written by name (snapshots keep which signals a population describes), so adding a signal
/// anywhere in the list never changes what a stored one reads as.
impl serde::Serialize for Signal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Signal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Signal::from_name(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown signal {name:?}")))
    }
}

/// Every signal's value for one customer at one instant; `None` is missing data (no CSAT answer
/// yet, seats unknown), which the scorecard either skips or scores neutrally.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signals(pub [Option<f64>; SIGNAL_COUNT]);

impl Signals {
    pub fn get(&self, signal: Signal) -> Option<f64> {
        self.0[signal as usize]
    }

    pub fn set(&mut self, signal: Signal, value: Option<f64>) {
        self.0[signal as usize] = value;
    }
}

impl Default for Signals {
    fn default() -> Self {
        Signals([None; SIGNAL_COUNT])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_index_matches_position() {
        for (i, s) in Signal::ALL.into_iter().enumerate() {
            assert_eq!(s as usize, i, "{s:?} is out of place in Signal::ALL");
            assert_eq!(Signal::from_name(s.name()), Some(s));
        }
    }
}
