//! The petting rule with injected times, and the backends on ordinary files.

use std::time::{Duration, Instant};

use super::armed::format_utc;
use super::linux::{seconds_for, LinuxWatchdog};
use super::petfile::{PetFile, DISARMED};
use super::policy::{PetPolicy, Witness, RING};
use super::{Watchdog, WatchdogError};

const I: Duration = Duration::from_millis(200);
/// The watchdog timeout of these tests: ten intervals.
const T: Duration = Duration::from_millis(2000);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn test_no_proof_no_pet() {
    let t0 = Instant::now();
    let mut p = PetPolicy::new(I, T, t0);
    // Beats and Presents sent, nothing heard back: hearing nothing proves nothing.
    p.beat_sent(100, t0);
    p.present_sent(7, t0);
    assert!(!p.may_pet(t0));
    assert!(!p.may_pet(t0 + ms(1000)));
    assert_eq!(p.heard(), None);
}

#[test]
fn test_partner_echo_proves_the_send_time() {
    let t0 = Instant::now();
    let mut p = PetPolicy::new(I, T, t0);
    p.beat_sent(100, t0);
    p.beat_sent(130, t0 + ms(200));
    p.beat_sent(160, t0 + ms(400));
    // The partner echoes the beat sent at 200: heard at or after 200.
    assert_eq!(p.partner_echo(130), Some(t0 + ms(200)));
    assert_eq!(p.heard(), Some((t0 + ms(200), Witness::Partner)));
    assert!(p.may_pet(t0 + ms(599)));
    assert!(!p.may_pet(t0 + ms(600)), "pet only before c + 2 x interval");
    // An older echo (reordered heartbeat) does not move the proof back.
    assert_eq!(p.partner_echo(100), Some(t0));
    assert_eq!(p.pet_deadline(), Some(t0 + ms(600)));
    assert_eq!(p.partner_echo(160), Some(t0 + ms(400)));
    assert_eq!(p.pet_deadline(), Some(t0 + ms(800)));
}

#[test]
fn test_unknown_or_old_run_sequences_prove_nothing() {
    let t0 = Instant::now();
    let mut p = PetPolicy::new(I, T, t0);
    // This run's sequences start above everything an earlier run sent.
    p.beat_sent(5_000_000, t0);
    // The partner still echoes our previous run's last heartbeat.
    assert_eq!(p.partner_echo(4_999_000), None);
    // A sequence we never sent, even a higher one.
    assert_eq!(p.partner_echo(5_000_001), None);
    assert!(!p.may_pet(t0));
    // A sequence pushed out of the ring is forgotten.
    for k in 1..=RING as u64 {
        p.beat_sent(5_000_000 + k, t0 + ms(k));
    }
    assert_eq!(p.partner_echo(5_000_000), None);
    assert!(!p.may_pet(t0));
    assert!(p.partner_echo(5_000_000 + RING as u64).is_some());
}

#[test]
fn test_shmc_ack_proves_the_first_transmission() {
    let t0 = Instant::now();
    let mut p = PetPolicy::new(I, T, t0);
    p.present_sent(7, t0 + ms(50));
    assert_eq!(p.presents_in_flight(), 1);
    // An answer to another command is no answer to this one.
    assert_eq!(p.present_answered(8, true), None);
    assert_eq!(p.present_answered(7, true), Some(t0 + ms(50)));
    assert_eq!(p.presents_in_flight(), 0);
    assert_eq!(p.heard(), Some((t0 + ms(50), Witness::Shmc)));
    assert!(p.may_pet(t0 + ms(449)));
    assert!(!p.may_pet(t0 + ms(450)));
    // A second answer to the same command proves nothing more.
    assert_eq!(p.present_answered(7, true), None);
}

#[test]
fn test_rejected_or_given_up_present_proves_nothing() {
    let t0 = Instant::now();
    let mut p = PetPolicy::new(I, T, t0);
    // A ShMC that does not know Present rejects it: it did not count it as hearing us.
    p.present_sent(7, t0);
    assert_eq!(p.present_answered(7, false), None);
    p.present_sent(8, t0);
    // Given up after all retries.
    assert_eq!(p.present_answered(8, false), None);
    assert_eq!(p.presents_in_flight(), 0);
    assert!(!p.may_pet(t0));
}

