//! The first reader of every byte a client sends over HTTP/1.1, before a server parses it.
//!
//! It follows the framing of each request head and body as the bytes arrive, parsing heads
//! with httparse (hyper's own parser), for two jobs:
//!
//! - **Smuggling**: a request with both Transfer-Encoding and Content-Length may be framed
//!   one way by us and another by a hop before us (RFC 9112 §6.3, §11.2). hyper lets
//!   Transfer-Encoding win, so hyper's view is safe, but the request is still ambiguous: its
//!   index is recorded and the request handler refuses it.
//! - **Heads the sidecar refuses itself**: too large, too many fields, a bare LF, an invalid
//!   or conflicting Content-Length, a Transfer-Encoding that does not end in chunked, or
//!   anything else httparse rejects. Such a head never reaches hyper (which would answer
//!   with a bare 400 or 431, or pass a bare LF on): the connection's reader (`client_io`)
//!   withholds it, and the request handler answers the refusal with a labelled response,
//!   in its turn after the responses before it.
//!
//! The parse of the last head it read whole is kept (`ScannedHead`): the own HTTP/1.1
//! server (`h1_server`) takes the parts from there rather than parse the same bytes again.

use std::mem::MaybeUninit;
use std::time::Duration;

use super::framing::{Framing, MAX_HEADERS, Refusal};
use super::headers::{Span, decimal, offset_in};

/// A chunk-size line longer than this is not followed (hyper refuses long extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// The longest head whose parse is kept for the own server (`ScannedHead`): the usual
/// heads, without keeping a large one's copy for the rest of the connection.
const MAX_KEPT_HEAD: usize = 1024;
/// The first bytes of every HTTP/2 connection with prior knowledge (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The part of the HTTP/2 connection preface that reads like a request head.
const H2_PREFACE_HEAD: &[u8] = H2_PREFACE.split_at(18).0;

/// What became of the bytes fed to the scanner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fed {
    /// Followed to their end: they may go on (but for a head under way, which is held).
    Passed,
    /// The head that starts `before` bytes in is refused: nothing from there goes on.
    Refused { before: usize },
    /// An upgrade request ends `before` bytes in: what follows waits for its answer.
    Held { before: usize },
}

/// Where the parts of a parsed request head lie in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadParts {
    /// The head's length, its final CRLF included.
    pub len: usize,
    /// Offset and length of the method, then of the request target.
    pub method: (usize, usize),
    pub target: (usize, usize),
    /// The minor version: 1 for HTTP/1.1.
    pub version: u8,
}

/// Where httparse found the parts of `head` (the whole head, `len` bytes) in `req`, and each
/// field's in `fields`; `None` if a part lies outside `head`.
pub fn locate(
    head: &[u8],
    req: &httparse::Request<'_, '_>,
    fields: &mut Vec<Span>,
) -> Option<HeadParts> {
    let span = |part: &[u8]| offset_in(head, part).map(|at| (at, part.len()));
    let method = span(req.method?.as_bytes())?;
    let target = span(req.path?.as_bytes())?;
    let version = req.version?;
    fields.clear();
    for field in req.headers.iter() {
        let (name, value) = (span(field.name.as_bytes())?, span(field.value)?);
        fields.push((name.0, name.1, value.0, value.1));
    }
    Some(HeadParts { len: head.len(), method, target, version })
}

/// The last request head scanned whole, and where its parts lie, so that the own server
/// (`h1_server`) need not parse the same bytes again. It holds only for a head with these
/// very bytes: httparse, given the same bytes, finds the same parts.
#[derive(Debug, Default)]
pub struct ScannedHead {
    bytes: Vec<u8>,
    parts: HeadParts,
    fields: Vec<Span>,
}

impl ScannedHead {
    /// Where the parts of the head at the start of `buf` lie, if it is this head.
    pub fn found_at_start_of(&self, buf: &[u8]) -> Option<(HeadParts, &[Span])> {
        (!self.bytes.is_empty() && buf.starts_with(&self.bytes))
            .then_some((self.parts, &self.fields[..]))
    }

