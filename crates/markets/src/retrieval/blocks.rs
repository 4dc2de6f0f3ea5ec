//! Blocks by CID: the piece directory says which pieces hold a block and where, the piece
//! reader reads those bytes (a ranged read, never the whole piece), and every block is checked
//! against its CID before it is handed on. A block that fails the check is never served: the
//! next copy is tried, and the failure is logged and counted.

use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;

use super::metrics::RetrievalMetrics;
use super::reader::{PieceReader, ReadError};
use crate::store::AsyncStore;

/// The largest block served (bitswap's limit; a CAR section is refused above 8 MiB anyway).
pub const MAX_BLOCK_BYTES: u64 = 2 << 20;

#[derive(Debug, Clone)]
pub struct BlockSource {
    pub store: AsyncStore,
    pub reader: Arc<PieceReader>,
    pub metrics: RetrievalMetrics,
}

impl BlockSource {
    /// The block's bytes, checked against `cid`; `Ok(None)` when no piece here holds it. A
    /// piece that must be unsealed is waited for as the reader is configured to.
    pub async fn get(&self, cid: &Cid) -> Result<Option<Bytes>, ReadError> {
        self.get_within(cid, None).await
    }

    /// [`Self::get`] without waiting for an unseal or for the hub: a piece not readable now is
    /// [`ReadError::Unavailable`] at once (its unseal is still requested).
    pub async fn get_now(&self, cid: &Cid) -> Result<Option<Bytes>, ReadError> {
        self.get_within(cid, Some(std::time::Duration::ZERO)).await
    }

    /// The block's length when a piece holding it can be read now (nothing is read and nothing
    /// waited for; an unseal is requested when one is needed).
    pub async fn available(&self, cid: &Cid) -> Result<Option<u64>, ReadError> {
        if cid.hash().code() == nelumbo_car::codec::IDENTITY {
            return Ok(Some(cid.hash().digest().len() as u64));
        }
        let mut last_error = None;
        for location in self.locations(cid).await? {
            if location.length > MAX_BLOCK_BYTES {
                continue;
            }
            let Ok(piece_cid) = location.piece_cid.parse::<Cid>() else {
                continue;
            };
            match self
                .reader
                .open_within(&piece_cid, std::time::Duration::ZERO)
                .await
            {
                Ok(_) => return Ok(Some(location.length)),
                Err(ReadError::NotFound(_)) => {}
                Err(e) => last_error = Some(e),
            }
        }
        match last_error {
            None => Ok(None),
            Some(e) => Err(e),
        }
    }

    async fn locations(
        &self,
        cid: &Cid,
    ) -> Result<Vec<nelumbo_piecedir::BlockLocation>, ReadError> {
        let multihash = cid.hash().to_bytes();
        crate::directory::run(self.store.directory(), move |d| d.locate(&multihash))
            .await
            .map_err(|e| {
                tracing::error!(error = %format!("{e:#}"), "the piece directory cannot be read");
                if nelumbo_piecedir::is_transient(&e) {
                    // The shared database is away: a state, not a fault; ask again soon.
                    ReadError::Unavailable {
                        why: "the piece directory is unreachable".into(),
                        retry_after: 10,
                    }
                } else {
                    ReadError::Internal("the piece directory cannot be read".into())
                }
            })
    }

    async fn get_within(
        &self,
        cid: &Cid,
        wait: Option<std::time::Duration>,
    ) -> Result<Option<Bytes>, ReadError> {
        if cid.hash().code() == nelumbo_car::codec::IDENTITY {
            return Ok(Some(Bytes::copy_from_slice(cid.hash().digest())));
        }
        let locations = self.locations(cid).await?;
        let mut last_error = None;
        for location in locations {
            if location.length > MAX_BLOCK_BYTES {
                continue;
            }
            let Ok(piece_cid) = location.piece_cid.parse::<Cid>() else {
                continue;
            };
            // A rotten cached copy is dropped and the block read again from the hub.
            let mut attempts = 0;
            loop {
                attempts += 1;
                let result = async {
                    let piece = match wait {
                        Some(wait) => self.reader.open_within(&piece_cid, wait).await?,
                        None => self.reader.open(&piece_cid).await?,
                    };
                    let data = self
                        .reader
                        .read(&piece, location.offset, location.length)
                        .await?;
                    Ok::<_, ReadError>((piece, data))
                }
                .await;
                let (piece, data) = match result {
                    Ok(read) => read,
                    // The directory names a piece no one holds (a failed deal): no copy.
                    Err(ReadError::NotFound(_)) => break,
                    Err(e) => {
                        last_error = Some(e);
                        break;
                    }
                };
                match nelumbo_car::verify_block(cid, &data) {
                    Some(true) => return Ok(Some(data)),
                    verdict => {
                        self.metrics.bad_blocks.inc();
                        let why = if verdict.is_none() {
                            "its hash function cannot be checked here"
                        } else {
                            "its bytes do not match the CID"
                        };
                        tracing::error!(block = %cid, piece_cid = %location.piece_cid, source = piece.source.label(), offset = location.offset, why, "a stored block is not served");
                        last_error = Some(ReadError::Internal(format!(
                            "block {cid} cannot be served: {why}"
                        )));
                        if verdict == Some(false)
                            && matches!(piece.source, super::reader::Source::Cache(_))
                            && attempts == 1
                        {
                            self.reader.cache.remove(&piece.cid.to_string());
                            continue;
                        }
                        break;
                    }
                }
            }
        }
        match last_error {
            None => Ok(None),
            Some(e) => Err(e),
        }
    }
}
