//! The input contract: the typed events the engine accepts, and the reasons it rejects the rest.
//!
//! Bytes become an [`Event`] in [`parse`]; anything that does not fit the contract becomes a
//! [`Rejection`] whose [`RejectReason`] is the machine-readable dead-letter reason. Events borrow
//! from the input buffer, so the hot path allocates nothing for ids and names without escapes.

mod parse;
mod quick;
mod time;

use std::borrow::Cow;

pub use self::parse::{parse, parse_known, parse_value, MAX_DEPTH};
pub use self::quick::{quick_string_field, quick_time, timestamp_finder, KnownTime};
pub use self::time::{format_rfc3339, parse_date_or_datetime, parse_rfc3339, Millis, DAY_MS};

/// Which input topic an event belongs to. Event types are unique across topics, so the source of a
/// stand-alone event (a replayed NDJSON line) follows from its `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    ProductUsage,
    Support,
    Billing,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::ProductUsage, Source::Support, Source::Billing];

    /// The default topic name, also used as the label in metrics and dead letters.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::ProductUsage => "product-usage",
            Source::Support => "support",
            Source::Billing => "billing",
        }
    }
}

/// Support ticket priority, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    fn parse(s: &str) -> Option<Priority> {
        Some(match s {
            "low" => Priority::Low,
            "normal" => Priority::Normal,
            "high" => Priority::High,
            "urgent" => Priority::Urgent,
            _ => return None,
        })
    }
}

/// One validated input event. Strings borrow from the input where they can.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub event_id: Cow<'a, str>,
    pub customer_id: Cow<'a, str>,
    /// Event time.
    pub timestamp: Millis,
    pub kind: EventKind<'a>,
}

