//! A customer's days: product usage by its users, support tickets and surveys, billing and
//! dunning, each rendered through `emit` as it happens.

use std::fmt::Write as _;

use super::customer::{date_of, date_str, weekday, Customer, Trajectory, PLANS};
use super::draw::{chance, lognormal, normal, poisson, range, uniform, unit};
use super::emit::Out;
use super::{HOUR_MS, MINUTE_MS};
use crate::event::{Millis, Source, DAY_MS};

impl Customer {
    /// Generates every local day that starts before `until`.
    pub(super) fn generate_until(&mut self, out: &mut Out, until: Millis) {
        while self.next_day <= self.churn_day && self.local_start(self.next_day) < until {
            let day = self.next_day;
            self.day(out, day);
            self.next_day += 1;
        }
    }

    /// Milliseconds into a local day at which someone does something.
    pub(super) fn work_time(&mut self, workday: bool) -> Millis {
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

    pub(super) fn day(&mut self, out: &mut Out, day: i64) {
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

    pub(super) fn usage(
        &mut self,
        out: &mut Out,
        day0: Millis,
        workday: bool,
        pool: usize,
        activity: f64,
        breadth: f64,
    ) {
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

    pub(super) fn user_day(
        &mut self,
        out: &mut Out,
        day0: Millis,
        workday: bool,
        user: usize,
        intensity: f64,
        k: usize,
    ) {
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
    pub(super) fn feature_shape(&mut self, feature: &str) -> (bool, Option<u32>) {
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

    pub(super) fn support(&mut self, out: &mut Out, day: i64, day0: Millis, workday: bool, mood: f64) {
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

    pub(super) fn ticket(&mut self, out: &mut Out, day0: Millis, workday: bool, mood: f64) {
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
    pub(super) fn nps(&mut self, out: &mut Out, day: i64, day0: Millis, pool: usize, mood: f64) {
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

    pub(super) fn billing(&mut self, out: &mut Out, day: i64, day0: Millis) {
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
    pub(super) fn dunning(&mut self, out: &mut Out, t0: Millis, inv: &str, amount: u32, pays_after: Option<i64>) {
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
