//! The persistent sending queue: a segment log of encoded requests in one directory, with a
//! checksum on every record, shared by every exporter through `sending_queue.storage`.
//!
//! Layout: `<first seq>.seg` files of records `magic "FTQ1" | len u32 | crc32 u32 | seq u64 |
//! signal u8 | items u32 | payload` (little-endian; the checksum covers `len` and everything after
//! the checksum), and `acks`, an append log of `seq u64 | crc32 u32` naming the records whose send
//! ended (sent, or given up and counted). A segment whose records have all ended is deleted.
//!
//! At least once: a record is acknowledged only after its send ends, so a crash re-sends what was
//! in flight (at most `num_consumers` requests), never loses it. Opening replays every segment: a
//! torn tail (a crash mid-append) or a corrupt span (a flipped bit) is skipped up to the next
//! record whose checksum holds, and counted; it never stops the start. Appends after a restart go
//! to a new segment, so a torn tail is never written over.
//!
//! Appends and reads are blocking file I/O of one record under a short lock: callers on the
//! async runtime run them on the blocking pool. With `fsync`, an append returns only once its
//! record is on disk; concurrent appends share one `fdatasync` (group commit).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::signal::Signal;

const MAGIC: [u8; 4] = *b"FTQ1";
/// magic 4, len 4, crc 4, seq 8, signal 1, items 4.
const HEADER: usize = 25;
const ACK_RECORD: usize = 12;
/// A payload larger than this is corruption on replay (no request is this large).
const MAX_PAYLOAD: usize = 1 << 30;
const ACKS: &str = "acks";
const LOCK: &str = "LOCK";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("persistent queue {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("persistent queue {0} is in use by another process")]
    Locked(String),
    #[error("the persistent queue is full")]
    Full,
    #[error("the persistent queue is closed")]
    Closed,
}

impl QueueError {
    /// The disk is full or over quota: a refusal to retry later, not a fault.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, QueueError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG)))
    }
}

/// The unit of the queue's capacity (`sending_queue.sizer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizer {
    Requests,
    Items,
    Bytes,
}

impl Sizer {
    pub fn weight(self, items: u64, bytes: u64) -> u64 {
        match self {
            Sizer::Requests => 1,
            Sizer::Items => items.max(1),
            Sizer::Bytes => bytes.max(1),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// `fdatasync` each append (grouped) before it returns; survives a machine crash.
    pub fsync: bool,
    /// In the sizer's unit; enforced on what is on disk, restored records included.
    pub capacity: u64,
    pub sizer: Sizer,
    /// A segment is closed once it is this large (a record larger than it gets one of its own).
    pub segment_bytes: u64,
}

/// What opening found on disk.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recovered {
    /// Records not yet sent, per signal, and their items and weight.
    pub records: [u64; Signal::COUNT],
    pub items: [u64; Signal::COUNT],
    pub weight: [u64; Signal::COUNT],
    /// Corrupt spans skipped (a checksum that does not hold, a record header that makes no sense).
    pub corrupt_records: u64,
    /// A record cut short at the end of a segment (a crash mid-append).
    pub torn_records: u64,
    pub skipped_bytes: u64,
}

/// One queued record: where it is and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub signal: Signal,
    pub items: u64,
    pub weight: u64,
    segment: u64,
    offset: u64,
    len: u32,
}

struct Segment {
    path: PathBuf,
    /// Opened for reading on first use.
    reader: Option<Arc<File>>,
    /// Records not yet acknowledged.
    live: u64,
    /// Acknowledged records of this segment: what a rewrite of the ack log keeps.
    acked: Vec<u64>,
}

struct Tail {
    id: u64,
    file: Arc<File>,
    len: u64,
}

struct State {
    closed: bool,
    next_seq: u64,
    /// Records not yet handed to a consumer, oldest first.
    pending: VecDeque<Entry>,
    segments: BTreeMap<u64, Segment>,
    tail: Option<Tail>,
    /// Weight of every record not yet acknowledged (pending and in flight).
    used: u64,
    /// Records not yet acknowledged.
    records: u64,
    acks: File,
    acks_len: u64,
}

