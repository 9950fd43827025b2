//! The engine's state for a snapshot: [`Engine::encode_state`] writes it in sections encoded in
//! parallel, [`Engine::from_state`] restores an engine from them (rebuilding the index, timers
//! and census). Encoding only: the snapshot file format, compression and storage belong to
//! `crate::snapshot`, and nothing here may score or move time.

use std::mem::MaybeUninit;
use std::sync::Arc;

use super::{Engine, EngineConfig, MAX_LEADS};
use crate::event::Millis;
use crate::learn::Learner;
use crate::score::{Population, Scorecard};
use crate::signal::SourceSet;
use crate::state::{Customer, Store, Timers};

impl Engine {
    /// The engine's state for a snapshot, in [`STATE_SECTIONS`] sections encoded in parallel
    /// (postcard): the first starts with the stream clock, each holds its customer count and
    /// then its customers. Timers, the index and statistics are not written:
    /// [`Engine::from_state`] rebuilds the first two from the customers, and the statistics are
    /// process counters. Sections let both encoding (the part of a snapshot that pauses
    /// processing) and decoding use every core. Unpacked: each section is one plain frame (see
    /// [`Engine::encode_state_packed`]).
    pub fn encode_state(&self) -> Vec<Vec<u8>> {
        self.encode_state_packed(&|raw, out| out.extend_from_slice(raw), usize::MAX).0
    }

    /// [`Engine::encode_state`], with each section cut into frames of about `frame_bytes`
    /// (always between two customers) that `pack` appends to the section, e.g. compressed.
    /// Only one frame per section is ever uncompressed in memory, so a snapshot does not
    /// allocate (and fault in) a second copy of the whole state before compressing it. Returns
    /// the packed sections and the state's size before packing.
    pub fn encode_state_packed(&self, pack: Pack<'_>, frame_bytes: usize) -> (Vec<Vec<u8>>, u64) {
        let slots = self.store.slots();
        let per = slots.len().div_ceil(STATE_SECTIONS).max(1);
        let mut parts: Vec<&[Option<Customer>]> = slots.chunks(per).collect();
        parts.resize(STATE_SECTIONS, &[]);
        let learner = self.learner.as_ref().map(|l| l.encode()).unwrap_or_default();
        let clock =
            (self.max_event_time, self.stream_time, &self.leads, self.population.encode(), self.sources, learner);
        let sections = crate::parallel::map(&parts, |i, part| {
            // Capacity is only address space until written: generous, so it never regrows.
            let mut out = Vec::with_capacity(part.len() * 640 + 64);
            let mut raw = Vec::with_capacity(frame_bytes.min(part.len() * 640 + 64));
            let mut total = 0u64;
            let mut flush = |raw: &mut Vec<u8>, out: &mut Vec<u8>| {
                total += raw.len() as u64;
                pack(raw, out);
                raw.clear();
            };
            if i == 0 {
                append_postcard(&clock, &mut raw);
            }
            append_postcard(&(part.iter().flatten().count() as u64), &mut raw);
            for c in part.iter().flatten() {
                append_postcard(c, &mut raw);
                if raw.len() >= frame_bytes {
                    flush(&mut raw, &mut out);
                }
            }
            if !raw.is_empty() {
                flush(&mut raw, &mut out);
            }
            (out, total)
        });
        let total = sections.iter().map(|(_, n)| n).sum();
        (sections.into_iter().map(|(s, _)| s).collect(), total)
    }

    /// An engine holding the state [`Engine::encode_state`] wrote, scored with `scorecard` (which
    /// may be a newer model than the one the state was built under: segments are re-derived
    /// from the plans, and the next evaluation of each customer uses the new model).
    pub fn from_state(scorecard: Arc<Scorecard>, config: EngineConfig, sections: &[Vec<u8>]) -> Result<Engine, String> {
        let sections: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
        Engine::from_state_packed(scorecard, config, &sections, &|packed, raw| {
            raw.clear();
            raw.extend_from_slice(packed);
            Ok(packed.len())
        })
    }

