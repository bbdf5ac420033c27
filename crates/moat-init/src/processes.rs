//! A container's processes (`moat top`): the pids in its cgroup and every cgroup below it (a
//! privileged container makes its own), each read from `/proc`. A process that ends while the
//! list is read is left out.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use moat_proto::processes::{ProcessInfo, ProcessList, MAX_PROCESSES, MAX_PROCESS_COMMAND, MAX_PROCESS_COMMANDS};

/// Most cgroups walked below a container's: nested runtimes and systemd make tens of them.
const MAX_CGROUPS: usize = 4096;

/// Most bytes read of one `cgroup.procs`: [`MAX_PROCESSES`] pids of up to 8 bytes each.
const MAX_PROCS_FILE: u64 = 64 * 1024;

/// Most bytes read of `/proc/PID/stat` or `/proc/PID/status`; both are under 2 KiB.
const MAX_PROC_FILE: u64 = 16 * 1024;

/// The processes of the cgroup `dir` and its descendants; `None` once the cgroup is gone.
pub fn read(dir: &Path) -> Option<ProcessList> {
    if !dir.is_dir() {
        return None;
    }
    let (pids, truncated) = cgroup_pids(dir);
    let units = Units::of_this_kernel();
    let mut processes: Vec<ProcessInfo> = pids.into_iter().filter_map(|pid| read_process(pid, &units)).collect();
    fit_commands(&mut processes);
    // Read after the processes, so that none started after it.
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    let read_at_usec = u64::try_from(std::time::Duration::from(now).as_micros()).unwrap_or(u64::MAX);
    Some(ProcessList { read_at_usec, processes, truncated })
}

/// The pids in `dir`'s `cgroup.procs` and those of the cgroups below it, at most
/// [`MAX_PROCESSES`], and whether some were left out. A set: a process moving between cgroups
/// during the walk may show up twice.
fn cgroup_pids(dir: &Path) -> (BTreeSet<u32>, bool) {
    let mut pids = BTreeSet::new();
    let mut to_visit: Vec<PathBuf> = vec![dir.to_path_buf()];
    let mut visited = 0;
    while let Some(cgroup) = to_visit.pop() {
        visited += 1;
        let procs = read_bounded(&cgroup.join("cgroup.procs"), MAX_PROCS_FILE).unwrap_or_default();
        // Whole lines only: a number cut by the bound would name another process.
        let complete = procs.rsplit_once('\n').map_or("", |(lines, _)| lines);
        for pid in complete.lines().filter_map(|p| p.parse().ok()) {
            if pids.len() == MAX_PROCESSES && !pids.contains(&pid) {
                return (pids, true);
            }
            pids.insert(pid);
        }
        let Ok(entries) = std::fs::read_dir(&cgroup) else { continue };
        let children = entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path());
        to_visit.extend(children.take(MAX_CGROUPS.saturating_sub(visited + to_visit.len())));
    }
    (pids, false)
}

/// The kernel's units in `/proc`: clock ticks for times, pages for memory.
struct Units {
    ticks_per_second: u64,
    page_bytes: u64,
}

impl Units {
    fn of_this_kernel() -> Self {
        // SAFETY: sysconf only reads a constant of the system; it has no memory effects.
        let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        Self { ticks_per_second: u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100), page_bytes: u64::try_from(page).unwrap_or(4096) }
    }

    fn usec(&self, ticks: u64) -> u64 {
        u64::try_from(u128::from(ticks) * 1_000_000 / u128::from(self.ticks_per_second)).unwrap_or(u64::MAX)
    }
}

/// One process from `/proc`; `None` when it ended meanwhile (or `/proc` shows something
/// unreadable).
fn read_process(pid: u32, units: &Units) -> Option<ProcessInfo> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let stat = parse_stat(&read_bounded(&proc_dir.join("stat"), MAX_PROC_FILE)?, units)?;
    let uid = effective_uid(&read_bounded(&proc_dir.join("status"), MAX_PROC_FILE)?)?;
    let mut cmdline = Vec::new();
    std::fs::File::open(proc_dir.join("cmdline")).and_then(|f| f.take(MAX_PROCESS_COMMAND as u64).read_to_end(&mut cmdline)).ok()?;
    let command = command_line(&cmdline).unwrap_or_else(|| clipped(format!("[{}]", printable(&stat.comm)), MAX_PROCESS_COMMAND));
    Some(ProcessInfo { pid, ppid: stat.ppid, uid, state: stat.state, start_usec: stat.start_usec, cpu_usec: stat.cpu_usec, rss_bytes: stat.rss_bytes, tty: stat.tty, command })
}

/// What `/proc/PID/stat` says of a process.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    comm: String,
    state: char,
    ppid: u32,
    tty: u32,
    cpu_usec: u64,
    start_usec: u64,
    rss_bytes: u64,
}

/// `PID (COMM) STATE PPID PGRP SESSION TTY_NR ... UTIME STIME ... STARTTIME VSIZE RSS ...`; the
/// command name may hold spaces and parentheses, so the fields start after the last `)`.
fn parse_stat(text: &str, units: &Units) -> Option<Stat> {
    let (head, rest) = text.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field n of proc(5) is fields[n - 3].
    let number = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let state = fields.first()?.chars().next()?;
    let ticks = number(14)?.saturating_add(number(15)?);
    Some(Stat {
        comm,
        state,
        ppid: fields.get(1)?.parse().ok()?,
        // Negative only for device numbers no terminal has.
        tty: fields.get(4)?.parse().unwrap_or(0),
        cpu_usec: units.usec(ticks),
        start_usec: units.usec(number(22)?),
        rss_bytes: number(24)?.saturating_mul(units.page_bytes),
    })
}

