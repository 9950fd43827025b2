//! The fast path of the parse: a flat object of plain strings and small numbers, read in one
//! pass into [`Raw`] through a bitmask of its quotes; anything else is declined (`false`) and
//! left to the general parse.

use std::borrow::Cow;

use super::{Num, Raw, Text};

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
pub(super) fn scan<'a>(bytes: &'a [u8], raw: &mut Raw<'a>) -> bool {
    scan_into(bytes, raw).is_some()
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
