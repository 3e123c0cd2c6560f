//! `file_storage` extension: a crash-safe key-value store per client component, in files under
//! `directory` (see [`crate::storage`] for the format). The filelog receiver keeps its file
//! offsets here; a persistent exporter queue will too.
//!
//! Files are named as the Collector names them, `<kind>_<type>_<name>` (e.g.
//! `receiver_filelog_containers`), so one directory serves several components.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, Context, ExtensionConfig, Factory, Lifecycle, Stability,
};
use crate::config::{ComponentId, DeError, Node, from_node, key_err, units};
use crate::storage::{CompactionPolicy, QueueLocation, StorageError, StorageExtension, Store};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the store files live. Default `/var/lib/otelcol/file_storage`, the Collector's.
    pub directory: PathBuf,
    /// How long an operation may wait for the file lock. Default 1s. Accepted for
    /// compatibility: operations here take an in-process lock and never wait on another process
    /// (a second process is refused at start).
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// Sync every write to disk (survives a machine crash, not only a process crash). Default false.
    pub fsync: bool,
    /// Create `directory` (with `directory_permissions`) if it is missing. Default false.
    pub create_directory: bool,
    /// Octal permissions for a created directory. Default `"0750"`.
    pub directory_permissions: String,
    /// Move existing store files aside (`.backup`) at start instead of reading them. Default false.
    pub recreate: bool,
    pub compaction: Compaction,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Compaction {
    /// Where compaction writes its temporary file. Default: `directory`.
    pub directory: Option<PathBuf>,
    /// Compact each store when it is opened. Default false.
    pub on_start: bool,
    /// The Collector's bbolt compaction thresholds. Accepted; this store's log always compacts
    /// itself once dead records pass 1 MiB and half the file, whatever these say.
    pub on_rebound: bool,
    pub rebound_needed_threshold_mib: u64,
    pub rebound_trigger_threshold_mib: u64,
    pub max_transaction_size: u64,
    #[serde(deserialize_with = "units::duration")]
    pub check_interval: Duration,
    /// Remove temporary files a killed compaction left behind, at start. Default false.
    pub cleanup_on_start: bool,
}

impl Default for Compaction {
    fn default() -> Self {
        Compaction {
            directory: None,
            on_start: false,
            on_rebound: false,
            rebound_needed_threshold_mib: 100,
            rebound_trigger_threshold_mib: 10,
            max_transaction_size: 65536,
            check_interval: Duration::from_secs(5),
            cleanup_on_start: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            directory: PathBuf::from("/var/lib/otelcol/file_storage"),
            timeout: Duration::from_secs(1),
            fsync: false,
            create_directory: false,
            directory_permissions: "0750".into(),
            recreate: false,
            compaction: Compaction::default(),
        }
    }
}

/// `file_storage`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory =
    Factory::extension("file_storage", Stability::Beta, parse).provides_storage();

pub fn parse(node: &Node) -> Result<Box<dyn ExtensionConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    if cfg.directory.as_os_str().is_empty() {
        return Err(key_err(node, &["directory"], "must not be empty"));
    }
    if u32::from_str_radix(cfg.directory_permissions.trim_start_matches("0o"), 8)
        .ok()
        .filter(|p| *p <= 0o7777)
        .is_none()
    {
        return Err(key_err(
            node,
            &["directory_permissions"],
            format!(
                "`{}` is not octal permissions like \"0750\"",
                cfg.directory_permissions
            ),
        ));
    }
    Ok(Box::new(cfg))
}

/// `receiver`, `filelog/containers`, `` → `receiver_filelog_containers`; characters outside
/// `[A-Za-z0-9._-]` become `~XXXX` (their code point in hex), as in the Collector.
pub fn file_name(kind: &str, id: &ComponentId, name: &str) -> String {
    let mut out = format!(
        "{kind}_{}_{}",
        sanitize(&id.kind),
        sanitize(id.name.as_deref().unwrap_or(""))
    );
    if !name.is_empty() {
        out.push('_');
        out.push_str(&sanitize(name));
    }
    out
}

fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            out.push(c);
        } else {
            out.push_str(&format!("~{:04X}", c as u32));
        }
    }
    out
}

pub struct FileStorage {
    cfg: Config,
    stores: Mutex<HashMap<String, Arc<Store>>>,
    /// Queue directories already handed out (and moved aside once under `recreate`).
    moved: Mutex<std::collections::HashSet<String>>,
}