    /// [`Engine::from_state`] for sections [`Engine::encode_state_packed`] wrote: `unpack`
    /// replaces its buffer's content with the frame at the start of what it is given and returns
    /// the packed bytes that frame took. Each section is unpacked frame by frame into one small
    /// buffer and decoded from there.
    pub fn from_state_packed(
        scorecard: Arc<Scorecard>,
        config: EngineConfig,
        sections: &[&[u8]],
        unpack: Unpack<'_>,
    ) -> Result<Engine, String> {
        if sections.is_empty() {
            return Err("no state sections".into());
        }
        // The first frame of each section: the stream clock (first section) and the count.
        let mut clock: Clock = (Millis::MIN, Millis::MIN, Vec::new(), Vec::new(), SourceSet::default(), Vec::new());
        let mut bodies = Vec::with_capacity(sections.len());
        for (i, packed) in sections.iter().enumerate() {
            if packed.is_empty() {
                return Err(format!("section {i} is empty"));
            }
            let mut raw = Vec::new();
            let used = unpack(packed, &mut raw).map_err(|e| format!("section {i}: {e}"))?;
            let mut at: &[u8] = &raw;
            if i == 0 {
                let (c, rest) = postcard::take_from_bytes(at).map_err(|e| format!("stream clock: {e}"))?;
                (clock, at) = (c, rest);
            }
            let (count, rest): (u64, &[u8]) =
                postcard::take_from_bytes(at).map_err(|e| format!("section {i}: customer count: {e}"))?;
            // Not trusting a count for an allocation: a customer takes at least 16 bytes, and
            // packing shrinks nothing more than 255 times.
            if count > (packed.len() as u64).saturating_mul(255) / 16 {
                return Err(format!("section {i}: {count} customers in {} bytes", packed.len()));
            }
            let start = raw.len() - rest.len();
            bodies.push((count as usize, raw, start, &packed[used..]));
        }
        let (max_event_time, stream_time, mut leads, population, sources, learner) = clock;
        leads.truncate(MAX_LEADS);
        // The learner's state comes back only where learning is on; a scorecard it promoted
        // comes back only over the configured scorecard it replaced.
        let learner = match (config.learn.enabled, learner.is_empty()) {
            (false, _) => None,
            (true, true) => Some(Box::new(Learner::new(config.learn.clone()))),
            (true, false) => Some(Box::new(Learner::decode(config.learn.clone(), &learner)?)),
        };
        let scorecard = match learner.as_ref().and_then(|l| l.promoted_for(&scorecard.version)) {
            Some(text) => Arc::new(Scorecard::from_toml(text, "(promoted)").map_err(|e| format!("learner: {e}"))?),
            None => scorecard,
        };
        // A population kept for another scorecard's relative signals or segments is dropped:
        // the new one fills from the next evaluations and serves from the next refresh.
        let population = Population::decode(&population)?;
        let population = if population.fits(&scorecard.relative_signals, scorecard.segments.len()) {
            population
        } else {
            Population::new(&scorecard.relative_signals, scorecard.segments.len())
        };
        let total: usize = bodies.iter().map(|b| b.0).sum();
        let mut slots: Vec<Option<Customer>> = Vec::with_capacity(total);
        crate::state::advise_huge_pages(&slots);
        // Each section decodes straight into its own part of the slots, so the first touch of
        // the memory (page faults: most of a restore's cost) happens on every core at once.
        let mut parts: Vec<SectionDecode<'_>> = Vec::with_capacity(bodies.len());
        let mut free = &mut slots.spare_capacity_mut()[..total];
        for (count, raw, start, rest) in bodies {
            let (part, others) = free.split_at_mut(count);
            parts.push((part, raw, start, rest));
            free = others;
        }
        let decoded = crate::parallel::map_mut(&mut parts, |i, (part, raw, at, rest)| {
            let mut written = 0;
            let result = (|| {
                let count = part.len();
                for (j, slot) in part.iter_mut().enumerate() {
                    while *at == raw.len() {
                        if rest.is_empty() {
                            return Err(format!("section {i}: ends after {j} of {count} customers"));
                        }
                        let used = unpack(rest, raw).map_err(|e| format!("section {i}: {e}"))?;
                        (*at, *rest) = (0, &rest[used..]);
                    }
                    let (mut c, left): (Customer, &[u8]) = postcard::take_from_bytes(&raw[*at..])
                        .map_err(|e| format!("section {i}: customer {j}: {e}"))?;
                    *at = raw.len() - left.len();
                    c.id_hash = crate::hash::hash64(&c.id);
                    c.segment = scorecard.segment_of(c.plan.as_deref());
                    if c.score.segment as usize >= scorecard.segments.len() {
                        c.score.segment = c.segment; // a scorecard with fewer segments than before
                    }
                    slot.write(Some(c));
                    written += 1;
                }
                match raw.len() - *at + rest.len() {
                    0 => Ok(()),
                    n => Err(format!("section {i}: {n} bytes after the last customer")),
                }
            })();
            if result.is_err() {
                for slot in &mut part[..written] {
                    // SAFETY: the first `written` slots of this part were initialised above and
                    // are dropped once, here; the vector's length never covers them.
                    unsafe { slot.assume_init_drop() };
                }
            }
            (written, result)
        });
        if decoded.iter().any(|(_, r)| r.is_err()) {
            let mut first_error = None;
            for (k, (written, result)) in decoded.into_iter().enumerate() {
                match result {
                    Ok(()) => {
                        for slot in &mut parts[k].0[..written] {
                            // SAFETY: as above: initialised by a section that succeeded, dropped once.
                            unsafe { slot.assume_init_drop() };
                        }
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            return Err(first_error.expect("a section failed"));
        }
        drop(parts);
        // SAFETY: every section succeeded, so each of the first `total` slots was written once.
        unsafe { slots.set_len(total) };
        let mut engine = Engine::new(scorecard, config);
        engine.max_event_time = max_event_time;
        engine.stream_time = stream_time;
        engine.leads = leads;
        engine.population = population;
        engine.sources = sources;
        engine.learner = learner;
        // The index and the timers are built side by side: both only read the slots.
        let (index, timers) = std::thread::scope(|scope| {
            let timers = scope.spawn(|| {
                let mut timers = Timers::default();
                for (slot, c) in slots.iter().enumerate() {
                    if let Some(c) = c.as_ref().filter(|c| c.next_due != Millis::MAX) {
                        timers.schedule(c.next_due, c.id_hash, slot as u32);
                    }
                }
                timers
            });
            let index = Store::index_of(&slots);
            (index, timers.join().expect("the timer rebuild does not panic"))
        });
        let index = index.map_err(|id| format!("customer {id} appears twice"))?;
        engine.store = Store::from_parts(slots, index);
        engine.timers = timers;
        engine.recount_census();
        Ok(engine)
    }
}

/// A customer slot a restore has yet to write.
type UninitSlot = MaybeUninit<Option<Customer>>;

/// One section being restored: the slots its customers go to, its current unpacked frame and
/// the position in it, and its packed frames still to unpack.
type SectionDecode<'a> = (&'a mut [UninitSlot], Vec<u8>, usize, &'a [u8]);

/// Sections a snapshot of the engine's state is cut into (see [`Engine::encode_state`]): a
/// few per core of a typical host. Fixed, so a snapshot reads the same on any machine.
pub const STATE_SECTIONS: usize = 4;

/// The first frame of a state's first section: largest event time, stream time, unconfirmed
/// leaps, the population and the sources, and the learner (empty when learning is off).
type Clock = (Millis, Millis, Vec<(u64, Millis)>, Vec<u8>, SourceSet, Vec<u8>);

/// Appends a frame of encoded state (`raw`) to a packed section (`out`); see
/// [`Engine::encode_state_packed`].
pub type Pack<'a> = &'a (dyn Fn(&[u8], &mut Vec<u8>) + Sync);

/// Replaces `raw`'s content with the frame at the start of a packed section and returns the
/// packed bytes it took; see [`Engine::from_state_packed`].
pub type Unpack<'a> = &'a (dyn Fn(&[u8], &mut Vec<u8>) -> Result<usize, String> + Sync);

/// Appends `value` in postcard to `out`, straight into the `Vec` (postcard's own `to_extend`
/// goes through `Extend` a byte at a time, which made encoding a snapshot slower than cloning
/// the engine).
fn append_postcard<T: serde::Serialize>(value: &T, out: &mut Vec<u8>) {
    postcard::serialize_with_flavor(value, Append(out)).expect("writing to a Vec cannot fail");
}

/// postcard's output target for [`append_postcard`].
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}
