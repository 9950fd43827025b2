//! Event-time windows, bucketed by UTC day. They know nothing of customers or scores.
//!
//! Three shapes cover every signal while keeping a customer's state small:
//! - [`DailyRing`]: a dense ring of per-day buckets for high-volume counters (usage);
//! - [`RecencySet`]: the last day each distinct thing (user, feature) was seen, for
//!   "distinct in the last N days" without per-day sets;
//! - [`DayLog`]: a sparse log of rare dated facts (tickets, CSAT answers, failed payments).
//!
//! Windows end at a day given by the caller: "the last 30 days" at day `d` is `d-29..=d`.

use crate::event::{Millis, DAY_MS};

/// Whole days since 1970-01-01 UTC. `u32` holds every day the contract accepts (2000–2099).
pub type Day = u32;

/// The UTC day an instant falls on.
pub fn day_of(ms: Millis) -> Day {
    ms.div_euclid(DAY_MS).clamp(0, Day::MAX as i64) as Day
}

/// The first day of the `days`-day window that ends at `end`.
pub fn window_start(end: Day, days: u32) -> Day {
    end.saturating_sub(days.saturating_sub(1))
}

/// A dense ring of `N` daily buckets ending at the newest day written (`head`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyRing<T, const N: usize> {
    head: Day,
    buckets: [T; N],
}

impl<T: Copy + Default, const N: usize> Default for DailyRing<T, N> {
    fn default() -> Self {
        DailyRing { head: 0, buckets: [T::default(); N] }
    }
}

impl<T: Copy + Default, const N: usize> DailyRing<T, N> {
    /// Where the bucket of `day` lives (for prefetching; the bucket may hold another day).
    pub fn bucket_ptr(&self, day: Day) -> *const u8 {
        &self.buckets[day as usize % N] as *const T as *const u8
    }

    /// The newest day the ring holds.
    pub fn head(&self) -> Day {
        self.head
    }

    /// Moves the newest day forward to `day`, clearing the buckets that fall out of the ring.
    pub fn roll_to(&mut self, day: Day) {
        if day <= self.head {
            return;
        }
        if (day - self.head) as usize >= N {
            self.buckets = [T::default(); N];
        } else {
            for d in self.head + 1..=day {
                self.buckets[d as usize % N] = T::default();
            }
        }
        self.head = day;
    }

    /// The bucket of `day`, rolling the ring forward if `day` is newer than any before; `None`
    /// when `day` has already left the ring (too late to count).
    pub fn at_mut(&mut self, day: Day) -> Option<&mut T> {
        self.roll_to(day);
        if (self.head - day) as usize >= N {
            return None;
        }
        Some(&mut self.buckets[day as usize % N])
    }

    /// Folds the buckets of days `from..=to`, in day order, skipping days the ring no longer
    /// (or does not yet) hold.
    pub fn fold<A>(&self, from: Day, to: Day, init: A, f: impl FnMut(A, &T) -> A) -> A {
        let (older, newer) = self.slices(from, to);
        older.iter().chain(newer).fold(init, f)
    }

    /// The buckets of days `from..=to` that the ring holds, oldest first, as at most two
    /// slices (the ring wraps once). Sums over them compile to straight loops without a
    /// modulo or a branch per day, which is what a re-score's usage windows need.
    pub fn slices(&self, from: Day, to: Day) -> (&[T], &[T]) {
        let oldest = (self.head + 1).saturating_sub(N as Day);
        let (from, to) = (from.max(oldest), to.min(self.head));
        if from > to {
            return (&[], &[]);
        }
        let (start, len) = (from as usize % N, (to - from) as usize + 1);
        if start + len <= N {
            (&self.buckets[start..start + len], &[])
        } else {
            (&self.buckets[start..], &self.buckets[..start + len - N])
        }
    }

    /// The buckets of the whole ring, oldest first, with their days (for snapshots and tests).
    pub fn iter(&self) -> impl Iterator<Item = (Day, &T)> + '_ {
        let oldest = (self.head + 1).saturating_sub(N as Day);
        (oldest..=self.head).map(move |d| (d, &self.buckets[d as usize % N]))
    }
}