    /// Keeps where the parts of `head` lie, as httparse found them in `req`.
    fn keep(&mut self, head: &[u8], req: &httparse::Request<'_, '_>) {
        self.bytes.clear();
        if head.len() > MAX_KEPT_HEAD {
            return;
        }
        if let Some(parts) = locate(head, req, &mut self.fields) {
            self.parts = parts;
            self.bytes.extend_from_slice(head);
        }
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
    /// Not HTTP/1.1 framing any more (HTTP/2, an upgrade, or a body hyper will refuse).
    Off,
    /// A head was refused: nothing after it is read for the service.
    Refused,
    /// After a request that asked to switch protocols: the next bytes are held until its
    /// answer says whether they are the new protocol or request `next`.
    AwaitSwitch {
        next: u64,
    },
}

/// Follows the request framing of a client stream as it is read.
pub struct FramingScanner {
    scan: Scan,
    scanned: ScannedHead,
    max_head: usize,
    /// The request whose body is being followed asked to switch protocols: what follows
    /// its body waits for the answer.
    switch_after_body: bool,
}

impl FramingScanner {
    pub fn new(max_head: usize) -> Self {
        FramingScanner {
            scan: Scan::Head { buf: Vec::new(), index: 0 },
            scanned: ScannedHead::default(),
            max_head,
            switch_after_body: false,
        }
    }

    /// A scanner between requests, the next head being request `index` of its connection.
    pub fn resumed(max_head: usize, index: u64) -> Self {
        FramingScanner { scan: Scan::Head { buf: Vec::new(), index }, ..Self::new(max_head) }
    }

    /// The index of the next request, when between requests with nothing under way.
    pub fn next_index(&self) -> Option<u64> {
        match &self.scan {
            Scan::Head { buf, index } if buf.is_empty() && !self.switch_after_body => Some(*index),
            _ => None,
        }
    }

    /// The last request head scanned whole.
    pub fn scanned(&self) -> &ScannedHead {
        &self.scanned
    }

    pub fn is_refused(&self) -> bool {
        matches!(self.scan, Scan::Refused)
    }

    /// Between requests: no head, body or trailers under way, nothing held or refused.
    pub fn at_boundary(&self) -> bool {
        matches!(&self.scan, Scan::Head { buf, .. } if buf.is_empty())
    }

    /// The index of a head that has begun but not ended, and how many of its bytes were
    /// fed: all of them the last bytes fed.
    pub fn head_under_way(&self) -> Option<(u64, usize)> {
        match &self.scan {
            Scan::Head { buf, index } if !buf.is_empty() => Some((*index, buf.len())),
            _ => None,
        }
    }

    /// The head under way did not arrive whole within the header timeout: it is refused.
    pub fn time_out(&mut self, shared: &Framing, timeout: Duration) {
        if let Scan::Head { index, .. } = self.scan {
            shared.refuse(index, Refusal::HeaderTimeout(timeout));
            self.scan = Scan::Refused;
        }
    }

