//! The deadline actix-http lacks: it times a connection's *first* request head
//! ([`CLIENT_REQUEST_TIMEOUT`]) and an idle keep-alive connection ([`KEEP_ALIVE`]), but once a
//! byte of a later request has arrived on a kept-alive connection nothing is timed, so a client
//! that sends half of its second request's head (or stops reading our answer) holds the
//! connection forever.
//!
//! So every connection is watched: [`crate::request_limits`] marks when a request is inside the
//! application, and a connection that has had none inside for [`IDLE_LIMIT`] (the keep-alive
//! time, then the time a head may take) is shut down. A legitimate idle connection is closed by
//! actix-http at [`KEEP_ALIVE`] anyway, so only a stalled one ever reaches the limit.

use std::{
    any::Any,
    cell::{Cell, RefCell},
    net::SocketAddr,
    os::fd::{AsRawFd, RawFd},
    rc::{Rc, Weak},
    time::{Duration, Instant},
};

use actix_web::dev::Extensions;

use crate::http::{CLIENT_REQUEST_TIMEOUT, KEEP_ALIVE};

/// The longest a connection may go without a request inside the application.
pub const IDLE_LIMIT: Duration = KEEP_ALIVE.saturating_add(CLIENT_REQUEST_TIMEOUT);

/// How long a connection answered with `Connection: close` before its request's body ended
/// gets to take the answer, before it is shut down: actix-http would otherwise wait for the rest
/// of a chunked body first.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How often each worker looks at its connections.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How often a request waiting on another service looks whether its client is still there.
const CLIENT_CHECK_EVERY: Duration = Duration::from_millis(100);

/// One connection's activity, kept in its connection data (so it lives exactly as long as the
/// connection's requests can see it).
#[derive(Clone)]
pub(crate) struct Activity(Rc<Watched>);

struct Watched {
    requests_inside: Cell<u32>,
    idle_since: Cell<Instant>,
    /// Set when the connection was answered with `Connection: close` mid-body.
    close_by: Cell<Option<Instant>>,
    fd: RawFd,
    peer: Option<SocketAddr>,
}

impl Activity {
    /// A request of this connection entered the application; dropping the guard marks it left.
    pub(crate) fn enter(self) -> InsideApp {
        let watched = &self.0;
        watched
            .requests_inside
            .set(watched.requests_inside.get() + 1);
        InsideApp(self)
    }
}

/// Resolves once the client of `req` has closed or reset its connection; never for a request
/// whose connection is not watched. actix-http goes on with a request whose client left, so a
/// request that waits on another service (a slot, an answer) races this: a flood of clients that
/// leave must not hold those waits, each with its socket, for their full time.
pub async fn client_gone(req: &actix_web::HttpRequest) {
    let Some(activity) = req.conn_data::<Activity>().cloned() else {
        return std::future::pending().await;
    };
    // The first look only after a while: a request answered sooner costs no system call.
    loop {
        tokio::time::sleep(CLIENT_CHECK_EVERY).await;
        if peer_left(&activity.0) {
            return;
        }
    }
}

/// Whether the peer has closed (end of stream) or reset the connection. Bytes waiting (a
/// pipelined request) mean it is still there.
fn peer_left(watched: &Watched) -> bool {
    let borrowed = BorrowedRaw(watched.fd);
    let socket = socket2::SockRef::from(&borrowed);
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    // The socket is non-blocking (tokio's): no byte waiting is `WouldBlock`.
    match socket.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => {
            e.kind() != std::io::ErrorKind::WouldBlock
                && e.kind() != std::io::ErrorKind::Interrupted
        }
    }
}

/// A request inside the application.
pub(crate) struct InsideApp(Activity);

impl InsideApp {
    /// The connection was answered with `Connection: close` before its request's body ended:
    /// shut it down shortly, whatever the rest of the body does.
    pub(crate) fn close_soon(&self) {
        (self.0).0.close_by.set(Some(Instant::now() + CLOSE_GRACE));
    }
}

impl Drop for InsideApp {
    fn drop(&mut self) {
        let watched = &(self.0).0;
        watched
            .requests_inside
            .set(watched.requests_inside.get().saturating_sub(1));
        watched.idle_since.set(Instant::now());
    }
}

thread_local! {
    /// This worker thread's connections, and whether its watchdog runs.
    static WATCHED: RefCell<Vec<Weak<Watched>>> = const { RefCell::new(Vec::new()) };
    static WATCHDOG_RUNNING: Cell<bool> = const { Cell::new(false) };
}

/// `HttpServer::on_connect` callback: starts watching a TCP connection.
pub(crate) fn on_connect(connection: &dyn Any, data: &mut Extensions) {
    let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() else {
        return;
    };
    let watched = Rc::new(Watched {
        requests_inside: Cell::new(0),
        idle_since: Cell::new(Instant::now()),
        close_by: Cell::new(None),
        fd: stream.as_raw_fd(),
        peer: stream.peer_addr().ok(),
    });
    WATCHED.with(|all| all.borrow_mut().push(Rc::downgrade(&watched)));
    data.insert(Activity(watched));
    if !WATCHDOG_RUNNING.with(|running| running.replace(true)) {
        // On the worker's own (single-threaded) runtime: it never runs while a connection of
        // this worker is half dropped.
        actix_web::rt::spawn(watchdog());
    }
}

async fn watchdog() {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tick.tick().await;
        let now = Instant::now();
        WATCHED.with(|all| {
            all.borrow_mut().retain(|weak| {
                // Gone with its connection: nothing to watch.
                let Some(watched) = weak.upgrade() else {
                    return false;
                };
                let stalled = (watched.requests_inside.get() == 0
                    && now.duration_since(watched.idle_since.get()) > IDLE_LIMIT)
                    || watched
                        .close_by
                        .get()
                        .is_some_and(|close_by| now > close_by);
                if stalled {
                    shut_down(&watched);
                }
                !stalled
            })
        });
    }
}

/// Ends a stalled connection: actix-http's next read or write on it fails and it closes.
fn shut_down(watched: &Watched) {
    // The descriptor is still this connection's (its data is alive, and this runs on the
    // worker that owns it); the peer check guards against it having been reused all the same.
    let borrowed = BorrowedRaw(watched.fd);
    let socket = socket2::SockRef::from(&borrowed);
    let same_peer = socket
        .peer_addr()
        .ok()
        .and_then(|addr| addr.as_socket())
        .is_some_and(|addr| Some(addr) == watched.peer);
    if same_peer {
        log::info!(
            "closing a connection from {}: no complete request for {IDLE_LIMIT:?}, or answered \
             with `Connection: close` before its body ended",
            watched
                .peer
                .map_or_else(|| "?".to_owned(), |peer| peer.to_string())
        );
        let _ = socket.shutdown(std::net::Shutdown::Both);
    }
}

/// A raw descriptor lent to `SockRef` for one call.
struct BorrowedRaw(RawFd);

impl std::os::fd::AsFd for BorrowedRaw {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: only used while the connection that owns the descriptor is alive (see
        // `shut_down`).
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.0) }
    }
}
