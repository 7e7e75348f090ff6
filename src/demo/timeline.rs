//! How the demo tells its story: the timeline (lines relative to the
//! injected failure), the core's decisions and alerts as timeline lines (a
//! [`RecordSink`]), and the simulated backplane as the runtime's IPMB port.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use shmc_plugin::edge::record::{Record, RecordSink};
use shmc_plugin::edge::runtime::IpmbPort;
use shmc_plugin::wire::cmd;
use shmc_plugin::wire::ipmb::{Message, Repr};

use crate::sim::Backplane;

/// The demo's clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    start: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn micros(&self) -> u128 {
        self.start.elapsed().as_micros()
    }
}

/// Timeline lines relative to the injection.
#[derive(Debug)]
pub(super) struct Timeline {
    pub t0_us: u128,
    /// When each guest of the failed blade was started on the partner (clock micros).
    pub starts: RefCell<Vec<u128>>,
    /// The kinds of the alerts raised since the injection.
    pub alerts: RefCell<Vec<String>>,
}

impl Timeline {
    pub fn new(clock: &Clock) -> Self {
        Self {
            t0_us: clock.micros(),
            starts: Default::default(),
            alerts: Default::default(),
        }
    }

    fn line_at(&self, at_us: u128, text: &str) {
        let dt = at_us.saturating_sub(self.t0_us);
        println!("  {:>9.3} ms  {text}", dt as f64 / 1000.0);
    }
}

/// Writes timeline lines while a failure is being handled (silent otherwise).
#[derive(Debug, Clone)]
pub(super) struct Narrator {
    pub clock: Clock,
    pub timeline: Option<Rc<Timeline>>,
}

impl Narrator {
    /// A line at the current time.
    pub fn say(&self, text: &str) {
        self.say_at(self.clock.micros(), text);
    }

    /// A line at `at_us` (clock micros).
    pub fn say_at(&self, at_us: u128, text: &str) {
        if let Some(tl) = &self.timeline {
            tl.line_at(at_us, text);
        }
    }

    /// A guest of the failed blade started on the partner at `at_us`.
    pub fn started_at(&self, at_us: u128) {
        if let Some(tl) = &self.timeline {
            tl.starts.borrow_mut().push(at_us);
        }
    }
}

/// The core's decisions and alerts as timeline lines.
impl RecordSink for Narrator {
    fn record(&mut self, r: &Record<'_>) -> io::Result<()> {
        match r {
            Record::Decision(d) => {
                let d = &d.decision;
                let actions: Vec<&str> = d.actions.0.into_iter().collect();
                self.say(&format!(
                    "decision #{}: {} on slot {} ({}) -> {}",
                    d.incident.unwrap_or_default(),
                    d.class,
                    d.slot,
                    d.cause.map(|c| c.0.to_string()).unwrap_or_default(),
                    actions.join(", ")
                ));
            }
            Record::Alert(a) => {
                self.say(&format!("ALERT {}: {}", a.kind, a.alert.0));
                if let Some(tl) = &self.timeline {
                    tl.alerts.borrow_mut().push(a.kind.to_string());
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The simulated backplane as the runtime's IPMB port: every message
/// crosses it as bytes.
pub(super) struct BackplanePort<'a> {
    pub backplane: &'a mut Backplane,
    pub now: u64,
    pub narrator: &'a Narrator,
}

impl IpmbPort for BackplanePort<'_> {
    fn answer(&mut self, response: &Repr<'_>) {
        if let Ok(m) = Message::from_repr(response) {
            self.backplane.deliver(self.now, &m);
        }
    }

    fn request(&mut self, request: &Repr<'_>) -> Option<(u64, Vec<u8>)> {
        if request.net_fn == cmd::NETFN_GROUP_EXT {
            let what = match request.cmd {
                cmd::CMD_SET_FRU_ACTIVATION => "Set FRU Activation (deactivate)",
                cmd::CMD_FRU_CONTROL => "FRU Control",
                cmd::CMD_SET_POWER_LEVEL => "Set Power Level",
                _ => "PICMG command",
            };
            self.narrator
                .say(&format!("fence: {what} -> IPMC 0x{:02x}", request.rs_sa));
        }
        if let Ok(m) = Message::from_repr(request) {
            self.backplane.deliver(self.now, &m);
        }
        // The answer comes back over the backplane.
        None
    }
}
