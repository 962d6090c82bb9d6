//! The C library allocator's controls that Portcullis uses, behind a safe API: the only
//! `unsafe` of the project, kept out of the main crate (which forbids it) and this small.
//!
//! glibc keeps the memory a burst freed: freed chunks go back to its arenas, and only the
//! top of each heap is ever returned on its own. A sidecar that served 1,000 connections
//! once would stay at that size for good. `malloc_trim` walks every arena and hands whole
//! free pages back to the kernel (`madvise(MADV_DONTNEED)`), wherever they lie.
//!
//! On other C libraries (musl) both calls do nothing: [`usage`] says `None`.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

/// What the allocator holds, in bytes, over all its arenas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Handed out and not yet freed (`uordblks`, plus blocks of their own mapping).
    pub in_use: usize,
    /// Freed and kept for later (`fordblks`): some of it may already be given back.
    pub free: usize,
}

/// The allocator's current use, or `None` where the C library cannot tell.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn usage() -> Option<Usage> {
    // SAFETY: mallinfo2 (glibc 2.33 and later) takes no argument and returns a plain
    // struct by value; it takes each arena's lock itself.
    let info = unsafe { libc::mallinfo2() };
    Some(Usage { in_use: info.uordblks + info.hblkhd, free: info.fordblks })
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn usage() -> Option<Usage> {
    None
}

/// Gives every whole free page of every arena back to the kernel. Returns whether any
/// memory was given back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() -> bool {
    // SAFETY: malloc_trim takes no pointer and is MT-safe: it locks each arena in turn.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_follows_allocations_and_a_trim_gives_freed_pages_back() {
        let before = usage().expect("glibc");
        // Blocks below the mmap threshold (128 KiB), so that they come from an arena, not
        // from a mapping of their own, as connections' buffers do.
        const BLOCK: usize = 64 * 1024;
        let blocks: Vec<Vec<u8>> = (0..512).map(|i| vec![i as u8; BLOCK]).collect();
        let held = usage().unwrap();
        assert!(held.in_use >= before.in_use + 512 * BLOCK, "{before:?} -> {held:?}");
        // Every other block freed: the blocks kept between them stop the heap from
        // shrinking at its top, so only a trim gives the freed pages back.
        let kept: Vec<Vec<u8>> = blocks.into_iter().step_by(2).collect();
        let freed = usage().unwrap();
        assert!(freed.free >= 256 * BLOCK, "{freed:?}");
        assert!(freed.in_use < held.in_use, "{held:?} -> {freed:?}");
        assert!(release_free_memory(), "whole free pages lay between the kept blocks");
        drop(kept);
    }
}
