//! The back channel as the controller reads it: a sidecar's acknowledgement lines
//! (`{"type":"applied","version":N}`, `{"type":"refused",...}`), arriving in frames cut
//! anywhere, from a sidecar that may say anything.
//!
//! The first input byte chooses how many snapshots the stream sent (versions 1 to n, each
//! a distinct config) and the frame size; the rest is what the sidecar says.
//!
//! Asserted: never a panic; nothing is reported applied unless the sidecar said so for a
//! version this stream sent, and what is held is exactly what that snapshot held; `synced`
//! only when the newest snapshot sent is the one applied.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use portcullis::config::follow::Lines;
use portcullis::config::wire::{AckMessage, NamedPolicy, PodConfig};
use portcullis::controller::index::{ObjectKey, Published};
use portcullis::controller::report::SidecarState;
use portcullis::controller::sidecars::{Hello, Sidecars};

fn snapshot(version: u64) -> Arc<Published> {
    let spec = serde_json::from_value(serde_json::json!({"timeouts": {"request": format!("{version}s")}}))
        .expect("a valid spec");
    let policy = NamedPolicy { name: "shop/p".into(), spec };
    Published::new(version, PodConfig { policy: Some(policy), windows: vec![] })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, said)) = data.split_first() else { return };
    let sent_count = u64::from(first % 9);
    let frame = usize::from(first / 9).max(1);
    let pod = ObjectKey::new("shop", "web-1");
    let now = jiff::Timestamp::UNIX_EPOCH;
    let mut sidecars = Sidecars::new("controller");
    let hello = Hello { version: Some("0.0.0".into()), acknowledges: true };
    let stream = sidecars.connected(&pod, hello, now);
    let sent: Vec<Arc<Published>> = (1..=sent_count).map(snapshot).collect();
    for published in &sent {
        sidecars.sent(&pod, stream, published.clone());
    }
    let mut lines = Lines::default();
    for piece in said.chunks(frame) {
        lines.push(piece);
        while let Some(line) = lines.next_line() {
            if let Ok(ack) = serde_json::from_slice::<AckMessage>(&line) {
                sidecars.acknowledged(&pod, stream, ack, now);
            }
        }
    }
    let report = sidecars.report(now).pop().expect("the sidecar is known");
    match report.acked_version {
        None => assert!(report.holds.is_empty()),
        Some(version) => {
            let applied = sent.iter().find(|p| p.snapshot.version == version);
            let applied = applied.expect("applied only what this stream sent");
            assert_eq!(report.holds, applied.held);
        }
    }
    if report.state == SidecarState::Synced {
        assert_eq!(report.acked_version, Some(sent_count));
    }
    assert_eq!(report.latest_version, sent_count);
});
