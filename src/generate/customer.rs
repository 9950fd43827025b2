//! The population model: one simulated customer, set up from its persona (plan, seats, time
//! zone, users, features, trajectory, troubles and their onsets), and the shapes its behaviour
//! follows over time (usage, mood). What it does on each day is in `activity`.

use rand_chacha::ChaCha8Rng;

use super::draw::{chance, lognormal, pick, pick_weighted, range, rng_for, uniform, unit};
use super::{CustomerProfile, GenConfig, Persona, CORE_FEATURES, HOUR_MS, MINUTE_MS, OTHER_FEATURES};
use crate::event::{format_rfc3339, Millis, DAY_MS};

pub(super) struct PlanSpec {
    pub(super) name: &'static str,
    pub(super) seats: (u32, u32),
    pub(super) price_per_seat: (f64, f64),
    pub(super) mrr: (u32, u32),
}

pub(super) const PLANS: [PlanSpec; 3] = [
    PlanSpec { name: "starter", seats: (3, 10), price_per_seat: (15.0, 30.0), mrr: (50, 300) },
    PlanSpec { name: "pro", seats: (10, 50), price_per_seat: (25.0, 40.0), mrr: (300, 2_000) },
    PlanSpec { name: "enterprise", seats: (50, 500), price_per_seat: (35.0, 45.0), mrr: (2_000, 20_000) },
];

/// UTC offsets in hours and their weights: mostly the Americas and Europe, some Asia-Pacific.
pub(super) const TIME_ZONES: [(f64, f64); 10] = [
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

pub(super) const DECLINE_REASONS: [&str; 5] =
    ["too_expensive", "missing_features", "switched_to_competitor", "poor_support", "low_adoption"];
pub(super) const ONBOARDING_REASONS: [&str; 3] = ["not_a_fit", "too_complex", "low_adoption"];
pub(super) const SILENT_REASONS: [&str; 2] = ["no_longer_needed", "other"];

/// Local days are counted from the Unix epoch; day 0 (1970-01-01) was a Thursday.
pub(super) fn weekday(day: i64) -> i64 {
    (day + 3).rem_euclid(7)
}

pub(super) fn date_of(day: i64) -> time::Date {
    time::Date::from_julian_day((day + 2_440_588) as i32).expect("generated dates lie in 1970..2100")
}

pub(super) fn date_str(day: i64) -> String {
    format_rfc3339(day * DAY_MS)[..10].to_string()
}

pub(super) fn mrr_for(plan: usize, seats: u32, price: f64) -> u32 {
    let (lo, hi) = PLANS[plan].mrr;
    ((seats as f64 * price / 5.0).round() as u32 * 5).clamp(lo, hi)
}

pub(super) struct PlanChange {
    pub(super) day: i64,
    pub(super) plan: usize,
    pub(super) seats: u32,
    pub(super) mrr: u32,
}

/// How usage develops; days are counted from the customer's first local day of the history.
pub(super) enum Trajectory {
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

pub(super) struct Trouble {
    /// The local day of the first invoice that fails.
    pub(super) first_invoice: i64,
    /// Days until the failed invoice is paid, or `None` for customers that never pay and cancel.
    pub(super) pays_after: Option<i64>,
    /// Chance that a later invoice fails too.
    pub(super) repeat: f64,
}

/// A week of low usage: first day, usage factor, and whether the customer is also unhappy.
pub(super) struct Dip {
    pub(super) day: i64,
    pub(super) factor: f64,
    pub(super) unhappy: bool,
}

pub(super) struct Customer {
    pub(super) id: String,
    pub(super) num: String,
    /// User `n` (from 1) of this customer is `u_<uid_base + n>`.
    pub(super) uid_base: u64,
    pub(super) rng: ChaCha8Rng,
    /// Bad lines and duplicates only, so the rates do not change the good events.
    pub(super) noise: ChaCha8Rng,
    /// Local time minus UTC.
    pub(super) tz: Millis,
    /// The local day containing the start of the history.
    pub(super) h0: i64,
    pub(super) next_day: i64,
    pub(super) snapshot_done: bool,
    pub(super) active_from: Millis,
    pub(super) churn_at: Option<Millis>,
    pub(super) churn_day: i64,
    pub(super) cancel_reason: Option<&'static str>,
    pub(super) plan: usize,
    pub(super) seats: u32,
    /// Seats when the history starts; expanding customers' user growth is measured against it.
    pub(super) seats0: f64,
    pub(super) mrr: u32,
    pub(super) start_day: i64,
    pub(super) started_in_history: bool,
    pub(super) renewal_day: i64,
    pub(super) bill_dom: u8,
    pub(super) bill_hour: Millis,
    pub(super) change: Option<PlanChange>,
    /// Propensity to be active on a given day, one per potential user.
    pub(super) users: Vec<f64>,
    pub(super) pool0: f64,
    pub(super) dau: f64,
    pub(super) per_session: f64,
    pub(super) weekend: f64,
    /// Features by decreasing weight, with cumulative weights, so narrowing keeps the favourites.
    pub(super) features: Vec<&'static str>,
    pub(super) feature_cum: Vec<f64>,
    pub(super) trajectory: Trajectory,
    pub(super) dip: Option<Dip>,
    pub(super) mood0: f64,
    pub(super) ticket_rate: f64,
    pub(super) tickets: u32,
    pub(super) nps_next: i64,
    pub(super) card_fail: f64,
    pub(super) trouble: Option<Trouble>,
}

impl Customer {
    pub(super) fn new(cfg: &GenConfig, index: u32, persona: Persona, width: usize) -> (Customer, CustomerProfile) {
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

    pub(super) fn local_start(&self, day: i64) -> Millis {
        day * DAY_MS - self.tz
    }

    pub(super) fn declining_level(onset: f64, decay: f64, floor: f64, recover_at: Option<f64>, t: f64) -> f64 {
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
    pub(super) fn usage_shape(&self, day: i64) -> (f64, f64, f64) {
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
    pub(super) fn mood(&self, day: i64) -> f64 {
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
}
