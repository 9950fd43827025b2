//! Snapshots of a partition's state, so a restart or a partition move re-reads minutes of input
//! instead of all of it.
//!
//! A snapshot is taken right after a commit, so the offsets it records are committed ones: its
//! state reflects exactly the input before them, and every output of that input is already
//! committed. Recovery loads the newest good snapshot whose offsets are not past the group's
//! committed offsets, then re-reads from its offsets up to the committed ones with outputs
//! suppressed (see `pipeline::processor`). A snapshot that cannot be used (corrupt, foreign,
//! ahead of the commits) is skipped with the reason, and the next older one is tried; with
//! none left the partition is rebuilt from the beginning of its topics, with a loud warning.
//!
//! - [`mod@format`]: the bytes of one snapshot (header, compressed state, checksum);
//! - [`dir`] and [`kafka`]: where snapshots are kept, behind one [`SnapshotStore`] trait;
//! - [`Snapshotter`]: encodes and compresses on the processing thread (the only part that must
//!   see a consistent state), checksums and writes on a thread of its own.

pub mod dir;
pub mod format;
pub mod kafka;

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

pub use self::format::{decode, encode, open, SnapshotError, SnapshotHeader, FORMAT_VERSION};
use crate::engine::{Engine, EngineConfig};
use crate::score::Scorecard;

/// One stored snapshot, as a store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Where it is, for logs and `snapshot inspect` (a path, or a topic partition and slot).
    pub name: String,
    /// Orders snapshots of one partition, newest last.
    pub id: u64,
}

/// Where snapshots are kept. Implementations keep the newest few per partition and never leave
/// a half-written snapshot where a reader would take it for a whole one.
pub trait SnapshotStore: Send + Sync {
    /// Stores a framed snapshot of `partition` as the newest, then drops the oldest beyond the
    /// number to keep.
    fn save(&self, partition: i32, id: u64, bytes: &[u8]) -> anyhow::Result<()>;
    /// The partition's snapshots, newest first.
    fn list(&self, partition: i32) -> anyhow::Result<Vec<Stored>>;
    /// The bytes of one listed snapshot.
    fn read(&self, partition: i32, stored: &Stored) -> anyhow::Result<Vec<u8>>;
}

/// A partition's state as restored from a snapshot.
pub struct Restored {
    pub engine: Engine,
    pub header: SnapshotHeader,
    pub name: String,
    /// Bytes read, and how long reading and decoding took.
    pub bytes: usize,
    pub took: Duration,
}

/// What the processor needs to know to use a snapshot of a partition.
pub struct RestoreContext<'a> {
    pub partition: i32,
    pub topics: [&'a str; 3],
    /// The group's committed offsets for the three inputs (`None`: nothing committed).
    pub committed: [Option<i64>; 3],
    pub scorecard: &'a Arc<Scorecard>,
    pub engine: &'a EngineConfig,
}

/// Loads the newest snapshot of the partition that can be used, trying older ones when the
/// newest cannot (each refusal is logged with its reason). `Ok(None)`: start empty.
pub fn restore(store: &dyn SnapshotStore, cx: &RestoreContext<'_>) -> anyhow::Result<Option<Restored>> {
    let listed = store.list(cx.partition)?;
    let mut refused = 0;
    for stored in &listed {
        let started = Instant::now();
        let attempt = store.read(cx.partition, stored).and_then(|bytes| {
            let restored = usable(&bytes, cx)?;
            Ok((bytes.len(), restored))
        });
        match attempt {
            Ok((bytes, (header, engine))) => {
                if refused > 0 {
                    warn!(partition = cx.partition, snapshot = %stored.name, refused, "restored from an older snapshot");
                }
                return Ok(Some(Restored {
                    engine,
                    header,
                    name: stored.name.clone(),
                    bytes,
                    took: started.elapsed(),
                }));
            }
            Err(e) => {
                refused += 1;
                warn!(partition = cx.partition, snapshot = %stored.name, reason = %format!("{e:#}"), "snapshot not usable; trying an older one");
            }
        }
    }
    if refused > 0 {
        warn!(
            partition = cx.partition,
            refused, "NO USABLE SNAPSHOT: rebuilding this partition from the beginning of its input topics"
        );
    }
    Ok(None)
}

