//! Parsers of the `/proc` files the scrapers read, over their text (so that tests can feed them
//! fixtures). Lines they do not understand are skipped, never a panic.

use std::collections::HashMap;

/// One `cpuN` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuTimes {
    pub cpu: String,
    /// user, nice, system, idle, iowait, irq, softirq, steal.
    pub ticks: [u64; 8],
}

/// The state names of [`CpuTimes::ticks`], as the Collector's `state` attribute has them.
pub const CPU_STATES: [&str; 8] = [
    "user",
    "nice",
    "system",
    "idle",
    "wait",
    "interrupt",
    "softirq",
    "steal",
];

#[derive(Debug, Default, PartialEq)]
pub struct Stat {
    pub cpus: Vec<CpuTimes>,
    pub boot_time: u64,
    pub processes_created: u64,
    pub procs_running: u64,
    pub procs_blocked: u64,
}

pub fn stat(text: &str) -> Stat {
    let mut out = Stat::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(key) = f.next() else { continue };
        let num = |s: Option<&str>| s.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match key {
            k if k.starts_with("cpu") && k.len() > 3 => {
                let mut ticks = [0u64; 8];
                for t in ticks.iter_mut() {
                    *t = num(f.next());
                }
                out.cpus.push(CpuTimes {
                    cpu: k.to_owned(),
                    ticks,
                });
            }
            "btime" => out.boot_time = num(f.next()),
            "processes" => out.processes_created = num(f.next()),
            "procs_running" => out.procs_running = num(f.next()),
            "procs_blocked" => out.procs_blocked = num(f.next()),
            _ => {}
        }
    }
    out
}

/// `/proc/meminfo` (and the like): key → value in bytes (`kB` values multiplied out).
pub fn meminfo(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, rest) = l.split_once(':')?;
            let mut f = rest.split_whitespace();
            let v: u64 = f.next()?.parse().ok()?;
            let v = if f.next() == Some("kB") { v * 1024 } else { v };
            Some((k.trim().to_owned(), v))
        })
        .collect()
}

/// `/proc/loadavg`: the 1, 5 and 15 minute averages.
pub fn loadavg(text: &str) -> Option<[f64; 3]> {
    let mut f = text.split_whitespace();
    Some([
        f.next()?.parse().ok()?,
        f.next()?.parse().ok()?,
        f.next()?.parse().ok()?,
    ])
}

/// One line of `/proc/net/dev`.
#[derive(Debug, Default, PartialEq)]
pub struct NetDev {
    pub device: String,
    /// bytes, packets, errors, dropped: received, then transmitted.
    pub rx: [u64; 4],
    pub tx: [u64; 4],
}

pub fn net_dev(text: &str) -> Vec<NetDev> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            if v.len() < 12 {
                return None;
            }
            Some(NetDev {
                device: name.trim().to_owned(),
                rx: [v[0], v[1], v[2], v[3]],
                tx: [v[8], v[9], v[10], v[11]],
            })
        })
        .collect()
}

/// TCP connections of `/proc/net/tcp{,6}` by state, named as the Collector names them.
pub fn tcp_states(text: &str, counts: &mut HashMap<&'static str, u64>) {
    for line in text.lines().skip(1) {
        let Some(st) = line.split_whitespace().nth(3) else {
            continue;
        };
        let name = match u8::from_str_radix(st, 16) {
            Ok(1) => "ESTABLISHED",
            Ok(2) => "SYN_SENT",
            Ok(3) => "SYN_RECV",
            Ok(4) => "FIN_WAIT_1",
            Ok(5) => "FIN_WAIT_2",
            Ok(6) => "TIME_WAIT",
            Ok(7) => "CLOSE",
            Ok(8) => "CLOSE_WAIT",
            Ok(9) => "LAST_ACK",
            Ok(10) => "LISTEN",
            Ok(11) => "CLOSING",
            _ => continue,
        };
        *counts.entry(name).or_default() += 1;
    }
}

/// One line of `/proc/diskstats`.
#[derive(Debug, Default, PartialEq)]
pub struct DiskStat {
    pub device: String,
    pub reads: u64,
    pub reads_merged: u64,
    pub sectors_read: u64,
    pub read_ms: u64,
    pub writes: u64,
    pub writes_merged: u64,
    pub sectors_written: u64,
    pub write_ms: u64,
    pub in_progress: u64,
    pub io_ms: u64,
    pub weighted_ms: u64,
}

pub fn diskstats(text: &str) -> Vec<DiskStat> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 14 {
                return None;
            }
            let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
            Some(DiskStat {
                device: f[2].to_owned(),
                reads: n(3),
                reads_merged: n(4),
                sectors_read: n(5),
                read_ms: n(6),
                writes: n(7),
                writes_merged: n(8),
                sectors_written: n(9),
                write_ms: n(10),
                in_progress: n(11),
                io_ms: n(12),
                weighted_ms: n(13),
            })
        })
        .collect()
}

/// One line of `/proc/mounts`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fs_type: String,
    pub read_only: bool,
}

/// `\040` and the other octal escapes of mount fields.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(d) = b.get(i + 1..i + 4)
            && d.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = d.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 {
                return None;
            }
            Some(Mount {
                device: unescape(f[0]),
                mountpoint: unescape(f[1]),
                fs_type: f[2].to_owned(),
                read_only: f[3].split(',').any(|o| o == "ro"),
            })
        })
        .collect()
}

