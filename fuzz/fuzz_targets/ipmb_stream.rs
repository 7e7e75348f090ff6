//! Byte-stream framing: arbitrary bytes, pushed in arbitrary chunks, never
//! panic or wedge the framer; every message out is valid and re-emits to
//! itself; every input byte ends up in a message or in `bytes_skipped`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmc_plugin::capacity::MAX_IPMB_MESSAGE;
use shmc_plugin::wire::framer::StreamFramer;
use shmc_plugin::wire::ipmb::{Frame, FrameError, Message, Repr};

fn check(result: Result<Message, FrameError>, out_bytes: &mut u64) {
    if let Ok(msg) = result {
        let bytes = msg.as_bytes();
        *out_bytes += bytes.len() as u64;
        let frame = Frame::new_checked(bytes).expect("framer output has valid lengths");
        let repr = Repr::parse(&frame).expect("framer output has valid checksums");
        let mut buf = [0u8; MAX_IPMB_MESSAGE];
        let n = repr.emit(&mut buf).expect("a parsed message re-emits");
        assert_eq!(&buf[..n], bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    // First byte: chunk size for pushing the rest.
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk % 40) + 1;
    let mut framer = StreamFramer::new();
    let mut out_bytes = 0u64;
    for piece in stream.chunks(chunk) {
        for r in framer.push(piece) {
            check(r, &mut out_bytes);
        }
        assert!(framer.buffered() <= MAX_IPMB_MESSAGE);
    }
    while let Some(r) = framer.finish() {
        check(r, &mut out_bytes);
    }
    assert_eq!(framer.buffered(), 0);
    let stats = framer.stats();
    assert_eq!(out_bytes + stats.bytes_skipped, stream.len() as u64);
});