pub struct DiskQueue {
    dir: PathBuf,
    opts: Options,
    state: Mutex<State>,
    ready: Semaphore,
    /// Highest sequence number known to be on disk (with `fsync`).
    synced: AtomicU64,
    sync_lock: Mutex<()>,
    /// Held until [`DiskQueue::release`]: a second process on the same directory is refused.
    lock_file: Mutex<Option<File>>,
}

fn crc(buf: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[4..8]);
    h.update(&buf[12..HEADER]);
    h.update(payload);
    h.finalize()
}

fn header(seq: u64, signal: Signal, items: u64, payload: &[u8]) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[12..20].copy_from_slice(&seq.to_le_bytes());
    h[20] = signal.index() as u8;
    h[21..25].copy_from_slice(&(items.min(u32::MAX as u64) as u32).to_le_bytes());
    let c = crc(&h, payload);
    h[8..12].copy_from_slice(&c.to_le_bytes());
    h
}

/// One record as it is written (for seeds and tools).
pub fn encode_record(seq: u64, signal: Signal, items: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = header(seq, signal, items, payload).to_vec();
    v.extend_from_slice(payload);
    v
}

/// Replays a segment's bytes: the records found, as (offset, payload length), and what was
/// skipped. Every record found lies within `buf`.
pub fn scan_segment(buf: &[u8]) -> (Vec<(usize, usize)>, Recovered) {
    let mut rec = Recovered::default();
    let found = scan(buf, &mut rec)
        .into_iter()
        .map(|(pos, p)| (pos, p.len))
        .collect();
    (found, rec)
}

#[derive(Debug, PartialEq)]
enum Bad {
    /// Runs past the end of the data.
    Short,
    Corrupt,
}

struct Parsed {
    seq: u64,
    signal: Signal,
    items: u64,
    len: usize,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn parse(buf: &[u8], pos: usize) -> Result<Parsed, Bad> {
    let Some(h) = buf.get(pos..pos + HEADER) else {
        return Err(
            if buf[pos..].starts_with(&MAGIC[..(buf.len() - pos).min(4)]) {
                Bad::Short
            } else {
                Bad::Corrupt
            },
        );
    };
    if h[0..4] != MAGIC {
        return Err(Bad::Corrupt);
    }
    let len = u32_at(h, 4) as usize;
    if len > MAX_PAYLOAD {
        return Err(Bad::Corrupt);
    }
    let Some(payload) = buf.get(pos + HEADER..pos + HEADER + len) else {
        return Err(Bad::Short);
    };
    if crc(h, payload) != u32_at(h, 8) {
        return Err(Bad::Corrupt);
    }
    let Some(signal) = Signal::EVERY.get(h[20] as usize).copied() else {
        return Err(Bad::Corrupt);
    };
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&h[12..20]);
    Ok(Parsed {
        seq: u64::from_le_bytes(seq),
        signal,
        items: u32_at(h, 21) as u64,
        len,
    })
}

/// Every valid record of a segment's bytes, and what was skipped.
fn scan(buf: &[u8], rec: &mut Recovered) -> Vec<(usize, Parsed)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        match parse(buf, pos) {
            Ok(p) => {
                let next = pos + HEADER + p.len;
                out.push((pos, p));
                pos = next;
            }
            Err(bad) => {
                // Resynchronise at the next record whose checksum holds.
                let mut from = pos + 1;
                let found = loop {
                    match memchr::memmem::find(&buf[from..], &MAGIC) {
                        Some(i) if parse(buf, from + i).is_ok() => break Some(from + i),
                        Some(i) => from += i + 1,
                        None => break None,
                    }
                };
                let to = found.unwrap_or(buf.len());
                rec.skipped_bytes += (to - pos) as u64;
                if found.is_none() && bad == Bad::Short {
                    rec.torn_records += 1;
                } else {
                    rec.corrupt_records += 1;
                }
                pos = to;
            }
        }
    }
    out
}

