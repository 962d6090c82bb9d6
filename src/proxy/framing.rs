//! Request smuggling guard for HTTP/1.1 clients.
//!
//! A request with both Transfer-Encoding and Content-Length may be framed one way by us and
//! another by a hop before us (RFC 9112 §6.3, §11.2). hyper lets Transfer-Encoding win and
//! drops Content-Length before the request reaches us, so that hyper's view is safe, but the
//! request is still ambiguous and must be refused. This stream wrapper follows the framing
//! of each request head as the bytes arrive, parsing heads with httparse (hyper's own
//! parser), and records which request on the connection was ambiguous.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::tap::Tap;

/// A head larger than this is hyper's to refuse; scanning stops.
const MAX_HEAD: usize = 64 * 1024;
const NONE: u64 = u64::MAX;

/// What the scanner and the request handler share about one connection.
#[derive(Debug)]
pub struct Framing {
    /// Index of the first ambiguous request, or NONE.
    ambiguous_at: AtomicU64,
    /// Requests handed to the service so far.
    served: AtomicU64,
    /// Bytes read from the client so far, which the connection's timer watches.
    read: AtomicU64,
}

impl Default for Framing {
    fn default() -> Self {
        Framing {
            ambiguous_at: AtomicU64::new(NONE),
            served: AtomicU64::new(0),
            read: AtomicU64::new(0),
        }
    }
}

impl Framing {
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

    /// Called once per request, in order: whether this request's framing was ambiguous.
    pub fn next_request_is_ambiguous(&self) -> bool {
        let index = self.served.fetch_add(1, Ordering::AcqRel);
        self.ambiguous_at.load(Ordering::Acquire) == index
    }
}

enum Scan {
    Head {
        buf: Vec<u8>,
        index: u64,
    },
    Fixed {
        remaining: u64,
        next: u64,
    },
    ChunkSize {
        buf: Vec<u8>,
        next: u64,
    },
    ChunkData {
        remaining: u64,
        next: u64,
    },
    Trailers {
        buf: Vec<u8>,
        next: u64,
    },
    /// Not HTTP/1.1 framing any more (HTTP/2, an upgrade, or input hyper will refuse).
    Off,
}

/// Follows the request framing of a client stream as it is read (through a `ReadTap`).
pub struct FramingScanner {
    scan: Scan,
    shared: Arc<Framing>,
}

