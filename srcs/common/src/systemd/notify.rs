//! Telling systemd (`Type=notify`) how the service is doing: READY once the service can do its work, and a watchdog
//! fed from the async runtime, so a wedged runtime gets the process restarted. Outside systemd
//! (no `NOTIFY_SOCKET`) all of this does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends READY=1 with a status line, and starts feeding the watchdog if the unit has one.
pub fn ready(status: &str) {
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]) {
        log::warn!("cannot notify systemd: {e}");
    }
    if let Some(timeout) = sd_notify::watchdog_enabled() {
        // Three pings per timeout: one late ping is not yet a restart.
        let period = (timeout / 3).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
        });
    }
}

/// Sends STOPPING=1 (systemd then shows the service as deactivating while it drains).
pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}
