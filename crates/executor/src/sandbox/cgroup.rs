//! cgroup limits for a step, through cgroup v2 or the v1 `memory`, `cpu` and
//! `pids` hierarchies, whichever the host has.
//!
//! Detection: cgroup2 mounted on `/sys/fs/cgroup` (unified mode) → v2;
//! otherwise the v1 hierarchies when there are any (legacy and hybrid mode);
//! otherwise a cgroup2 mounted elsewhere. A step cgroup `rbuild-step-<pid>`
//! (pid of the sandbox intermediate process) is created under the cgroup the
//! process lives in (v1: per controller). On v2, when the own cgroup cannot
//! delegate the controllers (it holds processes: "no internal processes"),
//! `<cgroup2 root>/rbuild/` is used instead. Only the step's processes are
//! moved in; the cgroup is removed by the intermediate after the step, and
//! again (if still there) by the parent after the intermediate is reaped.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Limits;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CFS_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    V2 {
        /// Where the cgroup2 hierarchy is mounted.
        mount: PathBuf,
        /// The directory of this process's cgroup.
        own: PathBuf,
    },
    /// This process's cgroup directory in each v1 hierarchy, if mounted.
    V1 {
        memory: Option<PathBuf>,
        cpu: Option<PathBuf>,
        pids: Option<PathBuf>,
    },
}

/// One line of /proc/self/mountinfo, the fields we need.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountEntry {
    root: String,
    mountpoint: String,
    fstype: String,
    super_opts: String,
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        out.push(MountEntry {
            root: unescape_mountinfo(l[3]),
            mountpoint: unescape_mountinfo(l[4]),
            fstype: r[0].to_string(),
            super_opts: r[2].to_string(),
        });
    }
    out
}

/// `(hierarchy controllers, path)` from /proc/self/cgroup.
fn parse_proc_cgroup(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            let ctrls = ctrls
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            Some((ctrls, path.to_string()))
        })
        .collect()
}

/// The directory for cgroup `path` in a hierarchy mounted at `m`.
fn cgroup_dir(m: &MountEntry, path: &str) -> PathBuf {
    let rel = if m.root == "/" {
        path
    } else {
        path.strip_prefix(m.root.as_str()).unwrap_or("/")
    };
    Path::new(&m.mountpoint).join(rel.trim_start_matches('/'))
}

fn layout_from(mountinfo: &str, proc_cgroup: &str) -> Option<Layout> {
    let mounts = parse_mountinfo(mountinfo);
    let own = parse_proc_cgroup(proc_cgroup);
    let v2_path = own
        .iter()
        .find(|(c, _)| c.is_empty())
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| "/".to_string());
    let v2_mounts: Vec<&MountEntry> = mounts.iter().filter(|m| m.fstype == "cgroup2").collect();
    let v2 = |m: &MountEntry| Layout::V2 {
        mount: PathBuf::from(&m.mountpoint),
        own: cgroup_dir(m, &v2_path),
    };
    if let Some(m) = v2_mounts.iter().find(|m| m.mountpoint == CGROUP_ROOT) {
        return Some(v2(m));
    }
    let v1 = |ctrl: &str| -> Option<PathBuf> {
        let m = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.super_opts.split(',').any(|o| o == ctrl))?;
        let path = own
            .iter()
            .find(|(c, _)| c.iter().any(|c| c == ctrl))
            .map(|(_, p)| p.as_str())
            .unwrap_or("/");
        Some(cgroup_dir(m, path))
    };
    let (memory, cpu, pids) = (v1("memory"), v1("cpu"), v1("pids"));
    if memory.is_some() || cpu.is_some() || pids.is_some() {
        return Some(Layout::V1 { memory, cpu, pids });
    }
    v2_mounts.first().map(|m| v2(m))
}

pub(crate) fn detect() -> Result<Option<Layout>, String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
    let proc_cgroup = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
    Ok(layout_from(&mountinfo, &proc_cgroup))
}

/// Name of the step cgroup for the sandbox process `pid`.
pub(crate) fn step_name(pid: u32) -> String {
    format!("rbuild-step-{pid}")
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    fs::write(dir.join(file), value)
        .map_err(|e| format!("writing {value:?} to {}: {e}", dir.join(file).display()))
}

