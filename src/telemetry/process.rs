//! The process's own resident memory, read at scrape time: what a fleet of sidecars costs
//! is their RSS after their busiest minute, and the dashboard shows it without cAdvisor.

use prometheus_client::metrics::gauge::Gauge;

/// Resident set size in bytes, from `/proc/self/status` (`VmRSS`, in KiB); None where there
/// is no procfs (not Linux), so the gauge keeps its last value instead of a made-up one.
pub fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_kib(&status, "VmRSS")?.checked_mul(1024)
}

/// A `/proc/<pid>/status` field given in KiB (`VmRSS`, `VmHWM`...).
pub fn status_kib(status: &str, field: &str) -> Option<i64> {
    let line = status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// Sets `gauge` to the resident memory now, where it can be read.
pub fn update_resident(gauge: &Gauge) {
    if let Some(bytes) = resident_bytes() {
        gauge.set(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_fields_in_kib() {
        let status = "Name:\tportcullis\nVmPeak:\t  20000 kB\nVmRSS:\t    7480 kB\nThreads:\t2\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(7480));
        assert_eq!(status_kib(status, "VmPeak"), Some(20000));
        assert_eq!(status_kib("Name:\tx\n", "VmRSS"), None);
        assert_eq!(
            status_kib("VmRSS:\t12 MB\n", "VmRSS"),
            None,
            "only kB is what the kernel writes"
        );
        assert_eq!(status_kib("VmRSSx:\t12 kB\n", "VmRSS"), None, "the whole field name");
    }

    #[test]
    fn this_process_has_some_resident_memory() {
        let bytes = resident_bytes().expect("procfs on Linux");
        assert!(bytes > 1024 * 1024, "{bytes}");
    }
}
