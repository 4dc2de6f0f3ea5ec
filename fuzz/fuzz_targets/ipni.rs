//! IPNI: the publisher's request names (`/ipni/v1/ad/{name}`, from any indexer), and the
//! decoders of advertisements, entry chunks, signed heads and metadata, which read what other
//! implementations make. The first byte picks the decoder. What decodes must encode to bytes
//! that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nelumbo_markets::indexing::ipni::{self, Advertisement, EntryChunk};
use nelumbo_markets::indexing::publisher::{self, Requested};

fuzz_target!(|input: &[u8]| {
    let Some((&pick, bytes)) = input.split_first() else {
        return;
    };
    match pick % 5 {
        0 => {
            let Ok(name) = std::str::from_utf8(bytes) else {
                return;
            };
            match publisher::requested(name) {
                Ok(Requested::Head) => assert_eq!(name, "head"),
                Ok(Requested::Block(cid)) => {
                    assert_eq!(cid.codec(), ipni::DAG_JSON);
                    assert_eq!(cid.hash().code(), ipni::SHA2_256);
                }
                Err((status, message)) => {
                    assert!(status.is_client_error());
                    assert!(message.len() < 1024, "the refusal echoes too much");
                }
            }
        }
        1 => {
            if let Ok(ad) = Advertisement::decode(bytes) {
                let again = Advertisement::decode(&ad.encode()).expect("an encoded ad decodes");
                assert_eq!(ad, again);
                let _ = ad.verify();
            }
        }
        2 => {
            if let Ok(chunk) = EntryChunk::decode(bytes) {
                let again = EntryChunk::decode(&chunk.encode()).expect("an encoded chunk decodes");
                assert_eq!(chunk, again);
            }
        }
        3 => {
            let _ = ipni::verify_signed_head(bytes);
        }
        _ => {
            if let Ok(transports) = ipni::parse_metadata(bytes) {
                let again = ipni::parse_metadata(&ipni::metadata(&transports))
                    .expect("encoded metadata parses");
                // Encoding sorts the transports and drops repeats.
                let mut expected = transports;
                expected.sort();
                expected.dedup();
                assert_eq!(again, expected);
            }
        }
    }
});
