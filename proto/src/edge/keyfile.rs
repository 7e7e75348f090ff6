//! The shelf key file.
//!
//! Accepted formats (nothing else):
//! - raw: exactly 32 bytes;
//! - hex: exactly 64 hexadecimal digits (either case), optionally followed by one `\n`.
//!
//! The file must not be accessible to group or others (`mode & 0o077 == 0`, e.g. 0600 or 0400);
//! the mode of the file a symlink points to is what counts.
//!
//! The key must look random ([`key_weakness`]): all bytes zero or all equal, text (a
//! passphrase such as 31 characters and a newline, in either format), a short pattern
//! repeated (also with up to two bytes changed), a run of equal bytes, a counter, or fewer
//! than [`MIN_DISTINCT_BYTES`] distinct byte values are refused. A random key fails these
//! checks with a probability below 2^-30 (being valid UTF-8 text and holding six equal bytes
//! in a row are the likeliest, about 2^-35 each). Make one with [`KEY_HOWTO`].

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::auth::Key;

/// How to make a key file (quoted by the errors of [`load_key`]).
pub const KEY_HOWTO: &str =
    "head -c 32 /dev/urandom | xxd -p -c 64 > shelf.key; chmod 600 shelf.key";

/// Fewest distinct byte values a key must have (32 random bytes have about 30).
pub const MIN_DISTINCT_BYTES: usize = 8;

/// Longest repeated pattern refused, in bytes (16 repeated twice fills the key).
const MAX_PATTERN: usize = 16;
/// Longest period checked for a pattern repeated with at most two bytes changed.
const NEAR_PATTERN: usize = 24;
/// A run of this many equal bytes is not random.
const MAX_RUN: usize = 6;
/// This many equal differences between neighbouring bytes in a row is a counter.
const MAX_STEP_RUN: usize = 8;

/// Why a key file was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be opened, read or written.
    Io {
        /// The key file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is readable or writable by group or others.
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Neither 32 raw bytes nor 64 hex digits (+ optional newline).
    Format {
        /// The key file.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// The key is obviously not random ([`key_weakness`]).
    Weak {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileError::Io { path, source } => {
                write!(f, "key file {}: {}", path.display(), source)
            }
            KeyFileError::Permissions { path, mode } => write!(
                f,
                "key file {} has mode {:04o}: it must not be accessible to group or others \
                 (chmod 600 {})",
                path.display(),
                mode & 0o7777,
                path.display()
            ),
            KeyFileError::Format { path, len } => write!(
                f,
                "key file {} ({} bytes) is neither 32 raw bytes nor 64 hex digits with an \
                 optional newline; make one with `{KEY_HOWTO}`",
                path.display(),
                len
            ),
            KeyFileError::Weak { path, reason } => write!(
                f,
                "key file {} does not hold a random key: {reason}; make one with `{KEY_HOWTO}`",
                path.display()
            ),
        }
    }
}

impl std::error::Error for KeyFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyFileError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads the shelf key from `path`, refusing group/other access and any other format.
pub fn load_key(path: &Path) -> Result<Key, KeyFileError> {
    let io_err = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::File::open(path).map_err(io_err)?;
    let mode = file.metadata().map_err(io_err)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    // Read at most one byte more than the longest accepted format.
    let mut buf = Vec::with_capacity(66);
    Read::by_ref(&mut file)
        .take(66)
        .read_to_end(&mut buf)
        .map_err(io_err)?;
    let format_err = KeyFileError::Format {
        path: path.to_path_buf(),
        len: buf.len(),
    };
    let key = match buf.len() {
        32 => <[u8; 32]>::try_from(buf.as_slice())
            .map(Key::new)
            .map_err(|_| format_err)?,
        64 => Key::from_hex(&buf).ok_or(format_err)?,
        65 => buf
            .strip_suffix(b"\n")
            .and_then(Key::from_hex)
            .ok_or(format_err)?,
        _ => return Err(format_err),
    };
    match key_weakness(key.as_bytes()) {
        Some(reason) => Err(KeyFileError::Weak {
            path: path.to_path_buf(),
            reason,
        }),
        None => Ok(key),
    }
}

