//! Tests of the TOML subset parser.
#![allow(clippy::indexing_slicing)]

use super::*;

fn root(text: &str) -> Table {
    parse(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
}

fn fails(text: &str) -> Error {
    match parse(text) {
        Ok(t) => panic!("{text:?} accepted: {t:?}"),
        Err(e) => e,
    }
}

#[test]
fn test_values() {
    let t = root(
        "# c\r\na = 0x2_0 # hex\nb = -1_000\nc = +7\nd = \"x\\t\\u00e9\\\"\\\\\" \n\
         e = 'C:\\p'\nf = true\n\"g h\" = false\ni = [ 1, \"s\",\n  # c\n  [2], ]\nj = 0\n",
    );
    assert_eq!(
        t.int::<u8>("a").unwrap(),
        Some(At {
            value: 0x20,
            line: 2
        })
    );
    assert_eq!(t.int::<i64>("b").unwrap().unwrap().value, -1000);
    assert_eq!(t.int::<u8>("c").unwrap().unwrap().value, 7);
    assert_eq!(t.string("d").unwrap().unwrap().value, "x\t\u{e9}\"\\");
    assert_eq!(t.string("e").unwrap().unwrap().value, "C:\\p");
    assert!(t.boolean("f").unwrap().unwrap().value);
    assert!(!t.boolean("g h").unwrap().unwrap().value);
    let Some(Entry {
        value: Value::Array(a),
        line: 9,
        ..
    }) = t.entry("i")
    else {
        panic!("{t:?}")
    };
    assert_eq!(
        a,
        &[
            Value::Int(1),
            Value::Str("s".into()),
            Value::Array(vec![Value::Int(2)])
        ]
    );
    assert_eq!(t.int::<u8>("j").unwrap().unwrap().value, 0);
    assert_eq!(t.int::<u8>("zz").unwrap(), None);
    assert_eq!(
        integer("-9223372036854775808"),
        Ok(i64::MIN),
        "the most negative 64-bit integer"
    );
    assert_eq!(integer("0x7fff_ffff_ffff_ffff"), Ok(i64::MAX));
}

#[test]
fn test_tables() {
    let t = root("top = 1\n[a]\nx = 1\n[[b]]\ny = 2\n[ c ]\n[[ b ]]\ny = 3\n");
    assert_eq!(t.table("a").unwrap().unwrap().line, Some(2));
    let b = t.tables("b").unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[1].line, Some(7));
    assert_eq!(b[1].int::<u8>("y").unwrap().unwrap().value, 3);
    assert!(t.table("c").unwrap().is_some());
    assert!(t.tables("none").unwrap().is_empty());
    let e = t.table("b").unwrap_err();
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("expected a table"), "{e:?}");
    let e = t.tables("a").unwrap_err();
    assert!(e.message.contains("array of tables"), "{e:?}");
    assert_eq!(t.only(&["top", "a", "b", "c"]), Ok(()));
    let e = t.only(&["top", "a", "c"]).unwrap_err();
    assert_eq!(e.line, Some(4));
    assert_eq!(
        e.message,
        "unknown field `b`, expected one of `top`, `a`, `c`"
    );
    assert_eq!(t.missing("q").line, None);
    assert_eq!(b[0].missing("q").line, Some(4));
}

#[test]
fn test_typed_errors() {
    let t = root("a = 300\nb = \"one\"\nc = -1\nk = \"serial\"\n");
    let e = t.int::<u8>("a").unwrap_err();
    assert_eq!(e.line, Some(1));
    assert!(
        e.message
            .starts_with("invalid value: integer `300`, expected u8"),
        "{e:?}"
    );
    let e = t.int::<u8>("b").unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(
        e.message
            .starts_with("invalid type: string \"one\", expected u8"),
        "{e:?}"
    );
    assert_eq!(t.int::<u64>("c").unwrap_err().line, Some(3));
    assert!(t.boolean("a").is_err());
    assert!(t.string("a").is_err());
    let e = t.variant("k", &["ipmb", "rmcp"]).unwrap_err();
    assert_eq!(e.line, Some(4));
    assert_eq!(
        e.message,
        "unknown variant `serial`, expected one of `ipmb`, `rmcp`"
    );
}