/// Decodes a snapshot and checks that it belongs to this partition and deployment and is not
/// ahead of the group's commits.
pub fn usable(bytes: &[u8], cx: &RestoreContext<'_>) -> anyhow::Result<(SnapshotHeader, Engine)> {
    let (header, state) = decode(bytes)?;
    if header.partition != cx.partition {
        return Err(SnapshotError::Foreign(format!("it is of partition {}", header.partition)).into());
    }
    if header.topics.iter().map(String::as_str).ne(cx.topics.iter().copied()) {
        return Err(SnapshotError::Foreign(format!("it is of topics {:?}", header.topics)).into());
    }
    for (s, (snap, committed)) in header.offsets.iter().zip(&cx.committed).enumerate() {
        if let Some(snap) = snap {
            if committed.is_none_or(|c| *snap > c) {
                anyhow::bail!(
                    "it reflects {} up to offset {snap}, past the group's committed offset {committed:?} \
                     (offsets reset, or the group changed)",
                    cx.topics[s]
                );
            }
        }
    }
    let engine = engine_of(&header, &state, cx.scorecard, cx.engine)?;
    Ok((header, engine))
}

/// The engine a snapshot's packed state holds, checked against the header's customer count.
pub fn engine_of(
    header: &SnapshotHeader,
    state: &[&[u8]],
    scorecard: &Arc<Scorecard>,
    config: &EngineConfig,
) -> Result<Engine, SnapshotError> {
    let engine = Engine::from_state_packed(scorecard.clone(), config.clone(), state, &format::unpack_frame)
        .map_err(|e| SnapshotError::Corrupt(format!("state: {e}")))?;
    if engine.customer_count() as u64 != header.customers {
        return Err(SnapshotError::Corrupt(format!(
            "{} customers, the header says {}",
            engine.customer_count(),
            header.customers
        )));
    }
    Ok(engine)
}

/// Reads a snapshot file for `healthscore snapshot inspect` (framing and checksum only) or
/// `verify` (also decodes every customer, as a restore would): its header and a summary.
pub fn describe(bytes: &[u8], verify: bool) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let header = if verify {
        let (header, state) = decode(bytes)?;
        engine_of(&header, &state, &Arc::new(Scorecard::default_scorecard()), &EngineConfig::default())?;
        header
    } else {
        open(bytes)?.0
    };
    let mut text = String::new();
    let time = |t: Option<i64>| t.map_or("-".to_string(), crate::event::format_rfc3339);
    let per = |n: usize| if header.customers > 0 { n as f64 / header.customers as f64 } else { 0.0 };
    writeln!(text, "partition      {}", header.partition)?;
    for (s, topic) in header.topics.iter().enumerate() {
        let offset = header.offsets[s].map_or("- (nothing read)".to_string(), |o| o.to_string());
        writeln!(text, "offset         {topic}: {offset}")?;
    }
    writeln!(text, "stream time    {}", time(header.stream_time))?;
    writeln!(text, "customers      {}", header.customers)?;
    writeln!(text, "scorecard      {}", header.scorecard_version)?;
    writeln!(text, "taken          {}", time(Some(header.created_ms)))?;
    writeln!(text, "format         {FORMAT_VERSION}")?;
    writeln!(
        text,
        "size           {} bytes ({:.0} per customer); state {} bytes before compression ({:.0} per customer)",
        bytes.len(),
        per(bytes.len()),
        header.state_bytes,
        per(header.state_bytes as usize)
    )?;
    if verify {
        writeln!(text, "verified       checksum, header and all {} customers decode", header.customers)?;
    }
    Ok(text)
}

/// A snapshot encoded and compressed on the processing thread, waiting to be stored.
pub struct Pending {
    pub header: SnapshotHeader,
    pub state: Vec<Vec<u8>>,
}

impl Pending {
    /// Encodes a consistent copy of `engine`'s state as of the given input positions. This is
    /// the part of a snapshot that pauses processing: the state serialised and compressed frame
    /// by frame into memory (on every core), no I/O. Compressing here rather than in the
    /// background keeps a second, uncompressed copy of the whole state from ever being
    /// allocated: on a VM, faulting in fresh memory costs more than LZ4 does.
    pub fn take(
        engine: &Engine,
        partition: i32,
        topics: [&str; 3],
        offsets: [Option<i64>; 3],
        last_times: [i64; 3],
    ) -> Pending {
        let (state, state_bytes) = engine.encode_state_packed(&format::pack_frame, format::FRAME_BYTES);
        let header = SnapshotHeader {
            partition,
            topics: topics.map(String::from),
            offsets,
            last_times,
            stream_time: engine.stream_time(),
            customers: engine.customer_count() as u64,
            scorecard_version: engine.scorecard().version.to_string(),
            created_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64),
            state_bytes,
        };
        Pending { header, state }
    }
}

