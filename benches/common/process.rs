//! What /proc says about a process: CPU time, resident memory, threads. Shared by the benches
//! that run the real binary (`daemon`, `versus_gammu`).

#![allow(dead_code)] // Each bench uses its own subset.

/// The text of `/proc/<pid>/<file>`, empty once the process is gone.
pub fn proc_field(pid: u32, file: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default()
}

/// utime + stime of a process, in clock ticks (100 per second on Linux).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = proc_field(pid, "stat");
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, …) in MiB; 0 when absent.
pub fn status_mib(pid: u32, key: &str) -> f64 {
    proc_field(pid, "status")
        .lines()
        .find(|line| line.split(':').next() == Some(key))
        .and_then(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Resident memory now, MiB.
pub fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS")
}

/// The names of a process's threads, counted: `tokio-runtime-w ×2, sled-io ×7, …`.
pub fn thread_names(pid: u32) -> String {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect();
    names.sort();
    let mut counted: Vec<(String, usize)> = Vec::new();
    for name in names {
        match counted.last_mut() {
            Some((last, count)) if *last == name => *count += 1,
            _ => counted.push((name, 1)),
        }
    }
    counted
        .iter()
        .map(|(name, count)| format!("{name} ×{count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resident memory by kind of mapping (from `/proc/<pid>/smaps`), largest first, MiB:
/// the binary and libraries by file name, `[heap]`, `[stack]`, and anonymous mappings.
pub fn rss_by_mapping(pid: u32) -> Vec<(String, f64)> {
    let smaps = proc_field(pid, "smaps");
    let mut totals: Vec<(String, f64)> = Vec::new();
    let mut current = String::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: address range, perms, offset, device, inode, [path].
            current = fields.nth(4).map_or("[anonymous]".into(), |path| {
                path.rsplit('/').next().unwrap_or(path).to_string()
            });
        } else if first == "Rss:" {
            let kib = fields
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            match totals.iter_mut().find(|(name, _)| *name == current) {
                Some((_, total)) => *total += kib / 1024.0,
                None => totals.push((current.clone(), kib / 1024.0)),
            }
        }
    }
    totals.sort_by(|a, b| b.1.total_cmp(&a.1));
    totals
}
