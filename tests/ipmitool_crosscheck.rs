//! Cross-check of the event decoder against an independent one.
//!
//! OpenIPMI's `ipmi_sim` runs an ATCA shelf (ShMC 0x20, blade IPMC 0x82).
//! Events covering every sensor type the classifier decodes are added to the
//! ShMC's SEL through the simulator console (`sel_add`), and the simulator
//! itself generates hot-swap events on the blade's FRU Hot Swap sensor. Then
//! `ipmitool sel list -v` decodes every record, the raw records are read with
//! Get SEL Entry (`ipmitool raw 0x0a 0x43`) and decoded with
//! `shmc_plugin::wire::sel` + `shmc_plugin::wire::event`, and for every record the
//! generator, sensor type, sensor number, direction and offset must agree.
//! The blade's hot-swap sensor is also read with Get Sensor Reading and
//! decoded with `wire::cmd::hot_swap_state`.
//!
//! A second test gives the blade an IPMB channel (`ipmb_dev_int` on a pty)
//! and talks to it with frames built and parsed by `wire::ipmb`, read back
//! through `wire::framer::StreamFramer`: Get Device ID, Get Address Info,
//! Get Sensor Reading of the hot-swap sensor, Set FRU Activation (both ways)
//! and FRU Control, each response decoded by `wire::cmd`.
//!
//! Needs `ipmi_sim` and `ipmitool` (Debian `openipmi`, `ipmitool`).

#[path = "support/ipmi_sim.rs"]
mod ipmi_sim;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipmi_sim::IpmiSim;
use shmc_plugin::wire::addr::IpmbAddr;
use shmc_plugin::wire::cmd;
use shmc_plugin::wire::event::{
    MState, PlatformEvent, SensorType, READING_TYPE_SENSOR_SPECIFIC, READING_TYPE_THRESHOLD,
};
use shmc_plugin::wire::framer::StreamFramer;
use shmc_plugin::wire::ipmb::{Message, Repr};
use shmc_plugin::wire::sel::{parse_get_sel_entry, SelRecord};

/// The shelf: ATCA ShMC at 0x20 with a SEL, blade IPMC at 0x82 in slot 1
/// with a FRU Hot Swap sensor (number 0) whose events go to 0x20.
const SHELF_EMU: &str = "\
atca_enable
mc_add 0x20 0 has-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 dynsens
mc_setbmc 0x20
sel_enable 0x20 1000 0x0a
mc_enable 0x20
atca_set_site 0x41 0 1
mc_add 0x82 0 has-device-sdrs 0x23 9 8 0x9f 0x1291 0xf03 dynsens
mc_enable 0x82
sensor_add 0x82 0 0 0xf0 0x6f
sensor_set_event_support 0x82 0 0 1 1 0 000000011111111 000000000000000 000000011111111 000000000000000
";

/// ipmitool's name for each sensor type code used here (IPMI v2.0 table
/// 42-3 and PICMG 3.0 table 3-3, as ipmitool spells them).
const IPMITOOL_SENSOR_TYPES: &[(&str, u8)] = &[
    ("Temperature", 0x01),
    ("Voltage", 0x02),
    ("Fan", 0x04),
    ("Processor", 0x07),
    ("Power Supply", 0x08),
    ("Power Unit", 0x09),
    ("Memory", 0x0C),
    ("OS Critical Stop", 0x20),
    ("Watchdog2", 0x23),
    ("FRU Hot Swap", 0xF0),
    ("IPMB Physical Link", 0xF1),
];