    /// Follows `data`, the next bytes read.
    pub fn feed(&mut self, shared: &Framing, data: &[u8]) -> Fed {
        let mut rest = data;
        while !rest.is_empty() {
            let offset = data.len() - rest.len();
            let (next, used) = match std::mem::replace(&mut self.scan, Scan::Off) {
                Scan::Off => {
                    self.scan = Scan::Off;
                    return Fed::Passed;
                }
                Scan::Refused => {
                    self.scan = Scan::Refused;
                    return Fed::Refused { before: offset };
                }
                Scan::AwaitSwitch { next } => {
                    self.scan = Scan::AwaitSwitch { next };
                    return Fed::Held { before: offset };
                }
                // Empty lines before a request line are skipped, as hyper does (RFC 9112 §2.2).
                Scan::Head { buf, index } if buf.is_empty() && matches!(rest[0], b'\r' | b'\n') => {
                    let skip = rest.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
                    (Scan::Head { buf, index }, skip)
                }
                // The usual case: a whole head in one read, scanned where it lies.
                Scan::Head { buf, index } if buf.is_empty() => match self.head_end(&[], rest) {
                    Err(why) => return self.refused(shared, index, why, offset),
                    Ok(Some(end)) => match self.after_head(shared, &rest[..end], index) {
                        Ok(scan) => (scan, end),
                        Err(why) => return self.refused(shared, index, why, offset),
                    },
                    Ok(None) => {
                        shared.set_partial_head(true);
                        (Scan::Head { buf: rest.to_vec(), index }, rest.len())
                    }
                },
                Scan::Head { mut buf, index } => {
                    let start = buf.len();
                    match self.head_end(&buf, rest) {
                        Err(why) => return self.refused(shared, index, why, 0),
                        Ok(None) => {
                            buf.extend_from_slice(rest);
                            (Scan::Head { buf, index }, rest.len())
                        }
                        Ok(Some(end)) => {
                            buf.extend_from_slice(&rest[..end]);
                            shared.set_partial_head(false);
                            match self.after_head(shared, &buf, index) {
                                Ok(scan) => (scan, buf.len() - start),
                                Err(why) => return self.refused(shared, index, why, 0),
                            }
                        }
                    }
                }
                Scan::Fixed { remaining, next } => {
                    let used = remaining.min(rest.len() as u64);
                    let left = remaining - used;
                    let scan = if left == 0 {
                        self.body_ended(next)
                    } else {
                        Scan::Fixed { remaining: left, next }
                    };
                    (scan, used as usize)
                }
                Scan::ChunkData { remaining, next } => {
                    let used = remaining.min(rest.len() as u64);
                    let left = remaining - used;
                    let scan = if left == 0 {
                        Scan::ChunkSize { buf: Vec::new(), next }
                    } else {
                        Scan::ChunkData { remaining: left, next }
                    };
                    (scan, used as usize)
                }
                // A malformed chunk is hyper's to find: the request is under way by then,
                // and ends as a failed request body.
                Scan::ChunkSize { mut buf, next } => match rest.iter().position(|&b| b == b'\n') {
                    None if buf.len() + rest.len() > MAX_CHUNK_LINE => (Scan::Off, rest.len()),
                    None => {
                        buf.extend_from_slice(rest);
                        (Scan::ChunkSize { buf, next }, rest.len())
                    }
                    Some(at) => {
                        buf.extend_from_slice(&rest[..=at]);
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
                    buf.extend_from_slice(rest);
                    let done = if buf.starts_with(b"\r\n") {
                        Some(2)
                    } else {
                        find(&buf[start..], b"\r\n\r\n").map(|at| start + at + 4)
                    };
                    match done {
                        Some(end) => {
                            let used = rest.len() - (buf.len() - end);
                            (self.body_ended(next), used)
                        }
                        None if buf.len() > self.max_head => (Scan::Off, rest.len()),
                        None => (Scan::Trailers { buf, next }, rest.len()),
                    }
                }
            };
            self.scan = next;
            rest = &rest[used..];
        }
        Fed::Passed
    }

    /// What comes after a request body: the next head or, after a request that asked to
    /// switch protocols, the wait for its answer.
    fn body_ended(&mut self, next: u64) -> Scan {
        if std::mem::take(&mut self.switch_after_body) {
            Scan::AwaitSwitch { next }
        } else {
            Scan::Head { buf: Vec::new(), index: next }
        }
    }

    fn refused(&mut self, shared: &Framing, index: u64, why: Refusal, before: usize) -> Fed {
        shared.refuse(index, why);
        self.scan = Scan::Refused;
        Fed::Refused { before }
    }

    pub fn awaiting_switch(&self) -> bool {
        matches!(self.scan, Scan::AwaitSwitch { .. })
    }

    /// The upgrade request awaited was answered: what follows is the new protocol (not
    /// followed any more), or the next request.
    pub fn switch_answered(&mut self, switched: bool) {
        if let Scan::AwaitSwitch { next } = self.scan {
            self.scan =
                if switched { Scan::Off } else { Scan::Head { buf: Vec::new(), index: next } };
        }
    }

    /// Where the head continued by `data` ends in `data`, if it does; refuses a head that
    /// is too large or has a bare LF. `so_far` is the part that arrived before.
    fn head_end(&self, so_far: &[u8], data: &[u8]) -> Result<Option<usize>, Refusal> {
        // The last bytes of what came before, so that an end or a CRLF split across reads
        // is seen.
        let tail = &so_far[so_far.len().saturating_sub(3)..];
        let mut end = None;
        // Only the line ends matter: jump from one LF to the next.
        for i in memchr::memchr_iter(b'\n', data) {
            let prev = if i > 0 { Some(data[i - 1]) } else { tail.last().copied() };
            if prev != Some(b'\r') {
                // RFC 9112 §2.2 lets a recipient take a bare LF as a line end; hops that
                // do not would frame this request differently, so it is refused.
                return Err(Refusal::Malformed("a line ends in a bare LF"));
            }
            let ends_head = if i >= 3 {
                &data[i - 3..=i] == b"\r\n\r\n"
            } else {
                let mut last4 = tail.to_vec();
                last4.extend_from_slice(&data[..=i]);
                last4.ends_with(b"\r\n\r\n")
            };
            if ends_head {
                end = Some(i + 1);
                break;
            }
        }
        if so_far.len() + end.unwrap_or(data.len()) > self.max_head {
            return Err(Refusal::HeadTooLarge { limit: self.max_head });
        }
        Ok(end)
    }

    /// Decides how the body after a complete head is framed, or refuses the head.
    fn after_head(&mut self, shared: &Framing, head: &[u8], index: u64) -> Result<Scan, Refusal> {
        if index == 0 && head == H2_PREFACE_HEAD {
            return Ok(Scan::Off);
        }
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(head, &mut headers) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(Refusal::Malformed("incomplete head")),
            Err(httparse::Error::TooManyHeaders) => return Err(Refusal::TooManyHeaders),
            Err(e) => return Err(Refusal::Malformed(parse_error(e))),
        }
        let mut coding = Codings::default();
        let mut length = None;
        let mut upgrade = req.method == Some("CONNECT");
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                coding.add(h.value);
            } else if h.name.eq_ignore_ascii_case("content-length") {
                // A list of equal values is one length (RFC 9110 §8.6); anything else is
                // refused, as hyper would.
                for part in h.value.split(|&b| b == b',') {
                    let n = decimal(part.trim_ascii())
                        .ok_or(Refusal::Malformed("an invalid Content-Length"))?;
                    if *length.get_or_insert(n) != n {
                        return Err(Refusal::Malformed("conflicting Content-Length values"));
                    }
                }
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        let chunked_last = coding.check(req.version)?;
        if chunked_last.is_some() && length.is_some() {
            shared.mark_ambiguous(index);
        }
        let next = index + 1;
        // What follows a request that asks to switch, after its body if it has one, waits
        // for the answer (see `AwaitSwitch`): a request whose switch is declined or refused
        // is followed by the next request, scanned as any other.
        let has_body = chunked_last.is_some() || length.is_some_and(|n| n > 0);
        if upgrade {
            shared.await_upgrade(index);
        }
        self.switch_after_body = upgrade && has_body;
        self.scanned.keep(head, &req);
        Ok(match (chunked_last, length) {
            (Some(_), _) => Scan::ChunkSize { buf: Vec::new(), next },
            (None, Some(n)) if n > 0 => Scan::Fixed { remaining: n, next },
            (None, _) if upgrade => Scan::AwaitSwitch { next },
            (None, _) => Scan::Head { buf: Vec::new(), index: next },
        })
    }
}

/// The transfer codings of a request, from every Transfer-Encoding field in order.
#[derive(Default)]
struct Codings {
    present: bool,
    any: bool,
    chunked_last: bool,
    chunked_before_last: bool,
    other: bool,
}

impl Codings {
    fn add(&mut self, value: &[u8]) {
        self.present = true;
        for coding in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if coding.is_empty() {
                continue;
            }
            self.any = true;
            self.chunked_before_last |= self.chunked_last;
            self.chunked_last = coding.eq_ignore_ascii_case(b"chunked");
            self.other |= !self.chunked_last;
        }
    }

