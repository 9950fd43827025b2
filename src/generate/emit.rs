//! Emitting lines: rendering a customer's events as contract JSON lines, the noise a broken
//! producer adds next to them (malformed lines, re-sent duplicates, from a random stream of their
//! own), and [`Out`], which keeps the lines in the deterministic order the generator yields them:
//! time, then the order of generation.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use rand::Rng;

use super::customer::Customer;
use super::draw::{chance, pick, range, unit};
use super::{GenStats, GeneratedEvent, HOUR_MS, MINUTE_MS};
use crate::event::{format_rfc3339, Millis, Source, DAY_MS};

/// An output line with the order key that makes the output deterministic: time, then the order
/// of generation.
pub(super) struct Item {
    pub(super) ts: Millis,
    pub(super) seq: u64,
    pub(super) ev: GeneratedEvent,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        (self.ts, self.seq) == (other.ts, other.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.ts, self.seq).cmp(&(other.ts, other.seq))
    }
}

/// Where customers put their lines: the day being built, the next day (local days of customers
/// west of UTC run into it), or the heap of lines due later still.
pub(super) struct Out {
    pub(super) start: Millis,
    pub(super) end: Millis,
    pub(super) batch_end: Millis,
    pub(super) bad_rate: f64,
    pub(super) dup_rate: f64,
    pub(super) seq: u64,
    pub(super) batch: Vec<Item>,
    pub(super) tomorrow: Vec<Item>,
    pub(super) later: BinaryHeap<Reverse<Item>>,
    pub(super) stats: GenStats,
    /// `YYYY-MM-DDT` of recent days, by day modulo 4: lines cluster on a day or two.
    pub(super) dates: [(i64, [u8; 11]); 4],
}

impl Out {
    /// Queues a line; false when it falls outside the history and is dropped.
    pub(super) fn push(&mut self, ts: Millis, source: Source, customer_id: &str, json: String) -> bool {
        if ts < self.start || ts >= self.end {
            return false;
        }
        debug_assert!(ts >= self.batch_end - DAY_MS, "a line for a day already yielded");
        let ev = GeneratedEvent { source, customer_id: customer_id.to_owned(), timestamp: ts, json };
        let item = Item { ts, seq: self.seq, ev };
        self.seq += 1;
        self.stats.lines += 1;
        if ts < self.batch_end {
            self.batch.push(item);
        } else if ts < self.batch_end + DAY_MS {
            self.tomorrow.push(item);
        } else {
            self.later.push(Reverse(item));
        }
        true
    }

