//! Reading CARv1 and CARv2, block by block.

use std::io::{self, Read};

use cid::Cid;
use serde::Deserialize;

use crate::{CarError, MAX_HEADER_BYTES, MAX_SECTION_BYTES, varint, verify_block};

#[derive(Deserialize)]
struct HeaderIn {
    #[serde(default)]
    roots: Vec<Cid>,
    version: u64,
}

/// One block's place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSection {
    pub cid: Cid,
    /// Where the section (its length varint) starts, counted from the start of the file.
    pub section_offset: u64,
    /// Where the block's bytes start, and how many there are.
    pub data_offset: u64,
    pub data_len: u64,
    /// Whether the block's hash was checked (false for hash functions this crate does not
    /// compute).
    pub verified: bool,
}

struct Counting<R> {
    inner: R,
    position: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.position += n as u64;
        Ok(n)
    }
}

/// Reads a CAR stream: the roots first, then each block with its offsets, hash checked.
///
/// A CARv2 is read through its inner CARv1 (offsets stay those of the whole file); its index,
/// if any, is not read. A zero-length section ends the data, as go-car allows.
pub struct CarReader<R: Read> {
    input: Counting<R>,
    roots: Vec<Cid>,
    version: u64,
    /// Where the data ends (CARv2's data size), if known.
    data_end: Option<u64>,
    done: bool,
}

impl<R: Read> std::fmt::Debug for CarReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarReader")
            .field("roots", &self.roots)
            .field("version", &self.version)
            .field("position", &self.input.position)
            .finish()
    }
}

impl<R: Read> CarReader<R> {
    pub fn new(input: R) -> Result<Self, CarError> {
        let mut input = Counting {
            inner: input,
            position: 0,
        };
        let header = read_header(&mut input)?;
        match header.version {
            1 => Ok(Self {
                input,
                roots: header.roots,
                version: 1,
                data_end: None,
                done: false,
            }),
            2 => {
                // The pragma is followed by a fixed 40-byte header: characteristics (16 bytes),
                // data offset, data size, index offset (little-endian u64s).
                let mut fixed = [0u8; 40];
                input
                    .read_exact(&mut fixed)
                    .map_err(|e| truncated(e, "the CARv2 header"))?;
                let word = |i: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&fixed[i..i + 8]);
                    u64::from_le_bytes(b)
                };
                let (data_offset, data_size) = (word(16), word(24));
                let data_end = data_offset.checked_add(data_size).ok_or_else(|| {
                    CarError::BadHeader(format!(
                        "the CARv2 data offset {data_offset} and size {data_size} overflow"
                    ))
                })?;
                if data_offset < input.position {
                    return Err(CarError::BadHeader(format!(
                        "the CARv2 data offset {data_offset} points into its header"
                    )));
                }
                let skip = data_offset - input.position;
                let skipped = io::copy(&mut (&mut input).take(skip), &mut io::sink())?;
                if skipped != skip {
                    return Err(CarError::Truncated(
                        "the file ends before the CARv2 data starts".into(),
                    ));
                }
                let inner = read_header(&mut input)?;
                if inner.version != 1 {
                    return Err(CarError::BadHeader(format!(
                        "the data inside a CARv2 must be a CARv1, not version {}",
                        inner.version
                    )));
                }
                Ok(Self {
                    input,
                    roots: inner.roots,
                    version: 2,
                    data_end: Some(data_end),
                    done: false,
                })
            }
            v => Err(CarError::UnsupportedVersion(v)),
        }
    }

    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.input.position
    }

    /// The next block and its bytes; `None` after the last.
    pub fn next_block(&mut self) -> Result<Option<(BlockSection, Vec<u8>)>, CarError> {
        if self.done || self.data_end.is_some_and(|end| self.input.position >= end) {
            return Ok(None);
        }
        let section_offset = self.input.position;
        let Some((length, _)) = varint::read_u64(&mut self.input)? else {
            self.done = true;
            return Ok(None);
        };
        if length == 0 {
            self.done = true;
            return Ok(None);
        }
        if length > MAX_SECTION_BYTES {
            return Err(CarError::SectionTooLarge {
                offset: section_offset,
                length,
                max: MAX_SECTION_BYTES,
            });
        }
        let cid_start = self.input.position;
        let cid = Cid::read_bytes(&mut self.input).map_err(|e| CarError::BadCid {
            offset: cid_start,
            reason: e.to_string(),
        })?;
        let cid_len = self.input.position - cid_start;
        if cid_len > length {
            return Err(CarError::BadCid {
                offset: cid_start,
                reason: format!("the CID is longer than its {length}-byte section"),
            });
        }
        let data_offset = self.input.position;
        let data_len = length - cid_len;
        let mut data = vec![0u8; data_len as usize];
        self.input
            .read_exact(&mut data)
            .map_err(|e| truncated(e, &format!("the block {cid} at byte {section_offset}")))?;
        let verified = match verify_block(&cid, &data) {
            Some(true) => true,
            None => false,
            Some(false) => {
                return Err(CarError::HashMismatch {
                    offset: section_offset,
                    cid,
                });
            }
        };
        Ok(Some((
            BlockSection {
                cid,
                section_offset,
                data_offset,
                data_len,
                verified,
            },
            data,
        )))
    }
}

