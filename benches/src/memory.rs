//! Resident memory of this process, for the side-by-side runs: the current size, the high-water
//! mark, and a reset of the mark so that one call's peak can be read on its own.
//!
//! Linux only (`/proc/self/status` and `/proc/self/clear_refs`); elsewhere every reading is `None`.

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The resident set size now, in KiB.
pub fn rss_kib() -> Option<u64> {
    status_kib("VmRSS")
}

/// The resident set's high-water mark (`VmHWM`), in KiB: the peak since the process started or
/// since the last [`reset_peak_rss`].
pub fn peak_rss_kib() -> Option<u64> {
    status_kib("VmHWM")
}

/// Resets the high-water mark to the current resident size (writing `5` to
/// `/proc/self/clear_refs`, Linux 4.0 and later); `false` where that is not possible, and the mark
/// then covers the whole life of the process.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_follows_a_large_allocation_and_resets() {
        if rss_kib().is_none() {
            return; // Not Linux: nothing to read.
        }
        assert!(reset_peak_rss());
        let before = peak_rss_kib().unwrap();
        // Touch 64 MiB so that it becomes resident.
        let block = vec![1u8; 64 << 20];
        assert!(block.iter().step_by(4096).all(|&b| b == 1));
        let peak = peak_rss_kib().unwrap();
        assert!(peak >= before + 60 * 1024, "peak {peak} KiB, before {before} KiB");
        drop(block);
        assert!(reset_peak_rss());
        let after = peak_rss_kib().unwrap();
        assert!(after < peak, "after the reset {after} KiB, peak was {peak} KiB");
    }
}
