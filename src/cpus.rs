//! How many CPUs this process may keep busy: the CPUs its affinity allows, capped by its
//! cgroup's CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, the
//! tightest of its cgroup and their ancestors), rounded down, at least one.
//!
//! A sidecar with more runnable threads than its quota is throttled by CFS in bursts, which
//! shows as long latency tails; so its default worker count follows this number, as
//! Envoy's `--concurrency` and Linkerd's proxy cores follow their limits.
//!
//! Everything is read from text files under a root (`/` in production) so that the
//! arithmetic is tested on sample files.

use std::path::Path;

/// The CPUs this process may use, read from `/`.
pub fn available() -> usize {
    available_under(Path::new("/"))
}

/// The same, with `/proc` and `/sys` read under `root`.
pub fn available_under(root: &Path) -> usize {
    let affinity = affinity(root)
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1);
    let quota = quota(root).map_or(usize::MAX, |cpus| (cpus.floor() as usize).max(1));
    affinity.min(quota).max(1)
}

/// CPUs in `Cpus_allowed_list` of /proc/self/status (`0-3,6,8-9`).
fn affinity(root: &Path) -> Option<usize> {
    let status = std::fs::read_to_string(root.join("proc/self/status")).ok()?;
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?.trim();
    let mut count = 0;
    for range in list.split(',').filter(|r| !r.is_empty()) {
        count += match range.split_once('-') {
            Some((a, b)) => b.parse::<usize>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => range.parse::<usize>().map(|_| 1).ok()?,
        };
    }
    (count > 0).then_some(count)
}

/// The tightest CPU quota, in CPUs (fractional), over this process's cgroup and its
/// ancestors; `None` when no quota applies.
fn quota(root: &Path) -> Option<f64> {
    let cgroups = std::fs::read_to_string(root.join("proc/self/cgroup")).ok()?;
    let sys = root.join("sys/fs/cgroup");
    // cgroup v1 first: on a hybrid host the `0::` line exists but the cpu controller
    // lives in v1.
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        if controllers.split(',').any(|c| c == "cpu") {
            let bases = [sys.join(controllers), sys.join("cpu,cpuacct"), sys.join("cpu")];
            return bases.iter().find(|b| b.is_dir()).and_then(|base| {
                tightest(base, path, |dir| {
                    let quota = read_number(&dir.join("cpu.cfs_quota_us"))?;
                    let period = read_number(&dir.join("cpu.cfs_period_us"))?;
                    (quota > 0.0 && period > 0.0).then(|| quota / period)
                })
            });
        }
    }
    let path = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
    if !sys.join("cgroup.controllers").is_file() {
        return None;
    }
    tightest(&sys, path, |dir| {
        let max = std::fs::read_to_string(dir.join("cpu.max")).ok()?;
        let mut fields = max.split_whitespace();
        let quota: f64 = fields.next()?.parse().ok()?; // "max" parses as no number: no quota
        let period: f64 = fields.next()?.parse().ok()?;
        (quota > 0.0 && period > 0.0).then(|| quota / period)
    })
}

/// The smallest quota found in `base/path` and each of its ancestors up to `base` (a
/// container's cgroup namespace shows its own cgroup as `base`, whatever `path` says).
fn tightest(base: &Path, path: &str, quota_in: impl Fn(&Path) -> Option<f64>) -> Option<f64> {
    let mut dir = base.join(path.trim_start_matches('/'));
    let mut found: Option<f64> = None;
    loop {
        if let Some(q) = quota_in(&dir) {
            found = Some(found.map_or(q, |f| f.min(q)));
        }
        if dir == base || !dir.pop() || !dir.starts_with(base) {
            return found;
        }
    }
}