fn read_header<R: Read>(input: &mut Counting<R>) -> Result<HeaderIn, CarError> {
    let (length, _) = varint::read_u64(input)
        .map_err(|e| truncated(e, "the header length"))?
        .ok_or_else(|| CarError::BadHeader("the file is empty".into()))?;
    if length == 0 || length > MAX_HEADER_BYTES {
        return Err(CarError::BadHeader(format!(
            "the header length {length} is not between 1 and {MAX_HEADER_BYTES} bytes"
        )));
    }
    let mut bytes = vec![0u8; length as usize];
    input
        .read_exact(&mut bytes)
        .map_err(|e| truncated(e, "the header"))?;
    fvm_ipld_encoding::from_slice::<HeaderIn>(&bytes)
        .map_err(|e| CarError::BadHeader(format!("the header is not a DAG-CBOR CAR header: {e}")))
}

fn truncated(e: io::Error, what: &str) -> CarError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        CarError::Truncated(format!("the file ends inside {what}"))
    } else {
        CarError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CarWriter;

    fn testdata(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/car")
            .join(name)
    }

    #[test]
    fn reads_the_ipld_spec_fixtures_with_their_offsets() {
        for name in ["ipldspec-carv1-basic", "ipldspec-carv2-basic"] {
            let bytes = std::fs::read(testdata(&format!("{name}.car"))).expect("fixture");
            let expected: serde_json::Value = serde_json::from_slice(
                &std::fs::read(testdata(&format!("{name}.json"))).expect("fixture json"),
            )
            .expect("json");
            let mut reader = CarReader::new(bytes.as_slice()).expect("header");
            let mut blocks = Vec::new();
            while let Some((section, data)) = reader.next_block().expect("block") {
                assert_eq!(data.len() as u64, section.data_len);
                blocks.push(section);
            }
            let want = expected["blocks"].as_array().expect("blocks");
            assert_eq!(blocks.len(), want.len(), "{name}");
            for (got, want) in blocks.iter().zip(want) {
                assert_eq!(got.cid.to_string(), want["cid"]["/"].as_str().expect("cid"));
                assert_eq!(got.section_offset, want["offset"].as_u64().expect("offset"));
                assert_eq!(
                    got.data_offset,
                    want["blockOffset"].as_u64().expect("offset")
                );
                assert_eq!(got.data_len, want["blockLength"].as_u64().expect("length"));
                assert_eq!(
                    got.data_offset + got.data_len - got.section_offset,
                    want["length"].as_u64().expect("length"),
                    "{name}: section length includes the varint"
                );
            }
        }
    }

    #[test]
    fn reads_go_car_sample_and_its_carv2_wrapping_alike() {
        let v1 = std::fs::read(testdata("gocar-sample-v1.car")).expect("fixture");
        let v2 = std::fs::read(testdata("gocar-sample-wrapped-v2.car")).expect("fixture");
        let mut all = Vec::new();
        for bytes in [&v1, &v2] {
            let mut reader = CarReader::new(bytes.as_slice()).expect("header");
            assert_eq!(
                reader.roots()[0].to_string(),
                "bafy2bzaced4ueelaegfs5fqu4tzsh6ywbbpfk3cxppupmxfdhbpbhzawfw5oy"
            );
            let mut cids = Vec::new();
            while let Some((section, data)) = reader.next_block().expect("block") {
                assert!(section.verified);
                let at = section.data_offset as usize;
                assert_eq!(&bytes[at..at + data.len()], data.as_slice());
                cids.push(section.cid);
            }
            all.push(cids);
        }
        assert_eq!(all[0].len(), 1049);
        assert_eq!(all[0], all[1]);
    }

    #[test]
    fn an_altered_block_or_a_cut_file_is_refused_by_name() {
        let mut bytes = std::fs::read(testdata("gocar-sample-v1.car")).expect("fixture");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let mut reader = CarReader::new(bytes.as_slice()).expect("header");
        let err = loop {
            match reader.next_block() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("an altered block was accepted"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, CarError::HashMismatch { .. }), "{err}");

        bytes.truncate(last - 10);
        let mut reader = CarReader::new(bytes.as_slice()).expect("header");
        let err = loop {
            match reader.next_block() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("a cut file was accepted"),
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("ends inside"), "{err}");
        assert!(CarReader::new(&b"hello world"[..]).is_err());
    }

    #[test]
    fn hostile_carv2_offsets_are_errors_not_panics() {
        let v2 = std::fs::read(testdata("gocar-sample-wrapped-v2.car")).expect("fixture");
        // The pragma is 11 bytes; the fixed header follows: characteristics, then data offset
        // (at 11 + 16) and data size (at 11 + 24).
        for (offset, size) in [(u64::MAX, 1), (51, u64::MAX), (u64::MAX - 1, 2), (0, 10)] {
            let mut bytes = v2.clone();
            bytes[27..35].copy_from_slice(&offset.to_le_bytes());
            bytes[35..43].copy_from_slice(&size.to_le_bytes());
            match CarReader::new(bytes.as_slice()) {
                Err(_) => {}
                Ok(mut reader) => while let Ok(Some(_)) = reader.next_block() {},
            }
        }
    }

    #[test]
    fn writes_what_it_reads() {
        let block = b"hello".to_vec();
        let cid = crate::cid_v1_sha256(crate::codec::RAW, &block);
        let mut writer = CarWriter::new(Vec::new(), &[cid]).expect("writer");
        writer.write_block(&cid, &block).expect("block");
        let written = writer.written();
        let out = writer.finish().expect("finish");
        assert_eq!(out.len() as u64, written);
        let mut reader = CarReader::new(out.as_slice()).expect("header");
        assert_eq!(reader.roots(), &[cid]);
        let (section, data) = reader.next_block().expect("read").expect("one block");
        assert_eq!((section.cid, data), (cid, block));
        assert!(reader.next_block().expect("end").is_none());
    }
}
