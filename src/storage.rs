//! A small crash-safe key-value store, one log-structured file per client component, and the
//! registry through which components reach the storage extensions the service started.
//!
//! File format: an 8-byte header (`FTKV\0\0\0\x01`), then records `len: u32 LE | crc32: u32 LE |
//! payload`, where a payload is one atomic batch of operations (`1 | key | value` sets, `2 | key`
//! deletes; lengths as LEB128). A write appends one record (and fsyncs when asked). Opening
//! replays the records and stops at the first torn or corrupt one, which a crash mid-append
//! leaves at the tail, and truncates it away: every batch is either wholly there or absent.
//! Compaction writes the live entries to a temporary file, syncs it and renames it over the log.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::ComponentId;

const HEADER: &[u8; 8] = b"FTKV\0\0\0\x01";
const OP_SET: u8 = 1;
const OP_DELETE: u8 = 2;
/// A record larger than this is treated as corruption on replay.
const MAX_RECORD: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("storage file {0} is in use by another process")]
    Locked(String),
    #[error("storage file {0} is not a ferrotel storage file")]
    Foreign(String),
    #[error("no storage extension `{0}` is running (list it in `service::extensions`)")]
    NoSuchExtension(String),
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Set(String, Vec<u8>),
    Delete(String),
}

/// When a store compacts its log on its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionPolicy {
    /// Compact when opening.
    pub on_start: bool,
    /// Compact when the log is this many bytes larger than its live data (and more than twice
    /// it). The log would otherwise grow by every checkpoint write.
    pub garbage_bytes: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            on_start: false,
            garbage_bytes: 1 << 20,
        }
    }
}

/// A key-value store in one file. Cheap to share; operations take a short lock and do blocking
/// file I/O of one small record, so callers on the async runtime may call them directly.
pub struct Store {
    path: PathBuf,
    temp_dir: PathBuf,
    fsync: bool,
    policy: CompactionPolicy,
    inner: Mutex<Inner>,
}

struct Inner {
    file: File,
    map: BTreeMap<String, Vec<u8>>,
    /// Bytes in the file, header included.
    file_len: u64,
    /// Bytes a compacted file would have.
    live_len: u64,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn get_len(buf: &[u8], at: &mut usize) -> Option<usize> {
    let mut n = 0usize;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn get_bytes<'a>(buf: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let n = get_len(buf, at)?;
    let s = buf.get(*at..at.checked_add(n)?)?;
    *at += n;
    Some(s)
}

fn encode_ops(ops: &[Op]) -> Vec<u8> {
    let mut payload = Vec::new();
    for op in ops {
        match op {
            Op::Set(k, v) => {
                payload.push(OP_SET);
                put_len(&mut payload, k.len());
                payload.extend_from_slice(k.as_bytes());
                put_len(&mut payload, v.len());
                payload.extend_from_slice(v);
            }
            Op::Delete(k) => {
                payload.push(OP_DELETE);
                put_len(&mut payload, k.len());
                payload.extend_from_slice(k.as_bytes());
            }
        }
    }
    let mut rec = Vec::with_capacity(8 + payload.len());
    rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    rec.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    rec.extend_from_slice(&payload);
    rec
}

/// Applies one record's operations; `None` if the payload does not parse (corruption).
fn decode_ops(payload: &[u8]) -> Option<Vec<Op>> {
    let mut at = 0;
    let mut ops = Vec::new();
    while at < payload.len() {
        let op = payload[at];
        at += 1;
        let key = String::from_utf8(get_bytes(payload, &mut at)?.to_vec()).ok()?;
        match op {
            OP_SET => ops.push(Op::Set(key, get_bytes(payload, &mut at)?.to_vec())),
            OP_DELETE => ops.push(Op::Delete(key)),
            _ => return None,
        }
    }
    Some(ops)
}

fn entry_len(k: &str, v: &[u8]) -> u64 {
    (k.len() + v.len() + 12) as u64
}

impl Store {
    /// Opens (creating if missing) the store at `path`, replaying its log. Takes an exclusive
    /// lock on the file so that two collectors never write one store.
    pub fn open(
        path: &Path,
        temp_dir: &Path,
        fsync: bool,
        policy: CompactionPolicy,
    ) -> Result<Store, StorageError> {
        let err = io_err(path);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(&err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StorageError::Locked(path.display().to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
        }
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).map_err(&err)?;
        let mut map = BTreeMap::new();
        let good_len = if buf.is_empty() {
            file.write_all(HEADER).map_err(&err)?;
            if fsync {
                file.sync_all().map_err(&err)?;
            }
            HEADER.len()
        } else if buf.len() < HEADER.len() {
            // A crash while writing the header of a new file.
            if HEADER.starts_with(&buf) {
                file.set_len(0).map_err(&err)?;
                file.seek(SeekFrom::Start(0)).map_err(&err)?;
                file.write_all(HEADER).map_err(&err)?;
                HEADER.len()
            } else {
                return Err(StorageError::Foreign(path.display().to_string()));
            }
        } else if &buf[..HEADER.len()] != HEADER {
            return Err(StorageError::Foreign(path.display().to_string()));
        } else {
            let mut at = HEADER.len();
            while let Some(head) = buf.get(at..at + 8) {
                let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
                let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
                if len > MAX_RECORD {
                    break;
                }
                let Some(payload) = buf.get(at + 8..at + 8 + len) else {
                    break;
                };
                if crc32fast::hash(payload) != crc {
                    break;
                }
                let Some(ops) = decode_ops(payload) else {
                    break;
                };
                apply(&mut map, ops);
                at += 8 + len;
            }
            if at < buf.len() {
                tracing::warn!(path = %path.display(), dropped_bytes = buf.len() - at, "storage: discarding a torn or corrupt tail (a crash during a write)");
                file.set_len(at as u64).map_err(&err)?;
            }
            at
        };
        file.seek(SeekFrom::Start(good_len as u64)).map_err(&err)?;
        let live_len = HEADER.len() as u64 + map.iter().map(|(k, v)| entry_len(k, v)).sum::<u64>();
        let store = Store {
            path: path.to_path_buf(),
            temp_dir: temp_dir.to_path_buf(),
            fsync,
            policy,
            inner: Mutex::new(Inner {
                file,
                map,
                file_len: good_len as u64,
                live_len,
            }),
        };
        if policy.on_start {
            store.compact()?;
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().map.get(key).cloned()
    }

    pub fn set(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        self.batch(vec![Op::Set(key.to_string(), value)])
    }

    pub fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.batch(vec![Op::Delete(key.to_string())])
    }