/// The payload of each event type; the names are the `type` values of the contract.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind<'a> {
    FeatureUsed { feature: Cow<'a, str>, user_id: Option<Cow<'a, str>>, quantity: f64 },
    Session { user_id: Option<Cow<'a, str>>, duration_seconds: f64 },
    TicketOpened { ticket_id: Cow<'a, str>, priority: Priority },
    TicketResolved { ticket_id: Cow<'a, str> },
    TicketReopened { ticket_id: Cow<'a, str> },
    CsatResponse { rating: u8, ticket_id: Option<Cow<'a, str>> },
    NpsResponse { score: u8 },
    SubscriptionStarted { plan: Cow<'a, str>, mrr: f64, seats: Option<u32>, renewal_date: Option<Millis> },
    SubscriptionChanged { plan: Cow<'a, str>, mrr: f64, seats: Option<u32> },
    SubscriptionRenewed { renewal_date: Millis },
    SubscriptionCancelled { reason: Option<Cow<'a, str>>, effective_date: Option<Millis> },
    InvoicePaid(Invoice<'a>),
    PaymentFailed(Invoice<'a>),
    InvoiceOverdue(Invoice<'a>),
}

/// The fields shared by `invoice_paid`, `payment_failed` and `invoice_overdue`.
#[derive(Debug, Clone, PartialEq)]
pub struct Invoice<'a> {
    pub invoice_id: Cow<'a, str>,
    pub amount: f64,
    pub days_overdue: Option<u32>,
}

impl EventKind<'_> {
    /// The contract's `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::FeatureUsed { .. } => "feature_used",
            EventKind::Session { .. } => "session",
            EventKind::TicketOpened { .. } => "ticket_opened",
            EventKind::TicketResolved { .. } => "ticket_resolved",
            EventKind::TicketReopened { .. } => "ticket_reopened",
            EventKind::CsatResponse { .. } => "csat_response",
            EventKind::NpsResponse { .. } => "nps_response",
            EventKind::SubscriptionStarted { .. } => "subscription_started",
            EventKind::SubscriptionChanged { .. } => "subscription_changed",
            EventKind::SubscriptionRenewed { .. } => "subscription_renewed",
            EventKind::SubscriptionCancelled { .. } => "subscription_cancelled",
            EventKind::InvoicePaid(_) => "invoice_paid",
            EventKind::PaymentFailed(_) => "payment_failed",
            EventKind::InvoiceOverdue(_) => "invoice_overdue",
        }
    }

    pub fn source(&self) -> Source {
        source_of_type(self.type_name()).expect("every kind has a source")
    }

    /// Product usage counts as "activity" for recency and active-day signals; billing and
    /// support traffic does not (a customer who only pays invoices is not using the product).
    pub fn is_usage(&self) -> bool {
        matches!(self, EventKind::FeatureUsed { .. } | EventKind::Session { .. })
    }
}

/// The topic an event `type` belongs to, or `None` for a type the contract does not know.
pub fn source_of_type(type_name: &str) -> Option<Source> {
    Some(match type_name {
        "feature_used" | "session" => Source::ProductUsage,
        "ticket_opened" | "ticket_resolved" | "ticket_reopened" | "csat_response" | "nps_response" => Source::Support,
        "subscription_started"
        | "subscription_changed"
        | "subscription_renewed"
        | "subscription_cancelled"
        | "invoice_paid"
        | "payment_failed"
        | "invoice_overdue" => Source::Billing,
        _ => return None,
    })
}

/// Why an input was not applied. The `as_str` names are the dead-letter `reason` header values
/// and metric labels, so they are part of the contract: add variants, never rename them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The bytes are not a JSON document (or not UTF-8).
    NotJson,
    /// JSON, but not an object.
    NotAnObject,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type or a value outside its range.
    InvalidField,
    /// `type` names no event of the contract.
    UnknownType,
    /// The event arrived on a topic that does not carry its type.
    WrongTopic,
    /// The timestamp is not RFC 3339 with an offset, or lies outside 2000–2099.
    TimestampOutOfRange,
    /// Older than the longest window (90 days) behind stream time: it can no longer count.
    TooLate,
    /// Longer than the engine's `max_event_bytes` (default 1 MiB); events are ~200 bytes.
    TooLarge,
    /// JSON nested deeper than [`MAX_DEPTH`]: events are flat objects, and a deep document is
    /// refused before any parser recurses into it (it would overflow the stack).
    TooDeep,
    /// Dated further ahead of the wall clock than `max_future_secs` allows (the service and
    /// `replay` give the engine the wall clock; see [`crate::engine::Engine::set_wall_clock`]).
    InFuture,
    /// A new customer for a partition already holding `max_customers`: refused rather than
    /// growing memory until the process is killed.
    Capacity,
}

impl RejectReason {
    pub const ALL: [RejectReason; 12] = [
        RejectReason::NotJson,
        RejectReason::NotAnObject,
        RejectReason::MissingField,
        RejectReason::InvalidField,
        RejectReason::UnknownType,
        RejectReason::WrongTopic,
        RejectReason::TimestampOutOfRange,
        RejectReason::TooLate,
        RejectReason::TooLarge,
        RejectReason::TooDeep,
        RejectReason::InFuture,
        RejectReason::Capacity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NotJson => "not_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::UnknownType => "unknown_type",
            RejectReason::WrongTopic => "wrong_topic",
            RejectReason::TimestampOutOfRange => "timestamp_out_of_range",
            RejectReason::TooLate => "too_late",
            RejectReason::TooLarge => "too_large",
            RejectReason::TooDeep => "too_deep",
            RejectReason::InFuture => "in_future",
            RejectReason::Capacity => "capacity",
        }
    }
}

/// How much of a `too_large` input a dead letter keeps: enough to see what it was and who sent
/// it, without copying megabytes (or more than the dead-letter topic accepts) for each one.
pub const TOO_LARGE_PREFIX: usize = 4096;

/// The bytes of a rejected input that its dead letter carries: all of them, except for a
/// `too_large` one, cut to [`TOO_LARGE_PREFIX`].
pub fn dead_letter_bytes(bytes: &[u8], reason: RejectReason) -> &[u8] {
    match reason {
        RejectReason::TooLarge => &bytes[..bytes.len().min(TOO_LARGE_PREFIX)],
        _ => bytes,
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected input: the machine-readable reason, the field at fault when there is one, and a
/// message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Rejection {
    pub reason: RejectReason,
    pub field: Option<&'static str>,
    pub message: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, field: Option<&'static str>, message: impl Into<String>) -> Self {
        Rejection { reason, field, message: message.into() }
    }
}
