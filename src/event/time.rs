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
    parse_rfc3339_bytes(s.as_bytes())
}

/// [`parse_rfc3339`] of raw bytes (`None` for bytes that are not UTF-8), for the shells that
/// read an event's time before parsing it: the common form is read without a UTF-8 check.
pub fn parse_rfc3339_bytes(b: &[u8]) -> Option<Millis> {
    match parse_utc_fast(b) {
        Some(ms) => in_range(ms),
        None => parse_general(std::str::from_utf8(b).ok()?),
    }
}

/// Any RFC 3339 date-time, through the `time` crate.
fn parse_general(s: &str) -> Option<Millis> {
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

/// The fast path of [`parse_rfc3339`] for the form nearly every producer writes,
/// `YYYY-MM-DDTHH:MM:SS[.f…]Z` with 1 to 9 fraction digits, as milliseconds (the fraction
/// truncated, as the general path does). `None` for anything else (offsets, leap seconds,
/// impossible dates), which the general path then reads or rejects.
fn parse_utc_fast(b: &[u8]) -> Option<Millis> {
    let head: &[u8; 19] = b.get(..19)?.try_into().ok()?;
    if head[4] != b'-' || head[7] != b'-' || head[10] != b'T' || head[13] != b':' || head[16] != b':' {
        return None;
    }
    // Fixed positions and no early exit: every digit is read, a byte that is not one wraps to
    // 10 or more, and one check at the end catches it (this runs for every input event, on the
    // thread that orders them, where each branch it mispredicts shows).
    const DIGITS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    let mut d = [0i64; 14];
    let mut bad = false;
    for (k, &i) in DIGITS.iter().enumerate() {
        let v = head[i].wrapping_sub(b'0');
        bad |= v > 9;
        d[k] = v as i64;
    }
    let year = ((d[0] * 10 + d[1]) * 10 + d[2]) * 10 + d[3];
    let (month, day) = (d[4] * 10 + d[5], d[6] * 10 + d[7]);
    let (hour, minute, second) = (d[8] * 10 + d[9], d[10] * 10 + d[11], d[12] * 10 + d[13]);
    let millis = match &b[19..] {
        [b'Z'] => 0,
        [b'.', fraction @ .., b'Z'] if (1..=9).contains(&fraction.len()) => {
            // Every digit checked, the first 3 kept (truncated, as the general path does).
            let mut ms = 0i64;
            for (i, &c) in fraction.iter().enumerate() {
                let v = c.wrapping_sub(b'0');
                bad |= v > 9;
                if i < 3 {
                    ms = ms * 10 + v as i64;
                }
            }
            ms * 10i64.pow(3 - fraction.len().min(3) as u32)
        }
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if bad || !(1..=12).contains(&month) || day < 1 || day > month_days[month as usize - 1] {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

        /// Whatever the fast path reads, it reads as the `time` crate (the general path) does.
        #[test]
        fn fast_path_agrees_with_the_general_parser(
            s in "(19|20|21|[0-9]{2})[0-9]{2}-[01][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{0,11})?(Z|z|[+-][01][0-9]:[0-5][0-9])?"
        ) {
            if let Some(fast) = parse_utc_fast(s.as_bytes()) {
                prop_assert_eq!(in_range(fast), parse_general(&s), "{}", s);
            }
        }

        /// Every instant of the accepted range, at any precision, takes the fast path.
        #[test]
        fn fast_path_reads_every_instant(ms in MIN_MS..MAX_MS, digits in 0usize..=9) {
            let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap();
            let fraction = if digits == 0 { String::new() } else { format!(".{:09}", t.nanosecond())[..=digits].to_string() };
            let s = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}Z",
                t.year(), t.month() as u8, t.day(), t.hour(), t.minute(), t.second()
            );
            prop_assert_eq!(parse_utc_fast(s.as_bytes()), parse_general(&s), "{}", s);
        }
    }

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
