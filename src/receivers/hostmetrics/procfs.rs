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

/// `/proc/<pid>/stat`, the fields the process scraper reads (times in clock ticks).
#[derive(Debug, Default, PartialEq)]
pub struct PidStat {
    pub ppid: i64,
    pub minflt: u64,
    pub majflt: u64,
    pub utime: u64,
    pub stime: u64,
    pub num_threads: u64,
    pub starttime: u64,
    pub blkio_ticks: u64,
}

/// `None` when the line is not a stat line. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from its last `)`.
pub fn pid_stat(text: &str) -> Option<PidStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): field n is f[n - 3].
    let n = |field: usize| f.get(field - 3).and_then(|v| v.parse::<u64>().ok());
    Some(PidStat {
        ppid: f.get(1)?.parse().ok()?,
        minflt: n(10)?,
        majflt: n(12)?,
        utime: n(14)?,
        stime: n(15)?,
        num_threads: n(20)?,
        starttime: n(22)?,
        blkio_ticks: n(42).unwrap_or(0),
    })
}

/// `/proc/<pid>/statm`: total program size and resident set, in pages.
pub fn pid_statm(text: &str) -> Option<(u64, u64)> {
    let mut f = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some((f.next()??, f.next()??))
}

/// `/proc/<pid>/status`, the fields the process scraper reads.
#[derive(Debug, Default, PartialEq)]
pub struct PidStatus {
    pub name: String,
    pub uid: Option<u32>,
    pub voluntary_switches: Option<u64>,
    pub involuntary_switches: Option<u64>,
    /// `SigQ`'s queued signals.
    pub signals_queued: Option<u64>,
}

pub fn pid_status(text: &str) -> PidStatus {
    let mut out = PidStatus::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "Name" => out.name = v.to_owned(),
            // Real, effective, saved, filesystem: the owner is the real one.
            "Uid" => out.uid = v.split_whitespace().next().and_then(|u| u.parse().ok()),
            "voluntary_ctxt_switches" => out.voluntary_switches = v.parse().ok(),
            "nonvoluntary_ctxt_switches" => out.involuntary_switches = v.parse().ok(),
            "SigQ" => out.signals_queued = v.split('/').next().and_then(|q| q.parse().ok()),
            _ => {}
        }
    }
    out
}

/// `/proc/<pid>/io`: bytes read and written from storage, read and write calls.
#[derive(Debug, Default, PartialEq)]
pub struct PidIo {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub syscr: u64,
    pub syscw: u64,
}

pub fn pid_io(text: &str) -> PidIo {
    let mut out = PidIo::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim().parse().unwrap_or(0);
        match k {
            "read_bytes" => out.read_bytes = v,
            "write_bytes" => out.write_bytes = v,
            "syscr" => out.syscr = v,
            "syscw" => out.syscw = v,
            _ => {}
        }
    }
    out
}

/// `/etc/passwd`: user names by uid.
pub fn passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_owned()))
        })
        .collect()
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

    #[test]
    fn per_process_files() {
        let st = pid_stat("4242 (my (odd) app) S 1 4242 4242 0 -1 4194560 1500 0 7 0 250 50 0 0 20 0 3 0 123456 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 9 0 0 0 0 0 0 0 0 0 0\n").unwrap();
        assert_eq!(
            st,
            PidStat {
                ppid: 1,
                minflt: 1500,
                majflt: 7,
                utime: 250,
                stime: 50,
                num_threads: 3,
                starttime: 123456,
                blkio_ticks: 9,
            }
        );
        assert_eq!(pid_stat("garbage"), None);
        assert_eq!(
            pid_statm("25600 2560 500 10 0 900 0\n"),
            Some((25600, 2560))
        );
        assert_eq!(pid_statm("x"), None);
        assert_eq!(pid_stat("1 (x) S"), None);
        let s = pid_status(
            "Name:\tmy app\nUid:\t1000\t1000\t1000\t1000\nSigQ:\t2/63340\nvoluntary_ctxt_switches:\t42\nnonvoluntary_ctxt_switches:\t5\n",
        );
        assert_eq!(
            s,
            PidStatus {
                name: "my app".into(),
                uid: Some(1000),
                voluntary_switches: Some(42),
                involuntary_switches: Some(5),
                signals_queued: Some(2),
            }
        );
        let io = pid_io(
            "rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n",
        );
        assert_eq!(
            io,
            PidIo {
                read_bytes: 4096,
                write_bytes: 8192,
                syscr: 3,
                syscw: 4
            }
        );
        let p = passwd(
            "root:x:0:0:root:/root:/bin/bash\n# c\nnobody:x:65534:65534::/:/sbin/nologin\nbad\n",
        );
        assert_eq!(
            (p[&0].as_str(), p[&65534].as_str(), p.len()),
            ("root", "nobody", 2)
        );
    }
}
