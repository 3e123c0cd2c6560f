//! `hostmetrics`' configuration: the receiver's options and each scraper's.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::units;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How often every scraper reads. Default 1m.
    #[serde(default = "one_minute", deserialize_with = "units::duration")]
    pub collection_interval: Duration,
    /// Wait before the first scrape. Default 1s.
    #[serde(default = "one_second", deserialize_with = "units::duration")]
    pub initial_delay: Duration,
    /// Accepted (a scrape reads local files and does not wait on anything).
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub timeout: Option<Duration>,
    /// The host's root as mounted in the container (`/hostfs`): `/proc` and every mount point
    /// are read below it. Default `/`.
    #[serde(default)]
    pub root_path: Option<String>,
    /// The scrapers to run, each with its options (`cpu:` alone runs it with defaults).
    pub scrapers: BTreeMap<String, Option<ScraperConfig>>,
}

fn one_minute() -> Duration {
    Duration::from_secs(60)
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}

pub use crate::signal::build::Toggle;

/// `match_type: strict` (default) or `regexp`, over a list of names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameFilter {
    #[serde(
        alias = "devices",
        alias = "fs_types",
        alias = "mount_points",
        alias = "interfaces",
        default
    )]
    pub names: Vec<String>,
    #[serde(default)]
    pub match_type: MatchType,
    #[serde(skip)]
    pub compiled: Vec<regex::Regex>,
}

impl PartialEq for NameFilter {
    fn eq(&self, o: &Self) -> bool {
        self.names == o.names && self.match_type == o.match_type
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    #[default]
    Strict,
    Regexp,
}

impl NameFilter {
    pub fn matches(&self, name: &str) -> bool {
        match self.match_type {
            MatchType::Strict => self.names.iter().any(|n| n == name),
            MatchType::Regexp => self.compiled.iter().any(|r| r.is_match(name)),
        }
    }
}

/// One scraper's options; each scraper accepts only its own (checked in [`parse`]).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScraperConfig {
    /// `<metric name>: {enabled: bool}`.
    pub metrics: BTreeMap<String, Toggle>,
    /// `process`: `<attribute>: {enabled: bool}` (the other scrapers' resources have none).
    pub resource_attributes: BTreeMap<String, Toggle>,
    /// `load`: divide the averages by the number of logical CPUs.
    pub cpu_average: bool,
    /// `filesystem`.
    pub include_devices: Option<NameFilter>,
    pub exclude_devices: Option<NameFilter>,
    pub include_fs_types: Option<NameFilter>,
    pub exclude_fs_types: Option<NameFilter>,
    pub include_mount_points: Option<NameFilter>,
    pub exclude_mount_points: Option<NameFilter>,
    pub include_virtual_filesystems: bool,
    /// `network` (interfaces), `disk` (devices) and `process` (executable names).
    pub include: Option<NameFilter>,
    pub exclude: Option<NameFilter>,
    /// `process`: leave out of the error count the processes whose name, executable path, I/O
    /// counters, owner or cgroup cannot be read (other users' processes without privileges);
    /// `mute_process_all_errors` all of them.
    pub mute_process_name_error: bool,
    pub mute_process_exe_error: bool,
    pub mute_process_io_error: bool,
    pub mute_process_user_error: bool,
    pub mute_process_cgroup_error: bool,
    pub mute_process_all_errors: bool,
    /// `process`: skip processes younger than this. Default 0.
    #[serde(deserialize_with = "units::opt_duration")]
    pub scrape_process_delay: Option<Duration>,
}

impl ScraperConfig {
    pub fn set_keys(&self) -> Vec<&'static str> {
        let mut k = Vec::new();
        let d = ScraperConfig::default();
        if self.cpu_average != d.cpu_average {
            k.push("cpu_average");
        }
        for (name, set) in [
            ("include_devices", self.include_devices.is_some()),
            ("exclude_devices", self.exclude_devices.is_some()),
            ("include_fs_types", self.include_fs_types.is_some()),
            ("exclude_fs_types", self.exclude_fs_types.is_some()),
            ("include_mount_points", self.include_mount_points.is_some()),
            ("exclude_mount_points", self.exclude_mount_points.is_some()),
            (
                "include_virtual_filesystems",
                self.include_virtual_filesystems,
            ),
            ("include", self.include.is_some()),
            ("exclude", self.exclude.is_some()),
            ("mute_process_name_error", self.mute_process_name_error),
            ("mute_process_exe_error", self.mute_process_exe_error),
            ("mute_process_io_error", self.mute_process_io_error),
            ("mute_process_user_error", self.mute_process_user_error),
            ("mute_process_cgroup_error", self.mute_process_cgroup_error),
            ("mute_process_all_errors", self.mute_process_all_errors),
            ("scrape_process_delay", self.scrape_process_delay.is_some()),
        ] {
            if set {
                k.push(name);
            }
        }
        k
    }

    pub fn filters_mut(&mut self) -> [(&'static str, &mut Option<NameFilter>); 8] {
        [
            ("include_devices", &mut self.include_devices),
            ("exclude_devices", &mut self.exclude_devices),
            ("include_fs_types", &mut self.include_fs_types),
            ("exclude_fs_types", &mut self.exclude_fs_types),
            ("include_mount_points", &mut self.include_mount_points),
            ("exclude_mount_points", &mut self.exclude_mount_points),
            ("include", &mut self.include),
            ("exclude", &mut self.exclude),
        ]
    }
}