/// How a background write went, for the metrics.
#[derive(Debug, Clone)]
pub struct Written {
    pub partition: i32,
    pub result: Result<usize, String>,
    pub took: Duration,
}

/// Frames, checksums and stores snapshots on a thread of its own, one at a time. The queue holds one
/// snapshot: while a write is still running, [`Snapshotter::offer`] refuses the next (the
/// processor tries again later), so snapshots never pile up in memory.
pub struct Snapshotter {
    queue: Option<SyncSender<Pending>>,
    done: Receiver<Written>,
    worker: Option<std::thread::JoinHandle<()>>,
    next_id: u64,
    /// Snapshots handed over and not reported back yet.
    in_flight: usize,
}

impl Snapshotter {
    pub fn new(store: Arc<dyn SnapshotStore>) -> Snapshotter {
        let (queue, jobs) = sync_channel::<Pending>(1);
        let (report, done) = std::sync::mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("snapshots".into())
            .spawn(move || {
                for pending in jobs {
                    let started = Instant::now();
                    let partition = pending.header.partition;
                    let id = pending.header.created_ms.max(0) as u64;
                    let bytes = encode(&pending.header, &pending.state);
                    drop(pending);
                    let result = store.save(partition, id, &bytes).map(|()| bytes.len()).map_err(|e| format!("{e:#}"));
                    match &result {
                        Ok(n) => {
                            info!(partition, bytes = n, ms = started.elapsed().as_millis() as u64, "snapshot written")
                        }
                        Err(e) => warn!(partition, error = %e, "snapshot failed"),
                    }
                    if report.send(Written { partition, result, took: started.elapsed() }).is_err() {
                        break;
                    }
                }
            })
            .expect("cannot start the snapshot thread");
        Snapshotter { queue: Some(queue), done, worker: Some(worker), next_id: 0, in_flight: 0 }
    }

    /// Hands a snapshot to the writer if it is free; `false` (and the snapshot dropped) if busy.
    pub fn offer(&mut self, mut pending: Pending) -> bool {
        self.stamp(&mut pending);
        match self.queue.as_ref().expect("open").try_send(pending) {
            Ok(()) => {
                self.in_flight += 1;
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    /// Hands a snapshot to the writer, waiting for it to be free.
    pub fn submit(&mut self, mut pending: Pending) {
        self.stamp(&mut pending);
        if self.queue.as_ref().expect("open").send(pending).is_ok() {
            self.in_flight += 1;
        }
    }

    /// Whether a snapshot is still being written.
    pub fn busy(&self) -> bool {
        self.in_flight > 0
    }

    /// Snapshot ids must grow even when the wall clock does not (two in one millisecond).
    fn stamp(&mut self, pending: &mut Pending) {
        let id = (pending.header.created_ms.max(0) as u64).max(self.next_id);
        pending.header.created_ms = id as i64;
        self.next_id = id + 1;
    }

    /// Reports of the writes finished since the last call.
    pub fn finished(&mut self) -> Vec<Written> {
        let done: Vec<Written> = self.done.try_iter().collect();
        self.in_flight = self.in_flight.saturating_sub(done.len());
        done
    }

    /// Waits until every snapshot handed over is written; returns their reports.
    pub fn wait_idle(&mut self) -> Vec<Written> {
        let mut done = Vec::new();
        while self.in_flight > 0 {
            match self.done.recv() {
                Ok(w) => {
                    self.in_flight -= 1;
                    done.push(w);
                }
                Err(_) => break,
            }
        }
        done
    }

    /// Waits for every queued snapshot to be written, and stops the writer.
    pub fn close(&mut self) -> Vec<Written> {
        self.queue.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        self.finished()
    }
}

impl Drop for Snapshotter {
    fn drop(&mut self) {
        self.close();
    }
}
