//! Every row of the published piece-commitment test vectors (Lotus, via go-fil-commp-hashhash)
//! reproduces exactly, and FRC-0069's data test cases give their CIDs.

use std::path::PathBuf;

use nelumbo_commp::{CommPHasher, Parallelism, commp};

fn testdata(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/commp")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn check_file(name: &str, byte: u8) {
    let text = testdata(name);
    let mut rows = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let [payload, padded, expected] = fields[..] else {
            panic!("bad row {line:?} in {name}");
        };
        let payload: usize = payload.parse().expect("payload size");
        let padded: u64 = padded.parse().expect("padded size");
        let data = vec![byte; payload];

        // Whole, and streamed in awkward pieces on one thread.
        let digest = commp(&data).expect("commp");
        let mut hasher = CommPHasher::with_parallelism(Parallelism::Sequential);
        for piece in data.chunks(1000.max(payload / 7)) {
            hasher.update(piece).expect("update");
        }
        let streamed = hasher.finish().expect("finish");

        assert_eq!(
            digest, streamed,
            "{name}: {payload} bytes streamed differently"
        );
        assert_eq!(
            digest.cid_v1().to_string(),
            expected,
            "{name}: {payload} bytes"
        );
        assert_eq!(digest.piece_size.bytes(), padded, "{name}: {payload} bytes");
        assert_eq!(digest.payload_size, payload as u64);
        rows += 1;
    }
    assert!(rows >= 10, "{name} has only {rows} rows");
}

#[test]
fn zero_payloads() {
    check_file("commp-zero.txt", 0x00);
}

#[test]
fn cc_payloads() {
    check_file("commp-0xCC.txt", 0xCC);
}

#[test]
fn frc_0069_data_cases() {
    // 127 bytes of 0, 127 of 1, 127 of 2, 127 of 3.
    let quads: Vec<u8> = (0u8..4).flat_map(|b| [b; 127]).collect();
    let digest = commp(&quads).expect("commp");
    assert_eq!(
        digest.cid_v1().to_string(),
        "baga6ea4seaqes3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi"
    );
    assert_eq!(
        digest.cid_v2().to_string(),
        "bafkzcibcaaces3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi"
    );

    // The same followed by 4 and then 5 zero bytes: padded to a 1 KiB piece.
    let mut longer = quads.clone();
    longer.extend_from_slice(&[0; 4]);
    assert_eq!(
        commp(&longer).expect("commp").cid_v2().to_string(),
        "bafkzcibd7abqlxticxolgseegik2stpfgkkuwyf6kufex3doorkvmzpjuxwe4dz4"
    );
    longer.push(0);
    assert_eq!(
        commp(&longer).expect("commp").cid_v2().to_string(),
        "bafkzcibd64bqlxticxolgseegik2stpfgkkuwyf6kufex3doorkvmzpjuxwe4dz4"
    );

    // 128 zero bytes: 126 bytes of padding, height 3.
    assert_eq!(
        commp(&[0; 128]).expect("commp").cid_v2().to_string(),
        "bafkzcibcpybwiktap34inmaex4wbs6cghlq5i2j2yd2bb2zndn5ep7ralzphkdy"
    );
}

#[test]
fn empty_and_oversized_payloads_are_refused() {
    let err = CommPHasher::new()
        .finish()
        .expect_err("empty payload accepted");
    assert!(err.to_string().contains("empty"), "{err}");
}
