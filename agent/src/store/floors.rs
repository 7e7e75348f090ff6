//! Replay floors: the highest protocol sequence accepted from each peer, kept in
//! `<state>/floors.json` so that after an agent restart an old frame (a recorded order
//! replayed) is still rejected as stale.

use std::collections::BTreeMap;
use std::path::Path;

use super::write_atomic;

const FILE: &str = "floors.json";

/// Reads the stored floors (node id -> highest sequence); empty if absent or unreadable.
pub fn load(state_dir: &Path) -> BTreeMap<u8, u64> {
    let path = state_dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            log::error!(
                "{}: unreadable replay floors ({e}); starting without",
                path.display()
            );
            BTreeMap::new()
        }),
        Err(_) => BTreeMap::new(),
    }
}

/// Stores the floors atomically.
pub fn save(state_dir: &Path, floors: &BTreeMap<u8, u64>) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(floors).map_err(std::io::Error::other)?;
    write_atomic(&state_dir.join(FILE), &bytes)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_round_trip_and_garbage() {
        let dir = crate::testutil::TempDir::new("floors");
        assert!(load(dir.path()).is_empty());
        let f: BTreeMap<u8, u64> = [(0, 1_700_000_000_000_000), (2, 17)].into();
        save(dir.path(), &f).unwrap();
        assert_eq!(load(dir.path()), f);
        std::fs::write(dir.path().join(FILE), b"[garbage").unwrap();
        assert!(load(dir.path()).is_empty());
    }
}