#[test]
fn test_petting_stops_when_the_proofs_get_old_and_resumes_on_a_new_one() {
    let t0 = Instant::now();
    let mut p = PetPolicy::new(I, T, t0);
    p.present_sent(1, t0);
    p.present_answered(1, true);
    assert!(p.may_pet(t0 + ms(100)));
    p.petted(t0 + ms(100));
    assert!(p.petting());
    // While petting, a fresh partner proof keeps it going.
    p.beat_sent(40, t0 + ms(300));
    p.partner_echo(40);
    assert!(p.may_pet(t0 + ms(650)));
    p.petted(t0 + ms(650));
    assert!(!p.may_pet(t0 + ms(700)), "proofs older than two intervals");
    p.stopped();
    // A new ShMC proof resumes petting however late (the ShMC counts what it acks).
    p.present_sent(2, t0 + ms(2500));
    p.present_answered(2, true);
    assert!(p.may_pet(t0 + ms(2550)));
    assert_eq!(p.heard().map(|h| h.1), Some(Witness::Shmc));
}

#[test]
fn test_a_partner_proof_resumes_only_with_half_the_countdown_left() {
    let t0 = Instant::now();
    let mut p = PetPolicy::new(I, T, t0);
    p.present_sent(1, t0);
    p.present_answered(1, true);
    p.petted(t0 + ms(10));
    assert!(!p.may_pet(t0 + ms(400)));
    p.stopped();
    // Heard by the partner again 600 ms after the last pet: 1410 ms of 2000 left, resumed.
    p.beat_sent(50, t0 + ms(600));
    p.partner_echo(50);
    assert!(p.may_pet(t0 + ms(610)));
    p.petted(t0 + ms(610));
    // Stopped again; heard by the partner only when less than half the countdown is left
    // (the ShMC may hold an older report of the partner and decide): not resumed.
    assert!(!p.may_pet(t0 + ms(1000)));
    p.stopped();
    p.beat_sent(60, t0 + ms(1700));
    p.partner_echo(60);
    assert!(!p.may_pet(t0 + ms(1710)), "600 ms of 2000 left");
    // A ShMC proof still resumes.
    p.present_sent(2, t0 + ms(1720));
    p.present_answered(2, true);
    assert!(p.may_pet(t0 + ms(1730)));
    // Before the first pet of a run, the arming counts as the last pet.
    let mut q = PetPolicy::new(I, T, t0);
    q.beat_sent(1, t0 + ms(900));
    q.partner_echo(1);
    assert!(q.may_pet(t0 + ms(950)));
    let mut q = PetPolicy::new(I, T, t0);
    q.beat_sent(1, t0 + ms(1100));
    q.partner_echo(1);
    assert!(!q.may_pet(t0 + ms(1150)));
}

#[test]
fn test_pet_file_writes_every_pet_and_the_magic_close() {
    let dir = crate::testutil::TempDir::new("petfile");
    let path = dir.path().join("wd");
    let mut f = PetFile::open(&path, 2000).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "armed 2000 1\n");
    assert_eq!(f.timeout_ms(), 2000);
    f.pet().unwrap();
    f.pet().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "armed 2000 3\n");
    Box::new(f).disarm().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), DISARMED);
    // A pet file in a directory that does not exist: an error naming it.
    let bad = dir.path().join("missing/wd");
    let e = PetFile::open(&bad, 2000).unwrap_err();
    assert!(e.to_string().contains("missing/wd"), "{e}");
}

#[test]
fn test_linux_backend_refuses_what_is_not_a_watchdog() {
    let dir = crate::testutil::TempDir::new("linuxwd");
    let file = dir.path().join("plain");
    std::fs::write(&file, "x").unwrap();
    let e = LinuxWatchdog::open(&file, 2000).unwrap_err();
    assert!(matches!(e, WatchdogError::NotADevice { .. }), "{e}");
    assert!(e.to_string().contains("plain"), "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x", "untouched");
    let e = LinuxWatchdog::open(&dir.path().join("none"), 2000).unwrap_err();
    assert!(e.to_string().contains("none: stat"), "{e}");
    // A character device that is no watchdog: the ioctl fails with ENOTTY, named.
    let e = LinuxWatchdog::open(std::path::Path::new("/dev/null"), 2000).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("/dev/null") && text.contains("WDIOC_SETTIMEOUT"),
        "{text}"
    );
    assert!(
        matches!(&e, WatchdogError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOTTY)),
        "{e:?}"
    );
}

#[test]
fn test_seconds_round_up() {
    assert_eq!(seconds_for(1), 1);
    assert_eq!(seconds_for(1000), 1);
    assert_eq!(seconds_for(1001), 2);
    assert_eq!(seconds_for(6_553_500), 6554);
}

#[test]
fn test_wall_clock_format() {
    assert_eq!(format_utc(Duration::ZERO), "1970-01-01T00:00:00.000Z");
    // 2026-12-02T18:34:03.123Z
    assert_eq!(
        format_utc(Duration::from_millis(1_796_236_443_123)),
        "2026-12-02T18:34:03.123Z"
    );
    assert_eq!(
        format_utc(Duration::from_secs(951_782_400)),
        "2000-02-29T00:00:00.000Z"
    );
}
