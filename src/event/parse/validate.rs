//! The checks after either parse: [`Raw`]'s fields into a typed [`Event`], or the
//! [`Rejection`] that names the field and the reason (missing, wrong type, out of range).

use std::borrow::Cow;

use super::{Num, Raw, Text};
use crate::event::time::{parse_date_or_datetime, parse_rfc3339};
use crate::event::{source_of_type, Event, EventKind, Invoice, KnownTime, Priority, RejectReason, Rejection, Source};

/// The largest integer a JSON number carries exactly (2^53).
const MAX_SAFE_INTEGER: u64 = 1 << 53;

/// Counts beyond u32 (four billion seats) are accepted by the contract and saturate here.
fn saturate_u32(v: u64) -> u32 {
    v.min(u32::MAX as u64) as u32
}

/// Longest accepted `event_id`, `customer_id` and other identifiers, in characters.
const MAX_ID_CHARS: usize = 128;

pub(super) fn validate<'a>(
    raw: Raw<'a>,
    topic: Option<Source>,
    known: Option<(&[u8], KnownTime)>,
) -> Result<Event<'a>, Rejection> {
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
    let known = known.filter(|(bytes, k)| k.read_from(bytes, &ts_text)).map(|(_, k)| k.millis);
    let timestamp = known.or_else(|| parse_rfc3339(&ts_text)).ok_or_else(|| {
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

pub(super) fn invalid(field: Option<&'static str>, message: String) -> Rejection {
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
pub(super) fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
