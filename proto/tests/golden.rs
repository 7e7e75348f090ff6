//! Golden byte vectors: one frame per message kind, byte for byte.
//!
//! Fixed inputs: key = bytes 00 01 .. 1f; ShMC orders go from the ShMC (00) to slot 3 (03),
//! everything else from slot 3 to the ShMC; seq = 0x0123_4567_89ab_0000 + kind.
//! Each entry is (header, body, tag) in hex: header = version 01, sender, dest,
//! seq little-endian (00 .. ab 89 67 45 23 01); body = postcard(Message);
//! tag = HMAC-SHA256(key, header || body). The tags were checked against an independent
//! HMAC implementation (Python's hmac module). These bytes are frozen: a change here is a
//! wire-format change and needs a new PROTOCOL_VERSION.

mod common;

use common::{golden_key, route, samples, verifier_for};
use shelfha_proto::*;

const GOLDEN: [(&str, &str, &str); Kind::COUNT as usize] = [
    // kind 00, slot 3, version 1.2.300 (300 = ac 02), capabilities 0b11
    (
        "0103000000ab8967452301",
        "00030102ac0203",
        "e74f6942f969c752aff93c8c4bdd9ba31e1fd9ff1a255eaf85f9ce7dbd405e4b",
    ),
    // kind 01, beat 1000 (e8 07), health Ok, 2 protected, digest 32 x ab
    (
        "0103000100ab8967452301",
        "01e8070002abababababababababababababababababababababababababababababababab",
        "277ab41e7fc4f800bfe7d9e4cfefd13b6d526fbf681f914caa8fb2833b036cc9",
    ),
    // kind 02, acked 0x10000 (80 80 04), status Duplicate
    (
        "0103000200ab8967452301",
        "0280800401",
        "6bf0463470ac7525dc850bd31fa2880dbb876590f7a00267fb16380311200fb2",
    ),
    // kind 03, name len 3 "vm1"
    (
        "0103000300ab8967452301",
        "0303766d31",
        "50e74fdce64e78c28a252d1b6d93d876c648bfa6d6949fdf5b3ef588bef86c00",
    ),
    // kind 04 (unit)
    (
        "0103000400ab8967452301",
        "04",
        "c53f2b6d53d2dd6c4f9790d7f9d6c16f1c4984c2de620ca09ef321d1789f577f",
    ),
    // kind 05 (unit)
    (
        "0103000500ab8967452301",
        "05",
        "6daf8593ddb1a4690afa14266fbb17cd21f8aba345122956c78c70eed2b32de4",
    ),
    // kind 06, incident 7
    (
        "0100030600ab8967452301",
        "0607",
        "d4e3e2b589679dd5a1a2463576a852c31d30caaebb4104692b260c17bcbeb3a3",
    ),
    // kind 07, incident 7, destroyed 3, killed 1, remaining 0
    (
        "0103000700ab8967452301",
        "0707030100",
        "fdeb44ba944b237abf76740c52052db62c570b518acd92e8eb74500ab2080949",
    ),
    // kind 08, incident 8, failed slot 4, fence HotSwapM1, Some, 2 names: "a", "bc"
    (
        "0100030800ab8967452301",
        "0808040101020161026263",
        "0072ca33f9dd290c89a8b78e920163c6c592cae99da5851d02a99e014da240b4",
    ),
    // kind 09, incident 9, to slot 5
    (
        "0100030900ab8967452301",
        "090905",
        "b5684e7af55814a986cbacc7984e2caf8d94190086920b86a6edf258808c96fb",
    ),
    // kind 0a, incident 10, name "db"
    (
        "0100030a00ab8967452301",
        "0a0a026462",
        "2387a74641090c0a9054e30355880e29db8b91da6df37e03b4f995926bd6b62a",
    ),
    // kind 0b, incident 8, slot 4, name "a", Refused, NoMemory, text "free 512", 200 ms (c8 01)
    (
        "0103000b00ab8967452301",
        "0b080401610101086672656520353132c801",
        "b6875a9bcb197da0a7d57deae73c6100cd39610c6120b6e5fcd33238e5068691",
    ),
    // kind 0c, incident 8, slot 4, started 1, refused 1, failed 0
    (
        "0103000c00ab8967452301",
        "0c0804010100",
        "1b3870cf01697a26ff0f9528ca8e762e30420418fec553110f28bb6eefe0d671",
    ),
    // kind 0d, name "vm1", chunk 0 of 1, sha256("<d/>"), 4 bytes "<d/>"
    (
        "0103000d00ab8967452301",
        "0d03766d31000177b4d40b8538055eab755cee363c1ecc391be1663f6ef1cb14f2da7f6150d738043c642f3e",
        "7a845fb488a6108259915c223d748a37ac38fe2d3e1f85006ebf639e64104f5e",
    ),
    // kind 0e, name "vm1"
    (
        "0103000e00ab8967452301",
        "0e03766d31",
        "ba87a06344c4f6c7015a24a0ebd5fe76f308c92896666d331cd5c3e41c2b1c9b",
    ),
    // kind 0f, None
    (
        "0103000f00ab8967452301",
        "0f00",
        "c234a0ef10637f76813dad6e0f6e9c84342ddab897928f3eadf4049d5db1d9b0",
    ),
    // kind 10, incident 11, name "web"
    (
        "0100031000ab8967452301",
        "100b03776562",
        "b73f00e6cfd47ff96891e47e2366a9cd7dc9f49f7e9638392d503a02221e1d43",
    ),
    // kind 11, incident 11, name "web", killed true
    (
        "0103001100ab8967452301",
        "110b0377656201",
        "e8630dc524b50036bb9e8d8c629d01877d466b1c2d2c5708458be66dd0770c1e",
    ),
    // kind 12, incident 12, to slot 5
    (
        "0100031200ab8967452301",
        "120c05",
        "0f190a6d0845ab151bdaa11432f65bf55a7f00d95bcc952defe2a0cac4a576eb",
    ),
    // kind 13, incident 12, slot 3, name "db", Migrated, 600 ms (d8 04), Some(15 ms)
    (
        "0103001300ab8967452301",
        "130c0302646200d804010f",
        "c85e2c518c3ab88ea66efa326306352110dc8ba9a6ff453cdc7f005807c4c9d2",
    ),
    // kind 20, nonce 0x0123456789abcdef, floor 300 (ac 02)
    (
        "0103001400ab8967452301",
        "14ef9bafcdf8acd19101ac02",
        "1c7dc93d7d652a9e6cf9fe37155e3bf7d8a1a65eba42773813eeee0bb39eec26",
    ),
    // kind 21, nonce 0x0123456789abcdef
    (
        "0103001500ab8967452301",
        "15ef9bafcdf8acd19101",
        "47d23270c1218433c0379b8eb8b3a9e8514cfd2799c61a0ddff7c51f9786ead6",
    ),
    // kind 22, slot 3, DiskPath (5), name "vm1", text "/srv/x.img"
    (
        "0103001600ab8967452301",
        "16030503766d310a2f7372762f782e696d67",
        "5fddb8c317e6d8177775614488e107af9a3ee55acfe8d6099b00f81c60436769",
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
