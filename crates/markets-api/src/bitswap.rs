//! Bitswap's wire format, `/ipfs/bitswap/1.2.0`, `1.1.0` and `1.0.0` (ipfs/specs,
//! bitswap-protocol): protobuf messages, each after its uvarint length, any number of them on a
//! stream. Streams are one-way: a peer writes its wants on streams it opens, and the answers come
//! back on streams the other side opens.
//!
//! The field numbers are those of boxo's `message.proto`; `prost` derives the encoding.

use bytes::Bytes;
use cid::Cid;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use prost::Message as _;

pub const PROTOCOL_1_2_0: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");
pub const PROTOCOL_1_1_0: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.1.0");
pub const PROTOCOL_1_0_0: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.0.0");
/// The versions served, newest first.
pub const PROTOCOLS: [StreamProtocol; 3] = [PROTOCOL_1_2_0, PROTOCOL_1_1_0, PROTOCOL_1_0_0];

/// The largest message read or written (the spec: at most 4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// The largest block (the spec: implementations must support 2 MiB).
pub const MAX_BLOCK_BYTES: usize = 2 << 20;
/// The longest CID accepted in a want (boxo's bound: four uvarints and a 128-byte digest).
pub const MAX_CID_BYTES: usize = 168;

/// One bitswap message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    #[prost(message, optional, tag = "1")]
    pub wantlist: Option<Wantlist>,
    /// 1.0.0 only: blocks as bare bytes (the receiver assumes CIDv0).
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub blocks: Vec<Bytes>,
    /// 1.1.0 and later: blocks with their CID prefix.
    #[prost(message, repeated, tag = "3")]
    pub payload: Vec<Block>,
    /// 1.2.0: HAVE and DONT_HAVE.
    #[prost(message, repeated, tag = "4")]
    pub block_presences: Vec<BlockPresence>,
    #[prost(int32, tag = "5")]
    pub pending_bytes: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Wantlist {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    /// The entries replace the sender's whole wantlist.
    #[prost(bool, tag = "2")]
    pub full: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    /// The CID's bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub block: Vec<u8>,
    #[prost(int32, tag = "2")]
    pub priority: i32,
    #[prost(bool, tag = "3")]
    pub cancel: bool,
    #[prost(enumeration = "WantType", tag = "4")]
    pub want_type: i32,
    #[prost(bool, tag = "5")]
    pub send_dont_have: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum WantType {
    Block = 0,
    Have = 1,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Block {
    /// The CID's version, codec, hash function and digest length, as uvarints.
    #[prost(bytes = "vec", tag = "1")]
    pub prefix: Vec<u8>,
    #[prost(bytes = "bytes", tag = "2")]
    pub data: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BlockPresence {
    #[prost(bytes = "vec", tag = "1")]
    pub cid: Vec<u8>,
    #[prost(enumeration = "PresenceType", tag = "2")]
    pub r#type: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PresenceType {
    Have = 0,
    DontHave = 1,
}

/// What went wrong reading a message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("a message of {0} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(u64),
    #[error("the length prefix is not a valid uvarint")]
    BadLength,
    #[error("the stream ended inside a message")]
    Truncated,
    #[error("the message is not valid protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error(transparent)]
    Io(std::io::Error),
}

/// Reads the next message; `Ok(None)` when the stream ends between messages. A length over
/// `max` is refused before anything is allocated.
pub async fn read_message<R: AsyncRead + Unpin>(
    io: &mut R,
    max: usize,
) -> Result<Option<Message>, WireError> {
    let mut length: u64 = 0;
    let mut shift = 0;
    let mut byte = [0u8; 1];
    loop {
        match io.read(&mut byte).await {
            Ok(0) if shift == 0 => return Ok(None),
            Ok(0) => return Err(WireError::Truncated),
            Ok(_) => {}
            Err(e) => return Err(WireError::Io(e)),
        }
        if shift > 28 {
            return Err(WireError::BadLength);
        }
        length |= u64::from(byte[0] & 0x7f) << shift;
        shift += 7;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    if length > max as u64 {
        return Err(WireError::TooLarge(length));
    }
    let mut buf = vec![0u8; length as usize];
    io.read_exact(&mut buf).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            WireError::Truncated
        } else {
            WireError::Io(e)
        }
    })?;
    Ok(Some(Message::decode(Bytes::from(buf))?))
}

/// Writes one message after its length.
pub async fn write_message<W: AsyncWrite + Unpin>(
    io: &mut W,
    message: &Message,
) -> std::io::Result<()> {
    io.write_all(&message.encode_length_delimited_to_vec())
        .await?;
    io.flush().await
}

