//! The `[rules.*]` tables of a scorecard file, their defaults, and their checks.

use std::sync::Arc;

use serde::Deserialize;

use super::{Rule, RuleId, RuleSet, Severity};
use crate::config_issue::ConfigIssue;

/// `[rules]`: one optional table per built-in rule; absent tables keep the defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    /// See [`RuleSet::warmup_days`]. Default 14.
    pub warmup_days: Option<u32>,
    /// See [`RuleSet::risk_alerts_per_30d`]. Default 1; 0: no budget.
    pub risk_alerts_per_30d: Option<u32>,
    pub band_downgrade: Option<RuleFile>,
    pub sharp_drop: Option<RuleFile>,
    pub urgent_ticket_usage_collapse: Option<RuleFile>,
    pub payment_failed: Option<RuleFile>,
    pub renewal_at_risk: Option<RuleFile>,
    pub gone_quiet: Option<RuleFile>,
    pub expansion_ready: Option<RuleFile>,
    pub advocate_candidate: Option<RuleFile>,
}

/// One rule's settings. Only the keys a rule takes are accepted for it (see `params`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub enabled: Option<bool>,
    pub cooldown_days: Option<u32>,
    pub severity: Option<Severity>,
    pub playbook: Option<String>,
    /// sharp_drop: points lost; urgent_ticket_usage_collapse: % fall of weekly usage;
    /// expansion_ready: seat utilisation %; advocate_candidate: lowest NPS.
    pub threshold: Option<f64>,
    /// sharp_drop: within how many days; renewal_at_risk: renewal within; gone_quiet: days silent.
    pub days: Option<u32>,
}

/// Defaults: (severity, cooldown days, threshold, days, playbook). Cooldowns follow how often a CSM
/// can usefully act on the same condition; thresholds follow common customer-success practice.
fn defaults(id: RuleId) -> (Severity, u32, f64, u32, &'static str) {
    match id {
        RuleId::BandDowngrade => (
            Severity::Medium,
            0,
            0.0,
            0,
            "Review the score's components with the account owner and book a check-in call within a week.",
        ),
        RuleId::SharpDrop => (
            Severity::High,
            7,
            15.0,
            7,
            "Find what changed (usage, tickets, billing) and reach out to the customer's champion this week.",
        ),
        RuleId::UrgentTicketUsageCollapse => (
            Severity::Critical,
            7,
            50.0,
            0,
            "Escalate the urgent ticket to support leadership; the CSM calls the customer today.",
        ),
        RuleId::PaymentFailed => (
            Severity::Medium,
            3,
            0.0,
            0,
            "Ask the billing contact to update the payment method; hold dunning escalation for strategic accounts.",
        ),
        RuleId::RenewalAtRisk => (
            Severity::High,
            30,
            0.0,
            90,
            "Run the renewal save play: executive sponsor call, success-plan review and a value recap before renewal.",
        ),
        RuleId::GoneQuiet => (
            Severity::High,
            30,
            0.0,
            14,
            "Re-engage: personal outreach to the main users and an offer of a training or enablement session.",
        ),
        RuleId::ExpansionReady => (
            Severity::Low,
            30,
            90.0,
            0,
            "Hand to the account manager for a seat expansion or plan upgrade conversation.",
        ),
        RuleId::AdvocateCandidate => (
            Severity::Low,
            90,
            9.0,
            0,
            "Invite the champion to the reference programme, a case study or a review site.",
        ),
    }
}

/// Which of `threshold` and `days` a rule takes.
fn params(id: RuleId) -> (bool, bool) {
    match id {
        RuleId::BandDowngrade | RuleId::PaymentFailed => (false, false),
        RuleId::SharpDrop => (true, true),
        RuleId::UrgentTicketUsageCollapse | RuleId::ExpansionReady | RuleId::AdvocateCandidate => (true, false),
        RuleId::RenewalAtRisk | RuleId::GoneQuiet => (false, true),
    }
}

/// Rules that fire on a state rather than a change would repeat at every evaluation without a
/// cooldown.
fn needs_cooldown(id: RuleId) -> bool {
    !matches!(id, RuleId::BandDowngrade)
}

impl RulesFile {
    fn get(&self, id: RuleId) -> Option<&RuleFile> {
        match id {
            RuleId::BandDowngrade => self.band_downgrade.as_ref(),
            RuleId::SharpDrop => self.sharp_drop.as_ref(),
            RuleId::UrgentTicketUsageCollapse => self.urgent_ticket_usage_collapse.as_ref(),
            RuleId::PaymentFailed => self.payment_failed.as_ref(),
            RuleId::RenewalAtRisk => self.renewal_at_risk.as_ref(),
            RuleId::GoneQuiet => self.gone_quiet.as_ref(),
            RuleId::ExpansionReady => self.expansion_ready.as_ref(),
            RuleId::AdvocateCandidate => self.advocate_candidate.as_ref(),
        }
    }

    /// Checks every rule table and fills in defaults; problems go to `issues`.
    pub fn compile(&self, issues: &mut Vec<ConfigIssue>, max_history_days: u32) -> RuleSet {
        let rules = RuleId::ALL.map(|id| {
            let file = self.get(id).cloned().unwrap_or_default();
            let (severity, cooldown, threshold, days, playbook) = defaults(id);
            let (takes_threshold, takes_days) = params(id);
            let key = |k: &str| format!("rules.{}.{k}", id.as_str());
            if file.threshold.is_some() && !takes_threshold {
                issues.push(ConfigIssue::new(key("threshold"), "this rule takes no threshold"));
            }
            if file.days.is_some() && !takes_days {
                issues.push(ConfigIssue::new(key("days"), "this rule takes no days setting"));
            }
            let rule = Rule {
                id,
                enabled: file.enabled.unwrap_or(true),
                cooldown_days: file.cooldown_days.unwrap_or(cooldown),
                severity: file.severity.unwrap_or(severity),
                playbook: Arc::from(file.playbook.as_deref().unwrap_or(playbook)),
                threshold: file.threshold.unwrap_or(threshold),
                days: file.days.unwrap_or(days),
            };
            if rule.playbook.trim().is_empty() {
                issues.push(ConfigIssue::new(
                    key("playbook"),
                    "must not be empty: every alert carries a recommended action",
                ));
            }
            if needs_cooldown(id) && rule.cooldown_days == 0 {
                issues.push(ConfigIssue::new(
                    key("cooldown_days"),
                    "must be at least 1: this rule fires on a state and would repeat at every evaluation",
                ));
            }
            if !rule.threshold.is_finite() || rule.threshold < 0.0 {
                issues
                    .push(ConfigIssue::new(key("threshold"), format!("must be a number ≥ 0, got {}", rule.threshold)));
            }
            if id == RuleId::SharpDrop && !(1..=max_history_days).contains(&rule.days) {
                issues.push(ConfigIssue::new(
                    key("days"),
                    format!("must be 1 to {max_history_days} (the daily score history kept), got {}", rule.days),
                ));
            }
            if takes_days && id != RuleId::SharpDrop && rule.days == 0 {
                issues.push(ConfigIssue::new(key("days"), "must be at least 1"));
            }
            rule
        });
        RuleSet {
            rules,
            warmup_days: self.warmup_days.unwrap_or(14),
            risk_alerts_per_30d: self.risk_alerts_per_30d.unwrap_or(1),
        }
    }
}
