//! Packing one file into a CAR the way `ipfs-car pack FILE` (v3, on @ipld/unixfs) does, so the
//! root CID a client computes here is the one any IPFS tool computes for the same file:
//!
//! - 1 MiB fixed-size chunks, each a raw leaf (CIDv1, codec raw, SHA2-256);
//! - a file of one chunk (or none) is that raw leaf itself;
//! - otherwise a balanced tree of dag-pb nodes with at most 1024 links each, every node a
//!   UnixFS `File` with its `filesize` and the `blocksizes` of its children;
//! - optionally wrapped in a UnixFS directory with one link named after the file (ipfs-car's
//!   default; `--no-wrap` leaves it out);
//! - blocks in the order they are made (leaves first, each node after its children, the root
//!   last), and a CARv1 header naming the root.
//!
//! Checked against CARs written by ipfs-car itself (see the tests).

use std::io::{Read, Seek, SeekFrom, Write};

use cid::Cid;

use crate::{CarError, CarWriter, cid_v1_sha256, codec};

/// ipfs-car's chunk size.
pub const CHUNK_SIZE: usize = 1 << 20;
/// ipfs-car's widest node (balanced layout).
pub const MAX_LINKS: usize = 1024;

/// A finished block in the tree: its CID, the file bytes under it, and the bytes of the whole
/// DAG under it (the link's `Tsize`).
#[derive(Debug, Clone, Copy)]
struct Node {
    cid: Cid,
    content: u64,
    dag: u64,
}

/// What packing produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    pub root: Cid,
    /// Bytes of the CAR written.
    pub car_size: u64,
    pub blocks: u64,
}

/// Packs `input` into a CARv1 written to `out`. `wrap_name`: wrap the file in a directory
/// with one entry of that name (what `ipfs-car pack` does unless `--no-wrap`).
pub fn pack<R: Read, W: Write + Seek>(
    mut input: R,
    out: W,
    wrap_name: Option<&str>,
) -> Result<Packed, CarError> {
    // The root is known only at the end: write a placeholder CID of the same length (every
    // CID here is CIDv1 with a 32-byte SHA2-256 digest) and rewrite the header afterwards.
    let placeholder = cid_v1_sha256(codec::DAG_PB, b"");
    let mut writer = CarWriter::new(out, &[placeholder])?;
    let mut blocks = 0u64;
    let mut levels: Vec<Vec<Node>> = vec![Vec::new()];
    let mut chunk = vec![0u8; CHUNK_SIZE];
    let mut chunks = 0u64;
    loop {
        let n = read_full(&mut input, &mut chunk)?;
        if n == 0 && chunks > 0 {
            break;
        }
        let data = &chunk[..n];
        let cid = cid_v1_sha256(codec::RAW, data);
        writer.write_block(&cid, data)?;
        blocks += 1;
        chunks += 1;
        levels[0].push(Node {
            cid,
            content: n as u64,
            dag: n as u64,
        });
        // A full row becomes a node one level up, as the balanced layout flushes it.
        let mut level = 0;
        while level < levels.len() {
            while levels[level].len() > MAX_LINKS {
                let children: Vec<Node> = levels[level].drain(..MAX_LINKS).collect();
                let node = file_node(&mut writer, &children)?;
                blocks += 1;
                if level + 1 == levels.len() {
                    levels.push(Vec::new());
                }
                levels[level + 1].push(node);
            }
            level += 1;
        }
        if n < CHUNK_SIZE {
            break;
        }
    }
    let file = if chunks == 1 {
        levels[0][0]
    } else {
        // Close: every row below the top is grouped into its parent row, then the top row
        // becomes the root (or is the root, if a single node above the leaves).
        let mut level = 0;
        while level < levels.len() {
            while levels[level].len() > MAX_LINKS
                || (!levels[level].is_empty() && level + 1 < levels.len())
            {
                let take = levels[level].len().min(MAX_LINKS);
                let children: Vec<Node> = levels[level].drain(..take).collect();
                let node = file_node(&mut writer, &children)?;
                blocks += 1;
                if level + 1 == levels.len() {
                    levels.push(Vec::new());
                }
                levels[level + 1].push(node);
            }
            level += 1;
        }
        let top = levels.last().cloned().unwrap_or_default();
        if top.len() == 1 && levels.len() > 1 {
            top[0]
        } else {
            blocks += 1;
            file_node(&mut writer, &top)?
        }
    };
    let root = match wrap_name {
        None => file.cid,
        Some(name) => {
            let block = pb_node(&[(file.cid, name, file.dag)], &[0x08, 0x01]);
            let cid = cid_v1_sha256(codec::DAG_PB, &block);
            writer.write_block(&cid, &block)?;
            blocks += 1;
            cid
        }
    };
    let car_size = writer.written();
    let mut out = writer.finish()?;
    out.seek(SeekFrom::Start(0))?;
    let header = CarWriter::new(Vec::new(), &[root])?.finish()?;
    out.write_all(&header)?;
    out.flush()?;
    Ok(Packed {
        root,
        car_size,
        blocks,
    })
}

