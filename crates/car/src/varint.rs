//! Unsigned LEB128 varints, as CAR section lengths are written.

use std::io::{self, Read, Write};

/// Reads a varint; `Ok(None)` at a clean end of the stream (no byte read).
pub fn read_u64<R: Read>(r: &mut R) -> io::Result<Option<(u64, usize)>> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let mut byte = [0u8; 1];
        match r.read_exact(&mut byte) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && i == 0 => return Ok(None),
            Err(e) => return Err(e),
        }
        value |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "a varint is longer than 10 bytes",
    ))
}

pub fn write_u64<W: Write>(w: &mut W, mut value: u64) -> io::Result<usize> {
    let mut buf = [0u8; 10];
    let mut n = 0;
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            buf[n] = byte;
            n += 1;
            break;
        }
        buf[n] = byte | 0x80;
        n += 1;
    }
    w.write_all(&buf[..n])?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u64::MAX] {
            let mut buf = Vec::new();
            let n = write_u64(&mut buf, v).expect("write");

            let (back, m) = read_u64(&mut buf.as_slice()).expect("read").expect("some");
            assert_eq!((back, m), (v, n));
        }
        assert_eq!(
            read_u64(&mut [0xac, 0x02].as_slice()).expect("read"),
            Some((300, 2))
        );
    }
}