fn mkdir(dir: &Path) -> Result<(), String> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("creating cgroup {}: {e}", dir.display())),
    }
}

/// Removes an (empty) cgroup dir, retrying while the kernel still tears down
/// its last tasks. Missing is fine.
fn rmdir(dir: &Path, timeout: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if start.elapsed() < timeout && e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("removing cgroup {}: {e}", dir.display())),
        }
    }
}

fn needed(limits: &Limits) -> Vec<&'static str> {
    let mut v = Vec::new();
    if limits.memory.is_some() {
        v.push("memory");
    }
    if limits.cpus.is_some() {
        v.push("cpu");
    }
    if limits.pids.is_some() {
        v.push("pids");
    }
    v
}

fn cpu_quota_us(cpus: f64) -> Result<u64, String> {
    if !cpus.is_finite() || cpus <= 0.0 {
        return Err(format!("invalid cpu limit {cpus}"));
    }
    Ok(((cpus * CFS_PERIOD_US as f64).round() as u64).max(1000))
}

fn words(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Makes sure `dir`'s children get the `ctrls` controllers.
fn enable_subtree(dir: &Path, ctrls: &[&str]) -> Result<(), String> {
    let have = words(&dir.join("cgroup.subtree_control"));
    for c in ctrls {
        if !have.iter().any(|h| h == c) {
            write(dir, "cgroup.subtree_control", &format!("+{c}"))?;
        }
    }
    Ok(())
}

/// The v2 cgroup under which step cgroups are created.
fn v2_parent(mount: &Path, own: &Path, ctrls: &[&str]) -> Result<PathBuf, String> {
    let available = words(&own.join("cgroup.controllers"));
    if ctrls.iter().all(|c| available.iter().any(|a| a == c)) && enable_subtree(own, ctrls).is_ok()
    {
        return Ok(own.to_path_buf());
    }
    let root_ctrls = words(&mount.join("cgroup.controllers"));
    if let Some(c) = ctrls.iter().find(|c| !root_ctrls.iter().any(|a| a == *c)) {
        return Err(format!(
            "the cgroup v2 controller {c} is not available in {} (hybrid mode with the controller bound to v1?)",
            mount.display()
        ));
    }
    enable_subtree(mount, ctrls)?;
    let parent = mount.join("rbuild");
    mkdir(&parent)?;
    enable_subtree(&parent, ctrls)?;
    Ok(parent)
}

/// The cgroup dirs of one step.
#[derive(Debug)]
pub(crate) struct StepCgroup {
    dirs: Vec<PathBuf>,
}

impl StepCgroup {
    /// Creates the step cgroup(s) with `limits` applied; `None` when there are
    /// no limits.
    pub(crate) fn create(limits: &Limits, name: &str) -> Result<Option<StepCgroup>, String> {
        let ctrls = needed(limits);
        if ctrls.is_empty() {
            return Ok(None);
        }
        let layout =
            detect()?.ok_or("cgroup limits were requested but no cgroup hierarchy is mounted")?;
        let mut cg = StepCgroup { dirs: Vec::new() };
        let r = cg.populate(&layout, limits, &ctrls, name);
        match r {
            Ok(()) => Ok(Some(cg)),
            Err(e) => {
                cg.remove();
                Err(e)
            }
        }
    }

    fn populate(
        &mut self,
        layout: &Layout,
        limits: &Limits,
        ctrls: &[&str],
        name: &str,
    ) -> Result<(), String> {
        match layout {
            Layout::V2 { mount, own } => {
                let dir = v2_parent(mount, own, ctrls)?.join(name);
                mkdir(&dir)?;
                self.dirs.push(dir.clone());
                if let Some(m) = limits.memory {
                    write(&dir, "memory.max", &m.to_string())?;
                    // Docker's default --memory-swap: as much swap again.
                    if dir.join("memory.swap.max").exists() {
                        write(&dir, "memory.swap.max", &m.to_string())?;
                    }
                }
                if let Some(c) = limits.cpus {
                    let quota = cpu_quota_us(c)?;
                    write(&dir, "cpu.max", &format!("{quota} {CFS_PERIOD_US}"))?;
                }
                if let Some(p) = limits.pids {
                    write(&dir, "pids.max", &p.to_string())?;
                }
            }
            Layout::V1 { memory, cpu, pids } => {
                let hier = |d: &Option<PathBuf>, c: &str| {
                    d.as_ref()
                        .map(|d| d.join(name))
                        .ok_or_else(|| format!("a {c} limit was requested but the cgroup v1 {c} hierarchy is not mounted"))
                };
                if let Some(m) = limits.memory {
                    let dir = hier(memory, "memory")?;
                    mkdir(&dir)?;
                    self.dirs.push(dir.clone());
                    write(&dir, "memory.limit_in_bytes", &m.to_string())?;
                    // Docker's default --memory-swap: memory + swap = 2 × memory.
                    if dir.join("memory.memsw.limit_in_bytes").exists() {
                        let both = m.saturating_mul(2);
                        write(&dir, "memory.memsw.limit_in_bytes", &both.to_string())?;
                    }
                }
                if let Some(c) = limits.cpus {
                    let quota = cpu_quota_us(c)?;
                    let dir = hier(cpu, "cpu")?;
                    mkdir(&dir)?;
                    self.dirs.push(dir.clone());
                    write(&dir, "cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
                    write(&dir, "cpu.cfs_quota_us", &quota.to_string())?;
                }
                if let Some(p) = limits.pids {
                    let dir = hier(pids, "pids")?;
                    mkdir(&dir)?;
                    self.dirs.push(dir.clone());
                    write(&dir, "pids.max", &p.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// Moves process `pid` into the step cgroup(s).
    pub(crate) fn add(&self, pid: i32) -> Result<(), String> {
        for d in &self.dirs {
            write(d, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Removes the step cgroup(s); call when no process is left in them.
    pub(crate) fn remove(&self) {
        for d in &self.dirs {
            let _ = rmdir(d, Duration::from_secs(2));
        }
    }
}

/// Removes the step cgroup(s) named `name` if they are still there (the
/// intermediate was killed before it could clean up). Best effort.
pub(crate) fn remove_leftovers(name: &str) {
    let Ok(Some(layout)) = detect() else {
        return;
    };
    let dirs = match layout {
        Layout::V2 { mount, own } => vec![own.join(name), mount.join("rbuild").join(name)],
        Layout::V1 { memory, cpu, pids } => [memory, cpu, pids]
            .into_iter()
            .flatten()
            .map(|d| d.join(name))
            .collect(),
    };
    for d in dirs {
        if d.exists() {
            let _ = rmdir(&d, Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw shared:8 - tmpfs tmpfs rw,mode=755
27 26 0:25 / /sys/fs/cgroup/unified rw shared:9 - cgroup2 cgroup2 rw
28 26 0:26 / /sys/fs/cgroup/memory rw shared:10 - cgroup cgroup rw,memory
29 26 0:27 / /sys/fs/cgroup/cpu,cpuacct rw shared:11 - cgroup cgroup rw,cpu,cpuacct
30 26 0:28 /docker/abc /sys/fs/cgroup/pids rw shared:12 - cgroup cgroup rw,pids
";
    const HYBRID_SELF: &str = "\
12:pids:/docker/abc/x
4:memory:/user/1
2:cpu,cpuacct:/
0::/user/1
";

    #[test]
    fn hybrid_uses_v1() {
        let l = layout_from(HYBRID, HYBRID_SELF).unwrap();
        assert_eq!(
            l,
            Layout::V1 {
                memory: Some("/sys/fs/cgroup/memory/user/1".into()),
                cpu: Some("/sys/fs/cgroup/cpu,cpuacct".into()),
                pids: Some("/sys/fs/cgroup/pids/x".into()),
            }
        );
    }

    #[test]
    fn unified_uses_v2() {
        let mi = "35 24 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let l = layout_from(mi, "0::/user.slice/session-1.scope\n").unwrap();
        assert_eq!(
            l,
            Layout::V2 {
                mount: "/sys/fs/cgroup".into(),
                own: "/sys/fs/cgroup/user.slice/session-1.scope".into(),
            }
        );
        assert_eq!(layout_from("", ""), None);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\04"), "/end\\04");
    }

    #[test]
    fn cpu_quota() {
        assert_eq!(cpu_quota_us(1.5).unwrap(), 150_000);
        assert_eq!(cpu_quota_us(0.001).unwrap(), 1000);
        assert!(cpu_quota_us(0.0).is_err());
        assert!(cpu_quota_us(f64::NAN).is_err());
    }
}