/// The CID prefix a block travels with: version, codec, hash function and digest length.
pub fn prefix(cid: &Cid) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    for value in [
        cid.version() as u64,
        cid.codec(),
        cid.hash().code(),
        u64::from(cid.hash().size()),
    ] {
        write_uvarint(&mut out, value);
    }
    out
}

/// A prefix's parts: (version, codec, hash function, digest length).
pub fn parse_prefix(mut bytes: &[u8]) -> Option<(u64, u64, u64, u64)> {
    let mut next = || {
        let (value, rest) = read_uvarint(bytes)?;
        bytes = rest;
        Some(value)
    };
    let parts = (next()?, next()?, next()?, next()?);
    bytes.is_empty().then_some(parts)
}

/// The encoded size of a block in a message (for keeping messages near a target size).
pub fn block_size(block: &Block) -> usize {
    block.encoded_len() + 8
}

fn write_uvarint(out: &mut Vec<u8>, value: u64) {
    let mut buf = unsigned_varint::encode::u64_buffer();
    out.extend_from_slice(unsigned_varint::encode::u64(value, &mut buf));
}

fn read_uvarint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    unsigned_varint::decode::u64(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cid: &Cid, want: WantType) -> Entry {
        Entry {
            block: cid.to_bytes(),
            priority: 1,
            cancel: false,
            want_type: want as i32,
            send_dont_have: true,
        }
    }

    #[test]
    fn a_message_round_trips_through_its_framing() {
        let cid: Cid = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
            .parse()
            .expect("cid");
        let message = Message {
            wantlist: Some(Wantlist {
                entries: vec![entry(&cid, WantType::Have), entry(&cid, WantType::Block)],
                full: true,
            }),
            payload: vec![Block {
                prefix: prefix(&cid),
                data: Bytes::from_static(b"hello"),
            }],
            block_presences: vec![BlockPresence {
                cid: cid.to_bytes(),
                r#type: PresenceType::DontHave as i32,
            }],
            ..Default::default()
        };
        let mut wire = Vec::new();
        futures::executor::block_on(async {
            write_message(&mut wire, &message).await.expect("write");
            write_message(&mut wire, &Message::default())
                .await
                .expect("write");
            let mut reader = futures::io::Cursor::new(&wire);
            let first = read_message(&mut reader, MAX_MESSAGE_BYTES).await;
            assert_eq!(first.expect("read"), Some(message.clone()));
            let second = read_message(&mut reader, MAX_MESSAGE_BYTES).await;
            assert_eq!(second.expect("read"), Some(Message::default()));
            assert!(
                read_message(&mut reader, MAX_MESSAGE_BYTES)
                    .await
                    .expect("end")
                    .is_none()
            );
        });
    }

    #[test]
    fn the_prefix_is_four_uvarints() {
        // The spec's example: CIDv1, raw, sha2-256, 32 bytes.
        let cid: Cid = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
            .parse()
            .expect("cid");
        assert_eq!(prefix(&cid), vec![0x01, 0x55, 0x12, 0x20]);
        assert_eq!(
            parse_prefix(&[0x01, 0x55, 0x12, 0x20]),
            Some((1, 0x55, 0x12, 32))
        );
        let v0: Cid = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n"
            .parse()
            .expect("cid");
        assert_eq!(prefix(&v0), vec![0x00, 0x70, 0x12, 0x20]);
        assert_eq!(parse_prefix(&[0x01, 0x55, 0x12]), None);
        assert_eq!(parse_prefix(&[0x01, 0x55, 0x12, 0x20, 0x00]), None);
    }

    #[test]
    fn hostile_framing_is_refused_before_allocating() {
        futures::executor::block_on(async {
            // A length of 1 GiB.
            let mut wire = Vec::new();
            write_uvarint(&mut wire, 1 << 30);
            let result =
                read_message(&mut futures::io::Cursor::new(&wire), MAX_MESSAGE_BYTES).await;
            assert!(matches!(result, Err(WireError::TooLarge(n)) if n == 1 << 30));
            // A length prefix that never ends.
            let wire = vec![0xffu8; 16];
            let result =
                read_message(&mut futures::io::Cursor::new(&wire), MAX_MESSAGE_BYTES).await;
            assert!(matches!(result, Err(WireError::BadLength)));
            // A message cut short.
            let wire = vec![10u8, 1, 2];
            let result =
                read_message(&mut futures::io::Cursor::new(&wire), MAX_MESSAGE_BYTES).await;
            assert!(matches!(result, Err(WireError::Truncated)));
            // Bytes that are not protobuf (field 1 as a length past the end).
            let wire = vec![3u8, 0x0a, 0x7f, 0x00];
            let result =
                read_message(&mut futures::io::Cursor::new(&wire), MAX_MESSAGE_BYTES).await;
            assert!(matches!(result, Err(WireError::Decode(_))));
        });
    }
}
