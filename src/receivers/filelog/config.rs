//! The `filelog` receiver's config (its `operators` list is stanza's).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{DeError, Node, key_err, units};
pub use crate::stanza::config::{Operators, RetryOnFailure, operators};

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Files found at start are read from their end (default); files appearing later from 0.
    #[default]
    End,
    Beginning,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Multiline {
    /// An entry starts at a line matching this regex.
    pub line_start_pattern: Option<String>,
    /// An entry ends at a line matching this regex.
    pub line_end_pattern: Option<String>,
    /// Drop the matched pattern text from the entry. Default false.
    #[serde(default)]
    pub omit_pattern: bool,
}

/// `header`: lines at the start of a file matching `pattern` are metadata, parsed by
/// `metadata_operators` into attributes every later entry of the file gets.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeaderConfig {
    pub pattern: String,
    pub metadata_operators: serde_json::Value,
}

/// The compiled `header`.
#[derive(Debug)]
pub struct Header {
    pub pattern: regex::Regex,
    pub ops: Operators,
}

/// Compiles `header` (its operators as stanza operators without per-file state).
pub fn header(node: &Node, cfg: &Config) -> Result<Option<Header>, DeError> {
    let Some(h) = &cfg.header else {
        return Ok(None);
    };
    if cfg.start_at != StartAt::Beginning {
        return Err(key_err(
            node,
            &["header"],
            "`header` needs `start_at: beginning` (a file's header is at its start)",
        ));
    }
    let pattern = regex::Regex::new(&h.pattern)
        .map_err(|e| key_err(node, &["header", "pattern"], format!("invalid regex: {e}")))?;
    let ops_node = node.get("header").and_then(|n| n.get("metadata_operators"));
    let ops = Operators::stateless(ops_node).map_err(|mut e| {
        e.path.insert(0, "header".into());
        if let Some(first) = e.path.get_mut(1) {
            *first = "metadata_operators".into();
        }
        e
    })?;
    if ops.ops.is_empty() {
        return Err(key_err(
            node,
            &["header", "metadata_operators"],
            "at least one operator is required",
        ));
    }
    Ok(Some(Header { pattern, ops }))
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Glob patterns of files to read (`**` crosses directories). Required.
    pub include: Vec<String>,
    /// Metadata lines at the start of each file (see [`HeaderConfig`]).
    pub header: Option<HeaderConfig>,
    /// Glob patterns of files to skip.
    pub exclude: Vec<String>,
    /// `end` (default) or `beginning`, for files present at the first poll without a checkpoint.
    pub start_at: StartAt,
    /// How often to look for new files and new data. Default 200ms.
    #[serde(deserialize_with = "units::duration")]
    pub poll_interval: Duration,
    /// Longest entry; longer ones are split. Default 1MiB.
    #[serde(deserialize_with = "units::bytes")]
    pub max_log_size: u64,
    /// Accepted for compatibility; every matched file is read each poll.
    pub max_concurrent_files: usize,
    /// Accepted for compatibility.
    pub max_batches: usize,
    /// `utf-8` (default), `utf-16le`, `utf-16be`, `ascii`, `nop`, or any WHATWG label
    /// (`latin1`, `shift_jis`, `big5`, ...).
    pub encoding: String,
    /// Attribute `log.file.name`. Default true.
    pub include_file_name: bool,
    /// Attribute `log.file.path`. Default false.
    pub include_file_path: bool,
    /// Attributes `log.file.name_resolved` / `log.file.path_resolved` (symlinks resolved).
    pub include_file_name_resolved: bool,
    pub include_file_path_resolved: bool,
    pub multiline: Option<Multiline>,
    /// How long an incomplete last line (or multiline entry) waits before it is sent as it is.
    /// Default 500ms.
    #[serde(deserialize_with = "units::duration")]
    pub force_flush_period: Duration,
    /// Bytes at the start of a file that identify it across renames. Default 1000.
    #[serde(deserialize_with = "units::bytes")]
    pub fingerprint_size: u64,
    /// A `file_storage` extension for offsets; without it a restart starts per `start_at`.
    pub storage: Option<String>,
    pub operators: Vec<serde::de::IgnoredAny>,
    pub preserve_leading_whitespaces: bool,
    pub preserve_trailing_whitespaces: bool,
    /// Attributes and resource attributes added to every entry.
    pub attributes: BTreeMap<String, String>,
    pub resource: BTreeMap<String, String>,
    pub retry_on_failure: RetryOnFailure,
    /// Not supported: refused when true.
    pub delete_after_read: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            include: Vec::new(),
            header: None,
            exclude: Vec::new(),
            start_at: StartAt::End,
            poll_interval: Duration::from_millis(200),
            max_log_size: 1 << 20,
            max_concurrent_files: 1024,
            max_batches: 0,
            encoding: "utf-8".into(),
            include_file_name: true,
            include_file_path: false,
            include_file_name_resolved: false,
            include_file_path_resolved: false,
            multiline: None,
            force_flush_period: Duration::from_millis(500),
            fingerprint_size: 1000,
            storage: None,
            operators: Vec::new(),
            preserve_leading_whitespaces: false,
            preserve_trailing_whitespaces: false,
            attributes: BTreeMap::new(),
            resource: BTreeMap::new(),
            retry_on_failure: RetryOnFailure::default(),
            delete_after_read: false,
        }
    }
}

pub fn validate(node: &Node, cfg: &Config) -> Result<(), DeError> {
    if cfg.include.is_empty() {
        return Err(key_err(
            node,
            &["include"],
            "at least one `include` pattern is required",
        ));
    }
    for (key, list) in [("include", &cfg.include), ("exclude", &cfg.exclude)] {
        for p in list {
            glob::Pattern::new(p)
                .map_err(|e| key_err(node, &[key], format!("bad glob `{p}`: {e}")))?;
        }
    }
    if cfg.poll_interval.is_zero() {
        return Err(key_err(node, &["poll_interval"], "must be positive"));
    }
    // Each file being read holds a buffer of max_log_size and one of fingerprint_size.
    if !(1..=64 << 20).contains(&cfg.max_log_size) {
        return Err(key_err(
            node,
            &["max_log_size"],
            "must be between 1 byte and 64 MiB",
        ));
    }
    if !(16..=1 << 20).contains(&cfg.fingerprint_size) {
        return Err(key_err(
            node,
            &["fingerprint_size"],
            "must be between 16 bytes and 1 MiB",
        ));
    }
    if cfg.delete_after_read {
        return Err(key_err(
            node,
            &["delete_after_read"],
            "is not supported by ferrotel",
        ));
    }
    crate::stanza::encoding::encoding(&cfg.encoding)
        .map_err(|m| key_err(node, &["encoding"], m))?;
    if let Some(m) = &cfg.multiline {
        match (&m.line_start_pattern, &m.line_end_pattern) {
            (Some(p), None) | (None, Some(p)) => {
                regex::Regex::new(p)
                    .map_err(|e| key_err(node, &["multiline"], format!("invalid regex: {e}")))?;
            }
            _ => {
                return Err(key_err(
                    node,
                    &["multiline"],
                    "exactly one of `line_start_pattern` and `line_end_pattern` is required",
                ));
            }
        }
    }
    if let Some(s) = &cfg.storage {
        crate::config::ComponentId::parse(s).map_err(|m| key_err(node, &["storage"], m))?;
    }
    Ok(())
}