fn segment_name(id: u64) -> String {
    format!("{id:020}.seg")
}

impl DiskQueue {
    /// Opens (or creates) the queue in `dir`, replaying what is there.
    pub fn open(dir: &Path, opts: Options) -> Result<(Arc<DiskQueue>, Recovered), QueueError> {
        let io = |source: std::io::Error| QueueError::Io {
            dir: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))
            .map_err(io)?;
        // SAFETY: flock on a file descriptor we own; no memory is touched.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } != 0
        {
            return Err(QueueError::Locked(dir.display().to_string()));
        }
        let mut rec = Recovered::default();
        let acked = read_acks(&dir.join(ACKS)).map_err(io)?;
        let mut ids: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io)?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                name.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut pending = VecDeque::new();
        let mut next_seq = 0u64;
        let mut used = 0u64;
        for id in ids {
            let path = dir.join(segment_name(id));
            let buf = std::fs::read(&path).map_err(io)?;
            let mut seg = Segment {
                path: path.clone(),
                reader: None,
                live: 0,
                acked: Vec::new(),
            };
            next_seq = next_seq.max(id);
            for (pos, p) in scan(&buf, &mut rec) {
                next_seq = next_seq.max(p.seq + 1);
                if acked.contains(&p.seq) {
                    seg.acked.push(p.seq);
                    continue;
                }
                let weight = opts.sizer.weight(p.items, p.len as u64);
                let i = p.signal.index();
                rec.records[i] += 1;
                rec.items[i] += p.items;
                rec.weight[i] += weight;
                used += weight;
                seg.live += 1;
                pending.push_back(Entry {
                    seq: p.seq,
                    signal: p.signal,
                    items: p.items,
                    weight,
                    segment: id,
                    offset: pos as u64,
                    len: p.len as u32,
                });
            }
            if seg.live == 0 {
                std::fs::remove_file(&path).map_err(io)?;
            } else {
                segments.insert(id, seg);
            }
        }
        let (acks, acks_len) = rewrite_acks(dir, &segments).map_err(io)?;
        if opts.fsync {
            sync_dir(dir).map_err(io)?;
        }
        let n = pending.len();
        let q = Arc::new(DiskQueue {
            dir: dir.to_path_buf(),
            synced: AtomicU64::new(next_seq),
            state: Mutex::new(State {
                closed: false,
                next_seq,
                pending,
                segments,
                tail: None,
                used,
                records: n as u64,
                acks,
                acks_len,
            }),
            ready: Semaphore::new(n),
            sync_lock: Mutex::new(()),
            opts,
            lock_file: Mutex::new(Some(lock)),
        });
        Ok((q, rec))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn io(&self, source: std::io::Error) -> QueueError {
        QueueError::Io {
            dir: self.dir.display().to_string(),
            source,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn capacity(&self) -> u64 {
        self.opts.capacity
    }

    /// Weight held (pending and in flight), in the sizer's unit.
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    /// Appends a record; with `fsync`, returns once it is on disk. `Full` when `weight` does
    /// not fit (an empty queue takes anything, so one large request is never refused forever).
    /// On a write error nothing of the record is left behind.
    pub fn push(
        &self,
        signal: Signal,
        items: u64,
        weight: u64,
        payload: &[u8],
    ) -> Result<u64, QueueError> {
        self.push_then(signal, items, weight, payload, |_| {})
    }

    /// [`DiskQueue::push`], calling `on_queued` with the record's sequence number before any
    /// consumer can take it.
    pub fn push_then(
        &self,
        signal: Signal,
        items: u64,
        weight: u64,
        payload: &[u8],
        on_queued: impl FnOnce(u64),
    ) -> Result<u64, QueueError> {
        let seq = {
            let mut st = self.lock();
            if st.closed {
                return Err(QueueError::Closed);
            }
            if st.used > 0 && st.used + weight > self.opts.capacity {
                return Err(QueueError::Full);
            }
            let seq = st.next_seq;
            if st
                .tail
                .as_ref()
                .is_none_or(|t| t.len >= self.opts.segment_bytes)
            {
                self.roll(&mut st, seq)?;
            }
            let Some(tail) = st.tail.as_mut() else {
                return Err(QueueError::Closed);
            };
            let h = header(seq, signal, items, payload);
            let at = tail.len;
            let written = (&*tail.file)
                .write_all(&h)
                .and_then(|()| (&*tail.file).write_all(payload));
            if let Err(e) = written {
                // Cut the partial record away; if even that fails, the next append starts a
                // new segment and replay skips the remains.
                if tail.file.set_len(at).is_err() {
                    st.tail = None;
                }
                return Err(self.io(e));
            }
            tail.len += (HEADER + payload.len()) as u64;
            let segment = tail.id;
            st.next_seq += 1;
            st.used += weight;
            st.records += 1;
            if let Some(s) = st.segments.get_mut(&segment) {
                s.live += 1;
            }
            st.pending.push_back(Entry {
                seq,
                signal,
                items,
                weight,
                segment,
                offset: at,
                len: payload.len() as u32,
            });
            on_queued(seq);
            seq
        };
        self.ready.add_permits(1);
        if self.opts.fsync {
            self.sync(seq)?;
        }
        Ok(seq)
    }

    /// Starts a new segment for records from `seq` on; the old tail is synced and, if every
    /// record in it has ended, deleted.
    fn roll(&self, st: &mut State, seq: u64) -> Result<(), QueueError> {
        if let Some(old) = st.tail.take() {
            if self.opts.fsync {
                old.file.sync_data().map_err(|e| self.io(e))?;
            }
            if st.segments.get(&old.id).is_some_and(|s| s.live == 0)
                && let Some(s) = st.segments.remove(&old.id)
            {
                let _ = std::fs::remove_file(&s.path);
            }
        }
        let path = self.dir.join(segment_name(seq));
        // Append mode: after a failed write is cut away, the next one lands where the cut
        // was, not at the failed write's file position.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|f| f.set_len(0).map(|()| f))
            .map_err(|e| self.io(e))?;
        if self.opts.fsync {
            sync_dir(&self.dir).map_err(|e| self.io(e))?;
        }
        st.segments.insert(
            seq,
            Segment {
                path,
                reader: None,
                live: 0,
                acked: Vec::new(),
            },
        );
        st.tail = Some(Tail {
            id: seq,
            file: Arc::new(file),
            len: 0,
        });
        Ok(())
    }

    /// Group commit: one `fdatasync` covers every append made before it started.
    fn sync(&self, seq: u64) -> Result<(), QueueError> {
        let _g = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.synced.load(Ordering::Acquire) > seq {
            return Ok(());
        }
        let (file, upto) = {
            let st = self.lock();
            (st.tail.as_ref().map(|t| t.file.clone()), st.next_seq)
        };
        if let Some(f) = file {
            f.sync_data().map_err(|e| self.io(e))?;
        }
        self.synced.store(upto, Ordering::Release);
        Ok(())
    }

    /// Waits for the next record. `None` once the queue is closed: what is left stays on disk.
    pub async fn pop(&self) -> Option<Entry> {
        loop {
            let permit = self.ready.acquire().await.ok()?;
            permit.forget();
            let mut st = self.lock();
            if st.closed {
                return None;
            }
            if let Some(e) = st.pending.pop_front() {
                return Some(e);
            }
        }
    }

    /// The payload of a popped record, its checksum checked again.
    pub fn read(&self, e: &Entry) -> Result<Bytes, QueueError> {
        let file = {
            let mut st = self.lock();
            let Some(seg) = st.segments.get_mut(&e.segment) else {
                return Err(self.io(std::io::Error::other("segment already removed")));
            };
            match &seg.reader {
                Some(f) => f.clone(),
                None => {
                    let f = Arc::new(File::open(&seg.path).map_err(|x| self.io(x))?);
                    seg.reader = Some(f.clone());
                    f
                }
            }
        };
        let mut buf = vec![0u8; HEADER + e.len as usize];
        file.read_exact_at(&mut buf, e.offset)
            .map_err(|x| self.io(x))?;
        match parse(&buf, 0) {
            Ok(p) if p.seq == e.seq => {
                let mut b = Bytes::from(buf);
                Ok(b.split_off(HEADER))
            }
            _ => Err(self.io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("record {} no longer matches its checksum", e.seq),
            ))),
        }
    }

    /// The send of a popped record ended (sent, or given up and counted): it leaves the queue.
    pub fn ack(&self, e: &Entry) -> Result<(), QueueError> {
        let mut st = self.lock();
        st.used = st.used.saturating_sub(e.weight);
        st.records = st.records.saturating_sub(1);
        let tail = st.tail.as_ref().map(|t| t.id);
        let Some(seg) = st.segments.get_mut(&e.segment) else {
            return Ok(());
        };
        seg.live = seg.live.saturating_sub(1);
        if seg.live == 0 && tail != Some(e.segment) {
            // Every record of a closed segment has ended: the file goes, and with it the need
            // to remember its acknowledgements.
            let path = seg.path.clone();
            st.segments.remove(&e.segment);
            std::fs::remove_file(&path).map_err(|x| self.io(x))?;
            return Ok(());
        }
        seg.acked.push(e.seq);
        let mut rec = [0u8; ACK_RECORD];
        rec[..8].copy_from_slice(&e.seq.to_le_bytes());
        let sum = crc32fast::hash(&rec[..8]);
        rec[8..].copy_from_slice(&sum.to_le_bytes());
        (&st.acks).write_all(&rec).map_err(|x| self.io(x))?;
        st.acks_len += ACK_RECORD as u64;
        // Keep the log near what the live segments need.
        let live: u64 = st.segments.values().map(|s| s.acked.len() as u64).sum();
        if st.acks_len > (64 << 10).max(4 * live * ACK_RECORD as u64) {
            let (f, len) = rewrite_acks(&self.dir, &st.segments).map_err(|x| self.io(x))?;
            st.acks = f;
            st.acks_len = len;
        }
        Ok(())
    }

    /// Refuses new records and wakes every waiting consumer; what is queued stays on disk.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.close();
    }

    /// Closes the queue and gives up its directory lock, so that a new instance (a reloaded
    /// exporter) may open it; call once no send is in progress.
    pub fn release(&self) {
        self.close();
        self.lock_file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    /// Records not yet acknowledged: queued or being sent.
    pub fn unacknowledged(&self) -> u64 {
        self.lock().records
    }

    /// Records not yet handed to a consumer.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }
}

