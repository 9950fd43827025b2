//! How a customer stood before it churned: the live half of "does the score predict churn?".
//!
//! The engine keeps each customer's daily band for the last [`BAND_DAYS`] days in 24 bytes (two
//! bits a day), and on a cancellation reads it back together with the rule cooldown stamps it
//! already keeps: the band 30 and 90 days before, the first red day, and the latest risk alert.
//! [`ChurnStats`] adds these up with small, closed label sets (bands, lead-time buckets), so a
//! metrics layer can export them as counters and a histogram without customer ids, and a
//! dashboard can show whether the score still predicts churn this month.

use crate::rules::{AlertKind, RuleId, RULE_COUNT};
use crate::score::Band;
use crate::window::Day;

/// Days of daily bands a customer keeps: the 90 days a lookback reads, plus the current day,
/// rounded up to whole 64-bit words.
pub const BAND_DAYS: usize = 96;

/// The band of each of the last [`BAND_DAYS`] UTC days, two bits a day (0: no score that day).
/// The band of a day is the band after that day's last evaluation, as the daily score history
/// keeps the day's last score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BandHistory {
    head: Day,
    bits: [u64; BAND_DAYS / 32],
}

impl BandHistory {
    /// Records `band` as the band of `day`. A day older than the newest one recorded is ignored
    /// when it has left the ring; outputs of a customer never go back in time, so this is rare.
    pub fn set(&mut self, day: Day, band: Band) {
        if day > self.head {
            if (day - self.head) as usize >= BAND_DAYS || self.head == 0 {
                self.bits = [0; BAND_DAYS / 32];
            } else {
                for d in self.head + 1..=day {
                    self.write(d, 0);
                }
            }
            self.head = day;
        } else if (self.head - day) as usize >= BAND_DAYS {
            return;
        }
        self.write(day, band as u64 + 1);
    }

    /// The band recorded for `day`, if the customer was scored that day and the day is still held.
    pub fn get(&self, day: Day) -> Option<Band> {
        if day > self.head || (self.head - day) as usize >= BAND_DAYS {
            return None;
        }
        let i = day as usize % BAND_DAYS;
        match (self.bits[i / 32] >> (2 * (i % 32))) & 3 {
            0 => None,
            v => Some(Band::ALL[v as usize - 1]),
        }
    }

    fn write(&mut self, day: Day, v: u64) {
        let i = day as usize % BAND_DAYS;
        let shift = 2 * (i % 32);
        self.bits[i / 32] = (self.bits[i / 32] & !(3 << shift)) | (v << shift);
    }
}

/// How one customer stood when it cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChurnLookback {
    /// The band at cancellation (the latest evaluation before it).
    pub band_now: Option<Band>,
    /// The band 30 and 90 days before the cancellation day; `None` when the customer was not
    /// scored then (not yet seen, or still in its warm-up).
    pub band_30d: Option<Band>,
    pub band_90d: Option<Band>,
    /// Days from the first red day in the 90 days before the cancellation to the cancellation
    /// day: the warning a red band gave. `None` when it was not red in that time.
    pub first_red_days: Option<u32>,
    /// Days since the latest risk alert, when one fired in the 90 days before.
    pub risk_alert_days: Option<u32>,
}

impl ChurnLookback {
    /// Reads a lookback for a cancellation on `today` from a customer's band history and rule
    /// stamps. Days before `warm_from` (the end of the rules' warm-up) do not count: a customer's
    /// first scores say more about missing history than about health.
    pub fn read(bands: &BandHistory, last_fired: &[Day; RULE_COUNT], today: Day, warm_from: Day) -> ChurnLookback {
        let band_on =
            |days_before: u32| today.checked_sub(days_before).filter(|d| *d >= warm_from).and_then(|d| bands.get(d));
        let from = today.saturating_sub(90).max(warm_from);
        let first_red = (from..=today).find(|d| bands.get(*d) == Some(Band::Red));
        let risk_alert = RuleId::ALL
            .iter()
            .filter(|r| r.kind() == AlertKind::Risk)
            .map(|r| last_fired[*r as usize])
            .filter(|d| *d != 0 && *d <= today && today - d <= 90)
            .max();
        ChurnLookback {
            band_now: bands.get(today).or_else(|| band_on(1)),
            band_30d: band_on(30),
            band_90d: band_on(90),
            first_red_days: first_red.map(|d| today - d),
            risk_alert_days: risk_alert.map(|d| today - d),
        }
    }
}

/// Upper bounds (days, inclusive) of the lead-time histogram buckets of [`ChurnStats`].
pub const LEAD_DAYS_BUCKETS: [u32; 6] = [0, 7, 14, 30, 60, 90];

/// Cancellations counted by how the customer stood before them. Index bands by [`Band`] as
/// `usize`; index 3 counts customers with no band then.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChurnStats {
    pub cancellations: u64,
    pub band_now: [u64; 4],
    pub band_30d: [u64; 4],
    pub band_90d: [u64; 4],
    /// Cancellations preceded by a risk alert in the 90 days before.
    pub risk_alerted: u64,
    /// Cancellations preceded by a red band in the 90 days before, and the sum of their lead
    /// times in days (a histogram's sum and count).
    pub red_before: u64,
    pub lead_days_sum: u64,
    /// Of those, how many had a lead time of at most `LEAD_DAYS_BUCKETS[i]` days (cumulative,
    /// as Prometheus histograms count).
    pub lead_days_le: [u64; LEAD_DAYS_BUCKETS.len()],
}