/// The offset meaning ipmitool prints as "Description" (IPMI v2.0 tables
/// 42-2 and 42-3, PICMG 3.0 tables 3-4 and 3-12).
fn expected_description(sensor_type: u8, event_type: u8, offset: u8) -> Option<&'static str> {
    if event_type == READING_TYPE_THRESHOLD {
        return Some(match offset {
            0x0 => "Lower Non-critical going low",
            0x1 => "Lower Non-critical going high",
            0x2 => "Lower Critical going low",
            0x3 => "Lower Critical going high",
            0x4 => "Lower Non-recoverable going low",
            0x5 => "Lower Non-recoverable going high",
            0x6 => "Upper Non-critical going low",
            0x7 => "Upper Non-critical going high",
            0x8 => "Upper Critical going low",
            0x9 => "Upper Critical going high",
            0xA => "Upper Non-recoverable going low",
            0xB => "Upper Non-recoverable going high",
            _ => return None,
        });
    }
    if event_type != READING_TYPE_SENSOR_SPECIFIC {
        return None;
    }
    Some(match (sensor_type, offset) {
        (0x07, 0x0) => "IERR",
        (0x07, 0x1) => "Thermal Trip",
        (0x07, 0xB) => "Uncorrectable machine check exception",
        (0x08, 0x1) => "Failure detected",
        (0x09, 0x0) => "Power off/down",
        (0x09, 0x4) => "AC lost",
        (0x09, 0x6) => "Failure detected",
        (0x0C, 0x0) => "Correctable ECC",
        (0x0C, 0x1) => "Uncorrectable ECC",
        (0x20, 0x0) => "Error during system startup",
        (0x20, 0x1) => "Run-time critical stop",
        (0x20, 0x2) => "OS graceful stop",
        (0x20, 0x3) => "OS graceful shutdown",
        (0x23, 0x0) => "Timer expired",
        (0x23, 0x1) => "Hard reset",
        (0x23, 0x2) => "Power down",
        (0x23, 0x3) => "Power cycle",
        (0x23, 0x8) => "Timer interrupt",
        (0xF0, 0x0) => "Transition to M0",
        (0xF0, 0x1) => "Transition to M1",
        (0xF0, 0x2) => "Transition to M2",
        (0xF0, 0x3) => "Transition to M3",
        (0xF0, 0x4) => "Transition to M4",
        (0xF0, 0x5) => "Transition to M5",
        (0xF0, 0x6) => "Transition to M6",
        (0xF0, 0x7) => "Transition to M7",
        (0xF1, 0x0) => "IPMB-A disabled, IPMB-B disabled",
        (0xF1, 0x1) => "IPMB-A enabled, IPMB-B disabled",
        (0xF1, 0x2) => "IPMB-A disabled, IPMB-B enabled",
        (0xF1, 0x3) => "IPMB-A enabled, IPMB-B enabled",
        _ => return None,
    })
}

/// One event to add: generator, LUN, sensor type, number, assertion, reading type, ED1-3.
type Case = (u8, u8, u8, u8, bool, u8, [u8; 3]);