    /// Whether the body is chunked (`None`: no Transfer-Encoding), or why the request is
    /// refused (RFC 9112 §6.1, §6.3, §7).
    fn check(&self, version: Option<u8>) -> Result<Option<bool>, Refusal> {
        if !self.present {
            return Ok(None);
        }
        if version == Some(0) {
            return Err(Refusal::Malformed("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if !self.any || !self.chunked_last {
            // The body's length would be unknowable.
            return Err(Refusal::Malformed("Transfer-Encoding does not end in chunked"));
        }
        if self.chunked_before_last {
            return Err(Refusal::Malformed("chunked is applied more than once"));
        }
        if self.other {
            return Err(Refusal::UnsupportedCoding);
        }
        Ok(Some(true))
    }
}

/// httparse's complaint, for the client.
fn parse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "an invalid header field name (or an obsolete line folding)",
        httparse::Error::HeaderValue => "an invalid header field value",
        httparse::Error::NewLine => "an invalid line ending",
        httparse::Error::Token => "an invalid method or request target",
        httparse::Error::Version => "an unsupported HTTP version",
        httparse::Error::Status | httparse::Error::TooManyHeaders => "an invalid request line",
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};

    use super::*;
    use crate::proxy::framing::{DEFAULT_MAX_HEAD_BYTES, Verdict};

