//! The HTTP services' listening socket, kept open across restarts.
//!
//! When a process closes its listening socket, the kernel resets every connection still waiting
//! in the socket's backlog. So under systemd the socket outlives the process: the first start
//! binds it and hands a copy to systemd's file descriptor store (`FileDescriptorStoreMax=1` in
//! the unit); systemd keeps it through `systemctl restart` and crash restarts and passes it back
//! (`LISTEN_FDS`), so connections that arrive while the service restarts wait in the backlog
//! and are answered by the next process. `systemctl stop` empties the store: stopped means closed.

use std::{
    io,
    net::{SocketAddr, TcpListener},
    os::fd::{AsFd, FromRawFd},
    sync::atomic::{AtomicBool, Ordering},
};

use sd_notify::NotifyState;

/// The name the socket is stored under in systemd's file descriptor store.
pub const FD_NAME: &str = "http";

/// Fd 3 belongs to whoever takes it first; a second service built in one process (tests) must
/// not wrap (and later close) the same descriptor again.
static INHERITED_TAKEN: AtomicBool = AtomicBool::new(false);

/// The service's listening socket: the one systemd passed (`LISTEN_FDS`), or a new one bound to
/// `bind_addr` and offered to systemd's file descriptor store. `setting` names the variable
/// that configures `bind_addr`, for the log line when a passed socket overrides it.
pub fn listen(bind_addr: SocketAddr, setting: &str) -> io::Result<TcpListener> {
    if let Some(listener) = inherited()? {
        let addr = listener.local_addr()?;
        if addr != bind_addr && bind_addr.port() != 0 {
            log::warn!(
                "listening on {addr}, the socket systemd kept from an earlier start; \
                 {setting}={bind_addr} takes effect after `systemctl stop` and start"
            );
        } else {
            log::info!("listening on {addr}, the socket systemd kept from an earlier start");
        }
        return Ok(listener);
    }
    let listener = TcpListener::bind(bind_addr)?;
    // Outside systemd (no NOTIFY_SOCKET) this does nothing; a unit without a file descriptor
    // store ignores it and restarts then close the socket as before.
    if let Err(e) = sd_notify::notify_with_fds(
        &[NotifyState::FdStore, NotifyState::FdName(FD_NAME)],
        &[listener.as_fd()],
    ) {
        log::warn!("cannot hand the listening socket to systemd: {e}");
    }
    Ok(listener)
}

/// The listening socket passed by systemd, if any (and not taken already).
fn inherited() -> io::Result<Option<TcpListener>> {
    let mut fds = sd_notify::listen_fds()?;
    let Some(fd) = fds.next() else {
        return Ok(None);
    };
    if fds.next().is_some() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "systemd passed more than one socket; the service listens on one",
        ));
    }
    if INHERITED_TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(None);
    }
    // SAFETY: LISTEN_PID names this process, so fd 3 is the socket systemd passed to it, and
    // the flag above makes this the only owner.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    // A descriptor that is not an IP socket has no socket address: refuse it here rather than
    // failing on the first accept.
    listener.local_addr().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the descriptor systemd passed is not a TCP listening socket: {e}"),
        )
    })?;
    listener.set_nonblocking(true)?;
    Ok(Some(listener))
}
