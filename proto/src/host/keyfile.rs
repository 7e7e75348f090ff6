//! The shelf key file.
//!
//! Accepted formats (nothing else):
//! - raw: exactly 32 bytes;
//! - hex: exactly 64 hexadecimal digits (either case), optionally followed by one `\n`.
//!
//! The file must not be accessible to group or others (`mode & 0o077 == 0`, e.g. 0600 or 0400);
//! the mode of the file a symlink points to is what counts.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::auth::Key;

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
                 optional newline",
                path.display(),
                len
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
    match buf.len() {
        32 => {
            let mut raw = [0u8; 32];
            raw.copy_from_slice(&buf);
            Ok(Key::new(raw))
        }
        64 => Key::from_hex(&buf).ok_or(format_err),
        65 => buf
            .strip_suffix(b"\n")
            .and_then(Key::from_hex)
            .ok_or(format_err),
        _ => Err(format_err),
    }
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
