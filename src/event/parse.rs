//! Bytes → [`Event`]: one pass of `serde_json` into a flat borrowing struct, then per-type checks.
//!
//! A flat struct of optional fields is several times faster than serde's internally tagged enums
//! (which buffer the whole object before choosing a variant). Fields are lenient about their
//! JSON type during the parse, so a field of another event type never fails this one, and a
//! wrong type in a field this type needs is reported by name.

use std::borrow::Cow;

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::time::{parse_date_or_datetime, parse_rfc3339};
use super::{source_of_type, Event, EventKind, Invoice, Priority, RejectReason, Rejection, Source};

/// The largest integer a JSON number carries exactly (2^53).
const MAX_SAFE_INTEGER: u64 = 1 << 53;

/// Counts beyond u32 (four billion seats) are accepted by the contract and saturate here.
fn saturate_u32(v: u64) -> u32 {
    v.min(u32::MAX as u64) as u32
}

/// Longest accepted `event_id`, `customer_id` and other identifiers, in characters.
const MAX_ID_CHARS: usize = 128;

/// A string field: borrowed from the input when it has no escapes. Any other JSON type is kept
/// as `WrongType` instead of failing the whole parse: the field may belong to another event type
/// (and be ignored as unknown), and when it matters the error names it.
enum Text<'a> {
    Str(Cow<'a, str>),
    WrongType,
}

/// A number field, lenient in the same way as [`Text`].
enum Num {
    Val(f64),
    WrongType,
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text::Str(Cow::Owned(v)))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Text::WrongType)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Text::WrongType)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Text::WrongType)
            }
            wrong_types!();
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Num;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Num::Val(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Num::Val(v as f64))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Num::Val(v as f64))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Num::WrongType)
            }
            wrong_types!();
        }
        d.deserialize_any(V)
    }
}

/// Visitor methods that accept (and skip) every JSON type a field should not have.
macro_rules! wrong_types {
    () => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Self::Value::WRONG)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Self::Value::WRONG)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Self::Value::WRONG)
        }
    };
}
use wrong_types;

impl Text<'_> {
    const WRONG: Self = Text::WrongType;
}

impl Num {
    const WRONG: Self = Num::WrongType;
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    event_id: Option<Text<'a>>,
    #[serde(borrow)]
    customer_id: Option<Text<'a>>,
    #[serde(borrow)]
    timestamp: Option<Text<'a>>,
    #[serde(borrow, rename = "type")]
    kind: Option<Text<'a>>,
    #[serde(borrow)]
    feature: Option<Text<'a>>,
    #[serde(borrow)]
    user_id: Option<Text<'a>>,
    quantity: Option<Num>,
    duration_seconds: Option<Num>,
    #[serde(borrow)]
    ticket_id: Option<Text<'a>>,
    #[serde(borrow)]
    priority: Option<Text<'a>>,
    rating: Option<Num>,
    score: Option<Num>,
    #[serde(borrow)]
    plan: Option<Text<'a>>,
    mrr: Option<Num>,
    seats: Option<Num>,
    #[serde(borrow)]
    renewal_date: Option<Text<'a>>,
    #[serde(borrow)]
    reason: Option<Text<'a>>,
    #[serde(borrow)]
    effective_date: Option<Text<'a>>,
    #[serde(borrow)]
    invoice_id: Option<Text<'a>>,
    amount: Option<Num>,
    days_overdue: Option<Num>,
}

/// Parses and validates one event. `topic` is the source it arrived on, when known (Kafka); an
/// event whose type belongs to another topic is rejected as `wrong_topic`.
pub fn parse(bytes: &[u8], topic: Option<Source>) -> Result<Event<'_>, Rejection> {
    let raw: Raw<'_> = match sonic_rs::from_slice(bytes) {
        Ok(raw) => raw,
        Err(err) => return Err(diagnose(bytes, &err.to_string())),
    };
    validate(raw, topic)
}

/// Validates an already parsed JSON value (for callers that hold a `Value`, such as tests).
pub fn parse_value(value: &Value, topic: Option<Source>) -> Result<Event<'static>, Rejection> {
    let bytes = serde_json::to_vec(value).map_err(|e| invalid(None, e.to_string()))?;
    parse(&bytes, topic).map(into_owned)
}