    /// Applies the operations atomically: after a crash, all of them or none are there.
    pub fn batch(&self, ops: Vec<Op>) -> Result<(), StorageError> {
        if ops.is_empty() {
            return Ok(());
        }
        let rec = encode_ops(&ops);
        let err = io_err(&self.path);
        let mut g = self.lock();
        g.file.write_all(&rec).map_err(&err)?;
        if self.fsync {
            g.file.sync_data().map_err(&err)?;
        }
        g.file_len += rec.len() as u64;
        for op in &ops {
            match op {
                Op::Set(k, v) => {
                    let old = g.map.get(k).map(|o| entry_len(k, o)).unwrap_or(0);
                    g.live_len = g.live_len - old + entry_len(k, v);
                }
                Op::Delete(k) => {
                    if let Some(o) = g.map.get(k) {
                        let old = entry_len(k, o);
                        g.live_len -= old;
                    }
                }
            }
        }
        apply(&mut g.map, ops);
        let garbage = g.file_len.saturating_sub(g.live_len);
        if garbage > self.policy.garbage_bytes && g.file_len > 2 * g.live_len {
            self.compact_locked(&mut g)?;
        }
        Ok(())
    }

    /// Bytes in the log file now.
    pub fn file_len(&self) -> u64 {
        self.lock().file_len
    }

    /// Rewrites the log with only the live entries.
    pub fn compact(&self) -> Result<(), StorageError> {
        let mut g = self.lock();
        self.compact_locked(&mut g)
    }

    fn compact_locked(&self, g: &mut Inner) -> Result<(), StorageError> {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut tmp_path = self.temp_dir.join(format!("{name}.compacting"));
        let ops: Vec<Op> = g
            .map
            .iter()
            .map(|(k, v)| Op::Set(k.clone(), v.clone()))
            .collect();
        let mut content = HEADER.to_vec();
        if !ops.is_empty() {
            content.extend_from_slice(&encode_ops(&ops));
        }
        let write = |p: &Path| -> std::io::Result<File> {
            let mut f = File::create(p)?;
            f.write_all(&content)?;
            f.sync_all()?;
            Ok(f)
        };
        let mut f = write(&tmp_path).map_err(io_err(&tmp_path))?;
        if let Err(e) = std::fs::rename(&tmp_path, &self.path) {
            // `compaction.directory` on another filesystem: stage next to the log instead.
            let _ = std::fs::remove_file(&tmp_path);
            if e.kind() != std::io::ErrorKind::CrossesDevices {
                return Err(io_err(&self.path)(e));
            }
            tmp_path = self.path.with_file_name(format!("{name}.compacting"));
            f = write(&tmp_path).map_err(io_err(&tmp_path))?;
            std::fs::rename(&tmp_path, &self.path).map_err(io_err(&self.path))?;
        }
        if let Some(dir) = self.path.parent() {
            // Make the rename itself durable.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        // The new file replaced the locked one; lock it in its place.
        let _ = f.try_lock();
        f.seek(SeekFrom::End(0)).map_err(io_err(&self.path))?;
        g.file = f;
        g.file_len = content.len() as u64;
        g.live_len = g.file_len;
        Ok(())
    }
}

fn apply(map: &mut BTreeMap<String, Vec<u8>>, ops: Vec<Op>) {
    for op in ops {
        match op {
            Op::Set(k, v) => {
                map.insert(k, v);
            }
            Op::Delete(k) => {
                map.remove(&k);
            }
        }
    }
}

/// Where a persistent queue keeps its segment log.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueLocation {
    pub dir: PathBuf,
    /// Sync each append before it is acknowledged.
    pub fsync: bool,
}

/// What a storage extension offers: a store per client component.
pub trait StorageExtension: Send + Sync {
    /// The directory of `component`'s persistent queue (see [`crate::disk_queue`]).
    fn queue_dir(
        &self,
        kind: &str,
        component: &ComponentId,
        name: &str,
    ) -> Result<QueueLocation, StorageError>;

