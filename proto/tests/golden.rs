//! Golden byte vectors: one frame per message kind, byte for byte.
//!
//! Fixed inputs: key = bytes 00 01 .. 1f; ShMC orders go from the ShMC (00) to slot 3 (03),
//! everything else from slot 3 to the ShMC; seq = 0x0123_4567_89ab_0000 + kind.
//! Each entry is (header, body, tag) in hex: header = version 02, sender, dest,
//! seq little-endian (00 .. ab 89 67 45 23 01); body = postcard(Message);
//! tag = HMAC-SHA256(key, header || body). The tags were checked against an independent
//! HMAC implementation (Python's hmac module). These bytes are frozen: a change here is a
//! wire-format change and needs a new PROTOCOL_VERSION.

mod common;

use common::{golden_key, route, samples, verifier_for};
use shelfha_proto::*;

const GOLDEN: [(&str, &str, &str); Kind::COUNT as usize] = [
    // kind 00, slot 3, version 1.2.300 (300 = ac 02), capabilities 0b11, heartbeat 200 ms (c8 01),
    // watchdog Some(5000) (01 88 27)
    (
        "0203000000ab8967452301",
        "00030102ac0203c801018827",
        "318111f3802e6e79388be7aededb3066c8730bdf0367052fdcb2759882621e4c",
    ),
    // kind 01, beat 1000 (e8 07), health Ok, 2 protected, digest 32 x ab, partner heard
    // Some(150) (01 96 01), running 1, partner seq Some(0x10000) (01 80 80 04)
    (
        "0203000100ab8967452301",
        "01e8070002abababababababababababababababababababababababababababababababab0196010101808004",
        "273cf6daa9d4468079dc8fa14adf774a489b834d67dedb753d9d7ef2a116b8a4",
    ),
    // kind 02, acked 0x10000 (80 80 04), status Duplicate
    (
        "0203000200ab8967452301",
        "0280800401",
        "1d53b80f4099a9d546e625a7364f2ca7b2e312ca6ca0068b62897aa2de0a3355",
    ),
    // kind 03, name len 3 "vm1"
    (
        "0203000300ab8967452301",
        "0303766d31",
        "04e7119ca8912c8745e4711777f30506d7fe3119443344c7c859ce957bda6f9b",
    ),
    // kind 04 (unit)
    (
        "0203000400ab8967452301",
        "04",
        "3bfac40d4b7fddd939034aa95aaadd79c75bfe65223d535e77dd8a0877fc2f0b",
    ),
    // kind 05 (unit)
    (
        "0203000500ab8967452301",
        "05",
        "b2da2ab3888330ac779a956f8619bd89a81cd79f4a3fa358eec61dad77225525",
    ),
    // kind 06, incident 7
    (
        "0200030600ab8967452301",
        "0607",
        "8cd34089d686452b6ecbc1c4590e9217f9284e2c4f14d00f6964f1689387c000",
    ),
    // kind 07, incident 7, destroyed 3, killed 1, remaining 0
    (
        "0203000700ab8967452301",
        "0707030100",
        "aec84c6e0baa9becb4ac9a0ebff23f130ee9d65d32fdb10a25b336f356678938",
    ),
    // kind 08, incident 8, failed slot 4, fence HotSwapM1, Some, 2 names: "a", "bc"
    (
        "0200030800ab8967452301",
        "0808040101020161026263",
        "88a1a363aa81b021cced637179fc5bcd42852a4666ea1600d48374d4f88a9f05",
    ),
    // kind 09, incident 9, to slot 5
    (
        "0200030900ab8967452301",
        "090905",
        "5158e8ca8232af31ff521b73a22eaa4cd72ef6787703bf46012ce6c4876131bf",
    ),
    // kind 0a, incident 10, name "db"
    (
        "0200030a00ab8967452301",
        "0a0a026462",
        "9cac1d50c133d1fe52a49b4907a232327c34b46ffe92a1ca6e3481bfe3b92a6b",
    ),
    // kind 0b, incident 8, slot 4, name "a", Refused, NoMemory, text "free 512", 200 ms (c8 01)
    (
        "0203000b00ab8967452301",
        "0b080401610101086672656520353132c801",
        "a4b26daa2f230e1c5a771266e8629d489c2fc1660a391ef61a3d27c42660bbda",
    ),
    // kind 0c, incident 8, slot 4, started 1, refused 1, failed 0
    (
        "0203000c00ab8967452301",
        "0c0804010100",
        "061ae90dfd50d1ab9c74070b4881c59574ad974506efe17d6defe9cceab4a15a",
    ),
    // kind 0d, name "vm1", chunk 0 of 1, sha256("<d/>"), 4 bytes "<d/>"
    (
        "0203000d00ab8967452301",
        "0d03766d31000177b4d40b8538055eab755cee363c1ecc391be1663f6ef1cb14f2da7f6150d738043c642f3e",
        "3f5db433f9f191eeef2c38c06c2fcb6fef3002efc79925d231546ecfe5d6212e",
    ),
    // kind 0e, name "vm1"
    (
        "0203000e00ab8967452301",
        "0e03766d31",
        "30c00cb930b9fab16abe43db3ab0e6f6d7f03dd726faaef965e990a49267f72b",
    ),
    // kind 0f, None
    (
        "0203000f00ab8967452301",
        "0f00",
        "0ca76e346a7b0bc89719f64f35a96b0428bf060734d295416817839fbd43912a",
    ),
    // kind 10, incident 11, name "web"
    (
        "0200031000ab8967452301",
        "100b03776562",
        "604f2878471e7e5dc2e223ebc7339b840e3cf2939860a1cbb1c00b3ea47bcc94",
    ),
    // kind 11, incident 11, name "web", killed true
    (
        "0203001100ab8967452301",
        "110b0377656201",
        "6225ee38fd3dc6254c6ab0480e7d12e1183a4ea295e500b6526db707738d109b",
    ),
    // kind 12, incident 12, to slot 5
    (
        "0200031200ab8967452301",
        "120c05",
        "fd2e68485e169bb0e03b572810a9de13e6d431604cef3c42927181a8bd517526",
    ),
    // kind 13, incident 12, slot 3, name "db", Migrated, 600 ms (d8 04), Some(15 ms)
    (
        "0203001300ab8967452301",
        "130c0302646200d804010f",
        "de8c349ffefd2432351e81932ee312bdb21903e6deb0d69e5264b9af1ca64992",
    ),
    // kind 20, nonce 0x0123456789abcdef, floor 300 (ac 02)
    (
        "0203001400ab8967452301",
        "14ef9bafcdf8acd19101ac02",
        "1a5dc9f7a1561bf2a4968032fffa7a27ba288abc3718535425115b166243bf18",
    ),
    // kind 21, nonce 0x0123456789abcdef
    (
        "0203001500ab8967452301",
        "15ef9bafcdf8acd19101",
        "7689e06f7aa88d068a18864d5b1db27cb3deba651e5594b86f8b3001fa0aadbe",
    ),
    // kind 22, slot 3, DiskPath (5), name "vm1", text "/srv/x.img"
    (
        "0203001600ab8967452301",
        "16030503766d310a2f7372762f782e696d67",
        "2222001e3bd46cdc2d24252ff9659270bb24a369b03b8b0ce67a451daa380124",
    ),
    // kind 23 (unit)
    (
        "0203001700ab8967452301",
        "17",
        "bf026607e2cc113aceeb0badb72ddfe6a541ed3693dcfe2ce658378980297e79",
    ),
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn header(msg: &Message) -> Header {
    let (sender, dest) = route(msg);
    Header {
        sender,
        dest,
        seq: 0x0123_4567_89ab_0000 + msg.kind() as u64,
    }
}

#[test]
fn test_emit_matches_golden() {
    for (i, msg) in samples().iter().enumerate() {
        let (h, b, t) = GOLDEN[i];
        let expected = [unhex(h), unhex(b), unhex(t)].concat();
        let mut buf = [0u8; MAX_FRAME];
        let n = seal(&golden_key(), &header(msg), msg, &mut buf).unwrap();
        assert_eq!(&buf[..n], &expected[..], "{:?}", msg.kind());
    }
}

#[test]
fn test_parse_golden() {
    for (i, msg) in samples().iter().enumerate() {
        let (h, b, t) = GOLDEN[i];
        let frame = [unhex(h), unhex(b), unhex(t)].concat();
        let expected = header(msg);
        let rx = verifier_for(expected.dest).open(&frame).unwrap();
        assert_eq!(rx.sender, expected.sender);
        assert_eq!(rx.seq, expected.seq);
        assert_eq!(&rx.message, msg);
        assert_eq!(unhex(b)[0], i as u8, "body starts with the kind");
    }
}
