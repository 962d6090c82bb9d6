//! Client connections open at once: counted against the connection limit, and waited for
//! by the drain. A connection holds its place wherever it is, parked ones included.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One open client connection, counted while it lives.
pub struct Counted(Arc<AtomicUsize>);

impl Counted {
    /// Counts one more connection in `open`, unless `limit` are open already.
    pub fn enter(open: &Arc<AtomicUsize>, limit: usize) -> Option<Self> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1))
            .ok()
            .map(|_| Counted(open.clone()))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_up_to_the_limit_and_released() {
        let open = Arc::new(AtomicUsize::new(0));
        let a = Counted::enter(&open, 2).unwrap();
        let _b = Counted::enter(&open, 2).unwrap();
        assert!(Counted::enter(&open, 2).is_none());
        drop(a);
        let c = Counted::enter(&open, 2);
        assert!(c.is_some());
        assert_eq!(open.load(Ordering::Acquire), 2);
        drop((_b, c));
        assert_eq!(open.load(Ordering::Acquire), 0);
    }
}
