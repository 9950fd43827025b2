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

use std::borrow::Cow;

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::time::{parse_date_or_datetime, parse_rfc3339};
use super::{source_of_type, Event, EventKind, Invoice, KnownTime, Priority, RejectReason, Rejection, Source};

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

/// The fast path: reads `bytes` into `raw` (which must be empty) when they are a flat JSON
/// object, at most [`SCAN_MAX`] bytes of UTF-8 with no backslash or control character anywhere,
/// whose values are strings, or non-negative numbers of at most 15 significant digits without an
/// exponent. `false` for anything else, valid or not, which the general parser then reads.
///
/// Where it answers, it answers as sonic-rs does (a property test holds it to that): with no
/// backslash a string has no escapes and a quote always ends one; numbers are exact (an integer
/// below 2^53, or one divided by a power of ten up to 10^15, is correctly rounded by one IEEE
/// division); a field given twice is left to the general parser to reject; unknown fields are
/// skipped. Strings are found through a bitmask of the input's quotes, built 16 bytes at a
/// time, so no loop runs byte by byte over a string.
fn scan<'a>(bytes: &'a [u8], raw: &mut Raw<'a>) -> bool {
    scan_into(bytes, raw).is_some()
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

/// Longest input [`scan`] reads; events are ~160 bytes.
const SCAN_MAX: usize = 512;

fn scan_into<'a>(bytes: &'a [u8], raw: &mut Raw<'a>) -> Option<()> {
    let mut quotes = [0u64; SCAN_MAX / 64];
    if bytes.len() > SCAN_MAX || !structure(bytes, &mut quotes) {
        return None;
    }
    let mut sc = Scanner { text: std::str::from_utf8(bytes).ok()?, b: bytes, quotes: &quotes, at: 0 };
    let mut seen = 0u32;
    sc.skip_spaces();
    sc.expect(b'{')?;
    sc.skip_spaces();
    if sc.peek()? == b'}' {
        sc.at += 1;
    } else {
        loop {
            let key = sc.string()?;
            sc.skip_spaces();
            sc.expect(b':')?;
            sc.skip_spaces();
            let (bit, text, num): (u32, Option<&mut Option<Text<'a>>>, Option<&mut Option<Num>>) = match key {
                "event_id" => (1, Some(&mut raw.event_id), None),
                "customer_id" => (1 << 1, Some(&mut raw.customer_id), None),
                "timestamp" => (1 << 2, Some(&mut raw.timestamp), None),
                "type" => (1 << 3, Some(&mut raw.kind), None),
                "feature" => (1 << 4, Some(&mut raw.feature), None),
                "user_id" => (1 << 5, Some(&mut raw.user_id), None),
                "quantity" => (1 << 6, None, Some(&mut raw.quantity)),
                "duration_seconds" => (1 << 7, None, Some(&mut raw.duration_seconds)),
                "ticket_id" => (1 << 8, Some(&mut raw.ticket_id), None),
                "priority" => (1 << 9, Some(&mut raw.priority), None),
                "rating" => (1 << 10, None, Some(&mut raw.rating)),
                "score" => (1 << 11, None, Some(&mut raw.score)),
                "plan" => (1 << 12, Some(&mut raw.plan), None),
                "mrr" => (1 << 13, None, Some(&mut raw.mrr)),
                "seats" => (1 << 14, None, Some(&mut raw.seats)),
                "renewal_date" => (1 << 15, Some(&mut raw.renewal_date), None),
                "reason" => (1 << 16, Some(&mut raw.reason), None),
                "effective_date" => (1 << 17, Some(&mut raw.effective_date), None),
                "invoice_id" => (1 << 18, Some(&mut raw.invoice_id), None),
                "amount" => (1 << 19, None, Some(&mut raw.amount)),
                "days_overdue" => (1 << 20, None, Some(&mut raw.days_overdue)),
                _ => (0, None, None),
            };
            if seen & bit != 0 {
                return None; // serde rejects a field given twice; let it say so
            }
            seen |= bit;
            match (sc.peek()?, text, num) {
                (b'"', text, None) => {
                    let value = sc.string()?;
                    if let Some(field) = text {
                        *field = Some(Text::Str(Cow::Borrowed(value)));
                    }
                }
                (b'0'..=b'9', None, num) => {
                    let value = sc.number()?;
                    if let Some(field) = num {
                        *field = Some(Num::Val(value));
                    }
                }
                _ => return None, // another JSON type: the general parser decides
            }
            sc.skip_spaces();
            match sc.peek()? {
                b',' => {
                    sc.at += 1;
                    sc.skip_spaces();
                }
                b'}' => {
                    sc.at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    sc.skip_spaces();
    (sc.at == bytes.len()).then_some(())
}

/// Marks every quote of `bytes` (at most [`SCAN_MAX`] long) in `quotes`, one bit per byte;
/// `false` if `bytes` holds a backslash or a control character (tabs and newlines included:
/// as whitespace they are rare, and the general parser reads them).
fn structure(bytes: &[u8], quotes: &mut [u64; SCAN_MAX / 64]) -> bool {
    let mut chunks = bytes.chunks_exact(16);
    let mut bad = false;
    for (i, chunk) in chunks.by_ref().enumerate() {
        let (q, b) = classify16(chunk.try_into().expect("16 bytes"));
        quotes[i / 4] |= (q as u64) << (16 * (i % 4));
        bad |= b;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [b' '; 16];
        last[..rest.len()].copy_from_slice(rest);
        let i = bytes.len() / 16;
        let (q, b) = classify16(&last);
        quotes[i / 4] |= (q as u64) << (16 * (i % 4));
        bad |= b;
    }
    !bad
}

/// The quotes of 16 bytes as a bit mask, and whether any of them is a backslash or a control
/// character.
#[inline]
fn classify16(chunk: &[u8; 16]) -> (u16, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86_64; the load is unaligned and reads exactly `chunk`.
        unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr() as *const __m128i);
            let quotes = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8))) as u16;
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v); // v <= 0x1f
            (quotes, _mm_movemask_epi8(_mm_or_si128(backslash, control)) != 0)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut quotes = 0u16;
        for (i, &c) in chunk.iter().enumerate() {
            quotes |= ((c == b'"') as u16) << i;
        }
        (quotes, chunk.iter().any(|&c| c == b'\\' || c < 0x20))
    }
}

