//! Bytes → [`Event`]: one pass into a flat borrowing struct, then per-type checks.
//!
//! A flat struct of optional fields is several times faster than serde's internally tagged enums
//! (which buffer the whole object before choosing a variant). Fields are lenient about their
//! JSON type during the parse, so a field of another event type never fails this one, and a
//! wrong type in a field this type needs is reported by name.
//!
//! Nearly every input is a flat object of plain strings and small numbers, which [`scan`] reads
//! in one tight pass (1.5-2x a general parser's speed, and parsing was a third of the engine's
//! time); anything else (escapes, nesting, `null`, exponents, control bytes) goes to the general
//! sonic-rs parse. Both fill the same struct, so what they both accept they read identically,
//! and the checks after them are one and the same.
//!
//! Files: this one holds the fields both paths fill ([`Raw`], lenient [`Text`] and [`Num`]) and
//! the entry points with the general path; `scan` the fast scanner; `validate` the per-type
//! checks that turn the fields into an [`Event`] or a [`Rejection`] with its reason.

mod scan;
#[cfg(test)]
mod tests;
mod validate;

use std::borrow::Cow;

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use self::scan::scan;
use self::validate::{invalid, validate};
use super::{Event, EventKind, Invoice, KnownTime, RejectReason, Rejection, Source};

/// A string field: borrowed from the input when it has no escapes. Any other JSON type is kept
/// as `WrongType` instead of failing the whole parse: the field may belong to another event type
/// (and be ignored as unknown), and when it matters the error names it.
#[cfg_attr(test, derive(Debug, PartialEq))]
enum Text<'a> {
    Str(Cow<'a, str>),
    WrongType,
}

/// A number field, lenient in the same way as [`Text`].
#[cfg_attr(test, derive(Debug, PartialEq))]
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

#[derive(Deserialize, Default)]
#[cfg_attr(test, derive(Debug, PartialEq))]
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
    parse_known(bytes, topic, None)
}

/// [`parse`], given the event time a shell already read from these bytes to order them (see
/// [`KnownTime`]): used only if the `timestamp` field is that very text, so the result is
/// always exactly [`parse`]'s.
pub fn parse_known(bytes: &[u8], topic: Option<Source>, known: Option<KnownTime>) -> Result<Event<'_>, Rejection> {
    let mut raw = Raw::default();
    if !scan(bytes, &mut raw) {
        raw = general(bytes)?;
    }
    validate(raw, topic, known.map(|k| (bytes, k)))
}

/// The general parse, for what [`scan`] declined (a few inputs in a thousand): out of line, so
/// the fast path stays small.
#[cold]
#[inline(never)]
fn general(bytes: &[u8]) -> Result<Raw<'_>, Rejection> {
    if let Some(depth) = too_deep(bytes) {
        return Err(Rejection::new(
            RejectReason::TooDeep,
            None,
            format!("JSON nested deeper than {MAX_DEPTH} levels (at byte {depth}); an event is a flat object"),
        ));
    }
    sonic_rs::from_slice(bytes).map_err(|err| diagnose(bytes, &err.to_string()))
}

/// Deepest nesting of arrays and objects accepted. Events are flat objects (depth 1); producers
/// may add nested metadata the engine ignores, so the bound is generous. Deeper documents are
/// refused as `too_deep` before the general parser sees them: it recurses per level, even into
/// values it skips, and 30,000 levels overflowed the stack (a poison pill: the service died on
/// the record, restarted, read it again and died again).
pub const MAX_DEPTH: usize = 64;

/// The byte offset where `bytes` first nests deeper than [`MAX_DEPTH`], if it does. One
/// non-recursive pass that skips strings (with their escapes); it runs only for inputs the fast
/// scanner declined, so the common flat event never pays for it.
fn too_deep(bytes: &[u8]) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Validates an already parsed JSON value (for callers that hold a `Value`, such as tests).
pub fn parse_value(value: &Value, topic: Option<Source>) -> Result<Event<'static>, Rejection> {
    let bytes = serde_json::to_vec(value).map_err(|e| invalid(None, e.to_string()))?;
    parse(&bytes, topic).map(into_owned)
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