fn cases() -> Vec<Case> {
    const T: u8 = READING_TYPE_THRESHOLD;
    const S: u8 = READING_TYPE_SENSOR_SPECIFIC;
    let mut v: Vec<Case> = Vec::new();
    // Every threshold offset, asserted, on a temperature sensor; ED1 bits 7:4
    // say ED2 holds the trigger reading and ED3 the threshold.
    for off in 0..=0xB {
        v.push((0x82, 0, 0x01, 0x30, true, T, [0x50 | off, 0x5A, 0x50]));
    }
    // Voltage and fan thresholds, both directions, another generator and LUN.
    v.push((0x82, 0, 0x02, 0x31, false, T, [0x52, 0x10, 0x12]));
    v.push((0x84, 1, 0x02, 0x31, true, T, [0x59, 0xE0, 0xD0]));
    v.push((0x82, 0, 0x02, 0x31, false, T, [0x5B, 0xF0, 0xE8]));
    v.push((0x82, 0, 0x04, 0x32, true, T, [0x04, 0xFF, 0xFF]));
    v.push((0x82, 2, 0x04, 0x32, false, T, [0x07, 0xFF, 0xFF]));
    // Sensor-specific: processor, power supply (not decoded: Unknown), power
    // unit, memory, OS critical stop, watchdog 2, IPMB link.
    v.push((0x82, 0, 0x07, 0x40, true, S, [0x00, 0xFF, 0xFF]));
    v.push((0x82, 0, 0x07, 0x40, true, S, [0x01, 0xFF, 0xFF]));
    v.push((0x82, 0, 0x07, 0x40, false, S, [0x01, 0xFF, 0xFF]));
    v.push((0x84, 0, 0x07, 0x41, true, S, [0x0B, 0xFF, 0xFF]));
    v.push((0x82, 0, 0x08, 0x42, true, S, [0x01, 0xFF, 0xFF]));
    v.push((0x82, 0, 0x09, 0x43, true, S, [0x00, 0xFF, 0xFF]));
    v.push((0x82, 0, 0x09, 0x43, true, S, [0x04, 0xFF, 0xFF]));
    v.push((0x82, 0, 0x09, 0x43, false, S, [0x04, 0xFF, 0xFF]));
    v.push((0x82, 0, 0x09, 0x43, true, S, [0x06, 0xFF, 0xFF]));
    v.push((0x82, 0, 0x0C, 0x44, true, S, [0x00, 0xFF, 0x01]));
    v.push((0x82, 0, 0x0C, 0x44, true, S, [0x01, 0xFF, 0x01]));
    v.push((0x82, 0, 0x0C, 0x44, false, S, [0x01, 0xFF, 0x01]));
    for off in 0..=3 {
        v.push((0x82, 0, 0x20, 0x45, true, S, [off, 0xFF, 0xFF]));
    }
    for off in [0, 1, 2, 3, 8] {
        v.push((0x82, 0, 0x23, 0x46, true, S, [0xC0 | off, 0x00, 0x01]));
    }
    v.push((0x82, 0, 0x23, 0x46, false, S, [0xC0, 0x00, 0x01]));
    for off in 0..=3 {
        v.push((0x82, 0, 0xF1, 0x47, true, S, [off, 0xFF, 0xFF]));
    }
    // PICMG FRU Hot Swap, PICMG form: ED1 = 0xA0|state, ED2 = cause<<4|previous, ED3 = FRU.
    for (ed1, ed2, ed3) in [
        (0xA2, 0x01, 0x00), // M1 -> M2, normal
        (0xA3, 0x12, 0x00), // M2 -> M3, shelf manager
        (0xA4, 0x03, 0x00), // M3 -> M4
        (0xA5, 0x24, 0x00), // M4 -> M5, operator handle
        (0xA6, 0x15, 0x00), // M5 -> M6, shelf manager
        (0xA1, 0x06, 0x00), // M6 -> M1
        (0xA7, 0x44, 0x00), // M4 -> M7, communication lost
        (0xA0, 0x61, 0x00), // M1 -> M0, surprise extraction
        (0xA4, 0x03, 0x01), // FRU 1 reaches M4
    ] {
        v.push((0x82, 0, 0xF0, 0x00, true, S, [ed1, ed2, ed3]));
    }
    // The form OpenIPMI writes: no previous state, cause or FRU id.
    v.push((0x82, 0, 0xF0, 0x00, true, S, [0xA7, 0xFF, 0xFF]));
    v.push((0x82, 0, 0xF0, 0x00, true, S, [0x04, 0xFF, 0xFF]));
    v
}

/// One record as ipmitool decoded it.
#[derive(Debug, Default)]
struct Decoded {
    generator_id: String,
    sensor_type: String,
    sensor_number: String,
    event_type: String,
    direction: String,
    description: String,
}

/// Parses `sel list -v` output into records keyed by record id.
fn parse_sel_list_verbose(text: &str) -> BTreeMap<u16, Decoded> {
    let mut out = BTreeMap::new();
    let mut current: Option<(u16, Decoded)> = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim().to_string());
        if key == "SEL Record ID" {
            if let Some((id, d)) = current.take() {
                out.insert(id, d);
            }
            let id = u16::from_str_radix(&value, 16).expect("record id is hex");
            current = Some((id, Decoded::default()));
            continue;
        }
        let Some((_, d)) = current.as_mut() else {
            continue;
        };
        match key {
            "Generator ID" => d.generator_id = value,
            "Sensor Type" => d.sensor_type = value,
            "Sensor Number" => d.sensor_number = value,
            "Event Type" => d.event_type = value,
            "Event Direction" => d.direction = value,
            "Description" => d.description = value,
            _ => {}
        }
    }
    if let Some((id, d)) = current {
        out.insert(id, d);
    }
    out
}

/// `sel_add` arguments for one event: the 13 record bytes after the record type.
fn sel_add_command(event: &PlatformEvent) -> String {
    let record = SelRecord {
        record_id: 0,
        timestamp: 0,
        channel: 0,
        event: *event,
    };
    let bytes = record.to_bytes();
    let mut cmd = String::from("sel_add 0x20 0x02");
    for b in &bytes[3..] {
        cmd.push_str(&format!(" 0x{b:02x}"));
    }
    cmd
}

