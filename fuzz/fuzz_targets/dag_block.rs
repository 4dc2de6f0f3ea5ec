//! The block decoders the gateway, the bitswap server and `nelumbo client retrieve` run on
//! blocks they did not make: dag-pb with UnixFS (files, directories, HAMT shards) and
//! dag-cbor. The first byte picks the codec; the rest is the block.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nelumbo_car::dag;

const CODECS: [u64; 3] = [0x70, 0x71, 0x55]; // dag-pb, dag-cbor, raw

fuzz_target!(|input: &[u8]| {
    let Some((&pick, block)) = input.split_first() else {
        return;
    };
    let codec = CODECS[usize::from(pick) % CODECS.len()];
    let cid = nelumbo_car::cid_v1_sha256(codec, block);
    let links = dag::links(&cid, block);
    match codec {
        0x70 => {
            let node = dag::PbNode::decode(block);
            assert_eq!(node.is_ok(), links.is_ok());
            if let Ok((node, Some(unixfs))) = dag::decode_unixfs(block) {
                if let Some(fanout) = unixfs.fanout {
                    // A HAMT shard's fanout comes from the block: any value is handled.
                    let hash = dag::hamt_hash(b"name");
                    for depth in [0, 1, 7, 63, usize::MAX] {
                        if let Some(index) = dag::hamt_index(&hash, depth, fanout) {
                            assert!((index as u64) < fanout);
                        }
                    }
                    let _ = dag::hamt_prefix_len(fanout);
                }
                assert!(node.links.len() <= block.len());
            }
        }
        0x71 => {
            assert_eq!(dag::decode_cbor(block).is_ok(), links.is_ok());
        }
        _ => assert!(links.is_ok_and(|l| l.is_empty())),
    }
});
