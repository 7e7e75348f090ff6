//! The one way the agent waits for a call that may block (every libvirt call, a process-table
//! read): the call runs on its own named thread and the caller waits for its answer up to a
//! deadline. Past it the call is left to itself on its thread (a libvirt call cannot be
//! cancelled) and the caller gets [`DeadlineExceeded`], naming what was left undone.
//!
//! A call that has more to do after it knows its answer (a fence's SIGKILL answers before
//! libvirt's bookkeeping destroy) answers early through its [`Reply`]; a call whose answer
//! comes after the deadline gets it back from [`Reply::send`] (to log a late start).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::failure::DeadlineExceeded;

/// A call could not be run with a deadline.
#[derive(Debug, thiserror::Error)]
pub enum DeadlineError {
    /// No thread could be started for it.
    #[error("{what}: no thread: {source}")]
    NoThread {
        /// The call.
        what: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// It did not answer within its deadline.
    #[error(transparent)]
    Exceeded(#[from] DeadlineExceeded),
}

/// Where a call running on its own thread sends its answer.
#[derive(Debug)]
pub struct Reply<T>(mpsc::Sender<T>);

impl<T> Reply<T> {
    /// Hands the answer to the waiter; gives it back when nobody waits any more (the deadline
    /// passed).
    pub fn send(self, answer: T) -> Result<(), T> {
        self.0.send(answer).map_err(|e| e.0)
    }
}

/// A call running on its own thread.
#[derive(Debug)]
pub struct Pending<T> {
    rx: mpsc::Receiver<T>,
    what: String,
}

impl<T> Pending<T> {
    /// Waits up to `within` for the answer. Can be called again after a timeout (a migration
    /// is waited for again after its job is aborted).
    pub fn wait(&self, within: Duration) -> Result<T, DeadlineExceeded> {
        self.rx.recv_timeout(within).map_err(|_| DeadlineExceeded {
            undone: self.what.clone(),
            within_ms: u64::try_from(within.as_millis()).unwrap_or(u64::MAX).max(1),
        })
    }

    /// Waits until `deadline` for the answer (a deadline shared by several calls).
    pub fn wait_until(&self, deadline: Instant) -> Result<T, DeadlineExceeded> {
        self.wait(deadline.saturating_duration_since(Instant::now()))
    }
}

/// Starts `work` on a thread named `thread`; `what` names the call (and its guest) for the
/// error. `work` answers through its [`Reply`].
pub fn spawn<T: Send + 'static>(
    what: impl Into<String>,
    thread: &str,
    work: impl FnOnce(Reply<T>) + Send + 'static,
) -> Result<Pending<T>, DeadlineError> {
    let what = what.into();
    let (tx, rx) = mpsc::channel();
    match std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || work(Reply(tx)))
    {
        Ok(_) => Ok(Pending { rx, what }),
        Err(source) => Err(DeadlineError::NoThread { what, source }),
    }
}

/// Runs `call` on its own thread and waits up to `within` for its result.
pub fn run<T: Send + 'static>(
    what: impl Into<String>,
    thread: &str,
    within: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DeadlineError> {
    let pending = spawn(what, thread, move |reply| {
        let _ = reply.send(call());
    })?;
    Ok(pending.wait(within)?)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_answer_within_the_deadline() {
        assert_eq!(
            run("add", "t", Duration::from_secs(5), || 1 + 1).unwrap(),
            2
        );
    }

    #[test]
    fn test_a_late_call_names_what_was_left_undone_and_gets_its_answer_back() {
        let (late_tx, late_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let p = spawn("start of `db`", "t", move |reply: Reply<u32>| {
            let _ = go_rx.recv();
            let _ = late_tx.send(reply.send(7));
        })
        .unwrap();
        let e = p.wait(Duration::from_millis(10)).unwrap_err();
        assert_eq!(e.undone, "start of `db`");
        assert_eq!(
            e.to_string(),
            "start of `db`: no answer from libvirt within 10 ms"
        );
        drop(p);
        go_tx.send(()).unwrap();
        assert_eq!(late_rx.recv().unwrap(), Err(7), "the answer comes back");
    }

    #[test]
    fn test_waiting_again_after_a_timeout() {
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let p = spawn("migration", "t", move |reply| {
            let _ = go_rx.recv();
            let _ = reply.send("done");
        })
        .unwrap();
        assert!(p.wait(Duration::from_millis(5)).is_err());
        go_tx.send(()).unwrap();
        assert_eq!(p.wait(Duration::from_secs(5)).unwrap(), "done");
    }
}