    /// Feeds `input` in pieces of `step` bytes; returns which request was ambiguous, which
    /// was refused and why, and how many bytes were passed on.
    fn scan(input: &[u8], step: usize) -> (Option<u64>, Option<(u64, Refusal)>, usize) {
        let shared = Framing::default();
        let mut s = FramingScanner::new(1024);
        let mut passed = 0;
        for piece in input.chunks(step) {
            match s.feed(&shared, piece) {
                Fed::Refused { before } | Fed::Held { before } => {
                    passed += before;
                    break;
                }
                Fed::Passed => passed += piece.len(),
            }
        }
        let (at, refusal) = shared.recorded();
        (at, refusal, passed)
    }

    const STEPS: [usize; 5] = [1, 3, 7, 64, usize::MAX];

    #[test]
    fn flags_te_with_cl_at_the_right_request() {
        let input = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
            POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nContent-Leng\
            POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n\
            POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        for step in STEPS {
            assert_eq!(scan(input, step), (Some(3), None, input.len()), "step {step}");
        }
    }

    #[test]
    fn bodies_that_look_like_heads_do_not_confuse_it() {
        let body = b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut input =
            format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        input.extend_from_slice(body);
        input.extend_from_slice(b"\r\nGET /ok HTTP/1.1\r\n\r\n");
        assert_eq!(scan(&input, 5), (None, None, input.len()));
    }

    #[test]
    fn stops_at_http2_and_holds_what_follows_an_upgrade_body() {
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0";
        assert_eq!(scan(h2, 4), (None, None, h2.len()));
        // An upgrade with a body is followed through its body; what comes after it waits.
        let sized = &b"POST /up HTTP/1.1\r\nUpgrade: x\r\nContent-Length: 1\r\n\r\na"[..];
        let chunked =
            &b"POST /up HTTP/1.1\r\nUpgrade: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"[..];
        let next = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for up in [sized, chunked] {
            for step in STEPS {
                let input = [up, next].concat();
                assert_eq!(scan(&input, step), (None, None, up.len()), "step {step}");
            }
        }
    }

    /// Feeds a bodiless upgrade request and what follows it, then answers it.
    fn after_upgrade(switched: bool) -> (Framing, FramingScanner, Fed) {
        let shared = Framing::default();
        let mut s = FramingScanner::new(1024);
        let head =
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        let next = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let fed = s.feed(&shared, &[&head[..], next].concat());
        assert_eq!(fed, Fed::Held { before: head.len() });
        assert_eq!(s.feed(&shared, b"more"), Fed::Held { before: 0 }, "still held");
        let verdict = shared.next_request();
        assert_eq!(verdict, Verdict::Serve { answer_switch: true }, "the handler must answer");
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(shared.poll_upgrade(&mut cx), Poll::Pending);
        shared.answered_upgrade(switched);
        assert_eq!(shared.poll_upgrade(&mut cx), Poll::Ready(switched));
        s.switch_answered(switched);
        let fed = s.feed(&shared, next);
        (shared, s, fed)
    }

    #[test]
    fn what_follows_an_upgrade_waits_for_its_answer() {
        // Switched: the rest is the new protocol, and is not followed.
        let (shared, _, fed) = after_upgrade(true);
        assert_eq!((fed, shared.recorded().0), (Fed::Passed, None));
        // Not switched: the rest is the next request, scanned as any other.
        let (shared, _, fed) = after_upgrade(false);
        assert_eq!((fed, shared.recorded().0), (Fed::Passed, Some(1)));
    }