/// The file system types `/proc/filesystems` marks `nodev` (virtual).
pub fn virtual_fs_types(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next()? == "nodev").then(|| f.next().map(str::to_owned))?
        })
        .collect()
}

/// `/proc/swaps`: device, size and used, in bytes.
pub fn swaps(text: &str) -> Vec<(String, u64, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 {
                return None;
            }
            Some((
                f[0].to_owned(),
                f[2].parse::<u64>().ok()? * 1024,
                f[3].parse::<u64>().ok()? * 1024,
            ))
        })
        .collect()
}

/// `/proc/cpuinfo`: the MHz of each logical CPU, and the number of distinct physical cores.
pub fn cpuinfo(text: &str) -> (Vec<f64>, usize) {
    let mut mhz = Vec::new();
    let mut cores = std::collections::BTreeSet::new();
    let (mut phys, mut core) = (String::new(), String::new());
    for l in text.lines().chain(std::iter::once("")) {
        if l.trim().is_empty() {
            if !core.is_empty() {
                cores.insert((std::mem::take(&mut phys), std::mem::take(&mut core)));
            }
            continue;
        }
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        match k.trim() {
            "cpu MHz" => mhz.extend(v.trim().parse::<f64>().ok()),
            "physical id" => phys = v.trim().to_owned(),
            "core id" => core = v.trim().to_owned(),
            _ => {}
        }
    }
    (mhz, cores.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proc_files_parse_as_the_kernel_writes_them() {
        let s = stat(
            "cpu  10 1 5 100 2 0 1 0 0 0\ncpu0 6 1 3 50 1 0 1 0 0 0\ncpu1 4 0 2 50 1 0 0 0 0 0\nintr 1 2\nbtime 1700000000\nprocesses 4242\nprocs_running 3\nprocs_blocked 1\n",
        );
        assert_eq!(s.cpus.len(), 2);
        assert_eq!(s.cpus[0].ticks, [6, 1, 3, 50, 1, 0, 1, 0]);
        assert_eq!(
            (
                s.boot_time,
                s.processes_created,
                s.procs_running,
                s.procs_blocked
            ),
            (1_700_000_000, 4242, 3, 1)
        );
        let m = meminfo("MemTotal:       16384 kB\nHugePages_Total:       0\n");
        assert_eq!((m["MemTotal"], m["HugePages_Total"]), (16384 * 1024, 0));
        assert_eq!(
            loadavg("0.50 0.25 0.10 1/200 999\n"),
            Some([0.5, 0.25, 0.1])
        );
        let n = net_dev(
            "Inter-|   Receive\n face |bytes\n    lo: 100 2 0 0 0 0 0 0 300 4 1 2 0 0 0 0\n",
        );
        assert_eq!(n[0].device, "lo");
        assert_eq!((n[0].rx, n[0].tx), ([100, 2, 0, 0], [300, 4, 1, 2]));
        let mut c = HashMap::new();
        tcp_states(
            "  sl  local rem st\n 0: 0100007F:1F90 00000000:0000 0A 0\n 1: x y 01 0\n 2: x y 0A\n",
            &mut c,
        );
        assert_eq!((c["LISTEN"], c["ESTABLISHED"]), (2, 1));
        let d = diskstats(" 253 0 vda 10 1 80 5 20 2 160 7 0 9 12 0 0 0 0\n");
        assert_eq!(
            (d[0].device.as_str(), d[0].sectors_written, d[0].weighted_ms),
            ("vda", 160, 12)
        );
        let m = mounts("/dev/vda / ext4 rw,relatime 0 0\nx /mnt/my\\040disk vfat ro 0 0\n");
        assert_eq!(m[1].mountpoint, "/mnt/my disk");
        assert!(m[1].read_only && !m[0].read_only);
        assert_eq!(
            virtual_fs_types("nodev\tsysfs\n\text4\nnodev\ttmpfs\n"),
            ["sysfs", "tmpfs"]
        );
        assert_eq!(
            swaps("Filename Type Size Used Priority\n/swap file 1024 256 -2\n"),
            [("/swap".to_owned(), 1024 * 1024, 256 * 1024)]
        );
        let (mhz, cores) = cpuinfo(
            "processor\t: 0\ncpu MHz\t\t: 2400.5\nphysical id\t: 0\ncore id\t\t: 0\n\nprocessor\t: 1\ncpu MHz\t\t: 2400.5\nphysical id\t: 0\ncore id\t\t: 0\n",
        );
        assert_eq!((mhz.len(), cores), (2, 1));
    }

    #[test]
    fn garbage_is_skipped() {
        for junk in ["", "\u{0}\u{1}", "cpu0 x y", "a:b:c", ":::", "\\\\\\0"] {
            let _ = (
                stat(junk),
                meminfo(junk),
                loadavg(junk),
                net_dev(junk),
                diskstats(junk),
            );
            let _ = (
                mounts(junk),
                swaps(junk),
                cpuinfo(junk),
                virtual_fs_types(junk),
            );
        }
        assert_eq!(mounts("a /x\\04 t rw\n")[0].mountpoint, "/x\\04");
    }
}
