//! Event-time values: milliseconds since the Unix epoch, parsed from and written as RFC 3339.

use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Milliseconds since 1970-01-01T00:00:00Z. All event time in the engine is in this unit.
pub type Millis = i64;

pub const DAY_MS: Millis = 86_400_000;

/// Accepted event times: 2000-01-01 (inclusive) to 2100-01-01 (exclusive). Anything outside is a
/// producer bug (a zero timestamp, seconds read as milliseconds) that would wreck stream time.
const MIN_MS: Millis = 946_684_800_000;
const MAX_MS: Millis = 4_102_444_800_000;

/// Parses an RFC 3339 date-time with an offset (`2026-11-25T13:53:06Z`, `...+01:00`).
/// `None` when the text is not RFC 3339 or lies outside the accepted range.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    // The `time` crate accepts any byte between date and time; RFC 3339 allows only T (or t).
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    in_range((t.unix_timestamp_nanos() / 1_000_000) as Millis)
}

/// Parses either a full date (`2027-03-01`, taken as midnight UTC) or an RFC 3339 date-time.
/// Renewal and effective dates arrive both ways in practice.
pub fn parse_date_or_datetime(s: &str) -> Option<Millis> {
    if s.len() == 10 {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let date = Date::parse(s, &format).ok()?;
        let t = PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_offset(UtcOffset::UTC);
        return in_range(t.unix_timestamp() * 1000);
    }
    parse_rfc3339(s)
}

fn in_range(ms: Millis) -> Option<Millis> {
    (MIN_MS..MAX_MS).contains(&ms).then_some(ms)
}

/// Formats event time as RFC 3339 in UTC with millisecond precision, e.g.
/// `2026-11-25T13:53:06.000Z`. Fixed width, so output is byte-stable.
pub fn format_rfc3339(ms: Millis) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_to_the_same_instant() {
        let z = parse_rfc3339("2026-11-25T12:00:00Z").unwrap();
        let plus = parse_rfc3339("2026-11-25T13:00:00+01:00").unwrap();
        assert_eq!(z, plus);
        assert_eq!(format_rfc3339(z), "2026-11-25T12:00:00.000Z");
    }

    #[test]
    fn rejects_missing_offset_and_out_of_range() {
        assert_eq!(parse_rfc3339("2026-11-25T12:00:00"), None);
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2100-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn dates_are_midnight_utc() {
        let d = parse_date_or_datetime("2027-03-01").unwrap();
        assert_eq!(format_rfc3339(d), "2027-03-01T00:00:00.000Z");
        assert_eq!(parse_date_or_datetime("2027-02-30"), None);
    }
}
