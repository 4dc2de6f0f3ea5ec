//! The CAR reader (CARv1 and CARv2), as it reads a client's deal data and a provider's answer
//! to `nelumbo client retrieve`: any bytes give blocks or an error, never a panic, and every
//! block it hands out is where it says it is in the input and matches its CID when it says so.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nelumbo_car::CarReader;

fuzz_target!(|input: &[u8]| {
    let Ok(mut reader) = CarReader::new(input) else {
        return;
    };
    let _ = (reader.roots(), reader.version());
    while let Ok(Some((section, data))) = reader.next_block() {
        let start = usize::try_from(section.data_offset).expect("an offset inside the input");
        let end = start + data.len();
        assert_eq!(section.data_len, data.len() as u64);
        assert_eq!(
            &input[start..end],
            data.as_slice(),
            "the block is not where the reader says"
        );
        assert!(section.section_offset < section.data_offset);
        if section.verified {
            assert_eq!(nelumbo_car::verify_block(&section.cid, &data), Some(true));
        }
        assert!(reader.position() <= input.len() as u64);
    }
});