fn validate<'a>(raw: Raw<'a>, topic: Option<Source>) -> Result<Event<'a>, Rejection> {
    let event_id = id("event_id", t("event_id", raw.event_id)?)?;
    let customer_id = id("customer_id", t("customer_id", raw.customer_id)?)?;
    let kind_name = required("type", t("type", raw.kind)?)?;
    let Some(source) = source_of_type(&kind_name) else {
        return Err(Rejection::new(
            RejectReason::UnknownType,
            Some("type"),
            format!("unknown event type {:?}", truncate(&kind_name)),
        ));
    };
    if let Some(topic) = topic {
        if topic != source {
            return Err(Rejection::new(
                RejectReason::WrongTopic,
                Some("type"),
                format!("{kind_name} belongs on topic {}, not {}", source.as_str(), topic.as_str()),
            ));
        }
    }
    let ts_text = required("timestamp", t("timestamp", raw.timestamp)?)?;
    let timestamp = parse_rfc3339(&ts_text).ok_or_else(|| {
        Rejection::new(
            RejectReason::TimestampOutOfRange,
            Some("timestamp"),
            format!("timestamp {:?} is not RFC 3339 with an offset between 2000 and 2099", truncate(&ts_text)),
        )
    })?;

    let kind = match &*kind_name {
        "feature_used" => EventKind::FeatureUsed {
            feature: id("feature", t("feature", raw.feature)?)?,
            user_id: optional_id("user_id", t("user_id", raw.user_id)?)?,
            quantity: non_negative("quantity", n("quantity", raw.quantity)?)?.unwrap_or(1.0),
        },
        "session" => EventKind::Session {
            user_id: optional_id("user_id", t("user_id", raw.user_id)?)?,
            duration_seconds: required(
                "duration_seconds",
                non_negative("duration_seconds", n("duration_seconds", raw.duration_seconds)?)?,
            )?,
        },
        "ticket_opened" => {
            let text = required("priority", t("priority", raw.priority)?)?;
            let priority = Priority::parse(&text).ok_or_else(|| {
                invalid(
                    Some("priority"),
                    format!("priority {:?} is not one of low, normal, high, urgent", truncate(&text)),
                )
            })?;
            EventKind::TicketOpened { ticket_id: id("ticket_id", t("ticket_id", raw.ticket_id)?)?, priority }
        }
        "ticket_resolved" => EventKind::TicketResolved { ticket_id: id("ticket_id", t("ticket_id", raw.ticket_id)?)? },
        "ticket_reopened" => EventKind::TicketReopened { ticket_id: id("ticket_id", t("ticket_id", raw.ticket_id)?)? },
        "csat_response" => EventKind::CsatResponse {
            rating: required("rating", integer("rating", raw.rating, 1, 5)?)? as u8,
            ticket_id: optional_id("ticket_id", t("ticket_id", raw.ticket_id)?)?,
        },
        "nps_response" => {
            EventKind::NpsResponse { score: required("score", integer("score", raw.score, 0, 10)?)? as u8 }
        }
        "subscription_started" => EventKind::SubscriptionStarted {
            plan: id("plan", t("plan", raw.plan)?)?,
            mrr: required("mrr", non_negative("mrr", n("mrr", raw.mrr)?)?)?,
            seats: integer("seats", raw.seats, 0, MAX_SAFE_INTEGER)?.map(saturate_u32),
            renewal_date: optional_date("renewal_date", t("renewal_date", raw.renewal_date)?)?,
        },
        "subscription_changed" => EventKind::SubscriptionChanged {
            plan: id("plan", t("plan", raw.plan)?)?,
            mrr: required("mrr", non_negative("mrr", n("mrr", raw.mrr)?)?)?,
            seats: integer("seats", raw.seats, 0, MAX_SAFE_INTEGER)?.map(saturate_u32),
        },
        "subscription_renewed" => EventKind::SubscriptionRenewed {
            renewal_date: required(
                "renewal_date",
                optional_date("renewal_date", t("renewal_date", raw.renewal_date)?)?,
            )?,
        },
        "subscription_cancelled" => EventKind::SubscriptionCancelled {
            reason: t("reason", raw.reason)?,
            effective_date: optional_date("effective_date", t("effective_date", raw.effective_date)?)?,
        },
        "invoice_paid" | "payment_failed" | "invoice_overdue" => {
            let invoice = Invoice {
                invoice_id: id("invoice_id", t("invoice_id", raw.invoice_id)?)?,
                amount: required("amount", non_negative("amount", n("amount", raw.amount)?)?)?,
                days_overdue: integer("days_overdue", raw.days_overdue, 0, MAX_SAFE_INTEGER)?.map(saturate_u32),
            };
            match &*kind_name {
                "invoice_paid" => EventKind::InvoicePaid(invoice),
                "payment_failed" => EventKind::PaymentFailed(invoice),
                _ => EventKind::InvoiceOverdue(invoice),
            }
        }
        _ => unreachable!("source_of_type accepted {kind_name}"),
    };
    Ok(Event { event_id, customer_id, timestamp, kind })
}