/// A ring is stored as its head day and its non-empty buckets (day offset back from the head,
/// value): usage rings of quiet customers are mostly empty, and snapshots should not pay for
/// the zeros.
impl<T: Copy + Default + PartialEq + serde::Serialize, const N: usize> serde::Serialize for DailyRing<T, N> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq, SerializeTuple};
        struct Filled<'a, T, const N: usize>(&'a DailyRing<T, N>);
        impl<T: Copy + Default + PartialEq + serde::Serialize, const N: usize> serde::Serialize for Filled<'_, T, N> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let ring = self.0;
                let empty = T::default();
                let filled = || ring.iter().filter(|(_, b)| **b != empty);
                let mut seq = serializer.serialize_seq(Some(filled().count()))?;
                for (day, bucket) in filled() {
                    seq.serialize_element(&((ring.head - day) as u16, bucket))?;
                }
                seq.end()
            }
        }
        let mut t = serializer.serialize_tuple(2)?;
        t.serialize_element(&self.head)?;
        t.serialize_element(&Filled(self))?;
        t.end()
    }
}

/// Reads the buckets straight into the ring (no list in between: a restore reads millions).
impl<'de, T: Copy + Default + serde::Deserialize<'de>, const N: usize> serde::Deserialize<'de> for DailyRing<T, N> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{DeserializeSeed, Error, SeqAccess, Visitor};
        use std::marker::PhantomData;

        struct Fill<'r, T, const N: usize>(&'r mut DailyRing<T, N>);
        impl<'de, T: Copy + Default + serde::Deserialize<'de>, const N: usize> DeserializeSeed<'de> for Fill<'_, T, N> {
            type Value = ();
            fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_seq(self)
            }
        }
        impl<'de, T: Copy + Default + serde::Deserialize<'de>, const N: usize> Visitor<'de> for Fill<'_, T, N> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("(days back, bucket) pairs")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                let head = self.0.head;
                while let Some((back, value)) = seq.next_element::<(u16, T)>()? {
                    if back as usize >= N || back as Day > head {
                        return Err(A::Error::custom(format!("ring bucket {back} days back is outside the ring")));
                    }
                    self.0.buckets[(head - back as Day) as usize % N] = value;
                }
                Ok(())
            }
        }

        struct Ring<T, const N: usize>(PhantomData<T>);
        impl<'de, T: Copy + Default + serde::Deserialize<'de>, const N: usize> Visitor<'de> for Ring<T, N> {
            type Value = DailyRing<T, N>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a daily ring (head day, filled buckets)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let head: Day = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let mut ring = DailyRing { head, buckets: [T::default(); N] };
                seq.next_element_seed(Fill(&mut ring))?.ok_or_else(|| A::Error::invalid_length(1, &self))?;
                Ok(ring)
            }
        }
        deserializer.deserialize_tuple(2, Ring::<T, N>(PhantomData))
    }
}

/// The last day each distinct key was seen, bounded to `cap` keys (the least recently seen key
/// makes room). Keys are hashes: a rare collision undercounts by one, which no score notices.
///
/// Entries are sorted by key, so recording a sighting (on every usage event) is a short search
/// from the key's likely position even for an account with hundreds of users; counting (only
/// when scoring) is a scan.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RecencySet {
    entries: Vec<(u32, Day)>,
    #[serde(skip)]
    /// Where the last key touched sits: a user's events come in runs, so the next touch is
    /// often the same key, found without a search.
    last: u32,
}

/// Equal when they hold the same entries (the search hint is not state).
impl PartialEq for RecencySet {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Eq for RecencySet {}

impl RecencySet {
    /// Records `key` as seen on `day`; returns the day it was last seen before, if it was.
    pub fn touch(&mut self, key: u32, day: Day, cap: usize) -> Option<Day> {
        let hit = self.entries.get(self.last as usize).filter(|e| e.0 == key).map(|_| self.last as usize);
        let at = match hit.map_or_else(|| self.search(key), Ok) {
            Ok(i) => {
                self.last = i as u32;
                let before = self.entries[i].1;
                self.entries[i].1 = before.max(day);
                return Some(before);
            }
            Err(at) => at,
        };
        if self.entries.len() >= cap {
            let (oldest, _) = self.entries.iter().enumerate().min_by_key(|(_, (_, d))| *d)?;
            if self.entries[oldest].1 > day {
                return Some(day); // older than everything we keep: it cannot change any window
            }
            self.entries.remove(oldest);
            let at = if oldest < at { at - 1 } else { at };
            self.entries.insert(at, (key, day));
        } else {
            self.entries.insert(at, (key, day));
        }
        None
    }

