//! One message per read (`/dev/ipmb-N`): parsing never panics, parse then
//! emit reproduces valid input byte for byte, and the response decoders
//! never panic on any data. The input is also tried with its checksums
//! repaired, so the fuzzer reaches the decoders behind the checksum checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmc_plugin::capacity::MAX_IPMB_MESSAGE;
use shmc_plugin::wire::cmd;
use shmc_plugin::wire::framer::{validate_message, FramerStats};
use shmc_plugin::wire::ipmb::{Frame, Message, Repr};

fn round_trip(bytes: &[u8]) -> bool {
    let Ok(frame) = Frame::new_checked(bytes) else {
        return false;
    };
    // Every accessor is safe after new_checked.
    let _ = (frame.rs_sa(), frame.net_fn(), frame.rs_lun(), frame.rq_sa());
    let _ = (frame.rq_seq(), frame.rq_lun(), frame.cmd(), frame.data());
    let _ = (frame.header_checksum(), frame.data_checksum());
    let Ok(repr) = Repr::parse(&frame) else {
        return false;
    };
    let mut buf = [0u8; MAX_IPMB_MESSAGE];
    let n = repr.emit(&mut buf).expect("a parsed message re-emits");
    assert_eq!(&buf[..n], bytes, "parse then emit must reproduce the input");
    let msg = Message::from_bytes(bytes).expect("a valid message copies");
    assert_eq!(msg.repr(), repr);

    // Decoders for whatever the data is.
    let _ = cmd::platform_event(&repr).map(|r| r.map(|e| e.hot_swap()));
    let _ = cmd::DeviceId::parse(repr.data);
    let _ = cmd::AddressInfo::parse(repr.data);
    let _ = cmd::SensorReading::parse(repr.data);
    let _ = cmd::hot_swap_state(repr.data);
    let _ = cmd::check_picmg_response(repr.data);
    let rsp = Repr::response_to(&repr, &cmd::PLATFORM_EVENT_RESPONSE);
    assert!(rsp.answers(&repr) || repr.is_response());
    true
}

fuzz_target!(|data: &[u8]| {
    let mut stats = FramerStats::new();
    let ok = validate_message(data, &mut stats).is_ok();
    assert_eq!(ok, round_trip(data));
    assert_eq!(stats.frames + stats.bad_frames(), 1);

    // Same bytes with both checksums repaired.
    if data.len() <= MAX_IPMB_MESSAGE {
        let mut fixed = [0u8; MAX_IPMB_MESSAGE];
        fixed[..data.len()].copy_from_slice(data);
        let mut frame = Frame::new_unchecked(&mut fixed[..data.len()]);
        if frame.check_len().is_ok() {
            frame.fill_checksums();
            assert!(round_trip(&fixed[..data.len()]));
        }
    }
});