/// A string field's value; an error naming the field if it is not a string.
fn t<'a>(field: &'static str, text: Option<Text<'a>>) -> Result<Option<Cow<'a, str>>, Rejection> {
    match text {
        None => Ok(None),
        Some(Text::Str(s)) => Ok(Some(s)),
        Some(Text::WrongType) => Err(invalid(Some(field), format!("{field} must be a string"))),
    }
}

/// A number field's value; an error naming the field if it is not a number.
fn n(field: &'static str, num: Option<Num>) -> Result<Option<f64>, Rejection> {
    match num {
        None => Ok(None),
        Some(Num::Val(v)) => Ok(Some(v)),
        Some(Num::WrongType) => Err(invalid(Some(field), format!("{field} must be a number"))),
    }
}

fn required<T>(field: &'static str, value: Option<T>) -> Result<T, Rejection> {
    value.ok_or_else(|| {
        Rejection::new(RejectReason::MissingField, Some(field), format!("required field {field} is missing"))
    })
}

fn invalid(field: Option<&'static str>, message: String) -> Rejection {
    Rejection::new(RejectReason::InvalidField, field, message)
}

fn id<'a>(field: &'static str, value: Option<Cow<'a, str>>) -> Result<Cow<'a, str>, Rejection> {
    let value = required(field, value)?;
    check_id(field, &value)?;
    Ok(value)
}

fn optional_id<'a>(field: &'static str, value: Option<Cow<'a, str>>) -> Result<Option<Cow<'a, str>>, Rejection> {
    match value {
        Some(v) => check_id(field, &v).map(|_| Some(v)),
        None => Ok(None),
    }
}

fn check_id(field: &'static str, value: &str) -> Result<(), Rejection> {
    // Byte length bounds the character count from above, so the common case skips the count.
    if value.is_empty() || (value.len() > MAX_ID_CHARS && value.chars().count() > MAX_ID_CHARS) {
        return Err(invalid(
            Some(field),
            format!("{field} must be 1 to {MAX_ID_CHARS} characters, got {}", value.chars().count()),
        ));
    }
    Ok(())
}

fn non_negative(field: &'static str, value: Option<f64>) -> Result<Option<f64>, Rejection> {
    match value {
        Some(v) if !(v >= 0.0 && v.is_finite()) => {
            Err(invalid(Some(field), format!("{field} must be a number ≥ 0, got {v}")))
        }
        other => Ok(other),
    }
}

fn integer(field: &'static str, value: Option<Num>, min: u64, max: u64) -> Result<Option<u64>, Rejection> {
    match n(field, value)? {
        Some(v) if v.fract() != 0.0 || v < min as f64 || v > max as f64 => {
            Err(invalid(Some(field), format!("{field} must be a whole number from {min} to {max}, got {v}")))
        }
        Some(v) => Ok(Some(v as u64)),
        None => Ok(None),
    }
}

fn optional_date(field: &'static str, value: Option<Cow<'_, str>>) -> Result<Option<i64>, Rejection> {
    match value {
        Some(text) => parse_date_or_datetime(&text).map(Some).ok_or_else(|| {
            invalid(
                Some(field),
                format!(
                    "{field} {:?} is not a date (YYYY-MM-DD) or an RFC 3339 date-time between 2000 and 2099",
                    truncate(&text)
                ),
            )
        }),
        None => Ok(None),
    }
}

