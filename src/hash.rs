//! Fixed-seed hashes. Seeds never change: hashes end up in snapshots and output event ids, and
//! the same input must give byte-identical output on every machine and every run.

use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

/// A 64-bit hash of a string (event ids for de-duplication, customer ids for ordering).
pub fn hash64(s: &str) -> u64 {
    xxh3_64(s.as_bytes())
}

/// A 32-bit key for a small per-customer set (users, features, tickets, invoices), where a rare
/// collision costs at most a miscount by one.
pub fn key32(s: &str) -> u32 {
    let h = xxh3_64(s.as_bytes());
    (h ^ (h >> 32)) as u32
}

/// A deterministic output event id: 32 lowercase hex digits from the given parts.
pub fn event_id(parts: &[&[u8]]) -> String {
    let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for p in parts {
        buf.extend_from_slice(p);
        buf.push(0x1f); // unit separator: ("ab","c") and ("a","bc") must differ
    }
    format!("{:032x}", xxh3_128(&buf))
}