/// A cursor over the input of [`scan`]; every method answers `None` where the fast path gives up.
struct Scanner<'a, 'q> {
    text: &'a str,
    b: &'a [u8],
    quotes: &'q [u64; SCAN_MAX / 64],
    at: usize,
}

impl<'a> Scanner<'a, '_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    /// The string that starts here, and moves past its closing quote.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let (mut word, shift) = (start / 64, start % 64);
        let mut bits = self.quotes.get(word)? & (!0u64 << shift);
        while bits == 0 {
            word += 1;
            bits = *self.quotes.get(word)?;
        }
        let end = word * 64 + bits.trailing_zeros() as usize;
        self.at = end + 1;
        // Quotes are ASCII, so both ends are character boundaries.
        self.text.get(start..end)
    }

    fn number(&mut self) -> Option<f64> {
        /// Exact powers of ten for the fraction's division.
        const POW10: [f64; 16] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
        let (mut mantissa, mut digits, mut fraction) = (0u64, 0u32, 0usize);
        if self.peek()? == b'0' && self.b.get(self.at + 1).is_some_and(u8::is_ascii_digit) {
            return None; // a leading zero is not JSON
        }
        while let Some(d @ b'0'..=b'9') = self.peek() {
            mantissa = mantissa * 10 + (d - b'0') as u64;
            digits += 1;
            self.at += 1;
            if digits > 15 {
                return None;
            }
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            while let Some(d @ b'0'..=b'9') = self.peek() {
                mantissa = mantissa * 10 + (d - b'0') as u64;
                digits += 1;
                fraction += 1;
                self.at += 1;
                if digits > 15 {
                    return None;
                }
            }
            if fraction == 0 {
                return None; // "1." is not JSON
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            return None;
        }
        Some(if fraction == 0 { mantissa as f64 } else { mantissa as f64 / POW10[fraction] })
    }
}

/// Validates an already parsed JSON value (for callers that hold a `Value`, such as tests).
pub fn parse_value(value: &Value, topic: Option<Source>) -> Result<Event<'static>, Rejection> {
    let bytes = serde_json::to_vec(value).map_err(|e| invalid(None, e.to_string()))?;
    parse(&bytes, topic).map(into_owned)
}

fn validate<'a>(
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
}