/// Why `key` is obviously not random, if it is: all zero, all bytes equal, text (printable
/// characters, e.g. a passphrase and its newline), a pattern of up to 16 bytes repeated (or
/// of up to 24 bytes with at most two bytes changed), a run of 6 equal bytes, a counter (8
/// equal differences between neighbours in a row), or fewer than [`MIN_DISTINCT_BYTES`]
/// distinct byte values. None of these happens to 32 bytes from `/dev/urandom` except with
/// probability below 2^-30.
pub fn key_weakness(key: &[u8; 32]) -> Option<String> {
    if key.iter().all(|b| *b == 0) {
        return Some("all 32 bytes are zero".into());
    }
    if let Some(first) = key.first() {
        if key.iter().all(|b| b == first) {
            return Some(format!("all 32 bytes are {first:#04x}"));
        }
    }
    let text = std::str::from_utf8(key).is_ok_and(|s| {
        s.chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
    });
    if text {
        return Some(
            "it is text (a passphrase?), the key must be 32 random bytes or their 64 hex digits"
                .into(),
        );
    }
    if let Some(period) =
        (1..=MAX_PATTERN).find(|p| key.iter().zip(key.iter().skip(*p)).all(|(a, b)| a == b))
    {
        return Some(format!("it repeats a {period}-byte pattern"));
    }
    // A pattern of up to 24 bytes repeated, give or take two bytes: at least 8 comparisons,
    // at most 2 differing (random bytes: below 2^-40).
    if let Some(period) = (1..=NEAR_PATTERN).find(|p| {
        let differing = key
            .iter()
            .zip(key.iter().skip(*p))
            .filter(|(a, b)| a != b)
            .count();
        differing <= 2
    }) {
        return Some(format!("it nearly repeats a {period}-byte pattern"));
    }
    // A run of equal bytes (e.g. a zero-filled key with a few random bytes).
    let longest_run = key
        .windows(2)
        .fold((1usize, 1usize), |(longest, run), w| match w {
            [a, b] if a == b => (longest.max(run + 1), run + 1),
            _ => (longest, 1),
        })
        .0;
    if longest_run >= MAX_RUN {
        return Some(format!("{longest_run} equal bytes in a row"));
    }
    // A counter or any arithmetic sequence (00 01 02 .., 1f 1e .., steps of 7): the same
    // difference between neighbours over 8 steps in a row.
    let diffs: Vec<u8> = key
        .windows(2)
        .map(|w| match w {
            [a, b] => b.wrapping_sub(*a),
            _ => 0,
        })
        .collect();
    let longest_step_run = diffs
        .windows(2)
        .fold((1usize, 1usize), |(longest, run), w| match w {
            [a, b] if a == b => (longest.max(run + 1), run + 1),
            _ => (longest, 1),
        })
        .0;
    if longest_step_run >= MAX_STEP_RUN {
        return Some("it counts (the same difference between neighbouring bytes)".into());
    }
    let mut seen = [false; 256];
    for b in key {
        if let Some(s) = seen.get_mut(usize::from(*b)) {
            *s = true;
        }
    }
    let distinct = seen.iter().filter(|s| **s).count();
    if distinct < MIN_DISTINCT_BYTES {
        return Some(format!(
            "only {distinct} distinct byte values (32 random bytes have about 30)"
        ));
    }
    None
}

/// A new random key from the kernel's random source (`/dev/urandom`).
pub fn generate_key() -> io::Result<Key> {
    let mut raw = [0u8; 32];
    fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    Ok(Key::new(raw))
}

/// Writes `key` as 64 hex digits and a newline to a new file `path` with mode 0600.
/// Refuses to overwrite an existing file.
pub fn write_key_file(path: &Path, key: &Key) -> Result<(), KeyFileError> {
    let io_err = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err)?;
    let mut hex = String::with_capacity(65);
    for b in key.as_bytes() {
        hex.push_str(&format!("{b:02x}"));
    }
    hex.push('\n');
    file.write_all(hex.as_bytes()).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}