/// Keeps messages short when a producer sends something huge.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The slow path: serde refused the input, which field-level problems never cause (see [`Text`]).
fn diagnose(bytes: &[u8], err: &str) -> Rejection {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return Rejection::new(RejectReason::NotJson, None, format!("not a JSON document: {e}")),
    };
    if !value.is_object() {
        return Rejection::new(RejectReason::NotAnObject, None, "an event must be a JSON object");
    }
    // Duplicate keys and the like: serde's own words are the best we have.
    invalid(None, format!("malformed event: {err}"))
}

fn into_owned(event: Event<'_>) -> Event<'static> {
    fn own(c: Cow<'_, str>) -> Cow<'static, str> {
        Cow::Owned(c.into_owned())
    }
    fn own_opt(c: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
        c.map(own)
    }
    fn own_invoice(i: Invoice<'_>) -> Invoice<'static> {
        Invoice { invoice_id: own(i.invoice_id), amount: i.amount, days_overdue: i.days_overdue }
    }
    let kind = match event.kind {
        EventKind::FeatureUsed { feature, user_id, quantity } => {
            EventKind::FeatureUsed { feature: own(feature), user_id: own_opt(user_id), quantity }
        }
        EventKind::Session { user_id, duration_seconds } => {
            EventKind::Session { user_id: own_opt(user_id), duration_seconds }
        }
        EventKind::TicketOpened { ticket_id, priority } => {
            EventKind::TicketOpened { ticket_id: own(ticket_id), priority }
        }
        EventKind::TicketResolved { ticket_id } => EventKind::TicketResolved { ticket_id: own(ticket_id) },
        EventKind::TicketReopened { ticket_id } => EventKind::TicketReopened { ticket_id: own(ticket_id) },
        EventKind::CsatResponse { rating, ticket_id } => {
            EventKind::CsatResponse { rating, ticket_id: own_opt(ticket_id) }
        }
        EventKind::NpsResponse { score } => EventKind::NpsResponse { score },
        EventKind::SubscriptionStarted { plan, mrr, seats, renewal_date } => {
            EventKind::SubscriptionStarted { plan: own(plan), mrr, seats, renewal_date }
        }
        EventKind::SubscriptionChanged { plan, mrr, seats } => {
            EventKind::SubscriptionChanged { plan: own(plan), mrr, seats }
        }
        EventKind::SubscriptionRenewed { renewal_date } => EventKind::SubscriptionRenewed { renewal_date },
        EventKind::SubscriptionCancelled { reason, effective_date } => {
            EventKind::SubscriptionCancelled { reason: own_opt(reason), effective_date }
        }
        EventKind::InvoicePaid(i) => EventKind::InvoicePaid(own_invoice(i)),
        EventKind::PaymentFailed(i) => EventKind::PaymentFailed(own_invoice(i)),
        EventKind::InvoiceOverdue(i) => EventKind::InvoiceOverdue(own_invoice(i)),
    };
    Event { event_id: own(event.event_id), customer_id: own(event.customer_id), timestamp: event.timestamp, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(json: &str, topic: Option<Source>) -> (RejectReason, Option<&'static str>) {
        let r = parse(json.as_bytes(), topic).unwrap_err();
        (r.reason, r.field)
    }

    const BASE: &str = r#""event_id":"e1","customer_id":"c1","timestamp":"2026-11-01T10:00:00Z""#;

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
            reason(
                r#"{"customer_id":"c","timestamp":"2026-11-01T10:00:00Z","type":"session","duration_seconds":1}"#,
                None
            ),
            (RejectReason::MissingField, Some("event_id"))
        );
        assert_eq!(
            reason(&format!(r#"{{{BASE},"type":"teleport"}}"#), None),
            (RejectReason::UnknownType, Some("type"))
        );
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

    #[test]
    fn ids_count_characters_not_bytes() {
        let id = "é".repeat(128); // 256 bytes, 128 characters
        let json = format!(
            r#"{{"event_id":"{id}","customer_id":"c","timestamp":"2026-11-01T10:00:00Z","type":"nps_response","score":3}}"#
        );
        assert!(parse(json.as_bytes(), None).is_ok());
    }
}
