//! The deal protocols' messages as they come off a libp2p stream: one bare CBOR item framed by
//! walking its structure under the protocol's size limit, then decoded. The first byte picks
//! the message; the rest is the stream. Requests are what strangers send the provider;
//! responses are what a provider sends `nelumbo client`. A proposal that decodes also goes
//! through what the provider reads from it next: the transfer parameters, the proposal's CID
//! and its client signature.
#![no_main]

use std::fmt::Debug;

use futures::executor::block_on;
use futures::io::Cursor;
use libfuzzer_sys::fuzz_target;
use nelumbo_markets_api::codec::{decode, encode, read_cbor_item};
use nelumbo_markets_api::wire::{
    self, AskRequest, AskResponse, DealParams, DealResponse, DealStatusRequest, DealStatusResponse,
    MAX_DEAL_PARAMS_BYTES, MAX_SMALL_MESSAGE_BYTES, TransportsResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Frames and decodes one message; what decodes must encode and decode back to itself.
fn read<T>(stream: &[u8], limit: usize) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let item = block_on(read_cbor_item(&mut Cursor::new(stream), limit)).ok()?;
    assert!(item.len() <= limit, "an item over the limit was read");
    assert_eq!(&stream[..item.len()], item.as_slice());
    let message: T = decode(&item).ok()?;
    let again: T = decode(&encode(&message).expect("a decoded message encodes"))
        .expect("an encoded message decodes");
    assert_eq!(message, again);
    Some(message)
}

fuzz_target!(|input: &[u8]| {
    let Some((&pick, stream)) = input.split_first() else {
        return;
    };
    match pick % 7 {
        0 => {
            let Some(params) = read::<DealParams>(stream, MAX_DEAL_PARAMS_BYTES) else {
                return;
            };
            if let Ok(request) = wire::http_request(&params.transfer)
                && let Ok(url) = url::Url::parse(&request.url)
            {
                let _ = wire::http_multiaddr(&url);
            }
            let deal = &params.client_deal_proposal;
            let _ = wire::signed_proposal_cid(deal);
            if let Ok(signed) = wire::proposal_bytes(&deal.proposal) {
                let _ =
                    nelumbo_keys::verify(&deal.client_signature, &signed, &deal.proposal.client);
            }
        }
        1 => {
            read::<DealStatusRequest>(stream, MAX_SMALL_MESSAGE_BYTES);
        }
        2 => {
            read::<AskRequest>(stream, MAX_SMALL_MESSAGE_BYTES);
        }
        3 => {
            read::<DealResponse>(stream, MAX_SMALL_MESSAGE_BYTES);
        }
        4 => {
            read::<DealStatusResponse>(stream, MAX_SMALL_MESSAGE_BYTES);
        }
        5 => {
            read::<AskResponse>(stream, MAX_SMALL_MESSAGE_BYTES);
        }
        _ => {
            if let Some(transports) =
                read::<TransportsResponse>(stream, nelumbo_markets_api::codec::MAX_TRANSPORTS_BYTES)
            {
                for protocol in &transports.protocols {
                    for address in &protocol.addresses {
                        if let Ok(addr) = libp2p::Multiaddr::try_from(address.to_vec()) {
                            let _ = wire::multiaddr_http_url(&addr);
                        }
                    }
                }
            }
        }
    }
});