impl ChurnStats {
    pub fn record(&mut self, l: &ChurnLookback) {
        let slot = |b: Option<Band>| b.map_or(3, |b| b as usize);
        self.cancellations += 1;
        self.band_now[slot(l.band_now)] += 1;
        self.band_30d[slot(l.band_30d)] += 1;
        self.band_90d[slot(l.band_90d)] += 1;
        self.risk_alerted += l.risk_alert_days.is_some() as u64;
        if let Some(days) = l.first_red_days {
            self.red_before += 1;
            self.lead_days_sum += days as u64;
            for (n, le) in self.lead_days_le.iter_mut().zip(LEAD_DAYS_BUCKETS) {
                *n += (days <= le) as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_band_history_reads_back_what_was_written_and_forgets_old_days() {
        let mut h = BandHistory::default();
        h.set(1000, Band::Green);
        h.set(1001, Band::Yellow);
        h.set(1001, Band::Red); // the day's last band wins
        h.set(1005, Band::Green);
        assert_eq!(h.get(1000), Some(Band::Green));
        assert_eq!(h.get(1001), Some(Band::Red));
        assert_eq!(h.get(1003), None, "a day without a score");
        assert_eq!(h.get(1006), None, "the future");
        h.set(1000 + BAND_DAYS as Day, Band::Yellow);
        assert_eq!(h.get(1000), None, "left the ring");
        assert_eq!(h.get(1005), Some(Band::Green));
        h.set(1000 + 3 * BAND_DAYS as Day, Band::Red);
        assert_eq!(h.get(1005), None, "a long gap clears everything");
    }

    #[test]
    fn a_lookback_reads_bands_lead_time_and_alerts() {
        let mut h = BandHistory::default();
        for d in 900..=1000 {
            let band = if d < 940 {
                Band::Green
            } else if d < 975 {
                Band::Yellow
            } else {
                Band::Red
            };
            h.set(d, band);
        }
        let mut fired = [0; RULE_COUNT];
        fired[RuleId::GoneQuiet as usize] = 990;
        fired[RuleId::ExpansionReady as usize] = 999; // an opportunity is not a warning
        let l = ChurnLookback::read(&h, &fired, 1000, 0);
        assert_eq!(l.band_now, Some(Band::Red));
        assert_eq!(l.band_30d, Some(Band::Yellow));
        assert_eq!(l.band_90d, Some(Band::Green));
        assert_eq!(l.first_red_days, Some(25));
        assert_eq!(l.risk_alert_days, Some(10));
        // Red during the warm-up does not count as a warning.
        let mut early = BandHistory::default();
        early.set(1000, Band::Red);
        early.set(1020, Band::Green);
        let l = ChurnLookback::read(&early, &[0; RULE_COUNT], 1020, 1014);
        assert_eq!((l.first_red_days, l.band_30d, l.risk_alert_days), (None, None, None));
    }

    #[test]
    fn stats_count_bands_and_a_cumulative_lead_time_histogram() {
        let mut s = ChurnStats::default();
        let base = ChurnLookback {
            band_now: Some(Band::Red),
            band_30d: None,
            band_90d: Some(Band::Green),
            first_red_days: Some(10),
            risk_alert_days: Some(3),
        };
        s.record(&base);
        s.record(&ChurnLookback { first_red_days: None, risk_alert_days: None, ..base });
        assert_eq!(s.cancellations, 2);
        assert_eq!(s.band_30d, [0, 0, 0, 2]);
        assert_eq!(s.band_90d, [0, 0, 2, 0]);
        assert_eq!((s.red_before, s.lead_days_sum, s.risk_alerted), (1, 10, 1));
        assert_eq!(s.lead_days_le, [0, 0, 1, 1, 1, 1]);
    }

    proptest! {
        /// The packed ring agrees with a plain map of the last BAND_DAYS days written.
        #[test]
        fn matches_a_plain_model(writes in prop::collection::vec((-20i64..120, 0usize..3), 1..200)) {
            let mut h = BandHistory::default();
            let mut model = std::collections::BTreeMap::new();
            let mut newest: i64 = 10_000;
            for (delta, b) in writes {
                // Mostly forward, sometimes a jump past the ring, sometimes a day already passed.
                let day = (newest + delta).max(10_000);
                newest = newest.max(day);
                h.set(day as Day, Band::ALL[b]);
                if newest - day < BAND_DAYS as i64 {
                    model.insert(day as Day, Band::ALL[b]);
                }
            }
            let newest = newest as Day;
            for d in newest.saturating_sub(BAND_DAYS as Day - 1)..=newest {
                prop_assert_eq!(h.get(d), model.get(&d).copied(), "day {}", d);
            }
        }
    }
}
