//! The per-partition store of customers, and the timers that re-evaluate them as time passes.

use std::collections::BTreeMap;

use hashbrown::HashTable;

use super::Customer;
use crate::event::Millis;
use crate::hash::hash64;

/// Customers by id. A slab of customers plus a hash table of (slot, tag) pairs: the id is stored
/// once (in the customer) and the index costs 8 bytes and a control byte per bucket. The tag
/// (32 more bits of the id's hash) lets [`Store::candidate`] find a customer's slot without
/// touching the customer, so a batch can look up all its customers before any of their memory
/// has arrived.
#[derive(Debug, Default, Clone)]
pub struct Store {
    index: HashTable<(u32, u32)>,
    slots: Vec<Option<Customer>>,
    free: Vec<u32>,
}

impl Store {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The slot of customer `id`, if tracked.
    pub fn find(&self, id: &str) -> Option<u32> {
        let slots = &self.slots;
        let hash = hash64(id);
        let found = self.index.find(hash, |&(s, t)| {
            t == tag(hash) && slots[s as usize].as_ref().is_some_and(|c| c.id_hash == hash && c.id == id)
        });
        found.map(|&(s, _)| s)
    }

    /// The slot that most likely holds customer `id`: the first whose id hash matches in 39 bits
    /// (the table's 7 and the tag's 32). Reads only the index; the caller checks the id before
    /// trusting it (a different id with the same bits is one in 2^39 per lookup).
    pub fn candidate(&self, id: &str) -> Option<u32> {
        let hash = hash64(id);
        self.index.find(hash, |&(_, t)| t == tag(hash)).map(|&(s, _)| s)
    }

    /// Adds a customer (its id must not be tracked yet) and returns its slot.
    pub fn insert(&mut self, customer: Customer) -> u32 {
        let hash = customer.id_hash;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(customer);
                s
            }
            None => {
                self.slots.push(Some(customer));
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.index
            .insert_unique(hash, (slot, tag(hash)), |&(s, _)| slots[s as usize].as_ref().map_or(0, |c| c.id_hash));
        slot
    }

    /// The index of `slots` (a restore decodes them in parallel, then builds this while it
    /// rebuilds the timers); fails with the id of a customer that appears twice.
    pub fn index_of(slots: &[Option<Customer>]) -> Result<SlotIndex, String> {
        let mut index = HashTable::with_capacity(slots.len());
        let mut free = Vec::new();
        for (s, c) in slots.iter().enumerate() {
            let Some(c) = c else {
                free.push(s as u32);
                continue;
            };
            let hash = c.id_hash;
            let entry = index.entry(
                hash,
                |&(o, t): &(u32, u32)| t == tag(hash) && slots[o as usize].as_ref().is_some_and(|x| x.id == c.id),
                |&(o, _)| slots[o as usize].as_ref().map_or(0, |x| x.id_hash),
            );
            match entry {
                hashbrown::hash_table::Entry::Vacant(v) => {
                    v.insert((s as u32, tag(hash)));
                }
                hashbrown::hash_table::Entry::Occupied(_) => return Err(c.id.to_string()),
            }
        }
        Ok(SlotIndex { index, free })
    }

    /// A store of `slots` and the index [`Store::index_of`] built for them.
    pub fn from_parts(slots: Vec<Option<Customer>>, index: SlotIndex) -> Store {
        Store { index: index.index, slots, free: index.free }
    }

    /// Every slot, empty ones included.
    pub fn slots(&self) -> &[Option<Customer>] {
        &self.slots
    }

    /// Asks the CPU to start loading the customer in `slot` (its struct, not its heap data: see
    /// [`Customer::prefetch`]). Reads nothing, so it never waits, whatever the slot holds.
    pub fn prefetch(&self, slot: u32) {
        let at = self.slots.as_ptr().wrapping_add(slot as usize) as *const u8;
        let (ring, ring_len) =
            (std::mem::offset_of!(Customer, usage), std::mem::size_of::<super::customer::UsageRing>());
        let size = std::mem::size_of::<Option<Customer>>();
        crate::memory::prefetch_bytes(at, ring);
        if ring + ring_len < size {
            crate::memory::prefetch_bytes(at.wrapping_add(ring + ring_len), size - ring - ring_len);
        }
    }

    pub fn get(&self, slot: u32) -> Option<&Customer> {
        self.slots.get(slot as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, slot: u32) -> Option<&mut Customer> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    /// Removes and returns the customer in `slot`.
    pub fn remove(&mut self, slot: u32) -> Option<Customer> {
        let customer = self.slots.get_mut(slot as usize)?.take()?;
        if let Ok(entry) = self.index.find_entry(customer.id_hash, |&(s, _)| s == slot) {
            entry.remove();
        }
        self.free.push(slot);
        Some(customer)
    }

    /// Every customer, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &Customer> + '_ {
        self.slots.iter().flatten()
    }

    /// Every customer, in slot order, to change what the index does not read (not the id).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Customer> + '_ {
        self.slots.iter_mut().flatten()
    }

    /// Approximate memory held by the store's own structures (not the customers' heap data).
    pub fn overhead_bytes(&self) -> usize {
        self.index.capacity() * 9 + self.free.capacity() * 4
    }
}

