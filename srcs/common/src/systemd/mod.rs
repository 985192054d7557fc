//! What a service tells systemd and takes from it: readiness, stopping and the watchdog
//! (`notify`), and the listening socket kept across restarts (`socket_handover`). Outside
//! systemd all of it does nothing.

pub mod notify;
pub mod socket_handover;