/// Reads every raw SEL record with Get SEL Entry, following the next-record ids.
fn read_raw_sel(sim: &IpmiSim) -> Vec<SelRecord> {
    let mut records = Vec::new();
    let mut id: u16 = 0x0000; // first record
    loop {
        let lo = format!("0x{:02x}", id & 0xFF);
        let hi = format!("0x{:02x}", id >> 8);
        let mut data = vec![0x00]; // ipmitool strips the completion code
        data.extend(sim.raw(&["0x0a", "0x43", "0", "0", &lo, &hi, "0", "0xff"]));
        let (next, record) = parse_get_sel_entry(&data)
            .unwrap_or_else(|e| panic!("SEL entry {id:#06x} ({data:02x?}): {e}"));
        records.push(record);
        if next == 0xFFFF {
            return records;
        }
        assert!(records.len() < 1000, "SEL chain does not end");
        id = next;
    }
}

#[test]
fn sel_decoding_agrees_with_ipmitool() {
    let mut sim = IpmiSim::start("ipmitool-crosscheck", SHELF_EMU);

    let cases = cases();
    for &(generator, lun, sensor_type, number, assertion, event_type, ed) in &cases {
        let event = PlatformEvent {
            generator: IpmbAddr(generator),
            generator_lun: lun,
            evm_rev: cmd::EVM_REV,
            sensor_type: SensorType::from(sensor_type),
            sensor_number: number,
            assertion,
            event_type,
            event_data: ed,
        };
        let out = sim.console(&sel_add_command(&event));
        assert!(out.contains("Added record"), "sel_add: {out}");
    }

    // The simulator's own hot-swap events: walk the blade M1 -> M2 -> M3 -> M4
    // and read the state back with Get Sensor Reading after each step.
    let walk = [1u8, 2, 3, 4];
    for state in walk {
        sim.console(&format!("sensor_set_bit_clr_rest 0x82 0 0 {state} 1 1"));
        // Bridged to the blade; ipmitool strips the completion code.
        let out = sim.ipmitool(&["-t", "0x82", "raw", "0x04", "0x2d", "0"]);
        let mut rsp = vec![0x00];
        rsp.extend(ipmi_sim::parse_hex_bytes(&out));
        assert_eq!(
            cmd::hot_swap_state(&rsp),
            MState::from_code(state),
            "Get Sensor Reading {rsp:02x?}"
        );
    }

    let listed = parse_sel_list_verbose(&sim.ipmitool(&["sel", "list", "-v"]));
    let records = read_raw_sel(&sim);

    let expected_count = cases.len() + walk.len();
    assert_eq!(records.len(), expected_count, "raw SEL records");
    assert_eq!(listed.len(), expected_count, "records ipmitool lists");

    let mut hot_swap_simulator_form = 0;
    for record in &records {
        let ev = record.event;
        let theirs = listed
            .get(&record.record_id)
            .unwrap_or_else(|| panic!("ipmitool did not list record {:#06x}", record.record_id));
        let ctx = format!(
            "record {:#06x}: ours {ev:?}, ipmitool {theirs:?}",
            record.record_id
        );

        // Generator: ipmitool prints the 16-bit generator id, byte 2 high.
        let gen_id = u16::from_str_radix(&theirs.generator_id, 16).expect("hex generator id");
        assert_eq!(
            gen_id,
            (u16::from(record.channel) << 12)
                | (u16::from(ev.generator_lun) << 8)
                | u16::from(ev.generator.get()),
            "generator, {ctx}"
        );

        let their_type = IPMITOOL_SENSOR_TYPES
            .iter()
            .find(|(name, _)| *name == theirs.sensor_type)
            .map(|(_, code)| *code)
            .unwrap_or_else(|| panic!("unknown ipmitool sensor type name, {ctx}"));
        assert_eq!(u8::from(ev.sensor_type), their_type, "sensor type, {ctx}");
        if their_type == 0x08 {
            assert_eq!(ev.sensor_type, SensorType::Unknown(0x08), "{ctx}");
        }

        let their_number = u8::from_str_radix(&theirs.sensor_number, 16).expect("hex number");
        assert_eq!(ev.sensor_number, their_number, "sensor number, {ctx}");

        let their_assertion = match theirs.direction.as_str() {
            "Assertion Event" => true,
            "Deassertion Event" => false,
            other => panic!("direction {other:?}, {ctx}"),
        };
        assert_eq!(ev.assertion, their_assertion, "direction, {ctx}");

        let their_event_type = match theirs.event_type.as_str() {
            "Threshold" => READING_TYPE_THRESHOLD,
            "Sensor-specific Discrete" => READING_TYPE_SENSOR_SPECIFIC,
            other => panic!("event type {other:?}, {ctx}"),
        };
        assert_eq!(ev.event_type, their_event_type, "event type, {ctx}");

        let ours = expected_description(u8::from(ev.sensor_type), ev.event_type, ev.offset())
            .unwrap_or_else(|| panic!("no description for our offset {}, {ctx}", ev.offset()));
        assert_eq!(theirs.description, ours, "offset, {ctx}");

        if ev.sensor_type == SensorType::FruHotSwap {
            let hs = ev.hot_swap().unwrap_or_else(|| panic!("hot swap, {ctx}"));
            assert_eq!(
                theirs.description,
                format!("Transition to M{}", hs.current as u8),
                "hot swap state, {ctx}"
            );
            if ev.event_data[0] & 0xF0 != 0xA0 {
                hot_swap_simulator_form += 1;
                assert_eq!((hs.previous, hs.cause, hs.fru_id), (None, None, 0), "{ctx}");
            }
        }
    }
    // The four simulator-generated transitions plus the one added in that form.
    assert_eq!(hot_swap_simulator_form, walk.len() + 1);
}

