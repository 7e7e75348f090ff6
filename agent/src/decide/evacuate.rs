//! Evacuate and Migrate, decided: what becomes of each running protected guest (migrated,
//! stopped here, or kept running with why) and whether it fits the destination's free memory.

use crate::failure::MigrationFailure;

/// What to do with one guest of an Evacuate (`live_only` false) or Migrate order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// Not running: reported stopped, nothing to do.
    AlreadyStopped,
    /// Stopped here (Evacuate): the partner starts it after the fence.
    Stop,
    /// Live-migrated to this libvirt URI.
    Migrate(&'a str),
    /// Left running here (Migrate), with why it does not move.
    KeepRunning(MigrationFailure),
}

/// The route of one guest: `active` its state here, `standby_listed` whether the partner
/// keeps a paused warm standby of it (then it never migrates: on Evacuate it is stopped here
/// and the standby resumed after the fence), `dest` the migration destination if there is one.
pub fn route(active: bool, standby_listed: bool, live_only: bool, dest: Option<&str>) -> Route<'_> {
    match dest {
        _ if !active => Route::AlreadyStopped,
        _ if standby_listed && live_only => Route::KeepRunning(MigrationFailure::StandbyOnPartner),
        _ if standby_listed => Route::Stop,
        Some(uri) => Route::Migrate(uri),
        None if live_only => Route::KeepRunning(MigrationFailure::NoPath),
        None => Route::Stop,
    }
}

/// Free memory on the destination, shared by the migrations of one order (`u64::MAX`:
/// unknown, no check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// Destination slot (for the refusal).
    pub slot: u8,
    /// KiB left.
    pub free_kib: u64,
}

impl Room {
    /// Takes `needed_kib` for one migration, or says why it does not fit.
    pub fn take(&mut self, needed_kib: u64) -> Result<(), MigrationFailure> {
        if needed_kib > self.free_kib {
            return Err(MigrationFailure::NoCapacity {
                slot: self.slot,
                needed_kib,
                free_kib: self.free_kib,
            });
        }
        self.free_kib -= needed_kib;
        Ok(())
    }

    /// Gives back what a migration that did not happen took.
    pub fn give_back(&mut self, kib: u64) {
        self.free_kib = self.free_kib.saturating_add(kib);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_routes() {
        let uri = Some("qemu+ssh://b/system");
        assert_eq!(route(false, true, true, uri), Route::AlreadyStopped);
        assert_eq!(
            route(true, true, true, uri),
            Route::KeepRunning(MigrationFailure::StandbyOnPartner)
        );
        assert_eq!(route(true, true, false, uri), Route::Stop);
        assert_eq!(
            route(true, false, true, uri),
            Route::Migrate("qemu+ssh://b/system")
        );
        assert_eq!(
            route(true, false, true, None),
            Route::KeepRunning(MigrationFailure::NoPath)
        );
        assert_eq!(route(true, false, false, None), Route::Stop);
    }

    #[test]
    fn test_room() {
        let mut r = Room {
            slot: 2,
            free_kib: 10,
        };
        assert_eq!(r.take(6), Ok(()));
        assert_eq!(
            r.take(6),
            Err(MigrationFailure::NoCapacity {
                slot: 2,
                needed_kib: 6,
                free_kib: 4
            })
        );
        r.give_back(6);
        assert_eq!(r.free_kib, 10);
        assert_eq!(
            r.take(11).unwrap_err().to_string(),
            "no capacity on slot 2: needs 11 KiB, 10 KiB free"
        );
    }
}