    /// Scans a good request followed by `bad`, split in each way.
    fn refused_second(bad: &[u8]) -> Vec<(Option<(u64, Refusal)>, usize)> {
        let input = [&b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"[..], bad].concat();
        STEPS
            .iter()
            .map(|&step| {
                let (_, refusal, passed) = scan(&input, step);
                (refusal, passed)
            })
            .collect()
    }

    fn expect(bad: &[u8], why: Refusal) {
        let good_len = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".len();
        for (step, (refusal, passed)) in STEPS.iter().zip(refused_second(bad)) {
            assert_eq!(refusal, Some((1, why)), "step {step}: {:?}", String::from_utf8_lossy(bad));
            // Split reads pass on the start of the bad head before it is known to be bad;
            // hyper holds that part unparsed.
            if *step == usize::MAX {
                assert_eq!(passed, good_len, "only the good request is passed on");
            }
        }
    }

    #[test]
    fn refuses_heads_over_the_limit() {
        let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(1000));
        expect(big.as_bytes(), Refusal::HeadTooLarge { limit: 1024 });
        // Also when its end never comes.
        expect(
            format!("GET / HTTP/1.1\r\nX: {}", "b".repeat(2000)).as_bytes(),
            Refusal::HeadTooLarge { limit: 1024 },
        );
        // At the limit exactly, it passes.
        let head = "GET / HTTP/1.1\r\nHost: x\r\nX: \r\n\r\n";
        let fill = "a".repeat(1024 - head.len());
        let exact = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {fill}\r\n\r\n");
        assert_eq!(exact.len(), 1024);
        assert_eq!(scan(exact.as_bytes(), 7), (None, None, 1024));
    }

    #[test]
    fn refuses_too_many_fields() {
        let fields: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{fields}\r\n");
        let shared = Framing::default();
        let mut s = FramingScanner::new(DEFAULT_MAX_HEAD_BYTES);
        assert_eq!(s.feed(&shared, head.as_bytes()), Fed::Refused { before: 0 });
        assert_eq!(shared.recorded().1.map(|(_, why)| why), Some(Refusal::TooManyHeaders));
        let fields: String = (1..MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
        let mut s = FramingScanner::new(DEFAULT_MAX_HEAD_BYTES);
        assert_eq!(s.feed(&Framing::default(), head.as_bytes()), Fed::Passed, "exactly 100 pass");
    }

    #[test]
    fn refuses_what_other_hops_could_frame_differently() {
        let m = Refusal::Malformed;
        expect(b"GET / HTTP/1.1\nHost: x\r\n\r\n", m("a line ends in a bare LF"));
        expect(b"GET / HTTP/1.1\r\nHost: x\n\n", m("a line ends in a bare LF"));
        expect(
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            m("conflicting Content-Length values"),
        );
        expect(
            b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
            m("conflicting Content-Length values"),
        );
        for cl in ["+5", "-1", "0x5", "", "5 5", "99999999999999999999999"] {
            let bad = format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
            expect(bad.as_bytes(), m("an invalid Content-Length"));
        }
        for te in ["gzip", "chunked, gzip", "xchunked", "identity"] {
            let bad = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n");
            expect(bad.as_bytes(), m("Transfer-Encoding does not end in chunked"));
        }
        expect(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
            m("an invalid header field name (or an obsolete line folding)"),
        );
        expect(
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            m("an invalid header field name (or an obsolete line folding)"),
        );
        expect(b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", m("an invalid header field value"));
    }

    #[test]
    fn codings_other_than_one_final_chunked_are_refused() {
        let m = Refusal::Malformed;
        let te = |v: &str| format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {v}\r\n\r\n");
        expect(te("gzip, chunked").as_bytes(), Refusal::UnsupportedCoding);
        expect(te("chunked, chunked").as_bytes(), m("chunked is applied more than once"));
        expect(te("").as_bytes(), m("Transfer-Encoding does not end in chunked"));
        expect(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            Refusal::UnsupportedCoding,
        );
        expect(
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            m("Transfer-Encoding in an HTTP/1.0 request"),
        );
        expect(
            b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
            m("an invalid header field name (or an obsolete line folding)"),
        );
    }

    #[test]
    fn equal_lengths_and_padded_codings_are_one_framing() {
        let ok = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\nhello\
            POST / HTTP/1.1\r\nTransfer-Encoding: ,  Chunked \r\n\r\n0\r\n\r\n\
            GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for step in STEPS {
            assert_eq!(scan(ok, step), (None, None, ok.len()), "step {step}");
        }
    }
}
