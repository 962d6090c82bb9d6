//! Memory a burst freed goes back to the system once demand falls.
//!
//! glibc's allocator keeps what a burst freed (see `portcullis_heap`): after its busiest
//! minute a sidecar would stay that size for good, and across a fleet that is its cost.
//! Four times a second the bytes in use are read; when they have fallen below their high
//! point since the last trim, the free pages are given back. The fall that matters is small: a
//! few live blocks can hold whole pages, so freeing them (the pool's last connections, say)
//! frees far more than their own size. A page that a steady load takes back after a trim
//! costs it one page fault.

use std::time::Duration;

use tokio::time::MissedTickBehavior;

/// How often the allocator is looked at.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);
/// How far the bytes in use must fall below their high point for a trim to be worth it:
/// less could not free a page, or hardly.
pub const WORTH_TRIMMING: usize = 64 << 10;

/// Decides, at each check, whether to give free memory back.
#[derive(Debug)]
pub struct Trimmer {
    /// The most in use since the last trim.
    high: usize,
}

impl Trimmer {
    pub fn new(in_use: usize) -> Self {
        Trimmer { high: in_use }
    }

    /// Whether to trim, given the bytes in use now: once they are `WORTH_TRIMMING` below
    /// their high point since the last trim.
    pub fn should_trim(&mut self, in_use: usize) -> bool {
        self.high = self.high.max(in_use);
        if self.high - in_use < WORTH_TRIMMING {
            return false;
        }
        self.high = in_use;
        true
    }
}

/// Runs for the life of the process; does nothing where the C library cannot say what it
/// holds.
pub async fn give_back_freed_memory() {
    let Some(start) = portcullis_heap::usage() else { return };
    let mut trimmer = Trimmer::new(start.in_use);
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(usage) = portcullis_heap::usage() else { return };
        if trimmer.should_trim(usage.in_use) {
            // Inline, not on a blocking thread: the sidecar's heap is a few MiB, and a
            // blocking thread would be one more thread kept for it.
            let released = portcullis_heap::release_free_memory();
            tracing::debug!(in_use = usage.in_use, free = usage.free, released, "heap trimmed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;
    const STEP: usize = WORTH_TRIMMING;

    #[test]
    fn a_fall_from_the_high_point_is_trimmed_once() {
        let mut t = Trimmer::new(4 * MIB);
        assert!(!t.should_trim(4 * MIB), "nothing fell");
        assert!(!t.should_trim(12 * MIB), "a load coming in");
        assert!(!t.should_trim(20 * MIB));
        assert!(!t.should_trim(20 * MIB - STEP + 1), "a load that moves a little");
        assert!(t.should_trim(6 * MIB), "the load is gone");
        assert!(!t.should_trim(6 * MIB), "nothing more to give back");
        assert!(!t.should_trim(6 * MIB - STEP + 1), "less than WORTH_TRIMMING since the trim");
        assert!(t.should_trim(6 * MIB - STEP), "WORTH_TRIMMING below the level of the last trim");
    }

    #[test]
    fn the_high_point_is_the_one_since_the_last_trim() {
        let mut t = Trimmer::new(20 * MIB);
        assert!(t.should_trim(8 * MIB));
        assert!(!t.should_trim(9 * MIB), "a new load");
        assert!(
            !t.should_trim(9 * MIB - STEP + 1),
            "short of WORTH_TRIMMING below 9, the new high"
        );
        assert!(t.should_trim(9 * MIB - STEP));
    }
}
