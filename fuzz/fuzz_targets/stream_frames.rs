//! The config stream as a sidecar reads it: NDJSON lines (`{"type":"snapshot",...}` or
//! `{"type":"keepalive"}`) arriving in frames cut anywhere.
//!
//! The first input byte chooses the frame size; the rest is the stream.
//!
//! Asserted: never a panic; one decision per complete line, the same however the bytes are
//! framed; a snapshot is applied only whole: the config applied holds exactly the policy
//! and windows the line carried, and a line with any invalid part, or with a field the
//! sidecar does not know, is refused; a message of an unknown type is ignored; and every
//! message the sidecar accepts survives the trip the controller gives it (serialized, then
//! read again), so what a controller holds always reaches the sidecar.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::config::follow::{Decoded, Lines, decode_line};
use portcullis::config::wire::StreamMessage;

fn decode_all(stream: &[u8], frame: usize) -> Vec<(Vec<u8>, Decoded)> {
    let mut lines = Lines::default();
    let mut out = Vec::new();
    for piece in stream.chunks(frame.max(1)) {
        lines.push(piece);
        while let Some(line) = lines.next_line() {
            let decoded = decode_line(&line);
            out.push((line.to_vec(), decoded));
        }
        assert!(!lines.overflowed());
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else { return };
    let decoded = decode_all(stream, usize::from(first));
    let whole = decode_all(stream, stream.len());
    assert_eq!(decoded.len(), stream.iter().filter(|b| **b == b'\n').count());
    assert_eq!(decoded.len(), whole.len());
    for ((line, d), (_, w)) in decoded.iter().zip(&whole) {
        assert_eq!(format!("{d:?}"), format!("{w:?}"), "framing changed the decision");
        let message = serde_json::from_slice::<StreamMessage>(line);
        match d {
            Decoded::Keepalive => assert!(matches!(message, Ok(StreamMessage::Keepalive))),
            Decoded::Ignored => assert!(message.is_err(), "a known message ignored"),
            Decoded::Config { version, config } => {
                let Ok(StreamMessage::Snapshot(ref snapshot)) = message else { panic!("{message:?}") };
                assert_eq!(*version, snapshot.version);
                let sent = &snapshot.config;
                assert_eq!(config.policy_name, sent.policy.as_ref().map(|p| p.name.clone()));
                let names: Vec<_> = config.windows.iter().map(|w| &w.name).collect();
                let sent_names: Vec<_> = sent.windows.iter().map(|w| &w.name).collect();
                assert_eq!(names, sent_names, "every window or none");
            }
            Decoded::Refused { reason, unknown_fields, .. } => {
                // Refused: unreadable, a field it does not know, or some part invalid.
                if let Ok(StreamMessage::Snapshot(snapshot)) = &message
                    && unknown_fields.is_empty()
                {
                    assert!(snapshot.config.to_config().is_err(), "refused a valid one: {reason}");
                }
            }
        }
        if let Ok(message) = message {
            // The controller writes what it holds with serde_json; the sidecar must read it.
            let sent = serde_json::to_vec(&message).expect("a message serializes");
            let read = serde_json::from_slice::<StreamMessage>(&sent);
            let read = read.unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&sent)));
            assert_eq!(serde_json::to_vec(&read).unwrap(), sent, "changed on the way");
            if let StreamMessage::Snapshot(s) = &read {
                // Unknown fields do not survive the trip; what remains is judged alone.
                let before = match d {
                    Decoded::Config { .. } => true,
                    Decoded::Refused { unknown_fields, .. } => {
                        !unknown_fields.is_empty() && s.config.to_config().is_ok()
                    }
                    _ => false,
                };
                assert_eq!(s.config.to_config().is_ok(), before, "the trip changed the verdict");
            }
        }
    }
});