/// The ShMC's end of a blade's IPMB channel: a pty whose slave ipmi_sim
/// opens as `ipmb_dev_int`, reached through a short symlink.
struct PtyBus {
    master: OwnedFd,
    _slave: OwnedFd,
    link: PathBuf,
    framer: StreamFramer,
}

impl PtyBus {
    fn open() -> PtyBus {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let mut t = tcgetattr(&pty.slave).expect("tcgetattr");
        cfmakeraw(&mut t);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &t).expect("raw mode");
        let slave_path = nix::unistd::ttyname(&pty.slave).expect("pty slave name");
        // ipmi_sim takes at most 15 characters of channel path.
        let link = PathBuf::from(format!("/tmp/shf{:x}", std::process::id() & 0xF_FFFF));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&slave_path, &link).expect("symlink to the pty");
        PtyBus {
            master: pty.master,
            _slave: pty.slave,
            link,
            framer: StreamFramer::new(),
        }
    }

    /// Writes `request` as one message and returns the next whole message read back.
    fn exchange(&mut self, request: &Repr<'_>) -> Message {
        use nix::poll::{poll, PollFd, PollFlags};
        let msg = Message::from_repr(request).expect("request fits one message");
        let written = nix::unistd::write(&self.master, msg.as_bytes()).expect("write request");
        assert_eq!(written, msg.as_bytes().len(), "one message per write");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 64];
        loop {
            assert!(
                Instant::now() < deadline,
                "no response to {msg:?} (framer {:?})",
                self.framer.stats()
            );
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, 200u16).expect("poll pty") == 0 {
                continue;
            }
            let n = nix::unistd::read(&self.master, &mut buf).expect("read pty");
            if let Some(found) = self.framer.push(&buf[..n]).find_map(Result::ok) {
                return found;
            }
        }
    }
}

impl Drop for PtyBus {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.link);
    }
}

/// A request from the ShMC (0x20) to the blade (0x82).
fn to_blade(net_fn: u8, cmd: u8, rq_seq: u8, data: &[u8]) -> Repr<'_> {
    Repr {
        rs_sa: 0x82,
        net_fn,
        rs_lun: 0,
        rq_sa: 0x20,
        rq_seq,
        rq_lun: 0,
        cmd,
        data,
    }
}

