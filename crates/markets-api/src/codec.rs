//! Framing of the deal protocols on a libp2p stream, as Boost does it: each message is one CBOR
//! item with nothing around it (no length prefix). The reader therefore walks the CBOR item's
//! structure to find where it ends, refusing items larger than the protocol's limit before
//! reading them.

use std::io;
use std::marker::PhantomData;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Reads exactly one CBOR item of at most `limit` bytes and returns its bytes.
pub async fn read_cbor_item<R: AsyncRead + Unpin>(io: &mut R, limit: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    // How many items are still to be read at each open level (arrays, maps, tags).
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let initial = read_n(io, &mut out, 1, limit).await?[0];
        let major = initial >> 5;
        let info = initial & 0x1f;
        let argument = match info {
            0..=23 => u64::from(info),
            24 => u64::from(read_n(io, &mut out, 1, limit).await?[0]),
            25 => be(read_n(io, &mut out, 2, limit).await?),
            26 => be(read_n(io, &mut out, 4, limit).await?),
            27 => be(read_n(io, &mut out, 8, limit).await?),
            31 => {
                return Err(invalid(
                    "indefinite-length CBOR items are not used by these protocols",
                ));
            }
            _ => return Err(invalid("malformed CBOR header")),
        };
        match major {
            0 | 1 | 7 => {}
            2 | 3 => {
                let length = usize::try_from(argument).map_err(|_| too_large(limit))?;
                if out.len().saturating_add(length) > limit {
                    return Err(too_large(limit));
                }
                // Grown as bytes arrive: a declared length alone reserves nothing.
                let start = out.len();
                (&mut *io).take(length as u64).read_to_end(&mut out).await?;
                if out.len() - start != length {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            4 => pending = add(pending, argument, limit)?,
            5 => pending = add(pending, argument.saturating_mul(2), limit)?,
            6 => pending += 1,
            _ => unreachable!("a major type has three bits"),
        }
    }
    Ok(out)
}

fn add(pending: u64, more: u64, limit: usize) -> io::Result<u64> {
    // Every item takes at least one byte, so a count above the limit cannot fit.
    if more > limit as u64 {
        return Err(too_large(limit));
    }
    Ok(pending + more)
}

async fn read_n<'a, R: AsyncRead + Unpin>(
    io: &mut R,
    out: &'a mut Vec<u8>,
    n: usize,
    limit: usize,
) -> io::Result<&'a [u8]> {
    if out.len().saturating_add(n) > limit {
        return Err(too_large(limit));
    }
    let start = out.len();
    out.resize(start + n, 0);
    io.read_exact(&mut out[start..]).await?;
    Ok(&out[start..])
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

fn too_large(limit: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the message is larger than the {limit} bytes allowed"),
    )
}

/// Decodes one message.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    fvm_ipld_encoding::from_slice(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("undecodable message: {e}"),
        )
    })
}

pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    fvm_ipld_encoding::to_vec(value).map_err(|e| io::Error::other(e.to_string()))
}

/// A `request_response` codec for one request and one response type, each a bare CBOR item.
#[derive(Debug)]
pub struct CborCodec<Req, Resp> {
    request_limit: usize,
    response_limit: usize,
    _types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> CborCodec<Req, Resp> {
    pub fn new(request_limit: usize, response_limit: usize) -> Self {
        Self {
            request_limit,
            response_limit,
            _types: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for CborCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self::new(self.request_limit, self.response_limit)
    }
}

impl<Req, Resp> libp2p::request_response::Codec for CborCodec<Req, Resp>
where
    Req: Serialize + DeserializeOwned + Send + 'static,
    Resp: Serialize + DeserializeOwned + Send + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode(&read_cbor_item(io, self.request_limit).await?)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode(&read_cbor_item(io, self.response_limit).await?)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode(&req)?).await?;
        io.flush().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode(&resp)?).await?;
        io.flush().await
    }
}

/// `/fil/retrieval/transports/1.0.0`: the request is nothing (the client opens the stream and
/// reads), the response one CBOR item.
#[derive(Debug, Clone, Default)]
pub struct TransportsCodec;

/// The largest transports answer read.
pub const MAX_TRANSPORTS_BYTES: usize = 64 << 10;

impl libp2p::request_response::Codec for TransportsCodec {
    type Protocol = StreamProtocol;
    type Request = ();
    type Response = crate::wire::TransportsResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        Ok(())
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<crate::wire::TransportsResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode(&read_cbor_item(io, MAX_TRANSPORTS_BYTES).await?)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, _: ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.flush().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: crate::wire::TransportsResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode(&response)?).await?;
        io.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], limit: usize) -> io::Result<Vec<u8>> {
        futures::executor::block_on(read_cbor_item(&mut futures::io::Cursor::new(bytes), limit))
    }

    #[test]
    fn transports_answers_encode_as_boost_does() {
        // Boost's answer for one HTTP address, /ip4/127.0.0.1/tcp/8080/http.
        let url = url::Url::parse("http://127.0.0.1:8080").expect("url");
        let addr = crate::wire::http_multiaddr(&url).expect("multiaddr");
        assert_eq!(addr.to_string(), "/ip4/127.0.0.1/tcp/8080/http");
        let response = crate::wire::TransportsResponse {
            protocols: vec![crate::wire::TransportProtocol {
                name: "http".into(),
                addresses: vec![serde_bytes::ByteBuf::from(addr.to_vec())],
            }],
        };
        let bytes = encode(&response).expect("encode");
        assert_eq!(
            hex::encode(&bytes),
            "a16950726f746f636f6c7381a2644e616d65646874747069416464726573736573814a047f000001061f90e003"
        );
        assert_eq!(
            decode::<crate::wire::TransportsResponse>(&bytes).expect("decode"),
            response
        );
        assert_eq!(
            crate::wire::multiaddr_http_url(&addr).as_deref(),
            Some("http://127.0.0.1:8080")
        );
        let tls =
            crate::wire::http_multiaddr(&url::Url::parse("https://sp.example.com").expect("url"))
                .expect("multiaddr");
        assert_eq!(tls.to_string(), "/dns/sp.example.com/tcp/443/https");
    }

    #[test]
    fn reads_one_item_and_stops_at_its_end() {
        // {"a": [1, h'0102', {"b": 42(h'00')}]} followed by a second item.
        let item = hex::decode("a16161830142010 2a16162d82a4100".replace(' ', "")).expect("hex");
        let mut stream = item.clone();
        stream.extend_from_slice(&[0x01]);
        assert_eq!(read(&stream, 1024).expect("item"), item);
    }

    #[test]
    fn refuses_oversized_truncated_and_indefinite_items() {
        let big = [&[0x5a, 0x00, 0x10, 0x00, 0x00][..], &[0u8; 16]].concat();
        let err = read(&big, 1024).expect_err("oversized");
        assert!(
            err.to_string().contains("larger than the 1024 bytes"),
            "{err}"
        );
        let err = read(&[0x9a, 0xff, 0xff, 0xff, 0xff], 1024).expect_err("huge array");
        assert!(err.to_string().contains("larger than"), "{err}");
        assert_eq!(
            read(&[0x82, 0x01], 1024).expect_err("cut").kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert!(read(&[0x9f, 0x01, 0xff], 1024).is_err());
    }
}