fn read_full<R: Read>(input: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A UnixFS `File` node over `children`, written to the CAR.
fn file_node<W: Write>(writer: &mut CarWriter<W>, children: &[Node]) -> Result<Node, CarError> {
    let content: u64 = children.iter().map(|c| c.content).sum();
    let mut data = vec![0x08, 0x02, 0x18];
    put_varint(&mut data, content);
    for child in children {
        data.push(0x20);
        put_varint(&mut data, child.content);
    }
    let links: Vec<(Cid, &str, u64)> = children.iter().map(|c| (c.cid, "", c.dag)).collect();
    let block = pb_node(&links, &data);
    let cid = cid_v1_sha256(codec::DAG_PB, &block);
    writer.write_block(&cid, &block)?;
    let dag = block.len() as u64 + children.iter().map(|c| c.dag).sum::<u64>();
    Ok(Node { cid, content, dag })
}

/// A dag-pb node: the links (field 2) first, then the data (field 1), as dag-pb orders them.
fn pb_node(links: &[(Cid, &str, u64)], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (cid, name, tsize) in links {
        let hash = cid.to_bytes();
        let mut link = vec![0x0a];
        put_varint(&mut link, hash.len() as u64);
        link.extend_from_slice(&hash);
        link.push(0x12);
        put_varint(&mut link, name.len() as u64);
        link.extend_from_slice(name.as_bytes());
        link.push(0x18);
        put_varint(&mut link, *tsize);
        out.push(0x12);
        put_varint(&mut out, link.len() as u64);
        out.extend_from_slice(&link);
    }
    out.push(0x0a);
    put_varint(&mut out, data.len() as u64);
    out.extend_from_slice(data);
    out
}

fn put_varint(out: &mut Vec<u8>, value: u64) {
    // Writing to a Vec cannot fail.
    let _ = crate::varint::write_u64(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn packed(data: &[u8], wrap: Option<&str>) -> (Packed, Vec<u8>) {
        let mut out = std::io::Cursor::new(Vec::new());
        let packed = pack(data, &mut out, wrap).expect("pack");
        (packed, out.into_inner())
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    }

    /// Root CIDs, CAR sizes and CAR SHA-256s of `ipfs-car pack FILE -o out.car` (ipfs-car 3.x
    /// from the npm registry, run on these inputs); `(wrap)` is its default, `--no-wrap` the
    /// bare file. The inputs are bytes `i % 251`, or zeros.
    #[test]
    fn matches_ipfs_car_byte_for_byte() {
        // (name, input, wrap name, root, CAR size, CAR SHA-256)
        type Case = (
            &'static str,
            Vec<u8>,
            Option<&'static str>,
            &'static str,
            u64,
            &'static str,
        );
        let cases: [Case; 8] = [
            (
                "empty",
                Vec::new(),
                None,
                "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
                96,
                "50e7408f2eeee58f0a305319619dcc4c89baa7b8425550b9e1b4fdecc020699e",
            ),
            (
                "hello",
                b"hello world\n".to_vec(),
                Some("hello.txt"),
                "bafybeidhkumeonuwkebh2i4fc7o7lguehauradvlk57gzake6ggjsy372a",
                202,
                "f1de1b0bdf1374fd19ba714e2d0f2e96b6629bb30e753c4891cb14e124d1b42e",
            ),
            (
                "1000",
                pattern(1000),
                None,
                "bafkreicojquuwmy7piqjti3zx3buxh47ya64i2vumxmzr5gwqpnfgsd6nu",
                1097,
                "33e72c97d84144eee4f5245af351475847ac8f1d2bd3295e94e565ed73eabc91",
            ),
            (
                "1000 wrapped",
                pattern(1000),
                Some("p251_1000.bin"),
                "bafybeied3gw5jmnbcsjblbg4nvo4vwq5f4xzhfx5x4xrtcurkruqccw4ry",
                1196,
                "7738250240ffee6970bd5026ce5262c38e3177b2866d9995f63e603d92ded8b1",
            ),
            (
                "1 MiB",
                pattern(1 << 20),
                None,
                "bafkreidddocae7lltzjlkooe5a3tmiwsgazn7logjvqk7bzttsidpzhxne",
                1_048_674,
                "68c74111cd27b73f0b4f6e94d61490fdaff982ac13a62f53305cac6768701a31",
            ),
            (
                "1 MiB + 1",
                pattern((1 << 20) + 1),
                None,
                "bafybeidjogjfwuhbzwopgd4bn3skcf5m6oz72xshywcndzxgqb623nfclu",
                1_048_854,
                "b0f6bd304ca2cf57d21091469bda2f934c914fdbdbd54cd94ffa0ecfb55b1240",
            ),
            (
                "3 MiB + 7 wrapped",
                pattern((3 << 20) + 7),
                Some("p251_3MiBp7.bin"),
                "bafybeidux55qts3ttaeipe6vibbi7767sodza62q2yzqt7gwqzlnpprxrq",
                3_146_294,
                "ad7ec21a0722baac77df9edc49fea20122764b7e8487f4fbd664108cff55ba4c",
            ),
            (
                "2 MiB of zeros",
                vec![0u8; 2 << 20],
                None,
                "bafybeiam7fzx7ebtpwnfqb4tfhcthbgihdavyir433y6dd5jjy37dftd4e",
                2_097_436,
                "274c54d7ec40974f9573ab320cab6bd10d56132eadba52b836e00266e032862f",
            ),
        ];
        for (name, data, wrap, root, size, sha) in cases {
            let (packed, car) = packed(&data, wrap);
            assert_eq!(packed.root.to_string(), root, "{name}: root");
            assert_eq!(car.len() as u64, size, "{name}: CAR size");
            assert_eq!(packed.car_size, size, "{name}: reported size");
            assert_eq!(sha256_hex(&car), sha, "{name}: CAR bytes");
        }
    }

    #[test]
    fn the_car_reads_back_with_its_root_and_every_block_checked() {
        let data = pattern((2 << 20) + 5);
        let (packed, car) = packed(&data, Some("file.bin"));
        let mut reader = crate::CarReader::new(car.as_slice()).expect("car");
        assert_eq!(reader.roots(), &[packed.root]);
        let mut raw = Vec::new();
        let mut count = 0;
        while let Some((section, block)) = reader.next_block().expect("block") {
            assert!(section.verified);
            if section.cid.codec() == codec::RAW {
                raw.extend_from_slice(&block);
            }
            count += 1;
        }
        assert_eq!(count, packed.blocks);
        assert_eq!(raw, data, "the leaves in order are the file");
    }
}
