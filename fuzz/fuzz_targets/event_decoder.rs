//! Event decoding: Platform Event data and 16-byte SEL records never panic
//! the decoder, and parse then emit reproduces them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmc_plugin::wire::addr::IpmbAddr;
use shmc_plugin::wire::event::PlatformEvent;
use shmc_plugin::wire::sel::{parse_get_sel_entry, SelRecord};

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    // Platform Event data from generator `head`, LUN from its low bits.
    if let Ok(ev) = PlatformEvent::parse(IpmbAddr(head), head & 0x03, rest) {
        let _ = (ev.hot_swap(), ev.offset());
        let mut out = [0u8; 7];
        ev.emit(&mut out);
        assert_eq!(&out[..], &rest[..7]);
    }
    // The whole input as a SEL record.
    if let Ok(record) = SelRecord::parse(data) {
        let _ = (record.event.hot_swap(), record.generator_7bit());
        let mut expected = [0u8; 16];
        expected.copy_from_slice(&data[..16]);
        expected[8] &= 0xF3; // reserved bits are not kept
        assert_eq!(record.to_bytes(), expected);
        assert_eq!(SelRecord::parse(&record.to_bytes()), Ok(record));
    }
    let _ = parse_get_sel_entry(data);
});