#[test]
fn ipmb_frames_against_ipmi_sim() {
    let mut bus = PtyBus::open();
    let conf = format!(
        "set_working_mc 0x82\n  ipmb 0 ipmb_dev_int {}\n",
        bus.link.display()
    );
    let mut sim = IpmiSim::start_with("ipmb-pty", SHELF_EMU, &conf);
    sim.console("sensor_set_bit_clr_rest 0x82 0 0 4 1 1");

    // Get Device ID: the values the emu file gave the blade's mc_add.
    let req = to_blade(cmd::NETFN_APP, cmd::CMD_GET_DEVICE_ID, 1, &[]);
    let rsp = bus.exchange(&req);
    assert!(rsp.repr().answers(&req), "{rsp:?}");
    let id = cmd::DeviceId::parse(rsp.repr().data).expect("Get Device ID response");
    assert_eq!(id.device_id, 0);
    assert_eq!(id.device_revision, 3);
    assert!(id.provides_sdrs);
    assert_eq!((id.firmware_major, id.firmware_minor), (9, 0x08));
    assert_eq!(id.additional_support, 0x9F);
    assert_eq!((id.manufacturer_id, id.product_id), (0x1291, 0x0F03));

    // Get Address Info: slot 1 (atca_set_site 0x41 0 1).
    let data = cmd::get_address_info();
    let req = to_blade(cmd::NETFN_GROUP_EXT, cmd::CMD_GET_ADDRESS_INFO, 2, &data);
    let rsp = bus.exchange(&req);
    assert!(rsp.repr().answers(&req), "{rsp:?}");
    let info = cmd::AddressInfo::parse(rsp.repr().data).expect("Get Address Info response");
    assert_eq!((info.hardware_address, info.ipmb0_address), (0x41, 0x82));
    assert_eq!((info.site_type, info.site_number), (0, 1));

    let mut seq = 3;
    let mut hot_swap_state = |bus: &mut PtyBus| {
        let data = cmd::get_sensor_reading(0);
        let req = to_blade(
            cmd::NETFN_SENSOR_EVENT,
            cmd::CMD_GET_SENSOR_READING,
            seq,
            &data,
        );
        seq += 1;
        let rsp = bus.exchange(&req);
        assert!(rsp.repr().answers(&req), "{rsp:?}");
        cmd::hot_swap_state(rsp.repr().data)
    };
    assert_eq!(hot_swap_state(&mut bus), Some(MState::M4));

    // Set FRU Activation (deactivate): the simulator walks M6 -> M1. Its
    // response is byte for byte the golden vector of `wire::ipmb`.
    let data = cmd::set_fru_activation(0, false);
    let req = to_blade(cmd::NETFN_GROUP_EXT, cmd::CMD_SET_FRU_ACTIVATION, 10, &data);
    let rsp = bus.exchange(&req);
    assert_eq!(
        rsp.as_bytes(),
        &[0x09, 0x20, 0xB4, 0x2C, 0x82, 0x28, 0x0C, 0x00, 0x00, 0x4A]
    );
    assert_eq!(cmd::check_picmg_response(rsp.repr().data), Ok(()));
    assert_eq!(hot_swap_state(&mut bus), Some(MState::M1));

    // Activation from M2 walks M3 -> M4.
    sim.console("sensor_set_bit_clr_rest 0x82 0 0 2 1 1");
    assert_eq!(hot_swap_state(&mut bus), Some(MState::M2));
    let data = cmd::set_fru_activation(0, true);
    let req = to_blade(cmd::NETFN_GROUP_EXT, cmd::CMD_SET_FRU_ACTIVATION, 11, &data);
    let rsp = bus.exchange(&req);
    assert!(rsp.repr().answers(&req), "{rsp:?}");
    assert_eq!(cmd::check_picmg_response(rsp.repr().data), Ok(()));
    assert_eq!(hot_swap_state(&mut bus), Some(MState::M4));

    // FRU Control cold reset: accepted; a FRU the blade does not have is refused.
    let data = cmd::fru_control(0, cmd::FruControlOption::ColdReset);
    let req = to_blade(cmd::NETFN_GROUP_EXT, cmd::CMD_FRU_CONTROL, 12, &data);
    let rsp = bus.exchange(&req);
    assert!(rsp.repr().answers(&req), "{rsp:?}");
    assert_eq!(cmd::check_picmg_response(rsp.repr().data), Ok(()));
    let data = cmd::fru_control(5, cmd::FruControlOption::ColdReset);
    let req = to_blade(cmd::NETFN_GROUP_EXT, cmd::CMD_FRU_CONTROL, 13, &data);
    let rsp = bus.exchange(&req);
    assert!(rsp.repr().answers(&req), "{rsp:?}");
    assert_eq!(
        cmd::check_picmg_response(rsp.repr().data),
        Err(cmd::ResponseError::Completion(
            cmd::CompletionCode::DestinationUnavailable
        ))
    );

    // Every byte the simulator sent was part of a valid message.
    let stats = bus.framer.stats();
    assert_eq!(stats.bad_frames(), 0, "{stats:?}");
    assert_eq!(stats.bytes_skipped, 0, "{stats:?}");
    drop(sim);
}