/// A store's index, built apart from its slots (see [`Store::index_of`]).
pub struct SlotIndex {
    index: HashTable<(u32, u32)>,
    free: Vec<u32>,
}

/// The bits of an id hash the index keeps next to the slot: the high half, as the table itself
/// places and filters entries by the low bits and the top 7.
fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// When each customer is next re-evaluated, in event time. Each customer has at most one live
/// timer; an entry whose customer has gone or been rescheduled is skipped when popped (lazy
/// deletion), so rescheduling costs a push, not a search.
///
/// A calendar queue: timers are kept in one bucket per minute of event time, and a bucket is
/// sorted only when stream time reaches it. With a million daily timers that is ~700 per minute,
/// far cheaper than a binary heap of a million entries (whose pops miss the cache at every
/// level). Order is (due, id hash, slot) throughout: ties break on the customer id's hash, never
/// on slot numbers alone, so outputs do not depend on how slots were reused.
#[derive(Debug, Default, Clone)]
pub struct Timers {
    buckets: BTreeMap<i64, Vec<TimerEntry>>,
    /// The minute being drained, sorted latest first (pop from the end).
    current: Vec<TimerEntry>,
    current_minute: Option<i64>,
    len: usize,
}

/// (due, customer id hash, slot).
type TimerEntry = (Millis, u64, u32);

const MINUTE_MS: Millis = 60_000;

impl Timers {
    pub fn schedule(&mut self, due: Millis, id_hash: u64, slot: u32) {
        let entry = (due, id_hash, slot);
        let minute = due.div_euclid(MINUTE_MS);
        self.len += 1;
        if self.current_minute.is_some_and(|m| minute <= m) {
            // Into the bucket being drained, keeping it sorted latest first.
            let at = self.current.partition_point(|e| *e > entry);
            self.current.insert(at, entry);
        } else {
            self.buckets.entry(minute).or_default().push(entry);
        }
    }

    /// The next timer due at or before `now`, removed from the queue.
    pub fn pop_due(&mut self, now: Millis) -> Option<(Millis, u64, u32)> {
        loop {
            if let Some(&last) = self.current.last() {
                if last.0 > now {
                    return None; // the current bucket holds the earliest timers
                }
                self.len -= 1;
                return self.current.pop();
            }
            let (&minute, _) = self.buckets.first_key_value()?;
            if minute * MINUTE_MS > now {
                return None;
            }
            let (_, mut bucket) = self.buckets.pop_first().expect("peeked");
            bucket.sort_unstable_by(|a, b| b.cmp(a));
            self.current = bucket;
            self.current_minute = Some(minute);
        }
    }

    /// Calls `f` with the slot of every timer due at or before `now`, without removing any, in
    /// no particular order; stale entries included (for prefetching what popping them will read).
    pub fn for_each_due(&self, now: Millis, mut f: impl FnMut(u32)) {
        for e in self.current.iter().rev().take_while(|e| e.0 <= now) {
            f(e.2);
        }
        for bucket in self.buckets.range(..=now.div_euclid(MINUTE_MS)).map(|(_, b)| b) {
            bucket.iter().filter(|e| e.0 <= now).for_each(|e| f(e.2));
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn memory_bytes(&self) -> usize {
        let entries: usize = self.buckets.values().map(Vec::capacity).sum::<usize>() + self.current.capacity();
        entries * std::mem::size_of::<TimerEntry>() + self.buckets.len() * 64
    }
}

/// Asks the kernel to back a large vector with transparent huge pages (2 MiB) where it is set
/// to `madvise` (the common default). A million customers' slots are ~1.8 GB: with 4 KiB pages
/// the first touch of each costs a page fault (measured: seconds for a restore on a busy VM),
/// and random access to them misses the TLB on almost every event. A hint: nothing changes
/// when the kernel declines.
pub fn advise_huge_pages<T>(v: &Vec<T>) {
    const HUGE: usize = 2 << 20;
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if bytes < 2 * HUGE {
        return;
    }
    let start = v.as_ptr() as usize;
    let aligned = start.next_multiple_of(HUGE);
    let end = (start + bytes) & !(HUGE - 1);
    if end > aligned {
        // SAFETY: madvise only changes how the kernel backs the range, which lies inside the
        // vector's allocation; MADV_HUGEPAGE never changes its contents.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, end - aligned, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The calendar queue pops exactly what a sorted list would, whatever the interleaving
        /// of schedules and pops.
        #[test]
        fn pops_in_due_order(ops in prop::collection::vec((0i64..600_000, any::<u64>(), any::<bool>()), 1..300)) {
            let mut timers = Timers::default();
            let mut model: Vec<TimerEntry> = Vec::new();
            let mut now = 0;
            for (i, (t, h, pop)) in ops.into_iter().enumerate() {
                if pop {
                    now += t / 10;
                    loop {
                        model.sort();
                        let expected = model.first().filter(|e| e.0 <= now).copied();
                        if expected.is_some() { model.remove(0); }
                        prop_assert_eq!(timers.pop_due(now), expected);
                        if expected.is_none() { break; }
                    }
                } else {
                    let due = now + t;
                    timers.schedule(due, h, i as u32);
                    model.push((due, h, i as u32));
                }
                prop_assert_eq!(timers.len(), model.len());
            }
        }
    }
}
