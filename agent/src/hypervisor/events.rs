//! libvirt domain lifecycle events and connection-close notification.
//!
//! `virt` 0.5 wraps libvirt's event loop (`event_register_default_impl`,
//! `event_run_default_impl`) but not `virConnectDomainEventRegisterAny` nor
//! `virConnectRegisterCloseCallback`; this module is the small unsafe shim over both
//! (libvirt API: <https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectDomainEventRegisterAny>).
//!
//! How it works: [`start_event_loop`] registers libvirt's default event implementation (it
//! must happen before the connection is opened, or the connection gets no events and no
//! keepalive) and runs `virEventRunDefaultImpl` forever on its own thread. [`register`] hands
//! libvirt two C callbacks, each with a boxed `Sender<HypervisorEvent>` as its opaque pointer;
//! libvirt frees the box through the free callback when the registration is removed. The
//! callbacks run on the event-loop thread, copy what they need out of the C objects and send
//! an owned [`HypervisorEvent`] into the channel: no Rust reference outlives a callback, and
//! nothing in a callback can panic (a panic must not unwind into C).
//!
//! This is the only module of the agent allowed to use `unsafe`.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::mpsc::Sender;
use std::sync::OnceLock;
use std::time::Duration;

use virt::connect::Connect;
use virt::sys;

use super::{HypervisorEvent, LifecycleKind};