    /// Where `key` is (`Ok`) or would go (`Err`). Keys are hashes, so spread evenly: the search
    /// starts where the key's value says it should sit and widens from there, touching one or
    /// two cache lines where a binary search over a few hundred users would touch eight.
    fn search(&self, key: u32) -> Result<usize, usize> {
        let e = &self.entries;
        let g = self.guess(key);
        let Some(&(at_guess, _)) = e.get(g) else { return Err(0) };
        let find =
            |lo: usize, hi: usize| e[lo..hi].binary_search_by_key(&key, |x| x.0).map(|i| i + lo).map_err(|i| i + lo);
        if at_guess == key {
            return Ok(g);
        }
        if at_guess < key {
            // Everything before `lo` is smaller than `key`; widen until an entry is not.
            let (mut lo, mut hi, mut step) = (g + 1, g + 1, 1);
            while hi < e.len() && e[hi].0 < key {
                lo = hi + 1;
                hi += step;
                step *= 2;
            }
            find(lo, (hi + 1).min(e.len()))
        } else {
            // Everything from `hi` on is larger than `key`; widen until an entry is not.
            let (mut hi, mut step) = (g, 1);
            loop {
                let lo = hi.saturating_sub(step);
                if lo == 0 || e[lo].0 <= key {
                    return find(lo, hi);
                }
                hi = lo;
                step *= 2;
            }
        }
    }

    /// Where a key of this value most likely sits.
    fn guess(&self, key: u32) -> usize {
        ((key as u64 * self.entries.len() as u64) >> 32) as usize
    }

    /// The address a lookup of `key` reads first (for prefetching).
    pub fn probe_ptr(&self, key: u32) -> *const u8 {
        self.entries.as_ptr().wrapping_add(self.guess(key)) as *const u8
    }

    /// How many distinct keys were seen on or after `since`.
    pub fn count_since(&self, since: Day) -> u32 {
        self.entries.iter().filter(|(_, d)| *d >= since).count() as u32
    }

    /// The (key, last day seen) entries, in key order.
    pub fn entries(&self) -> &[(u32, Day)] {
        &self.entries
    }

    /// Whether `key` was seen on or after `since`.
    pub fn seen_since(&self, key: u32, since: Day) -> bool {
        self.search(key).is_ok_and(|i| self.entries[i].1 >= since)
    }

    /// Forgets keys last seen before `before`.
    pub fn prune(&mut self, before: Day) {
        self.entries.retain(|(_, d)| *d >= before);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(u32, Day)>()
    }
}

/// A sparse, bounded log of dated facts of kind `K` with a small value each (a CSAT rating, the
/// hours a ticket took). For signals that fire a few times a month, this is far smaller than a
/// dense ring per kind.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DayLog<K> {
    marks: Vec<Mark<K>>,
}

/// One dated fact in a [`DayLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mark<K> {
    pub day: Day,
    pub kind: K,
    pub value: u16,
}

impl<K> Default for DayLog<K> {
    fn default() -> Self {
        DayLog { marks: Vec::new() }
    }
}

impl<K: Copy + Eq> DayLog<K> {
    /// Adds a fact; past `cap` facts the oldest is dropped (a customer with hundreds of tickets a
    /// quarter is already red on every support signal).
    pub fn push(&mut self, day: Day, kind: K, value: u16, cap: usize) {
        if self.marks.len() >= cap {
            let Some((oldest, _)) = self.marks.iter().enumerate().min_by_key(|(_, m)| m.day) else { return };
            self.marks.swap_remove(oldest);
        }
        self.marks.push(Mark { day, kind, value });
    }