fn read_number(path: &Path) -> Option<f64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake root with the given files (path relative to the root, contents).
    fn root(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, contents) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
        dir
    }

    const FOUR_CPUS: (&str, &str) =
        ("proc/self/status", "Name:\tportcullis\nCpus_allowed_list:\t0-3\n");

    #[test]
    fn affinity_lists_are_counted() {
        for (list, count) in [("0", 1), ("0-3", 4), ("0-1,4,6-7", 5), ("2,4", 2)] {
            let status = format!("Cpus_allowed:\tff\nCpus_allowed_list:\t{list}\n");
            let dir = root(&[("proc/self/status", &status)]);
            assert_eq!(affinity(dir.path()), Some(count), "{list}");
        }
        let dir = root(&[("proc/self/status", "Cpus_allowed_list:\t3-1\n")]);
        assert_eq!(affinity(dir.path()), None, "a range backwards is unreadable");
    }

    #[test]
    fn cgroup_v2_quota_rounds_down_and_the_tightest_ancestor_wins() {
        let v2 = |own: &str, parent: &str| {
            root(&[
                FOUR_CPUS,
                ("proc/self/cgroup", "0::/kubepods/pod1/c1\n"),
                ("sys/fs/cgroup/cgroup.controllers", "cpu memory\n"),
                ("sys/fs/cgroup/kubepods/pod1/c1/cpu.max", own),
                ("sys/fs/cgroup/kubepods/pod1/cpu.max", parent),
            ])
        };
        assert_eq!(available_under(v2("max 100000\n", "max 100000\n").path()), 4, "no quota");
        assert_eq!(available_under(v2("150000 100000\n", "max 100000\n").path()), 1, "1.5 CPUs");
        assert_eq!(available_under(v2("250000 100000\n", "max 100000\n").path()), 2, "2.5 CPUs");
        assert_eq!(available_under(v2("50000 100000\n", "max 100000\n").path()), 1, "at least one");
        assert_eq!(available_under(v2("max 100000\n", "300000 100000\n").path()), 3, "the pod's");
        assert_eq!(available_under(v2("900000 100000\n", "max 100000\n").path()), 4, "affinity");
    }

    #[test]
    fn cgroup_v2_in_a_cgroup_namespace_reads_its_own_root() {
        let dir = root(&[
            FOUR_CPUS,
            ("proc/self/cgroup", "0::/\n"),
            ("sys/fs/cgroup/cgroup.controllers", "cpu\n"),
            ("sys/fs/cgroup/cpu.max", "200000 100000\n"),
        ]);
        assert_eq!(available_under(dir.path()), 2);
    }

    #[test]
    fn cgroup_v1_quota_on_a_hybrid_host() {
        let v1 = |quota: &str, period: &str| {
            root(&[
                FOUR_CPUS,
                ("proc/self/cgroup", "4:memory:/x\n2:cpu,cpuacct:/kubepods/pod1/c1\n0::/\n"),
                ("sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/c1/cpu.cfs_quota_us", quota),
                ("sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/c1/cpu.cfs_period_us", period),
            ])
        };
        assert_eq!(available_under(v1("-1\n", "100000\n").path()), 4, "-1 is no quota");
        assert_eq!(available_under(v1("200000\n", "100000\n").path()), 2);
        assert_eq!(available_under(v1("125000\n", "250000\n").path()), 1, "half a CPU");
    }

    #[test]
    fn cgroup_v1_with_the_host_path_in_a_container_falls_back_to_the_mount_root() {
        let dir = root(&[
            FOUR_CPUS,
            ("proc/self/cgroup", "1:cpu:/kubepods/besteffort/pod9/abc\n"),
            ("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "300000\n"),
            ("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"),
        ]);
        assert_eq!(available_under(dir.path()), 3);
    }

    #[test]
    fn nothing_readable_means_the_affinity_or_at_least_one() {
        assert_eq!(available_under(root(&[FOUR_CPUS]).path()), 4);
        let garbage = root(&[
            FOUR_CPUS,
            ("proc/self/cgroup", "0::/\n"),
            ("sys/fs/cgroup/cgroup.controllers", "cpu\n"),
            ("sys/fs/cgroup/cpu.max", "lots\n"),
        ]);
        assert_eq!(available_under(garbage.path()), 4);
        assert!(available_under(root(&[]).path()) >= 1);
    }

    #[test]
    fn this_machine_gives_at_most_its_affinity() {
        let cpus = available();
        assert!(cpus >= 1);
        assert!(cpus <= std::thread::available_parallelism().map_or(usize::MAX, usize::from));
    }
}
