//! Keep-alive connections waiting for their next request, held without a task each.
//!
//! A connection waiting in its own task costs that task, tokio's registration of its
//! socket and its reader: about 1.8 KiB, four times what nginx spends on an idle
//! connection. Parked here, it is its socket and the few numbers needed to serve it again,
//! in one table. One task waits for all of them on an epoll set of its own, which tokio's
//! reactor watches as a single descriptor, and on one timer: the earliest deadline.
//!
//! A connection leaves the lot when its client sends, closes or fails (`Resume::resume`,
//! which serves it again), or when its deadline passes (it is dropped, which closes it).
//! Once the drain starts, none stays longer than the grace given with it. The lot ends
//! when every handle to it is dropped, closing what it still holds.

use std::collections::BTreeSet;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustix::event::{Timespec, epoll};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::latch::Latch;

/// What the lot holds: a connection that can be served again.
pub trait Resume: AsFd + Send + 'static {
    /// Serves the connection again: its client sent something, closed, or failed.
    fn resume(self);
}

/// Events taken from the epoll set at a time.
const EVENTS_AT_ONCE: usize = 64;

/// A handle to the lot: connections are parked through it.
pub struct ParkingLot<P> {
    arrivals: mpsc::UnboundedSender<(P, Instant)>,
    tally: Arc<Tally>,
}

/// What the lot counts, for whoever holds a handle.
#[derive(Debug, Default)]
struct Tally {
    /// Connections held now.
    held: AtomicUsize,
    /// Connections taken in since the lot started, each parking counted.
    parkings: AtomicUsize,
}

impl<P: Resume> ParkingLot<P> {
    /// Starts the lot's task. Once `drain` starts, a connection stays at most `grace` more.
    pub fn start(drain: Arc<Latch>, grace: Duration) -> io::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        // Sound for an `OwnedFd`, which tokio's I/O-safety deprecation is not about: the
        // descriptor is owned by the `AsyncFd` and stays open, unchanged, while it lives.
        #[allow(deprecated)]
        let epoll = AsyncFd::new(epoll)?;
        let (arrivals, rx) = mpsc::unbounded_channel();
        let tally = Arc::new(Tally::default());
        let (slots, free, deadlines) = (Vec::new(), BTreeSet::new(), BTreeSet::new());
        let lot = Lot { slots, free, deadlines, tally: tally.clone() };
        tokio::spawn(lot.run(epoll, rx, drain, grace));
        Ok(ParkingLot { arrivals, tally })
    }

    /// Holds `conn` until its client sends or `deadline` passes. Gives it back if the lot
    /// has ended.
    pub fn park(&self, conn: P, deadline: Instant) -> Result<(), P> {
        self.arrivals.send((conn, deadline)).map_err(|back| back.0.0)
    }

    /// How many connections the lot holds now.
    pub fn held(&self) -> usize {
        self.tally.held.load(Ordering::Relaxed)
    }

    /// How many times a connection has been taken in.
    #[cfg(test)]
    pub fn parkings(&self) -> usize {
        self.tally.parkings.load(Ordering::Relaxed)
    }
}

/// The connections parked, kept by the lot's task alone.
struct Lot<P> {
    /// The connections parked, by the key their epoll events carry.
    slots: Vec<Option<Parked<P>>>,
    /// Keys of empty slots, the lowest taken first: so that the table's end empties, and
    /// can be given back, as a burst of idle clients leaves.
    free: BTreeSet<usize>,
    /// When each parked connection is closed, with its key: earliest first.
    deadlines: BTreeSet<(Instant, usize)>,
    tally: Arc<Tally>,
}

struct Parked<P> {
    conn: P,
    deadline: Instant,
}