    /// The facts of `kind` dated `from..=to`.
    pub fn iter(&self, kind: K, from: Day, to: Day) -> impl Iterator<Item = &Mark<K>> + '_ {
        self.marks.iter().filter(move |m| m.kind == kind && m.day >= from && m.day <= to)
    }

    pub fn count(&self, kind: K, from: Day, to: Day) -> u32 {
        self.iter(kind, from, to).count() as u32
    }

    /// Forgets facts dated before `before`.
    pub fn prune(&mut self, before: Day) {
        self.marks.retain(|m| m.day >= before);
    }

    pub fn marks(&self) -> &[Mark<K>] {
        &self.marks
    }

    pub fn heap_bytes(&self) -> usize {
        self.marks.capacity() * std::mem::size_of::<Mark<K>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ring_rolls_and_forgets_old_days() {
        let mut r: DailyRing<u32, 7> = DailyRing::default();
        *r.at_mut(100).unwrap() += 1;
        *r.at_mut(103).unwrap() += 2;
        assert_eq!(r.fold(97, 103, 0, |a, b| a + b), 3);
        assert_eq!(r.fold(101, 103, 0, |a, b| a + b), 2);
        *r.at_mut(107).unwrap() += 4; // day 100 leaves the ring (101..=107 remain)
        assert_eq!(r.fold(0, 107, 0, |a, b| a + b), 6);
        assert!(r.at_mut(100).is_none(), "a day that has left the ring is too late");
        *r.at_mut(101).unwrap() += 8; // still inside
        assert_eq!(r.fold(0, 200, 0, |a, b| a + b), 14);
        r.roll_to(500);
        assert_eq!(r.fold(0, 500, 0, |a, b| a + b), 0);
    }

    #[test]
    fn recency_set_counts_distinct_and_evicts_least_recent() {
        let mut s = RecencySet::default();
        s.touch(1, 10, 3);
        s.touch(2, 11, 3);
        s.touch(1, 12, 3);
        s.touch(3, 5, 3);
        assert_eq!(s.count_since(0), 3);
        assert_eq!(s.count_since(11), 2);
        s.touch(4, 13, 3); // evicts key 3 (day 5)
        assert!(!s.seen_since(3, 0));
        assert!(s.seen_since(4, 13));
        s.touch(5, 1, 3); // older than everything kept: ignored
        assert!(!s.seen_since(5, 0));
    }

    #[test]
    fn day_log_counts_by_kind_and_range() {
        let mut log = DayLog::default();
        log.push(10, 'a', 1, 8);
        log.push(20, 'a', 1, 8);
        log.push(20, 'b', 5, 8);
        assert_eq!(log.count('a', 0, 100), 2);
        assert_eq!(log.count('a', 15, 100), 1);
        log.prune(15);
        assert_eq!(log.count('a', 0, 100), 1);
    }

    proptest! {
        /// Below its cap the set agrees with a map of key → latest day.
        #[test]
        fn recency_set_matches_a_map(touches in prop::collection::vec((0u32..40, 0u32..100), 0..200), since in 0u32..100) {
            let mut set = RecencySet::default();
            let mut model = std::collections::BTreeMap::new();
            for (k, d) in touches {
                let before = set.touch(k, d, 64);
                prop_assert_eq!(before, model.get(&k).copied());
                let e = model.entry(k).or_insert(d);
                *e = (*e).max(d);
            }
            prop_assert_eq!(set.count_since(since) as usize, model.values().filter(|d| **d >= since).count());
            for (k, d) in &model {
                prop_assert_eq!(set.seen_since(*k, since), *d >= since);
            }
        }

        /// Lookups from the key's likely position find exactly what a binary search finds, for
        /// keys spread evenly, bunched at either end, or anywhere between.
        #[test]
        fn set_search_agrees_with_binary_search(keys in prop::collection::vec(any::<u32>(), 0..300), low in any::<bool>(), probes in prop::collection::vec(any::<u32>(), 1..50)) {
            let mut set = RecencySet::default();
            for (i, k) in keys.iter().enumerate() {
                let k = if low { k % 1000 } else { *k };
                set.touch(k, i as Day, 512);
            }
            for p in probes.iter().copied().chain(set.entries().iter().map(|e| e.0)).chain([0, u32::MAX]) {
                let expected = set.entries().binary_search_by_key(&p, |e| e.0);
                prop_assert_eq!(set.search(p), expected, "key {}", p);
            }
        }

        /// The ring agrees with a plain list of (day, value) for any writes and any window.
        #[test]
        fn ring_matches_a_naive_model(writes in prop::collection::vec((0u32..200, 1u32..100), 0..200), from in 0u32..250, len in 0u32..40) {
            let mut ring: DailyRing<u32, 30> = DailyRing::default();
            let mut accepted = Vec::new();
            for (day, v) in writes {
                let day = day + 1000;
                if let Some(b) = ring.at_mut(day) { *b += v; accepted.push((day, v)); }
            }
            let (from, to) = (from + 1000, from + 1000 + len);
            let head = ring.head();
            let expected: u32 = accepted.iter().filter(|(d, _)| *d >= from && *d <= to && head - *d < 30).map(|(_, v)| v).sum();
            prop_assert_eq!(ring.fold(from, to, 0, |a, b| a + b), expected);
            let (a, b) = ring.slices(from, to);
            prop_assert_eq!(a.iter().chain(b).sum::<u32>(), expected);
            // Day by day, oldest first: every day of the window the ring holds, empty ones too.
            let held = (from.max((head + 1).saturating_sub(30)))..=to.min(head);
            let by_day: Vec<u32> =
                held.map(|d| accepted.iter().filter(|(day, _)| *day == d).map(|(_, v)| v).sum()).collect();
            prop_assert_eq!(a.iter().chain(b).copied().collect::<Vec<_>>(), by_day);
        }
    }
}