/// The effective uid: the second number of `/proc/PID/status`'s `Uid:` line.
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The arguments of `/proc/PID/cmdline` (NUL-separated) joined by spaces, printable; `None`
/// when there are none (a zombie, or a process that cleared them).
fn command_line(cmdline: &[u8]) -> Option<String> {
    let args: Vec<String> = cmdline.split(|b| *b == 0).map(|arg| printable(&String::from_utf8_lossy(arg))).collect();
    let joined = args.join(" ");
    let joined = joined.trim_end();
    (!joined.is_empty()).then(|| clipped(joined.to_string(), MAX_PROCESS_COMMAND))
}

/// Control characters as `?`, as `ps` shows them: a command line may hold any byte.
fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// `text` shortened to at most `max` bytes, on a character boundary.
fn clipped(mut text: String, max: usize) -> String {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

/// Keep the list's command lines within [`MAX_PROCESS_COMMANDS`]: when they are longer
/// together, each is shortened to an equal share.
fn fit_commands(processes: &mut [ProcessInfo]) {
    let total: usize = processes.iter().map(|p| p.command.len()).sum();
    if total <= MAX_PROCESS_COMMANDS {
        return;
    }
    let share = MAX_PROCESS_COMMANDS / processes.len().max(1);
    for p in processes {
        p.command = clipped(std::mem::take(&mut p.command), share);
    }
}

fn read_bounded(path: &Path, max: u64) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path).and_then(|f| f.take(max).read_to_string(&mut text)).ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNITS: Units = Units { ticks_per_second: 100, page_bytes: 4096 };

    #[test]
    fn stat_fields_after_a_command_name_with_spaces_and_parentheses() {
        let text = "42 (my (odd) name) S 40 42 40 34816 42 4194304 100 0 0 0 150 50 0 0 20 0 1 0 250 2260992 210 18446744073709551615\n";
        let stat = parse_stat(text, &UNITS).unwrap();
        assert_eq!(stat, Stat { comm: "my (odd) name".into(), state: 'S', ppid: 40, tty: 34816, cpu_usec: 2_000_000, start_usec: 2_500_000, rss_bytes: 210 * 4096 });
        assert_eq!(parse_stat("42 (sh) S 40", &UNITS), None, "cut short");
    }

    #[test]
    fn effective_uid_is_the_second() {
        assert_eq!(effective_uid("Name:\tsh\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n"), Some(0));
        assert_eq!(effective_uid("Name:\tsh\n"), None);
    }

    #[test]
    fn command_lines_are_joined_printable_and_bounded() {
        assert_eq!(command_line(b"sleep\x001000\x00").as_deref(), Some("sleep 1000"));
        assert_eq!(command_line(b"echo\x00a\x1bb\x00\xff\x00").as_deref(), Some("echo a?b \u{fffd}"));
        assert_eq!(command_line(b""), None);
        assert_eq!(command_line(b"\x00\x00"), None);
        let long = "é".repeat(MAX_PROCESS_COMMAND);
        assert!(command_line(long.as_bytes()).unwrap().len() <= MAX_PROCESS_COMMAND);
    }

    #[test]
    fn many_long_command_lines_share_the_budget() {
        let p = ProcessInfo { pid: 1, ppid: 0, uid: 0, state: 'S', start_usec: 0, cpu_usec: 0, rss_bytes: 0, tty: 0, command: "x".repeat(MAX_PROCESS_COMMAND) };
        let mut processes = vec![p; MAX_PROCESSES];
        fit_commands(&mut processes);
        assert!(processes.iter().map(|p| p.command.len()).sum::<usize>() <= MAX_PROCESS_COMMANDS);
        assert_eq!(processes[0].command.len(), MAX_PROCESS_COMMANDS / MAX_PROCESSES);
    }

    #[test]
    fn pids_of_nested_cgroups_once_each() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.procs"), "").unwrap();
        std::fs::create_dir_all(dir.path().join("init.scope")).unwrap();
        std::fs::write(dir.path().join("init.scope/cgroup.procs"), "7\n9\n").unwrap();
        std::fs::create_dir_all(dir.path().join("docker/abc")).unwrap();
        std::fs::write(dir.path().join("docker/abc/cgroup.procs"), "12\n9\n").unwrap();
        assert_eq!(cgroup_pids(dir.path()), (BTreeSet::from([7, 9, 12]), false));
    }

    #[test]
    fn pids_stop_at_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let many: String = (1..=MAX_PROCESSES + 5).map(|pid| format!("{pid}\n")).collect();
        std::fs::write(dir.path().join("cgroup.procs"), many).unwrap();
        let (pids, truncated) = cgroup_pids(dir.path());
        assert_eq!((pids.len(), truncated), (MAX_PROCESSES, true));
    }

    #[test]
    fn this_process_reads_as_itself() {
        let me = read_process(std::process::id(), &Units::of_this_kernel()).unwrap();
        assert_eq!(me.uid, nix::unistd::geteuid().as_raw());
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw().unsigned_abs());
        assert!(me.rss_bytes > 0 && !me.command.is_empty());
        assert_eq!(read(Path::new("/nonexistent/cgroup")), None);
    }
}