impl<P: Resume> Lot<P> {
    async fn run(
        mut self,
        epoll: AsyncFd<OwnedFd>,
        mut arrivals: mpsc::UnboundedReceiver<(P, Instant)>,
        drain: Arc<Latch>,
        grace: Duration,
    ) {
        // Once the drain starts: when the last connection must be gone.
        let mut grace_ends: Option<Instant> = None;
        let drained = drain.started();
        tokio::pin!(drained);
        loop {
            let next = self.deadlines.first().map(|(at, _)| *at);
            tokio::select! {
                arrival = arrivals.recv() => match arrival {
                    Some((conn, deadline)) => {
                        let deadline = grace_ends.map_or(deadline, |ends| deadline.min(ends));
                        self.admit(epoll.get_ref(), conn, deadline);
                    }
                    None => return,
                },
                ready = epoll.readable() => match ready {
                    Ok(mut guard) => {
                        if self.take_events(epoll.get_ref()) == 0 {
                            guard.clear_ready();
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "parked connections cannot be watched");
                        return;
                    }
                },
                () = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    self.close_expired(epoll.get_ref(), Instant::now());
                }
                () = &mut drained, if grace_ends.is_none() => {
                    let ends = Instant::now() + grace;
                    grace_ends = Some(ends);
                    self.bring_forward(ends);
                }
            }
        }
    }

    fn admit(&mut self, epoll: &OwnedFd, conn: P, deadline: Instant) {
        let key = self.free.pop_first().unwrap_or(self.slots.len());
        let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP | epoll::EventFlags::ONESHOT;
        let data = epoll::EventData::new_u64(key as u64);
        if let Err(e) = epoll::add(epoll, conn.as_fd(), data, flags) {
            // Served again, it could only come back here: closed instead, as a timeout.
            tracing::warn!(error = %e, "an idle connection could not be parked; closed");
            if key < self.slots.len() {
                self.free.insert(key);
            }
            return;
        }
        let parked = Some(Parked { conn, deadline });
        if key == self.slots.len() {
            self.slots.push(parked);
        } else {
            self.slots[key] = parked;
        }
        self.deadlines.insert((deadline, key));
        self.tally.held.fetch_add(1, Ordering::Relaxed);
        self.tally.parkings.fetch_add(1, Ordering::Relaxed);
    }

    /// Serves again each connection whose client sent, closed or failed; returns how many.
    fn take_events(&mut self, epoll: &OwnedFd) -> usize {
        let none = Timespec { tv_sec: 0, tv_nsec: 0 };
        let mut buf = [MaybeUninit::<epoll::Event>::uninit(); EVENTS_AT_ONCE];
        let events = match epoll::wait(epoll, &mut buf, Some(&none)) {
            Ok((events, _)) => events,
            Err(e) => {
                tracing::debug!(error = %e, "waiting on parked connections");
                return 0;
            }
        };
        for event in events.iter() {
            let key = usize::try_from(event.data.u64()).expect("keys are slot indices");
            if let Some(conn) = self.leave(epoll, key) {
                conn.resume();
            }
        }
        self.shrink();
        events.len()
    }

    /// Takes the connection in slot `key` out of the lot.
    fn leave(&mut self, epoll: &OwnedFd, key: usize) -> Option<P> {
        let Parked { conn, deadline } = self.slots.get_mut(key)?.take()?;
        self.deadlines.remove(&(deadline, key));
        self.free.insert(key);
        self.tally.held.fetch_sub(1, Ordering::Relaxed);
        // Before tokio registers it again; a closed descriptor would leave the set by itself.
        let _ = epoll::delete(epoll, conn.as_fd());
        Some(conn)
    }

    /// Closes the connections whose deadline has come.
    fn close_expired(&mut self, epoll: &OwnedFd, now: Instant) {
        while let Some(&(at, key)) = self.deadlines.first() {
            if at > now {
                break;
            }
            drop(self.leave(epoll, key));
        }
        self.shrink();
    }

    /// Moves every deadline later than `ends` to it.
    fn bring_forward(&mut self, ends: Instant) {
        let later: Vec<(Instant, usize)> = self.deadlines.range((ends, 0)..).copied().collect();
        for (at, key) in later {
            self.deadlines.remove(&(at, key));
            self.deadlines.insert((ends, key));
            if let Some(Some(parked)) = self.slots.get_mut(key) {
                parked.deadline = ends;
            }
        }
    }

    /// Gives back the end of the table that no connection uses any more (after a burst of
    /// idle clients).
    fn shrink(&mut self) {
        while let Some(None) = self.slots.last() {
            self.slots.pop();
            self.free.remove(&self.slots.len());
        }
        if self.slots.capacity() > 2 * self.slots.len() + 64 {
            self.slots.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A parked server side, which reports its resumption with its own number.
    struct Conn {
        stream: std::net::TcpStream,
        number: usize,
        resumed: Arc<Mutex<Vec<usize>>>,
    }

    impl AsFd for Conn {
        fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
            self.stream.as_fd()
        }
    }

    impl Resume for Conn {
        fn resume(self) {
            self.resumed.lock().unwrap().push(self.number);
        }
    }

    /// `n` connections: the clients, and the server sides, as the lot holds them.
    async fn pairs(n: usize, resumed: &Arc<Mutex<Vec<usize>>>) -> (Vec<TcpStream>, Vec<Conn>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (mut clients, mut conns) = (Vec::new(), Vec::new());
        for number in 0..n {
            clients.push(TcpStream::connect(listener.local_addr().unwrap()).await.unwrap());
            let (stream, _) = listener.accept().await.unwrap();
            let stream = stream.into_std().unwrap();
            conns.push(Conn { stream, number, resumed: resumed.clone() });
        }
        (clients, conns)
    }

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    /// Waits, in real time, until `resumed` holds `want`.
    async fn resumed_are(resumed: &Arc<Mutex<Vec<usize>>>, want: &[usize]) {
        for _ in 0..1000 {
            if resumed.lock().unwrap().as_slice() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(resumed.lock().unwrap().as_slice(), want);
    }

    #[tokio::test]
    async fn a_connection_whose_client_sends_or_closes_is_served_again_and_no_other() {
        let resumed = Arc::new(Mutex::new(Vec::new()));
        let lot = ParkingLot::start(Arc::new(Latch::default()), Duration::from_secs(1)).unwrap();
        let (mut clients, conns) = pairs(3, &resumed).await;
        let far = Instant::now() + Duration::from_secs(3600);
        for conn in conns {
            assert!(lot.park(conn, far).is_ok());
        }
        clients[1].write_all(b"GET").await.unwrap();
        resumed_are(&resumed, &[1]).await;
        drop(clients.remove(2));
        resumed_are(&resumed, &[1, 2]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(resumed.lock().unwrap().as_slice(), &[1, 2], "the silent one stays");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_closed_at_its_deadline_and_not_before() {
        let resumed = Arc::new(Mutex::new(Vec::new()));
        let lot = ParkingLot::start(Arc::new(Latch::default()), Duration::from_secs(1)).unwrap();
        let (mut clients, mut conns) = pairs(2, &resumed).await;
        let now = Instant::now();
        let later = conns.pop().unwrap();
        assert!(lot.park(conns.pop().unwrap(), now + Duration::from_secs(5)).is_ok());
        assert!(lot.park(later, now + Duration::from_secs(10)).is_ok());
        tokio::time::sleep_until(now + Duration::from_millis(4999)).await;
        settle().await;
        for client in &mut clients {
            let mut byte = [0; 1];
            let open = tokio::time::timeout(Duration::ZERO, client.read(&mut byte)).await;
            assert!(open.is_err(), "still open before its deadline");
        }
        tokio::time::sleep_until(now + Duration::from_secs(5)).await;
        settle().await;
        let mut rest = Vec::new();
        clients[0].read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "closed without a byte");
        let mut byte = [0; 1];
        let open = tokio::time::timeout(Duration::ZERO, clients[1].read(&mut byte)).await;
        assert!(open.is_err(), "the later deadline still holds");
        assert!(resumed.lock().unwrap().is_empty(), "closed, not served again");
    }

    #[tokio::test(start_paused = true)]
    async fn once_the_drain_starts_no_connection_stays_past_the_grace() {
        let resumed = Arc::new(Mutex::new(Vec::new()));
        let drain = Arc::new(Latch::default());
        let lot = ParkingLot::start(drain.clone(), Duration::from_secs(1)).unwrap();
        let (mut clients, mut conns) = pairs(2, &resumed).await;
        let far = Instant::now() + Duration::from_secs(3600);
        assert!(lot.park(conns.remove(0), far).is_ok());
        settle().await;
        let started = Instant::now();
        drain.start();
        settle().await;
        // Parked after the drain started: the same grace bounds it.
        assert!(lot.park(conns.remove(0), far).is_ok());
        tokio::time::sleep_until(started + Duration::from_millis(999)).await;
        settle().await;
        let mut byte = [0; 1];
        let open = tokio::time::timeout(Duration::ZERO, clients[0].read(&mut byte)).await;
        assert!(open.is_err(), "given the whole grace");
        tokio::time::sleep_until(started + Duration::from_secs(1)).await;
        settle().await;
        for client in &mut clients {
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
        }
    }

    #[tokio::test]
    async fn the_table_reuses_its_lowest_free_row_and_gives_back_its_end() {
        let resumed = Arc::new(Mutex::new(Vec::new()));
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
        let (slots, free, deadlines) = (Vec::new(), BTreeSet::new(), BTreeSet::new());
        let mut lot = Lot { slots, free, deadlines, tally: Arc::default() };
        let (_clients, conns) = pairs(4, &resumed).await;
        let far = Instant::now() + Duration::from_secs(3600);
        let mut conns = conns.into_iter();
        for conn in conns.by_ref().take(3) {
            lot.admit(&epoll, conn, far);
        }
        assert!(lot.leave(&epoll, 1).is_some());
        lot.shrink();
        assert_eq!(lot.slots.len(), 3, "a row in the middle stays, empty");
        lot.admit(&epoll, conns.next().unwrap(), far);
        assert!(lot.slots[1].as_ref().is_some_and(|p| p.conn.number == 3), "the hole is filled");
        for key in [2, 0, 1] {
            assert!(lot.leave(&epoll, key).is_some());
            lot.shrink();
        }
        assert_eq!((lot.slots.len(), lot.free.len(), lot.deadlines.len()), (0, 0, 0));
        assert_eq!(lot.tally.held.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_lot_whose_handles_are_gone_closes_what_it_holds() {
        let resumed = Arc::new(Mutex::new(Vec::new()));
        let lot = ParkingLot::start(Arc::new(Latch::default()), Duration::from_secs(1)).unwrap();
        let (mut clients, mut conns) = pairs(1, &resumed).await;
        assert!(lot.park(conns.remove(0), Instant::now() + Duration::from_secs(3600)).is_ok());
        drop(lot);
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), clients[0].read_to_end(&mut rest));
        closed.await.expect("closed").unwrap();
        assert!(rest.is_empty());
    }
}