    /// The store of `component` (e.g. `receiver` `filelog/containers`), named `name` inside it
    /// (empty for the default), opened once and shared on later calls.
    fn client(
        &self,
        kind: &str,
        component: &ComponentId,
        name: &str,
    ) -> Result<Arc<Store>, StorageError>;
}

/// The storage extensions the service has started, by id. Extensions start before the other
/// components, which look them up here when they start.
#[derive(Default)]
pub struct Registry {
    map: Mutex<HashMap<ComponentId, Arc<dyn StorageExtension>>>,
}

impl Registry {
    pub fn register(&self, id: ComponentId, ext: Arc<dyn StorageExtension>) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, ext);
    }

    pub fn get(&self, id: &ComponentId) -> Result<Arc<dyn StorageExtension>, StorageError> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| StorageError::NoSuchExtension(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Store {
        Store::open(&dir.join("s"), dir, false, CompactionPolicy::default()).unwrap()
    }

    #[test]
    fn values_survive_reopen_and_deletes_stick() {
        let d = tempfile::tempdir().unwrap();
        {
            let s = open(d.path());
            s.set("a", b"1".to_vec()).unwrap();
            s.set("b", b"2".to_vec()).unwrap();
            s.set("a", b"3".to_vec()).unwrap();
            s.delete("b").unwrap();
        }
        let s = open(d.path());
        assert_eq!(s.get("a"), Some(b"3".to_vec()));
        assert_eq!(s.get("b"), None);
    }

    #[test]
    fn a_second_open_of_the_same_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let _s = open(d.path());
        let e = Store::open(&d.path().join("s"), d.path(), false, Default::default())
            .err()
            .unwrap();
        assert!(matches!(e, StorageError::Locked(_)), "{e}");
    }

    #[test]
    fn a_torn_tail_is_dropped_whole_and_earlier_batches_kept() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("s");
        {
            let s = open(d.path());
            s.batch(vec![
                Op::Set("x".into(), b"1".to_vec()),
                Op::Set("y".into(), b"1".to_vec()),
            ])
            .unwrap();
            s.batch(vec![
                Op::Set("x".into(), b"2".to_vec()),
                Op::Set("y".into(), b"2".to_vec()),
            ])
            .unwrap();
        }
        let full = std::fs::read(&path).unwrap();
        // Every cut inside the second record leaves the first batch, whole.
        let second = full.len()
            - (encode_ops(&[
                Op::Set("x".into(), b"2".to_vec()),
                Op::Set("y".into(), b"2".to_vec()),
            ])
            .len());
        for cut in second..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let s = open(d.path());
            assert_eq!(s.get("x"), Some(b"1".to_vec()), "cut at {cut}");
            assert_eq!(s.get("y"), Some(b"1".to_vec()), "cut at {cut}");
            // And the store is writable after the repair.
            s.set("z", b"ok".to_vec()).unwrap();
            drop(s);
            assert_eq!(open(d.path()).get("z"), Some(b"ok".to_vec()));
        }
        // A flipped byte in the last record: the same.
        let mut bad = full.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(open(d.path()).get("x"), Some(b"1".to_vec()));
    }

    #[test]
    fn the_log_is_compacted_as_it_grows() {
        let d = tempfile::tempdir().unwrap();
        let policy = CompactionPolicy {
            on_start: false,
            garbage_bytes: 4096,
        };
        let s = Store::open(&d.path().join("s"), d.path(), false, policy).unwrap();
        for i in 0..10_000u32 {
            s.set("offset", i.to_le_bytes().to_vec()).unwrap();
        }
        assert!(s.file_len() < 8192, "{}", s.file_len());
        assert_eq!(
            std::fs::metadata(d.path().join("s")).unwrap().len(),
            s.file_len()
        );
        drop(s);
        let s = Store::open(&d.path().join("s"), d.path(), false, policy).unwrap();
        assert_eq!(s.get("offset"), Some(9999u32.to_le_bytes().to_vec()));
        // Still locked after the compaction swapped the file.
        assert!(Store::open(&d.path().join("s"), d.path(), false, policy).is_err());
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("s"), b"hello world, not a store").unwrap();
        let e = Store::open(&d.path().join("s"), d.path(), false, Default::default())
            .err()
            .unwrap();
        assert!(matches!(e, StorageError::Foreign(_)), "{e}");
    }
}