impl FramingScanner {
    pub fn new(shared: Arc<Framing>) -> Self {
        FramingScanner { scan: Scan::Head { buf: Vec::new(), index: 0 }, shared }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let (next, used) = match std::mem::replace(&mut self.scan, Scan::Off) {
                Scan::Off => return,
                // The usual case: a whole head in one read, scanned where it lies.
                Scan::Head { buf, index } if buf.is_empty() => match find(data, b"\r\n\r\n") {
                    Some(at) => (self.after_head(&data[..at + 4], index), at + 4),
                    None if data.len() > MAX_HEAD => (Scan::Off, data.len()),
                    None => (Scan::Head { buf: data.to_vec(), index }, data.len()),
                },
                Scan::Head { mut buf, index } => {
                    let start = buf.len().saturating_sub(3);
                    buf.extend_from_slice(data);
                    match find(&buf[start..], b"\r\n\r\n") {
                        None if buf.len() > MAX_HEAD => (Scan::Off, data.len()),
                        None => (Scan::Head { buf, index }, data.len()),
                        Some(at) => {
                            let end = start + at + 4;
                            let used = data.len() - (buf.len() - end);
                            (self.after_head(&buf[..end], index), used)
                        }
                    }
                }
                Scan::Fixed { remaining, next } => {
                    let used = remaining.min(data.len() as u64);
                    let rest = remaining - used;
                    let scan = if rest == 0 {
                        Scan::Head { buf: Vec::new(), index: next }
                    } else {
                        Scan::Fixed { remaining: rest, next }
                    };
                    (scan, used as usize)
                }
                Scan::ChunkData { remaining, next } => {
                    let used = remaining.min(data.len() as u64);
                    let rest = remaining - used;
                    let scan = if rest == 0 {
                        Scan::ChunkSize { buf: Vec::new(), next }
                    } else {
                        Scan::ChunkData { remaining: rest, next }
                    };
                    (scan, used as usize)
                }
                Scan::ChunkSize { mut buf, next } => match data.iter().position(|&b| b == b'\n') {
                    None if buf.len() + data.len() > 4096 => (Scan::Off, data.len()),
                    None => {
                        buf.extend_from_slice(data);
                        (Scan::ChunkSize { buf, next }, data.len())
                    }
                    Some(at) => {
                        buf.extend_from_slice(&data[..=at]);
                        let scan = match httparse::parse_chunk_size(&buf) {
                            Ok(httparse::Status::Complete((_, 0))) => {
                                Scan::Trailers { buf: Vec::new(), next }
                            }
                            Ok(httparse::Status::Complete((_, size))) => {
                                Scan::ChunkData { remaining: size.saturating_add(2), next }
                            }
                            _ => Scan::Off,
                        };
                        (scan, at + 1)
                    }
                },
                Scan::Trailers { mut buf, next } => {
                    let start = buf.len().saturating_sub(3);
                    buf.extend_from_slice(data);
                    let done = if buf.starts_with(b"\r\n") {
                        Some(2)
                    } else {
                        find(&buf[start..], b"\r\n\r\n").map(|at| start + at + 4)
                    };
                    match done {
                        Some(end) => {
                            let used = data.len() - (buf.len() - end);
                            (Scan::Head { buf: Vec::new(), index: next }, used)
                        }
                        None if buf.len() > MAX_HEAD => (Scan::Off, data.len()),
                        None => (Scan::Trailers { buf, next }, data.len()),
                    }
                }
            };
            self.scan = next;
            data = &data[used..];
        }
    }

    /// Decides how the body after a complete head is framed.
    fn after_head(&self, head: &[u8], index: u64) -> Scan {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
            return Scan::Off;
        }
        let mut chunked_last = None;
        let mut length = None;
        let mut upgrade = req.method == Some("CONNECT");
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
                chunked_last = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("content-length") {
                length =
                    std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<u64>().ok());
                if length.is_none() {
                    return Scan::Off;
                }
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        if chunked_last.is_some() && length.is_some() {
            let _ = self.shared.ambiguous_at.compare_exchange(
                NONE,
                index,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        let next = index + 1;
        match (chunked_last, length) {
            _ if upgrade => Scan::Off,
            (Some(true), _) => Scan::ChunkSize { buf: Vec::new(), next },
            (Some(false), _) => Scan::Off,
            (None, Some(n)) if n > 0 => Scan::Fixed { remaining: n, next },
            (None, _) => Scan::Head { buf: Vec::new(), index: next },
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Tap for FramingScanner {
    fn on_read(&mut self, bytes: &[u8]) {
        self.shared.count_read(bytes.len());
        if !matches!(self.scan, Scan::Off) {
            self.feed(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes and returns which request was ambiguous.
    fn scan(input: &[u8], step: usize) -> Option<u64> {
        let shared = Arc::new(Framing::default());
        let mut s = FramingScanner::new(shared.clone());
        for piece in input.chunks(step) {
            s.feed(piece);
        }
        let at = shared.ambiguous_at.load(Ordering::Acquire);
        (at != NONE).then_some(at)
    }

    #[test]
    fn flags_te_with_cl_at_the_right_request() {
        let input = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
            POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nContent-Leng\
            POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n\
            POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        for step in [1, 3, 7, 64, input.len()] {
            assert_eq!(scan(input, step), Some(3), "step {step}");
        }
    }

    #[test]
    fn bodies_that_look_like_heads_do_not_confuse_it() {
        let body = b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut input =
            format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        input.extend_from_slice(body);
        input.extend_from_slice(b"GET /ok HTTP/1.1\r\n\r\n");
        assert_eq!(scan(&input, 5), None);
    }

    #[test]
    fn stops_at_http2_and_upgrades() {
        assert_eq!(scan(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 4), None);
        let up = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\
            POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(scan(up, 9), None);
    }
}