/// Result of the one-time event-loop set-up, shared by every caller.
static EVENT_LOOP: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers libvirt's default event loop and runs it on a dedicated thread (once per process).
/// Call before opening any connection that needs events or keepalive.
pub fn start_event_loop() -> Result<(), String> {
    EVENT_LOOP
        .get_or_init(|| {
            virt::event::event_register_default_impl().map_err(|e| e.to_string())?;
            std::thread::Builder::new()
                .name("libvirt-events".into())
                .spawn(|| loop {
                    if let Err(e) = virt::event::event_run_default_impl() {
                        log::error!("libvirt event loop iteration failed: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .clone()
}

/// An active event registration; dropping it removes both callbacks.
pub struct Registration {
    conn: Connect,
    lifecycle_id: c_int,
    close_registered: bool,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("lifecycle_id", &self.lifecycle_id)
            .finish()
    }
}

/// Subscribes `sink` to the lifecycle events of every domain on `conn` and to the connection's
/// close notification. The event loop must have been started before `conn` was opened.
pub fn register(
    conn: &Connect,
    sink: Sender<HypervisorEvent>,
) -> Result<Registration, virt::error::Error> {
    let lifecycle_box = Box::into_raw(Box::new(sink.clone())) as *mut c_void;
    // SAFETY: libvirt's C prototype for VIR_DOMAIN_EVENT_ID_LIFECYCLE callbacks is
    // `void (*)(virConnectPtr, virDomainPtr, int event, int detail, void *opaque)`; the API
    // takes it as the generic callback type and calls it with the lifecycle signature
    // (this is libvirt's documented VIR_DOMAIN_EVENT_CALLBACK cast). Both are `extern "C"`
    // function pointers of the same size.
    let generic: sys::virConnectDomainEventGenericCallback = unsafe {
        Some(std::mem::transmute::<
            unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, c_int, c_int, *mut c_void),
            unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void),
        >(lifecycle_callback))
    };
    // SAFETY: `conn.as_ptr()` is a valid connection for the duration of the call (we hold a
    // reference); a null domain means "all domains"; `lifecycle_box` is a leaked
    // `Box<Sender<_>>` that libvirt passes back to the callback and releases exactly once
    // through `free_sender`.
    let id = unsafe {
        sys::virConnectDomainEventRegisterAny(
            conn.as_ptr(),
            std::ptr::null_mut(),
            sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE as c_int,
            generic,
            lifecycle_box,
            Some(free_sender),
        )
    };
    if id < 0 {
        // SAFETY: registration failed, so libvirt did not take ownership of the box.
        drop(unsafe { Box::from_raw(lifecycle_box as *mut Sender<HypervisorEvent>) });
        return Err(virt::error::Error::last_error());
    }
    let close_box = Box::into_raw(Box::new(sink)) as *mut c_void;
    // SAFETY: as above; `close_callback` has exactly libvirt's `virConnectCloseFunc` signature.
    let rc = unsafe {
        sys::virConnectRegisterCloseCallback(
            conn.as_ptr(),
            Some(close_callback),
            close_box,
            Some(free_sender),
        )
    };
    let close_registered = rc == 0;
    if !close_registered {
        // Drivers without a remote connection (test:///) do not support close callbacks.
        // SAFETY: registration failed, libvirt did not take ownership of the box.
        drop(unsafe { Box::from_raw(close_box as *mut Sender<HypervisorEvent>) });
        log::debug!(
            "connection close callback not supported: {}",
            virt::error::Error::last_error()
        );
    }
    Ok(Registration {
        conn: conn.clone(),
        lifecycle_id: id,
        close_registered,
    })
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: the connection is kept alive by `self.conn`; the id and callback are the ones
        // registered above. Failures (connection already dead) are harmless: libvirt frees the
        // callbacks with the connection.
        unsafe {
            sys::virConnectDomainEventDeregisterAny(self.conn.as_ptr(), self.lifecycle_id);
            if self.close_registered {
                sys::virConnectUnregisterCloseCallback(self.conn.as_ptr(), Some(close_callback));
            }
        }
    }
}

/// Maps libvirt's (event, detail) codes to what the agent acts on.
pub fn classify(event: i32, detail: i32) -> LifecycleKind {
    let (event, detail) = (event as u32, detail as u32);
    match event {
        sys::VIR_DOMAIN_EVENT_DEFINED => LifecycleKind::Defined,
        sys::VIR_DOMAIN_EVENT_UNDEFINED => LifecycleKind::Undefined,
        sys::VIR_DOMAIN_EVENT_STARTED => LifecycleKind::Started,
        sys::VIR_DOMAIN_EVENT_STOPPED => match detail {
            sys::VIR_DOMAIN_EVENT_STOPPED_CRASHED | sys::VIR_DOMAIN_EVENT_STOPPED_FAILED => {
                LifecycleKind::Crashed
            }
            _ => LifecycleKind::Stopped,
        },
        sys::VIR_DOMAIN_EVENT_CRASHED => LifecycleKind::Crashed,
        _ => LifecycleKind::Other,
    }
}

/// Copies a C string owned by libvirt into an owned `String`.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string valid for the duration of the call.
unsafe fn owned(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

unsafe extern "C" fn lifecycle_callback(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    event: c_int,
    detail: c_int,
    opaque: *mut c_void,
) {
    // SAFETY: `opaque` is the `Box<Sender<_>>` registered in `register`, alive until libvirt
    // calls `free_sender`, which it never does while a callback runs.
    let sink = unsafe { &*(opaque as *const Sender<HypervisorEvent>) };
    // SAFETY: `dom` is valid for the duration of the callback; virDomainGetName returns a
    // string owned by the domain object, copied before returning.
    let name = unsafe { owned(sys::virDomainGetName(dom)) };
    let mut buf = [0 as c_char; sys::VIR_UUID_STRING_BUFLEN as usize];
    // SAFETY: `buf` has VIR_UUID_STRING_BUFLEN bytes, which libvirt fills with a NUL-terminated string.
    let uuid = if unsafe { sys::virDomainGetUUIDString(dom, buf.as_mut_ptr()) } == 0 {
        // SAFETY: filled and NUL-terminated by libvirt above.
        unsafe { owned(buf.as_ptr()) }
    } else {
        String::new()
    };
    let _ = sink.send(HypervisorEvent::Lifecycle {
        name,
        uuid,
        kind: classify(event, detail),
        raw: (event, detail),
    });
}

unsafe extern "C" fn close_callback(_conn: sys::virConnectPtr, reason: c_int, opaque: *mut c_void) {
    // SAFETY: as in `lifecycle_callback`.
    let sink = unsafe { &*(opaque as *const Sender<HypervisorEvent>) };
    let _ = sink.send(HypervisorEvent::ConnectionClosed { reason });
}

unsafe extern "C" fn free_sender(opaque: *mut c_void) {
    // SAFETY: libvirt calls this exactly once per registration, with the pointer produced by
    // `Box::into_raw` in `register`.
    drop(unsafe { Box::from_raw(opaque as *mut Sender<HypervisorEvent>) });
}

/// Aborts the domain's current job (`virDomainAbortJob`): a live migration that exceeds its
/// timeout. The domain keeps running on the source; the blocked migration call then fails.
/// `virt` 0.5 has no wrapper for this call.
pub fn abort_job(dom: &virt::domain::Domain) -> Result<(), String> {
    // SAFETY: `dom` is a live domain object for the duration of the call (borrowed), and
    // virDomainAbortJob only reads it; it returns -1 on error with the error set in libvirt's
    // thread-local state, which `virt::error::Error::last_error` reads.
    let r = unsafe { sys::virDomainAbortJob(dom.as_ptr()) };
    if r < 0 {
        Err(virt::error::Error::last_error().to_string())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_classify() {
        let c = |e: u32, d: u32| classify(e as i32, d as i32);
        assert_eq!(
            c(
                sys::VIR_DOMAIN_EVENT_STOPPED,
                sys::VIR_DOMAIN_EVENT_STOPPED_FAILED
            ),
            LifecycleKind::Crashed
        );
        assert_eq!(
            c(
                sys::VIR_DOMAIN_EVENT_STOPPED,
                sys::VIR_DOMAIN_EVENT_STOPPED_CRASHED
            ),
            LifecycleKind::Crashed
        );
        assert_eq!(
            c(
                sys::VIR_DOMAIN_EVENT_STOPPED,
                sys::VIR_DOMAIN_EVENT_STOPPED_DESTROYED
            ),
            LifecycleKind::Stopped
        );
        assert_eq!(
            c(
                sys::VIR_DOMAIN_EVENT_STOPPED,
                sys::VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN
            ),
            LifecycleKind::Stopped
        );
        assert_eq!(c(sys::VIR_DOMAIN_EVENT_STARTED, 0), LifecycleKind::Started);
        assert_eq!(c(sys::VIR_DOMAIN_EVENT_CRASHED, 0), LifecycleKind::Crashed);
        assert_eq!(c(sys::VIR_DOMAIN_EVENT_DEFINED, 1), LifecycleKind::Defined);
        assert_eq!(
            c(sys::VIR_DOMAIN_EVENT_UNDEFINED, 0),
            LifecycleKind::Undefined
        );
        assert_eq!(c(sys::VIR_DOMAIN_EVENT_SUSPENDED, 0), LifecycleKind::Other);
    }
}