fn read_acks(path: &Path) -> std::io::Result<HashSet<u64>> {
    let buf = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(e),
    };
    // A torn or flipped record is skipped: the worst it does is send one request again.
    Ok(buf
        .chunks_exact(ACK_RECORD)
        .filter(|r| crc32fast::hash(&r[..8]) == u32_at(r, 8))
        .map(|r| {
            let mut s = [0u8; 8];
            s.copy_from_slice(&r[..8]);
            u64::from_le_bytes(s)
        })
        .collect())
}

/// Writes the acknowledgements the live segments need to a new log and swaps it in.
fn rewrite_acks(dir: &Path, segments: &BTreeMap<u64, Segment>) -> std::io::Result<(File, u64)> {
    let tmp = dir.join("acks.tmp");
    let mut buf = Vec::new();
    for s in segments.values() {
        for seq in &s.acked {
            buf.extend_from_slice(&seq.to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(&seq.to_le_bytes()).to_le_bytes());
        }
    }
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, dir.join(ACKS))?;
    let f = OpenOptions::new().append(true).open(dir.join(ACKS))?;
    Ok((f, buf.len() as u64))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(capacity: u64, sizer: Sizer) -> Options {
        Options {
            fsync: false,
            capacity,
            sizer,
            segment_bytes: 200,
        }
    }

    async fn drain(q: &DiskQueue) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        while q.pending() > 0 {
            let e = q.pop().await.unwrap();
            out.push((e.seq, q.read(&e).unwrap().to_vec()));
            q.ack(&e).unwrap();
        }
        out
    }

    #[tokio::test]
    async fn records_survive_reopen_and_acknowledged_ones_do_not_come_back() {
        let d = tempfile::tempdir().unwrap();
        {
            let (q, rec) = DiskQueue::open(d.path(), opts(100, Sizer::Requests)).unwrap();
            assert_eq!(rec, Recovered::default());
            for i in 0..10u8 {
                q.push(Signal::Traces, 3, 1, &[i; 40]).unwrap();
            }
            // Two sent, one in flight (popped, never acknowledged: a crash during its send).
            for _ in 0..2 {
                let e = q.pop().await.unwrap();
                q.ack(&e).unwrap();
            }
            let _in_flight = q.pop().await.unwrap();
        }
        let (q, rec) = DiskQueue::open(d.path(), opts(100, Sizer::Items)).unwrap();
        assert_eq!(rec.records[Signal::Traces.index()], 8);
        assert_eq!(rec.items[Signal::Traces.index()], 24);
        // Restored weight is in the sizer of this start.
        assert_eq!(q.used(), 24);
        let got = drain(&q).await;
        assert_eq!(
            got.iter().map(|(_, p)| p[0]).collect::<Vec<_>>(),
            (2..10).collect::<Vec<u8>>(),
            "the in-flight record comes back first, then the rest in order"
        );
        assert_eq!(q.used(), 0);
        drop(q);
        let (q, rec) = DiskQueue::open(d.path(), opts(100, Sizer::Requests)).unwrap();
        assert_eq!(rec.records, [0; Signal::COUNT]);
        q.push(Signal::Logs, 1, 1, b"x").unwrap();
        assert_eq!(drain(&q).await[0].1, b"x");
    }

    #[tokio::test]
    async fn segments_are_deleted_once_every_record_in_them_ended() {
        let d = tempfile::tempdir().unwrap();
        let (q, _) = DiskQueue::open(d.path(), opts(1000, Sizer::Requests)).unwrap();
        for _ in 0..20 {
            q.push(Signal::Logs, 1, 1, &[7; 100]).unwrap();
        }
        let segs = || {
            std::fs::read_dir(d.path())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .count()
        };
        assert_eq!(segs(), 10, "two 125-byte records per 200-byte segment");
        drain(&q).await;
        assert_eq!(segs(), 1, "only the open tail remains");
    }

    #[tokio::test]
    async fn capacity_is_enforced_in_the_sizer_and_restored_after_restart() {
        let d = tempfile::tempdir().unwrap();
        {
            let (q, _) = DiskQueue::open(d.path(), opts(100, Sizer::Bytes)).unwrap();
            q.push(Signal::Metrics, 1, 60, &[0; 60]).unwrap();
            assert!(matches!(
                q.push(Signal::Metrics, 1, 60, &[0; 60]),
                Err(QueueError::Full)
            ));
            q.push(Signal::Metrics, 1, 40, &[0; 40]).unwrap();
        }
        let (q, _) = DiskQueue::open(d.path(), opts(100, Sizer::Bytes)).unwrap();
        assert_eq!(q.used(), 100);
        assert!(matches!(
            q.push(Signal::Metrics, 1, 1, b"x"),
            Err(QueueError::Full)
        ));
    }

    #[tokio::test]
    async fn torn_and_flipped_records_are_skipped_and_counted() {
        let d = tempfile::tempdir().unwrap();
        let seg_path = {
            let mut o = opts(100, Sizer::Requests);
            o.segment_bytes = 1 << 20;
            let (q, _) = DiskQueue::open(d.path(), o).unwrap();
            for i in 0..5u8 {
                q.push(Signal::Traces, 1, 1, &[i; 50]).unwrap();
            }
            d.path().join(segment_name(0))
        };
        let full = std::fs::read(&seg_path).unwrap();
        let rec = HEADER + 50;
        // A bit flipped in the payload of the second record, the last record cut in half.
        let mut bad = full.clone();
        bad[rec + HEADER + 10] ^= 0x04;
        bad.truncate(full.len() - rec / 2);
        std::fs::write(&seg_path, &bad).unwrap();
        let (q, r) = DiskQueue::open(d.path(), opts(100, Sizer::Requests)).unwrap();
        assert_eq!((r.corrupt_records, r.torn_records, r.records[0]), (1, 1, 3));
        let got: Vec<u8> = drain(&q).await.iter().map(|(_, p)| p[0]).collect();
        assert_eq!(got, vec![0, 2, 3]);
        // And the queue takes new records after the repair.
        q.push(Signal::Traces, 1, 1, b"new").unwrap();
        assert_eq!(drain(&q).await[0].1, b"new");
    }

    #[test]
    fn every_cut_and_every_flipped_byte_leaves_the_other_records() {
        // Three records; damage anywhere costs at most the records it touches.
        let mut buf = Vec::new();
        for i in 0..3u8 {
            let p = [i; 30];
            buf.extend_from_slice(&header(i as u64, Signal::Logs, 1, &p));
            buf.extend_from_slice(&p);
        }
        let rec = HEADER + 30;
        for cut in 0..buf.len() {
            let mut r = Recovered::default();
            let n = scan(&buf[..cut], &mut r).len();
            assert_eq!(n, cut / rec, "cut at {cut}");
        }
        for at in 0..buf.len() {
            let mut b = buf.clone();
            b[at] ^= 0x80;
            let mut r = Recovered::default();
            let got: Vec<u64> = scan(&b, &mut r).iter().map(|(_, p)| p.seq).collect();
            let hit = (at / rec) as u64;
            let want: Vec<u64> = (0..3).filter(|s| *s != hit).collect();
            assert_eq!(got, want, "flip at {at}");
            assert_eq!(r.corrupt_records + r.torn_records, 1, "flip at {at}");
        }
    }

    #[test]
    fn a_second_open_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let _q = DiskQueue::open(d.path(), opts(10, Sizer::Requests)).unwrap();
        assert!(matches!(
            DiskQueue::open(d.path(), opts(10, Sizer::Requests)),
            Err(QueueError::Locked(_))
        ));
    }

    #[tokio::test]
    async fn close_wakes_consumers_and_keeps_what_is_left() {
        let d = tempfile::tempdir().unwrap();
        {
            let (q, _) = DiskQueue::open(d.path(), opts(10, Sizer::Requests)).unwrap();
            q.push(Signal::Traces, 1, 1, b"a").unwrap();
            q.close();
            assert_eq!(q.pop().await, None);
            assert!(matches!(
                q.push(Signal::Traces, 1, 1, b"b"),
                Err(QueueError::Closed)
            ));
        }
        let (_, r) = DiskQueue::open(d.path(), opts(10, Sizer::Requests)).unwrap();
        assert_eq!(r.records[0], 1);
    }

    #[tokio::test]
    async fn the_ack_log_stays_near_what_the_live_segments_need() {
        let d = tempfile::tempdir().unwrap();
        let mut o = opts(1 << 30, Sizer::Requests);
        o.segment_bytes = 1000;
        let (q, _) = DiskQueue::open(d.path(), o.clone()).unwrap();
        // One record always pending, so no segment is ever empty when it is acknowledged.
        q.push(Signal::Traces, 1, 1, b"x").unwrap();
        for _ in 0..20_000 {
            q.push(Signal::Traces, 1, 1, b"x").unwrap();
            let e = q.pop().await.unwrap();
            q.ack(&e).unwrap();
        }
        let len = std::fs::metadata(d.path().join(ACKS)).unwrap().len();
        assert!(len < (64 << 10) + 2 * ACK_RECORD as u64 * 40, "{len}");
        drop(q);
        let (_, r) = DiskQueue::open(d.path(), o).unwrap();
        assert_eq!(r.records[0], 1);
    }
}
