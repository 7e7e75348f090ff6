//! Key file permission and format checks on real files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use shelfha_proto::*;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shelfha-key-{}-{}", name, std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn put(path: &Path, content: &[u8], mode: u32) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

const HEX: &str = "8f13a25c7001de449b36e728c50a916fb4521dee83472af9603bcc157ed809a6";

fn expected() -> [u8; 32] {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&HEX[2 * i..2 * i + 2], 16).unwrap();
    }
    k
}

#[test]
fn test_accepted_formats() {
    let d = dir("ok");
    let p = d.join("key");
    for (content, mode) in [
        (expected().to_vec(), 0o600),
        (HEX.as_bytes().to_vec(), 0o600),
        (format!("{HEX}\n").into_bytes(), 0o400),
        (format!("{}\n", HEX.to_uppercase()).into_bytes(), 0o700),
    ] {
        put(&p, &content, mode);
        let key = load_key(&p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.as_bytes(), &expected());
    }
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn test_group_or_other_access_refused() {
    let d = dir("perm");
    let p = d.join("shelf.key");
    for mode in [0o640, 0o604, 0o660, 0o644, 0o610, 0o602, 0o666] {
        put(&p, HEX.as_bytes(), mode);
        let e = load_key(&p).unwrap_err();
        assert!(
            matches!(e, KeyFileError::Permissions { mode: m, .. } if m & 0o777 == mode),
            "{mode:o}: {e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
    }
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn test_bad_formats_refused() {
    let d = dir("fmt");
    let p = d.join("key");
    let bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![7; 31],
        vec![7; 33],
        HEX.as_bytes()[..62].to_vec(),
        format!("{HEX}\r\n").into_bytes(),
        format!("{HEX}\n\n").into_bytes(),
        format!(" {HEX}").into_bytes(),
        format!("{HEX}0").into_bytes(),
        HEX.replace('0', "g").into_bytes(),
        vec![b'a'; 1000],
    ];
    for content in bad {
        put(&p, &content, 0o600);
        match load_key(&p) {
            Err(KeyFileError::Format { path, len }) => {
                assert_eq!(path, p);
                assert_eq!(len, content.len().min(66));
            }
            other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(&content)),
        }
    }
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn test_missing_file_names_the_file() {
    let p = Path::new("/nonexistent/shelf.key");
    let e = load_key(p).unwrap_err();
    assert!(matches!(e, KeyFileError::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/shelf.key"), "{e}");
}

#[test]
fn test_generate_and_write() {
    let d = dir("gen");
    let p = d.join("key");
    let a = generate_key().unwrap();
    let b = generate_key().unwrap();
    assert_ne!(a.as_bytes(), b.as_bytes());
    write_key_file(&p, &a).unwrap();
    assert_eq!(
        fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(fs::read(&p).unwrap().len(), 65);
    assert_eq!(load_key(&p).unwrap().as_bytes(), a.as_bytes());
    // Never overwrites an existing key.
    assert!(matches!(
        write_key_file(&p, &b),
        Err(KeyFileError::Io { .. })
    ));
    assert_eq!(load_key(&p).unwrap().as_bytes(), a.as_bytes());
    fs::remove_dir_all(&d).unwrap();
}
