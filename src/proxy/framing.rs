//! What the scanner of a client's bytes (`scanner`), the connection's reader and timer, and
//! the request handler share about one HTTP/1.1 connection: which request is ambiguous or
//! refused and why, how many have been served, how many bytes have been read, the answer
//! to a request that asked to switch protocols, and whether the connection is idle.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;

use super::activity::Activity;
use super::error::ProxyError;

const NONE: u64 = u64::MAX;

/// Header fields a request head may carry (Envoy's and hyper's default).
pub const MAX_HEADERS: usize = 100;
/// Request head size limit by default, as Envoy's `max_request_headers_kb`.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 60 * 1024;

/// Why the sidecar refuses a request head before hyper reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    HeadTooLarge {
        limit: usize,
    },
    TooManyHeaders,
    Malformed(&'static str),
    /// A transfer coding other than chunked, which the sidecar does not decode.
    UnsupportedCoding,
    /// The head did not arrive whole within the header timeout.
    HeaderTimeout(Duration),
}

/// A refused head is answered as the failure kind it is.
impl From<Refusal> for ProxyError {
    fn from(why: Refusal) -> Self {
        match why {
            Refusal::HeadTooLarge { limit } => ProxyError::RequestHeadTooLarge { limit },
            Refusal::TooManyHeaders => ProxyError::TooManyRequestHeaders { limit: MAX_HEADERS },
            Refusal::Malformed(what) => ProxyError::MalformedRequest(what),
            Refusal::UnsupportedCoding => ProxyError::UnsupportedTransferCoding,
            Refusal::HeaderTimeout(after) => ProxyError::ClientHeaderTimeout(after),
        }
    }
}

/// What the request handler must do with the next request hyper hands it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// To be served; with `answer_switch`, the reader holds what follows until the handler
    /// says whether the response switched protocols (`Framing::answered_upgrade`).
    Serve { answer_switch: bool },
    /// Framed both ways (Transfer-Encoding and Content-Length).
    Ambiguous,
    /// The head was refused; what hyper hands over in its place is a stand-in.
    Refused(Refusal),
}

/// What the scanner, the connection's timer and the request handler share about one
/// connection.
#[derive(Debug)]
pub struct Framing {
    /// Index of the first ambiguous request, or NONE.
    ambiguous_at: AtomicU64,
    /// Index of the refused request head, or NONE; why is in `refusal`.
    refused_at: AtomicU64,
    refusal: OnceLock<Refusal>,
    /// Requests handed to the service so far.
    served: AtomicU64,
    /// Bytes read from the client so far, which the connection's timer watches.
    read: AtomicU64,
    /// Part of a request head has arrived, not yet all of it.
    partial_head: AtomicBool,
    /// Index of the upgrade request that the reader holds the next bytes behind, or NONE;
    /// its answer in `upgrade`: `UNANSWERED`, `SWITCHED` or `NOT_SWITCHED`.
    upgrade_at: AtomicU64,
    upgrade: AtomicU8,
    upgrade_waker: AtomicWaker,
    /// Whether the connection waits for its next request with nothing under way.
    pub activity: Activity,
}

const UNANSWERED: u8 = 0;
const SWITCHED: u8 = 1;
const NOT_SWITCHED: u8 = 2;

impl Default for Framing {
    fn default() -> Self {
        Framing {
            ambiguous_at: AtomicU64::new(NONE),
            refused_at: AtomicU64::new(NONE),
            refusal: OnceLock::new(),
            served: AtomicU64::new(0),
            read: AtomicU64::new(0),
            partial_head: AtomicBool::new(false),
            upgrade_at: AtomicU64::new(NONE),
            upgrade: AtomicU8::new(UNANSWERED),
            upgrade_waker: AtomicWaker::new(),
            activity: Activity::default(),
        }
    }
}

impl Framing {
    /// A connection's framing as it stood when it was parked between requests: only the
    /// count of requests carries over, as nothing else is under way then (the byte count
    /// is only ever compared within one hyper connection).
    pub fn resumed(served: u64) -> Self {
        let framing = Framing { served: AtomicU64::new(served), ..Self::default() };
        framing.activity.expect_bytes();
        framing
    }

    /// Requests handed to the service so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Acquire)
    }

    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    pub(crate) fn count_read(&self, n: usize) {
        self.read.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Called once per request, in order: what to do with it.
    pub fn next_request(&self) -> Verdict {
        let index = self.served.fetch_add(1, Ordering::AcqRel);
        if self.refused_at.load(Ordering::Acquire) == index
            && let Some(why) = self.refusal.get()
        {
            return Verdict::Refused(*why);
        }
        if self.ambiguous_at.load(Ordering::Acquire) == index {
            return Verdict::Ambiguous;
        }
        Verdict::Serve { answer_switch: self.upgrade_at.load(Ordering::Acquire) == index }
    }

    /// Records that request `index`'s head is refused (the first refusal only: nothing after
    /// it is read).
    pub(crate) fn refuse(&self, index: u64, why: Refusal) {
        if self.refusal.set(why).is_ok() {
            self.refused_at.store(index, Ordering::Release);
        }
    }

    /// Part of a request head has arrived, not yet all of it.
    pub fn partial_head(&self) -> bool {
        self.partial_head.load(Ordering::Relaxed)
    }

    pub(super) fn set_partial_head(&self, partial: bool) {
        self.partial_head.store(partial, Ordering::Relaxed);
    }

    /// Records that request `index` is framed both ways (the first such request only).
    pub(super) fn mark_ambiguous(&self, index: u64) {
        let _ =
            self.ambiguous_at.compare_exchange(NONE, index, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The request handler's word on the request served with `answer_switch` (one that asked
    /// to switch protocols, an Upgrade field or CONNECT): whether its response switched. What
    /// the client sent after it is held until then: the new protocol, or the next request.
    pub fn answered_upgrade(&self, switched: bool) {
        let answer = if switched { SWITCHED } else { NOT_SWITCHED };
        self.upgrade.store(answer, Ordering::Release);
        self.upgrade_waker.wake();
    }

    pub(super) fn await_upgrade(&self, index: u64) {
        self.upgrade.store(UNANSWERED, Ordering::Release);
        self.upgrade_at.store(index, Ordering::Release);
    }

    /// The first ambiguous request, and the refused one with why, as recorded so far.
    #[cfg(test)]
    pub(super) fn recorded(&self) -> (Option<u64>, Option<(u64, Refusal)>) {
        let at = self.ambiguous_at.load(Ordering::Acquire);
        let refused = self.refused_at.load(Ordering::Acquire);
        let refusal = (refused != NONE).then(|| (refused, *self.refusal.get().unwrap()));
        ((at != NONE).then_some(at), refusal)
    }

    /// Whether the upgrade request awaited switched protocols, once answered.
    pub(crate) fn poll_upgrade(&self, cx: &mut Context<'_>) -> Poll<bool> {
        self.upgrade_waker.register(cx.waker());
        match self.upgrade.load(Ordering::Acquire) {
            UNANSWERED => Poll::Pending,
            answer => Poll::Ready(answer == SWITCHED),
        }
    }
}