#[test]
fn test_refused_syntax_names_line() {
    for (text, line, what) in [
        ("a = 1\nb = 1.5\n", 2, "floating-point"),
        ("a = 1\nb = 1e3\n", 2, "floating-point"),
        ("b = -inf\n", 1, "floating-point"),
        ("b = nan\n", 1, "floating-point"),
        ("\nb = 1979-05-27\n", 2, "dates"),
        ("b = 07:32:00\n", 1, "dates"),
        ("b = 1979-05-27T07:32:00Z\n", 1, "dates"),
        ("b = \"\"\"x\"\"\"\n", 1, "multi-line"),
        ("b = '''x'''\n", 1, "multi-line"),
        ("b = { x = 1 }\n", 1, "inline tables"),
        ("a.b = 1\n", 1, "dotted keys"),
        ("[a.b]\n", 1, "dotted table"),
        ("b = 0o17\n", 1, "octal"),
        ("b = 0b1\n", 1, "octal"),
        ("b = 012\n", 1, "leading zeros"),
        ("b = -0x12\n", 1, "sign"),
        ("b = 1__0\n", 1, "invalid value"),
        ("b = _1\n", 1, "invalid value"),
        ("b = 1_\n", 1, "invalid value"),
        ("b = 0x\n", 1, "invalid value"),
        ("b = 9223372036854775808\n", 1, "64 bits"),
        ("b = auto\n", 1, "quoted string"),
        ("b =\n", 1, "expected a value"),
        ("b = \"x\n\"\n", 1, "unterminated"),
        ("b = \"x", 1, "unterminated"),
        ("b = 'x", 1, "unterminated"),
        ("b = \"\\q\"\n", 1, "escape"),
        ("b = \"\\u12\"\n", 1, "hex digits"),
        ("b = \"\\ud800\"\n", 1, "scalar"),
        ("b = [1,\n2\n", 1, "unterminated array"),
        ("b = [1 2]\n", 1, "expected `,`"),
        ("b = 1 2\n", 1, "unexpected text"),
        ("a = 1\na = 2\n", 2, "duplicate key `a`"),
        ("[s]\n[t]\n[s]\n", 3, "duplicate table"),
        ("[[s]]\n[s]\n", 2, "already defined"),
        ("[s]\n[[s]]\n", 2, "already defined"),
        ("s = 1\n[s]\n", 2, "already defined"),
        ("[s\n", 1, "expected `]`"),
        ("[[s]\n", 1, "expected `]]`"),
        ("[s] x\n", 1, "unexpected text"),
        ("= 1\n", 1, "expected a key"),
        ("a 1\n", 1, "expected `=`"),
        ("a = 1\r\n\rb = 2\n", 2, "carriage return"),
        ("a = 1 # \u{1}\n", 1, "control character"),
        ("a = \"\u{1}\"\n", 1, "control character"),
    ] {
        let e = fails(text);
        assert_eq!(e.line, Some(line), "{text:?}: {e:?}");
        assert!(e.message.contains(what), "{text:?}: {e:?}");
    }
    let deep = format!("a = {}{}\n", "[".repeat(40), "]".repeat(40));
    assert!(fails(&deep).message.contains("nested deeper"));
    let ok = format!("a = {}{}\n", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    root(&ok);
}

/// Real configurations, truncated at every byte and mutated at random,
/// never make the parser (or the typed accessors) panic.
#[test]
fn test_hostile_input_never_panics() {
    let configs = [
        include_str!("../../../../cross/bundle/shmc-plugin.toml"),
        include_str!("../../../tests/captures/replay_predictive.toml"),
        "[shelf]\nown_address = 0x20\n[event_source]\nkind = \"rmcp\"\nhost = \"h\"\n\
         user = 'u'\npassword = \"p\\u00e9\\\"\"\n[[blade]]\nslot = 1\na = [1, [\"x\"],]\n",
    ];
    let probe = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        // The whole loader too: typing, validation, line mapping.
        let _ = crate::config::file::parse(&text, std::path::Path::new("fuzz.toml"));
        if let Ok(t) = parse(&text) {
            let _ = t.only(&["shelf", "blade"]);
            for key in ["shelf", "blade", "event_source", "timing"] {
                if let Ok(Some(s)) = t.table(key) {
                    let _ = s.int::<u8>("own_address");
                    let _ = s.string("host");
                    let _ = s.variant("kind", &["ipmb", "rmcp"]);
                }
                if let Ok(bs) = t.tables(key) {
                    for b in bs {
                        let _ = b.int::<u64>("slot");
                        let _ = b.boolean("slot");
                    }
                }
            }
        }
    };
    // xorshift64*: deterministic, no dependency.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let interesting = b"[]\"'\\#=.,{}\n\r\t 0x_-+:eu\x00\xff";
    for config in configs {
        let bytes = config.as_bytes();
        for cut in 0..=bytes.len() {
            probe(bytes.get(..cut).unwrap_or_default());
            probe(bytes.get(cut..).unwrap_or_default());
        }
        for _ in 0..3000 {
            let mut b = bytes.to_vec();
            for _ in 0..1 + next() % 8 {
                let len = b.len().max(1) as u64;
                let at = (next() % len) as usize;
                let pick = interesting[(next() % interesting.len() as u64) as usize];
                match next() % 4 {
                    0 if at < b.len() => b[at] = pick,
                    1 if at < b.len() => {
                        b.remove(at);
                    }
                    2 => b.insert(at.min(b.len()), pick),
                    _ if at < b.len() => b[at] = next() as u8,
                    _ => {}
                }
            }
            probe(&b);
        }
    }
    for _ in 0..3000 {
        let len = (next() % 64) as usize;
        let b: Vec<u8> = (0..len)
            .map(|_| interesting[(next() % interesting.len() as u64) as usize])
            .collect();
        probe(&b);
    }
}
