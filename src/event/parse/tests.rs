//! The parse's unit and property tests: each rejection reason, and the fast scanner held to the
//! general parser's answers.

use super::*;
use proptest::prelude::*;

fn reason(json: &str, topic: Option<Source>) -> (RejectReason, Option<&'static str>) {
    let r = parse(json.as_bytes(), topic).unwrap_err();
    (r.reason, r.field)
}

const BASE: &str = r#""event_id":"e1","customer_id":"c1","timestamp":"2026-11-01T10:00:00Z""#;

#[test]
fn a_known_time_is_used_only_for_the_text_it_was_read_from() {
    let finder = crate::event::timestamp_finder();
    let json = r#"{"event_id":"e1","customer_id":"c1","timestamp":"2026-11-01T10:00:00Z","type":"session","duration_seconds":5}"#;
    let plain = parse(json.as_bytes(), None).unwrap().timestamp;
    // Read from the field's text: the parse takes the value given (a marker here, to see it).
    let mut known = crate::event::quick_time(&finder, br#"{"timestamp":"2026-11-01T10:00:00Z"}"#).unwrap();
    known.start += json.find(r#""timestamp":"2026"#).unwrap() as u32 - 1;
    known.millis = 42;
    assert_eq!(parse_known(json.as_bytes(), None, Some(known)).unwrap().timestamp, 42);
    // A span anywhere else is not the field's: ignored, the parse reads the field itself.
    for shift in [-1i64, 1] {
        let moved = KnownTime { start: (known.start as i64 + shift) as u32, ..known };
        assert_eq!(parse_known(json.as_bytes(), None, Some(moved)).unwrap().timestamp, plain);
    }
    assert_eq!(
        parse_known(json.as_bytes(), None, Some(KnownTime { len: known.len - 1, ..known })).unwrap().timestamp,
        plain
    );
    // What the shells actually pass: the quick read of the same bytes, equal to the parse.
    let quick = crate::event::quick_time(&finder, json.as_bytes());
    assert_eq!(parse_known(json.as_bytes(), None, quick).unwrap(), parse(json.as_bytes(), None).unwrap());
}

#[test]
fn parses_every_type_with_defaults() {
    let json = format!(r#"{{{BASE},"type":"feature_used","feature":"reports","extra":[1,2]}}"#);
    let e = parse(json.as_bytes(), None).unwrap();
    assert_eq!(e.kind, EventKind::FeatureUsed { feature: "reports".into(), user_id: None, quantity: 1.0 });
    assert!(matches!(e.event_id, Cow::Borrowed(_)), "plain strings are borrowed, not copied");
    let json = format!(
        r#"{{{BASE},"type":"subscription_started","plan":"pro","mrr":500,"seats":10,"renewal_date":"2027-11-01"}}"#
    );
    let e = parse(json.as_bytes(), Some(Source::Billing)).unwrap();
    assert!(matches!(e.kind, EventKind::SubscriptionStarted { seats: Some(10), renewal_date: Some(_), .. }));
    let json = format!(r#"{{{BASE},"type":"payment_failed","invoice_id":"i1","amount":99.5}}"#);
    let e = parse(json.as_bytes(), None).unwrap();
    assert_eq!(e.kind.source(), Source::Billing);
}

#[test]
fn rejects_with_reason_and_field() {
    assert_eq!(reason("{not json", None), (RejectReason::NotJson, None));
    assert_eq!(reason("[1,2]", None), (RejectReason::NotAnObject, None));
    assert_eq!(
        reason(r#"{"customer_id":"c","timestamp":"2026-11-01T10:00:00Z","type":"session","duration_seconds":1}"#, None),
        (RejectReason::MissingField, Some("event_id"))
    );
    assert_eq!(reason(&format!(r#"{{{BASE},"type":"teleport"}}"#), None), (RejectReason::UnknownType, Some("type")));
    assert_eq!(
        reason(&format!(r#"{{{BASE},"type":"session","duration_seconds":5}}"#), Some(Source::Billing)),
        (RejectReason::WrongTopic, Some("type"))
    );
    assert_eq!(
        reason(&format!(r#"{{{BASE},"type":"session","duration_seconds":-5}}"#), None),
        (RejectReason::InvalidField, Some("duration_seconds"))
    );
    assert_eq!(
        reason(&format!(r#"{{{BASE},"type":"session","duration_seconds":"5"}}"#), None),
        (RejectReason::InvalidField, Some("duration_seconds"))
    );
    assert_eq!(
        reason(&format!(r#"{{{BASE},"type":"csat_response","rating":6}}"#), None),
        (RejectReason::InvalidField, Some("rating"))
    );
    assert_eq!(
        reason(&format!(r#"{{{BASE},"type":"ticket_opened","ticket_id":"t","priority":"asap"}}"#), None),
        (RejectReason::InvalidField, Some("priority"))
    );
    assert_eq!(
        reason(
            r#"{"event_id":"e","customer_id":"c","timestamp":"1999-12-31T23:59:59Z","type":"nps_response","score":3}"#,
            None
        ),
        (RejectReason::TimestampOutOfRange, Some("timestamp"))
    );
    let long = "x".repeat(129);
    assert_eq!(
        reason(
            &format!(
                r#"{{"event_id":"{long}","customer_id":"c","timestamp":"2026-11-01T10:00:00Z","type":"nps_response","score":3}}"#
            ),
            None
        ),
        (RejectReason::InvalidField, Some("event_id"))
    );
    assert_eq!(
        reason(
            r#"{"event_id":"","customer_id":"c","timestamp":"2026-11-01T10:00:00Z","type":"nps_response","score":3}"#,
            None
        ),
        (RejectReason::InvalidField, Some("event_id"))
    );
}

/// JSON-ish text for the fast path: flat objects of known and unknown keys with values of
/// every type, in every spacing, sometimes broken.
fn json_like() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        6 => prop::sample::select(vec![
            "event_id", "customer_id", "timestamp", "type", "feature", "user_id", "quantity", "duration_seconds",
            "ticket_id", "priority", "rating", "score", "plan", "mrr", "seats", "renewal_date", "reason",
            "effective_date", "invoice_id", "amount", "days_overdue", "extra", "",
        ])
        .prop_map(String::from),
        1 => "[a-z_\\\\\"é]{0,8}",
    ];
    let value = prop_oneof![
        2 => "[ -~]{0,12}".prop_map(|s| format!("{s:?}")), // Rust's escapes are JSON-like
        8 => "[a-zA-Z0-9_:.-]{0,12}".prop_map(|s| format!("\"{s}\"")),
        6 => "(0|[1-9][0-9]{0,10})(\\.[0-9]{1,5})?",
        2 => "-?(0|[1-9][0-9]{0,17})(\\.[0-9]{0,17})?([eE][+-]?[0-9]{1,3})?",
        1 => "[0-9.eE+-]{1,6}",
        1 => prop::sample::select(vec!["null", "true", "false", "[]", "{}", "[1,\"a\"]", "{\"a\":1}", "\"\\u00e9\"", "\"é\""])
            .prop_map(String::from),
    ];
    let ws = "[ \t\r\n]{0,2}";
    let pair = (ws, key, ws, ws, value, ws).prop_map(|(a, k, b, c, v, d)| format!("{a}\"{k}\"{b}:{c}{v}{d}"));
    (
        prop::collection::vec(pair, 0..8),
        ws,
        ws,
        prop::option::weighted(0.2, (any::<prop::sample::Index>(), any::<u8>())),
    )
        .prop_map(|(pairs, lead, trail, mutation)| {
            let mut doc = format!("{lead}{{{}}}{trail}", pairs.join(",")).into_bytes();
            if let Some((at, byte)) = mutation {
                let i = at.index(doc.len());
                doc[i] = byte;
            }
            String::from_utf8_lossy(&doc).into_owned()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    /// Whatever the fast path reads, the general parser reads the same way.
    #[test]
    fn fast_path_agrees_with_the_general_parser(doc in json_like()) {
        let mut fast = Raw::default();
        if scan(doc.as_bytes(), &mut fast) {
            let general: Result<Raw<'_>, _> = sonic_rs::from_slice(doc.as_bytes());
            prop_assert!(general.is_ok(), "the fast path read what sonic-rs refuses: {doc}");
            prop_assert_eq!(fast, general.unwrap(), "{}", doc);
        }
    }

    /// Decimals the fast path reads come out bit for bit as sonic-rs reads them.
    #[test]
    fn fast_path_numbers_are_exact(int in 0u64..1_000_000_000, frac in "[0-9]{1,6}") {
        let doc = format!(r#"{{"amount":{int}.{frac},"mrr":{int}}}"#);
        let mut fast = Raw::default();
        prop_assert!(scan(doc.as_bytes(), &mut fast));
        let general: Raw<'_> = sonic_rs::from_slice(doc.as_bytes()).unwrap();
        prop_assert_eq!(fast, general);
    }
}

#[test]
fn fast_path_reads_the_common_shapes_and_leaves_the_rest() {
    let line = br#"{"event_id":"e1","customer_id":"c1","timestamp":"2026-11-01T10:00:00Z","type":"feature_used","feature":"api","user_id":"u_1","quantity":64}"#;
    let scans = |b: &[u8]| scan(b, &mut Raw::default());
    assert!(scans(line));
    assert!(scans(br#" { "a" : 1.5 , "b":"x" } "#));
    for other in [
        &br#"{"event_id":"e\u0031"}"#[..],
        br#"{"event_id":null}"#,
        br#"{"quantity":-1}"#,
        br#"{"quantity":1e3}"#,
        br#"{"quantity":01}"#,
        br#"{"event_id":"a","event_id":"b"}"#,
        br#"{"extra":{"a":1}}"#,
        br#"{"a":1}x"#,
        b"{\"a\":\n1}",
        br#"{"a":1,}"#,
    ] {
        assert!(!scans(other), "{}", String::from_utf8_lossy(other));
    }
}

#[test]
fn ids_count_characters_not_bytes() {
    let id = "é".repeat(128); // 256 bytes, 128 characters
    let json = format!(
        r#"{{"event_id":"{id}","customer_id":"c","timestamp":"2026-11-01T10:00:00Z","type":"nps_response","score":3}}"#
    );
    assert!(parse(json.as_bytes(), None).is_ok());
}