impl FileStorage {
    /// Checks (or creates) the directory and cleans up as configured.
    pub fn new(cfg: Config) -> Result<Self, String> {
        let dir = &cfg.directory;
        if !dir.is_dir() {
            if !cfg.create_directory {
                return Err(format!(
                    "directory {} does not exist (create it, or set `create_directory: true`)",
                    dir.display()
                ));
            }
            let mode = u32::from_str_radix(cfg.directory_permissions.trim_start_matches("0o"), 8)
                .unwrap_or(0o750);
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            std::os::unix::fs::DirBuilderExt::mode(&mut b, mode);
            b.create(dir)
                .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
        }
        // Fail now, not at the first checkpoint, if the directory is not writable.
        let probe = dir.join(".ferrotel-write-check");
        std::fs::write(&probe, b"")
            .map_err(|e| format!("directory {} is not writable: {e}", dir.display()))?;
        let _ = std::fs::remove_file(&probe);
        if cfg.compaction.cleanup_on_start {
            let tmp = cfg.compaction.directory.as_deref().unwrap_or(dir);
            remove_compaction_leftovers(tmp);
            remove_compaction_leftovers(dir);
        }
        Ok(FileStorage {
            cfg,
            stores: Mutex::new(HashMap::new()),
            moved: Default::default(),
        })
    }
}

fn remove_compaction_leftovers(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().ends_with(".compacting") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl StorageExtension for FileStorage {
    /// `<directory>/<kind>_<type>_<name>_queue/`; `recreate` moves an existing one aside.
    fn queue_dir(
        &self,
        kind: &str,
        component: &ComponentId,
        name: &str,
    ) -> Result<QueueLocation, StorageError> {
        let mut fname = file_name(kind, component, name);
        fname.push_str("_queue");
        let dir = self.cfg.directory.join(&fname);
        let mut moved = self.moved.lock().unwrap_or_else(|p| p.into_inner());
        if self.cfg.recreate && dir.exists() && !moved.contains(&fname) {
            let backup = self.cfg.directory.join(format!("{fname}.backup"));
            let _ = std::fs::remove_dir_all(&backup);
            std::fs::rename(&dir, &backup).map_err(|source| StorageError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        moved.insert(fname);
        Ok(QueueLocation {
            dir,
            fsync: self.cfg.fsync,
        })
    }

    fn client(
        &self,
        kind: &str,
        component: &ComponentId,
        name: &str,
    ) -> Result<Arc<Store>, StorageError> {
        let fname = file_name(kind, component, name);
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = stores.get(&fname) {
            return Ok(s.clone());
        }
        let path = self.cfg.directory.join(&fname);
        if self.cfg.recreate && path.exists() {
            let backup = path.with_file_name(format!("{fname}.backup"));
            std::fs::rename(&path, &backup).map_err(|source| StorageError::Io {
                path: path.display().to_string(),
                source,
            })?;
        }
        let policy = CompactionPolicy {
            on_start: self.cfg.compaction.on_start,
            ..Default::default()
        };
        let temp = self
            .cfg
            .compaction
            .directory
            .clone()
            .unwrap_or_else(|| self.cfg.directory.clone());
        let store = Arc::new(Store::open(&path, &temp, self.cfg.fsync, policy)?);
        stores.insert(fname, store.clone());
        Ok(store)
    }
}

impl ExtensionConfig for Config {
    fn start(
        self: Box<Self>,
        ctx: Context,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            let ext = FileStorage::new(*self).map_err(|m| BuildError::new(&ctx.id, m))?;
            ctx.storage.register(ctx.id.clone(), Arc::new(ext));
            Ok(Box::new(crate::component::Idle) as Box<dyn Lifecycle>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_the_collector() {
        let id = ComponentId::parse("filelog/containers").unwrap();
        assert_eq!(
            file_name("receiver", &id, ""),
            "receiver_filelog_containers"
        );
        let id = ComponentId::parse("filelog").unwrap();
        assert_eq!(file_name("receiver", &id, ""), "receiver_filelog_");
        assert_eq!(sanitize("a b/c"), "a~0020b~002Fc");
        assert_eq!(file_name("exporter", &id, "q"), "exporter_filelog__q");
    }

    #[test]
    fn a_missing_directory_is_an_error_unless_created() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            directory: d.path().join("x/y"),
            ..Default::default()
        };
        let e = FileStorage::new(cfg.clone()).err().unwrap();
        assert!(e.contains("does not exist"), "{e}");
        cfg.create_directory = true;
        let fs = FileStorage::new(cfg).unwrap();
        let id = ComponentId::parse("filelog").unwrap();
        let a = fs.client("receiver", &id, "").unwrap();
        a.set("k", b"v".to_vec()).unwrap();
        // One store per client, shared.
        let b = fs.client("receiver", &id, "").unwrap();
        assert_eq!(b.get("k"), Some(b"v".to_vec()));
        assert!(d.path().join("x/y/receiver_filelog_").is_file());
    }
}
