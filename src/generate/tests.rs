//! The generator's promises: determinism, the personas' shapes, the contract, the labels.

use std::collections::{HashMap, HashSet};

use super::customer::PLANS;
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
    let usage_in = |h: &History, from: Millis, to: Millis| h.usage.iter().filter(|u| (from..to).contains(&u.0)).count();
    let users_in = |h: &History, from: Millis, to: Millis| {
        h.usage.iter().filter(|u| (from..to).contains(&u.0)).filter_map(|u| u.1.clone()).collect::<HashSet<_>>().len()
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
                    matches!(o.2, EventKind::SubscriptionChanged { seats: Some(s), .. } if s > p.seats) && o.0 > start
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
