//! What a bitswap peer sends the provider: length-prefixed protobuf messages on a stream, read
//! under the size limit, each wantlist applied to the peer's wants as the server does. The
//! wants stay within the per-peer limit and their arrival order within its bound, however the
//! entries want, cancel and repeat. Blocks and presences in the messages (what a peer sends
//! back) have their CIDs and prefixes read too.
#![no_main]

use futures::executor::block_on;
use futures::io::Cursor;
use libfuzzer_sys::fuzz_target;
use nelumbo_markets::retrieval::wants::Wants;
use nelumbo_markets_api::bitswap::{self, MAX_MESSAGE_BYTES};

/// A small limit, so inputs reach it.
const MAX_WANTS: usize = 16;

fuzz_target!(|input: &[u8]| {
    let Some((&flags, stream)) = input.split_first() else {
        return;
    };
    let presences = flags & 1 == 1;
    let mut stream = Cursor::new(stream);
    let mut wants = Wants::default();
    while let Ok(Some(message)) = block_on(bitswap::read_message(&mut stream, MAX_MESSAGE_BYTES)) {
        for block in &message.payload {
            let _ = bitswap::parse_prefix(&block.prefix);
        }
        for presence in &message.block_presences {
            let _ = cid::Cid::try_from(presence.cid.as_slice());
        }
        if let Some(wantlist) = message.wantlist {
            let entries = wantlist.entries.len() as u64;
            let applied = wants.apply(wantlist, presences, MAX_WANTS);
            assert_eq!(
                applied.cancels + applied.blocks + applied.haves + applied.invalid,
                entries
            );
            assert!(applied.over_limit <= applied.blocks + applied.haves);
            assert!(wants.len() <= MAX_WANTS, "{} wants held", wants.len());
            assert!(
                wants.places() <= 2 * wants.len() + 64,
                "{} places for {} wants",
                wants.places(),
                wants.len()
            );
        }
    }
    // Answering drains every want exactly once, highest priority first.
    let held = wants.len();
    let mut last = i32::MAX;
    let mut answered = 0;
    while let Some((_, want)) = wants.take_next() {
        assert!(want.priority <= last);
        assert!(presences || !want.send_dont_have);
        last = want.priority;
        answered += 1;
    }
    assert_eq!(answered, held);
    assert_eq!(wants.places(), 0);
});