    /// Appends `format_rfc3339(ts)` to `s` without allocating: the date part comes from
    /// `format_rfc3339` itself and is cached, the time of day is plain arithmetic.
    pub(super) fn write_timestamp(&mut self, ts: Millis, s: &mut String) {
        let day = ts.div_euclid(DAY_MS);
        let slot = &mut self.dates[day.rem_euclid(4) as usize];
        if slot.0 != day {
            slot.0 = day;
            slot.1.copy_from_slice(&format_rfc3339(day * DAY_MS).as_bytes()[..11]);
        }
        let ms = ts - day * DAY_MS;
        let (h, m, sec, milli) = (ms / HOUR_MS, ms / MINUTE_MS % 60, ms / 1000 % 60, ms % 1000);
        let mut buf = [0u8; 24];
        buf[..11].copy_from_slice(&slot.1);
        for (at, value, digits) in [(11, h, 2), (14, m, 2), (17, sec, 2), (20, milli, 3)] {
            let mut v = value;
            for i in (0..digits).rev() {
                buf[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        buf[13] = b':';
        buf[16] = b':';
        buf[19] = b'.';
        buf[23] = b'Z';
        s.push_str(std::str::from_utf8(&buf).expect("ASCII"));
    }
}

pub(super) fn write_hex(value: u64, s: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[(value >> (60 - 4 * i)) as usize & 15];
    }
    s.push_str(std::str::from_utf8(&buf).expect("ASCII"));
}

impl Customer {
    /// Renders and queues one event (plus, at the configured rates, a bad line or a duplicate).
    /// Events before the account exists or after it cancels are dropped.
    pub(super) fn emit(
        &mut self,
        out: &mut Out,
        ts: Millis,
        source: Source,
        kind: &str,
        payload: impl FnOnce(&mut String),
    ) {
        let event_id: u64 = self.rng.gen();
        if ts < self.active_from || self.churn_at.is_some_and(|c| ts > c) || ts < out.start || ts >= out.end {
            return;
        }
        let mut json = String::with_capacity(192);
        json.push_str(r#"{"event_id":"evt_"#);
        write_hex(event_id, &mut json);
        json.push_str(r#"","customer_id":""#);
        json.push_str(&self.id);
        json.push_str(r#"","timestamp":""#);
        out.write_timestamp(ts, &mut json);
        json.push_str(r#"","type":""#);
        json.push_str(kind);
        json.push('"');
        payload(&mut json);
        json.push('}');
        let duplicate = unit(&mut self.noise) < out.dup_rate;
        let bad = unit(&mut self.noise) < out.bad_rate;
        if bad {
            self.bad_line(out, ts, source, &json);
        }
        if duplicate {
            let delay = if chance(&mut self.noise, 0.8) {
                range(&mut self.noise, 100, 30_000)
            } else {
                range(&mut self.noise, MINUTE_MS, 30 * MINUTE_MS)
            };
            if out.push(ts + delay, source, &self.id, json.clone()) {
                out.stats.duplicates += 1;
            }
        }
        out.push(ts, source, &self.id, json);
    }

    /// A malformed line sent next to the good line `json`, as producer bugs do.
    pub(super) fn bad_line(&mut self, out: &mut Out, ts: Millis, source: Source, json: &str) {
        let n = &mut self.noise;
        let sent = ts + range(n, 0, 2_000);
        let fresh_id: u64 = n.gen();
        let head = |kind: &str| {
            format!(
                r#"{{"event_id":"evt_{fresh_id:016x}","customer_id":"{}","timestamp":"{}","type":"{kind}""#,
                self.id,
                format_rfc3339(ts)
            )
        };
        let (source, line) = match range(n, 0, 6) {
            0 => {
                if chance(n, 0.75) {
                    // Cut off mid-write: a proper prefix of an object is never valid JSON.
                    (source, json[..range(n, 12, json.len() as i64 - 1) as usize].to_string())
                } else {
                    let garbage = pick(
                        n,
                        &[
                            "<html><head><title>502 Bad Gateway</title></head></html>",
                            "Internal Server Error",
                            "type=session&customer_id=unknown",
                        ],
                    );
                    (Source::ProductUsage, garbage.to_string())
                }
            }
            // The event id field has a fixed width: `{"event_id":"evt_` + 16 hex digits + `",`.
            1 => (source, format!("{{{}", &json[35..])),
            2 => {
                let kind = pick(n, &["page_view", "login", "feature_usage", "user_invited"]);
                let user = self.uid_base + 1;
                (Source::ProductUsage, format!(r#"{},"user_id":"u_{user}"}}"#, head(kind)))
            }
            3 => {
                let priority = pick(n, &["P1", "critical", "HIGH", "medium"]);
                let ticket = range(n, 0, 10_000);
                (
                    Source::Support,
                    format!(
                        r#"{},"ticket_id":"tkt_{}_x{ticket}","priority":"{priority}"}}"#,
                        head("ticket_opened"),
                        self.num
                    ),
                )
            }
            4 => {
                let user = self.uid_base + 1;
                let seconds = range(n, 1, 3_600);
                (
                    Source::ProductUsage,
                    format!(r#"{},"user_id":"u_{user}","duration_seconds":-{seconds}}}"#, head("session")),
                )
            }
            _ => {
                // The epoch itself, or seconds sent where milliseconds belong.
                let wrong = if chance(n, 0.5) { 0 } else { ts / 1000 };
                let at = json.find(r#""timestamp":""#).expect("every line has a timestamp") + 13;
                (source, format!("{}{}{}", &json[..at], format_rfc3339(wrong), &json[at + 24..]))
            }
        };
        if out.push(sent, source, &self.id, line) {
            out.stats.bad_lines += 1;
        }
    }
}
