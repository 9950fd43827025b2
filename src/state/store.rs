//! The per-partition store of customers, and the timers that re-evaluate them as time passes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use hashbrown::HashTable;

use super::Customer;
use crate::event::Millis;
use crate::hash::hash64;

/// Customers by id. A slab of customers plus a hash table of slot numbers: the id is stored once
/// (in the customer) and the index costs 4 bytes and a control byte per customer.
#[derive(Debug, Default, Clone)]
pub struct Store {
    index: HashTable<u32>,
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
        self.index.find(hash64(id), |&s| slots[s as usize].as_ref().is_some_and(|c| &*c.id == id)).copied()
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
        self.index.insert_unique(hash, slot, |&s| slots[s as usize].as_ref().map_or(0, |c| c.id_hash));
        slot
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
        if let Ok(entry) = self.index.find_entry(customer.id_hash, |&s| s == slot) {
            entry.remove();
        }
        self.free.push(slot);
        Some(customer)
    }

    /// Every customer, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &Customer> + '_ {
        self.slots.iter().flatten()
    }

    /// Approximate memory held by the store's own structures (not the customers' heap data).
    pub fn overhead_bytes(&self) -> usize {
        self.index.capacity() * 5 + self.free.capacity() * 4
    }
}

/// When each customer is next re-evaluated, in event time. Each customer has at most one live
/// timer; an entry whose customer has gone or been rescheduled is skipped when popped (lazy
/// deletion), so rescheduling costs a push, not a search. Ties break on the customer id's hash,
/// never on slot numbers, so the order of outputs does not depend on how slots were reused.
#[derive(Debug, Default, Clone)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Millis, u64, u32)>>,
}

impl Timers {
    pub fn schedule(&mut self, due: Millis, id_hash: u64, slot: u32) {
        self.heap.push(Reverse((due, id_hash, slot)));
    }

    /// The next timer due at or before `now`, removed from the queue.
    pub fn pop_due(&mut self, now: Millis) -> Option<(Millis, u64, u32)> {
        let &Reverse((due, _, _)) = self.heap.peek()?;
        (due <= now).then(|| self.heap.pop().expect("peeked").0)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn memory_bytes(&self) -> usize {
        self.heap.capacity() * std::mem::size_of::<Reverse<(Millis, u64, u32)>>()
    }
}
