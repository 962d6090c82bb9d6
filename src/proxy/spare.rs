//! Per-request memory kept on each thread for the next request, in place of an allocation
//! and a free per request: the parts of a proxied HTTP/1.1 exchange that every request
//! builds and drops.
//!
//! - Header maps: each request builds two (its own and its response's). The larger of a
//!   map's two allocations (its entries: over a kilobyte for ten fields) is more than
//!   glibc's per-thread cache holds, so it takes malloc's slow paths, on memory gone cold
//!   among many connections. A map cleared and kept keeps its room, and is warm.
//! - Small pieces (heads, small bodies) copied out of a connection's read buffer: each was a
//!   buffer of its own, and a second allocation once sliced (the count its slices share).
//!   They are copied into a room shared by the thread's requests instead, freed once the
//!   last piece in it has been dropped, and used again from its start when it is.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

/// The most maps a thread keeps: enough for the requests it has under way at once in the
/// common case; a burst beyond them allocates as before.
const KEPT: usize = 16;
/// A map with room for more fields than this is dropped, not kept: an unusual request's
/// large map would otherwise hold its memory for good.
const MAX_ROOM: usize = 64;

/// The room that small pieces are copied into. A piece that is still held keeps the whole
/// room from being used again or freed: small, so that a long-lived piece holds little.
const ROOM: usize = 4096;
/// A larger piece is copied to a buffer of its own.
const MAX_PIECE: usize = 1024;

thread_local! {
    static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
    static PIECES: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// `piece`, copied.
pub fn copy(piece: &[u8]) -> Bytes {
    if piece.len() > MAX_PIECE {
        return Bytes::copy_from_slice(piece);
    }
    PIECES.with_borrow_mut(|room| {
        // `try_reclaim`: the room is used again from its start when no piece in it is held.
        if room.capacity() < piece.len() && !room.try_reclaim(piece.len()) {
            *room = BytesMut::with_capacity(ROOM);
        }
        room.extend_from_slice(piece);
        room.split().freeze()
    })
}

/// An empty map with room for `fields` fields, kept from an earlier request if there is one.
pub fn header_map(fields: usize) -> HeaderMap {
    match SPARE.with_borrow_mut(Vec::pop) {
        Some(mut map) => {
            map.reserve(fields);
            map
        }
        None => HeaderMap::with_capacity(fields),
    }
}

/// Keeps `map`, emptied, for the next request on this thread.
pub fn keep(mut map: HeaderMap) {
    if map.capacity() == 0 || map.capacity() > MAX_ROOM {
        return;
    }
    SPARE.with_borrow_mut(|spare| {
        // Cleared only when kept: a map past the few a thread keeps is just dropped.
        if spare.len() < KEPT {
            map.clear();
            spare.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use http::header::{self, HeaderValue};

    use super::*;

    fn kept() -> usize {
        SPARE.with_borrow(Vec::len)
    }

    /// Where `piece` lies, as an address.
    fn at(piece: &Bytes) -> usize {
        piece.as_ptr() as usize
    }

    /// Copies pieces of `MAX_PIECE` bytes, each dropped at once, until one lands at
    /// `start`; how many it took, if one did before the room had been gone through twice.
    fn copies_until_at(start: usize) -> Option<usize> {
        (1..=2 * ROOM / MAX_PIECE + 1).find(|_| at(&copy(&[1; MAX_PIECE])) == start)
    }

    #[test]
    fn pieces_share_a_room_that_is_used_again_once_none_is_held() {
        let first = copy(b"GET / HTTP/1.1\r\n\r\n");
        let second = copy(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(&first[..], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(&second[..], b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(at(&second), at(&first) + first.len(), "one room, one after the other");
        let start = at(&first);
        drop((first, second));
        // Nothing held: the first piece that does not fit in what is left of the room
        // starts it again.
        assert_eq!(copies_until_at(start), Some(ROOM / MAX_PIECE));
    }

    #[test]
    fn a_piece_still_held_keeps_its_room_from_being_used_again() {
        let first = copy(b"GET / HTTP/1.1\r\n\r\n");
        let start = at(&first);
        let held = first.slice(4..5);
        drop(first);
        assert_eq!(copies_until_at(start), None);
        assert_eq!(&held[..], b"/");
    }

    #[test]
    fn a_large_piece_is_copied_alone() {
        let large = vec![9; MAX_PIECE + 1];
        let small = copy(b"x");
        let piece = copy(&large);
        assert_eq!(&piece[..], &large[..]);
        assert_eq!(at(&copy(b"y")), at(&small) + 1, "the room goes on after it");
    }

    #[test]
    fn a_kept_map_comes_back_empty_with_its_room() {
        let mut map = header_map(10);
        let room = map.capacity();
        assert!(room >= 10);
        map.insert(header::HOST, HeaderValue::from_static("example.com"));
        map.append(header::ACCEPT, HeaderValue::from_static("a"));
        map.append(header::ACCEPT, HeaderValue::from_static("b"));
        keep(map);
        assert_eq!(kept(), 1);

        let again = header_map(4);
        assert_eq!(kept(), 0);
        assert!(again.is_empty());
        assert_eq!(again.get(header::HOST), None);
        assert_eq!(again.get_all(header::ACCEPT).iter().count(), 0);
        assert_eq!(again.capacity(), room);
    }

    #[test]
    fn a_kept_map_grows_for_a_request_with_more_fields() {
        keep(HeaderMap::with_capacity(2));
        let map = header_map(40);
        assert_eq!(kept(), 0);
        assert!(map.capacity() >= 40, "room for {}", map.capacity());
    }

    #[test]
    fn a_large_or_empty_map_is_not_kept_and_a_thread_keeps_a_few() {
        keep(HeaderMap::with_capacity(MAX_ROOM * 2));
        keep(HeaderMap::new());
        assert_eq!(kept(), 0);
        for _ in 0..KEPT + 5 {
            keep(HeaderMap::with_capacity(8));
        }
        assert_eq!(kept(), KEPT);
    }
}
