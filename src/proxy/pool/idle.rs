//! The HTTP/1.1 connections waiting in the pool, and the requests waiting for one.
//!
//! Connections are taken most recently used first: the warmest, and the least likely to
//! have been closed by the app. One put back goes to the request that has waited longest
//! for one, if any, so that a request that arrives later never takes it first.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::proxy::app_h1::H1Conn;

/// How long a connection waits in the pool before it is past the burst that used it: under
/// load a connection is taken again within milliseconds. One idle this long lets go of its
/// buffers, which are memory that a fleet of sidecars would keep; at a few requests a
/// second, allocating them again costs far less than each request.
pub(super) const COLD_AFTER: Duration = Duration::from_millis(250);
/// Idle connections kept past a burst, the most recently used: the rest are closed once cold,
/// as nginx's `keepalive` and Go's idle limit close the connections beyond theirs. A pool
/// taken newest first reaches below these only when more requests than this are under way,
/// so one past them that stayed idle a whole `COLD_AFTER` was not needed. Kept, the 1,024
/// connections of a burst cost about 4 KiB each until `upstreamIdle`: each holds heap
/// pages that its neighbours of the burst gave back, and the app holds their sockets.
pub(super) const KEEP_WARM: usize = 16;

/// A connection waiting in the pool, and since when.
struct Idle {
    conn: Box<H1Conn>,
    since: Instant,
    max_idle: Option<Duration>,
}

impl Idle {
    /// Whether it has been idle for less than `upstreamIdle`, and the app has not closed it.
    fn usable(&self, now: Instant) -> bool {
        self.max_idle.is_none_or(|max| now.duration_since(self.since) < max)
            && self.conn.is_usable()
    }

    /// Whether to keep it at a look over the pool; `warm` if it is among the `KEEP_WARM`
    /// most recently used. Once it has waited `COLD_AFTER`, a warm one lets go of its
    /// buffers (again at each look after that: a connection without buffers has nothing to
    /// let go), and any other is closed.
    fn keep(&mut self, now: Instant, warm: bool) -> bool {
        if now.duration_since(self.since) >= COLD_AFTER {
            if !warm {
                return false;
            }
            self.conn.release_buffers();
        }
        self.usable(now)
    }
}

#[derive(Default)]
pub(super) struct IdleSet {
    /// Oldest first.
    idle: Vec<Idle>,
    /// Requests waiting for a connection, oldest first; each is idle's only when this is
    /// empty.
    waiting: VecDeque<oneshot::Sender<Box<H1Conn>>>,
}

impl IdleSet {
    /// The most recently used connection that is still usable; those found unusable on the
    /// way are closed.
    pub fn take(&mut self, now: Instant) -> Option<Box<H1Conn>> {
        while let Some(entry) = self.idle.pop() {
            if entry.usable(now) {
                return Some(entry.conn);
            }
        }
        None
    }

    /// A connection whose last response was read to the end: to the request that has
    /// waited longest, or idle.
    pub fn put(&mut self, mut conn: Box<H1Conn>, max_idle: Option<Duration>) {
        while let Some(waiter) = self.waiting.pop_front() {
            match waiter.send(conn) {
                Ok(()) => return,
                // That request stopped waiting.
                Err(back) => conn = back,
            }
        }
        conn.shrink_for_idle();
        self.idle.push(Idle { conn, since: Instant::now(), max_idle });
    }

    /// Queues a request for the next connection put back. Call only when `take` found none.
    pub fn wait(&mut self) -> oneshot::Receiver<Box<H1Conn>> {
        let (tx, rx) = oneshot::channel();
        self.waiting.push_back(tx);
        rx
    }

    /// Closes the connections gone stale or cold past the warmest few (`Idle::keep`), and
    /// forgets the requests that stopped waiting.
    pub fn reap(&mut self, now: Instant) {
        // Oldest first: those above `warm_from` are the most recently put back.
        let warm_from = self.idle.len().saturating_sub(KEEP_WARM);
        let mut at = 0;
        self.idle.retain_mut(|c| {
            at += 1;
            c.keep(now, at > warm_from)
        });
        self.waiting.retain(|waiter| !waiter.is_closed());
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.idle.len()
    }

    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}
