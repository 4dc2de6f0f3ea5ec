//! Writing CARv1.

use std::io::Write;

use cid::Cid;
use serde::Serialize;

use crate::CarError;
use crate::varint;

#[derive(Serialize)]
struct HeaderOut<'a> {
    roots: &'a [Cid],
    version: u64,
}

/// Writes a CARv1: the header at creation, then each block as it is given.
#[derive(Debug)]
pub struct CarWriter<W: Write> {
    out: W,
    written: u64,
}

impl<W: Write> CarWriter<W> {
    pub fn new(mut out: W, roots: &[Cid]) -> Result<Self, CarError> {
        let header = fvm_ipld_encoding::to_vec(&HeaderOut { roots, version: 1 })
            .map_err(|e| CarError::BadHeader(e.to_string()))?;
        let mut written = varint::write_u64(&mut out, header.len() as u64)? as u64;
        out.write_all(&header)?;
        written += header.len() as u64;
        Ok(Self { out, written })
    }

    pub fn write_block(&mut self, cid: &Cid, data: &[u8]) -> Result<(), CarError> {
        let cid_bytes = cid.to_bytes();
        let len = (cid_bytes.len() + data.len()) as u64;
        self.written += varint::write_u64(&mut self.out, len)? as u64;
        self.out.write_all(&cid_bytes)?;
        self.out.write_all(data)?;
        self.written += len;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn finish(mut self) -> Result<W, CarError> {
        self.out.flush()?;
        Ok(self.out)
    }
}
