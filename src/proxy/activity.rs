//! Whether an HTTP/1.1 client connection is idle: waiting for its next request with nothing
//! in flight and nothing left to write. The connection's reader and writer (`client_io`)
//! and its requests (`client_conn`) report here; the connection's driver reads it to put
//! hyper's connection, and its buffers, away until the client sends again.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// One connection's activity. Every field is touched only by that connection's task;
/// atomics make it shareable through the connection's `Framing`.
#[derive(Debug, Default)]
pub struct Activity {
    /// Requests handed to the service whose response body hyper has not dropped yet.
    in_flight: AtomicU32,
    /// The last read found no bytes, at a request boundary, and nothing was written since.
    waiting: AtomicBool,
    /// The last write could not go out whole: hyper still has bytes to send.
    write_blocked: AtomicBool,
    /// hyper was asked to close an idle connection; its close must leave the socket open.
    parking: AtomicBool,
    /// The connection has waited long enough for its next request to be put away
    /// (`client_timer`).
    put_away_due: AtomicBool,
    /// Served again because its client sent or closed (`parking`), and nothing read yet:
    /// a read that finds nothing then only means that the socket, registered anew, has
    /// not been reported readable yet, not that the client is silent.
    expecting: AtomicBool,
}

impl Activity {
    /// Whether hyper's connection is idle: every response written and flushed, none being
    /// made, and its last read found nothing between requests.
    pub fn is_idle(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
            && !self.write_blocked.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Relaxed) == 0
    }

    /// Whether hyper's connection is idle and has been silent long enough to be put away.
    pub fn should_put_away(&self) -> bool {
        self.is_put_away_due() && self.is_idle()
    }

    pub(crate) fn put_away_due(&self) {
        self.put_away_due.store(true, Ordering::Relaxed);
        // Whatever woke the connection has not come in this long: it was not for it.
        self.expecting.store(false, Ordering::Relaxed);
    }

    /// The connection is served again because its client sent or closed.
    pub(crate) fn expect_bytes(&self) {
        self.expecting.store(true, Ordering::Relaxed);
    }

    pub fn is_put_away_due(&self) -> bool {
        self.put_away_due.load(Ordering::Relaxed)
    }

    pub(crate) fn read_nothing_between_requests(&self) {
        if !self.expecting.load(Ordering::Relaxed) {
            self.waiting.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn read_something(&self) {
        self.waiting.store(false, Ordering::Relaxed);
        self.put_away_due.store(false, Ordering::Relaxed);
        self.expecting.store(false, Ordering::Relaxed);
    }

    /// A write was tried: a connection that writes is not idle, and is not closed quietly
    /// (a write while parking is hyper answering with `Connection: close`).
    pub(crate) fn wrote(&self, blocked: bool) {
        self.waiting.store(false, Ordering::Relaxed);
        self.write_blocked.store(blocked, Ordering::Relaxed);
        self.parking.store(false, Ordering::Relaxed);
    }

    pub fn begin_parking(&self) {
        self.parking.store(true, Ordering::Relaxed);
        self.put_away_due.store(false, Ordering::Relaxed);
    }

    pub(crate) fn is_parking(&self) -> bool {
        self.parking.load(Ordering::Relaxed)
    }

    /// Whether the close that ended hyper's connection was the quiet one asked for, with
    /// nothing written since: the socket is still open, between requests.
    pub fn end_parking(&self) -> bool {
        self.parking.swap(false, Ordering::Relaxed)
    }

    /// A request was handed to the service (see `client_conn`'s `InFlight`).
    pub(crate) fn enter(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// That request's response body was dropped.
    pub(crate) fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_only_after_a_read_found_nothing_with_nothing_in_flight_or_unwritten() {
        let activity = Activity::default();
        assert!(!activity.is_idle(), "no read has waited yet");
        activity.read_nothing_between_requests();
        assert!(activity.is_idle());

        activity.enter();
        assert!(!activity.is_idle(), "a request in flight");
        activity.leave();
        assert!(activity.is_idle());

        activity.wrote(false);
        assert!(!activity.is_idle(), "a write since the last read");
        activity.read_nothing_between_requests();
        activity.wrote(true);
        activity.read_nothing_between_requests();
        assert!(!activity.is_idle(), "bytes left to write");
        activity.read_something();
        assert!(!activity.is_idle());
    }

    #[test]
    fn put_away_when_idle_and_due() {
        let activity = Activity::default();
        activity.read_nothing_between_requests();
        assert!(!activity.should_put_away(), "not due yet");
        activity.put_away_due();
        assert!(activity.should_put_away());
        activity.enter();
        assert!(!activity.should_put_away(), "a request in flight");
        activity.leave();
        activity.read_something();
        assert!(!activity.should_put_away(), "a read makes it due again only after a wait");
        activity.read_nothing_between_requests();
        activity.put_away_due();
        activity.begin_parking();
        assert!(!activity.is_put_away_due(), "taken by the parking");
    }

    #[test]
    fn served_again_it_is_not_idle_until_it_reads_or_waits_to_be_put_away() {
        let activity = Activity::default();
        activity.expect_bytes();
        activity.read_nothing_between_requests();
        assert!(!activity.is_idle(), "the client's bytes are still to be read");
        activity.read_something();
        activity.read_nothing_between_requests();
        assert!(activity.is_idle(), "read, then nothing more");

        let woken_for_nothing = Activity::default();
        woken_for_nothing.expect_bytes();
        woken_for_nothing.read_nothing_between_requests();
        woken_for_nothing.put_away_due();
        assert!(!woken_for_nothing.is_idle(), "no read has waited since");
        woken_for_nothing.read_nothing_between_requests();
        assert!(woken_for_nothing.should_put_away(), "nothing came: put away after all");
    }

    #[test]
    fn a_write_while_parking_makes_the_close_a_real_one() {
        let activity = Activity::default();
        activity.begin_parking();
        assert!(activity.is_parking());
        assert!(activity.end_parking(), "closed quietly");
        activity.begin_parking();
        activity.wrote(false);
        assert!(!activity.is_parking(), "the socket is shut down as usual");
        assert!(!activity.end_parking());
    }
}
