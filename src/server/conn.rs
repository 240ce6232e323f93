//! A connection's socket as hyper sees it, and the table of open connections.
//!
//! [`Conn`] wraps the TCP stream so that:
//! - a client that stops reading cannot hold the connection (and the response it is stuck
//!   writing) forever: writes fail after the timeout without progress;
//! - every request head is checked by [`Framing`] before hyper reads it, so hyper never
//!   answers a request itself: a refused head is answered here, after the responses to the
//!   requests before it, with a JSON error carrying `x-worker-pid`, and the connection closes;
//! - the connection's [`Activity`] says whether it is idle (between requests, nothing of the
//!   next one received), so that a worker at its connection cap can close idle keep-alive
//!   connections, oldest first, to make room for new clients.
//!
//! Refusing works through hyper's own close: after a refused head the reader reports end of
//! file, hyper (with half-close allowed) finishes the responses it owes and shuts the socket
//! down, and [`Conn`]'s shutdown writes the refusal first.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Sleep;

use super::framing::{Framing, Rejection};

/// What the worker knows about one connection's use, shared between its socket, its
/// service and the accept loop.
#[derive(Debug)]
pub struct Activity {
    /// Requests handed to the app and not yet answered.
    requests: AtomicU32,
    /// Bytes of a request received and not yet read by hyper, or a head or body in progress.
    mid_message: AtomicBool,
    /// When the connection last received bytes or finished a request, ms since `epoch`.
    last_active_ms: AtomicU64,
    /// Already asked to close.
    closing: AtomicBool,
    close: Notify,
    epoch: Instant,
}

impl Activity {
    fn new(epoch: Instant) -> Activity {
        let a = Activity {
            requests: AtomicU32::new(0),
            mid_message: AtomicBool::new(false),
            last_active_ms: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            close: Notify::new(),
            epoch,
        };
        a.touch();
        a
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    /// Between requests with nothing of the next one received.
    fn is_idle(&self) -> bool {
        self.requests.load(Ordering::Acquire) == 0 && !self.mid_message.load(Ordering::Acquire)
    }

    /// Resolves when the accept loop asks this connection to close.
    pub async fn close_requested(&self) {
        self.close.notified().await;
    }

    /// Counts a request as in progress until the returned guard drops.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Ordering::AcqRel);
        RequestGuard(self.clone())
    }
}

/// A request in progress on a connection.
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The worker's open connections.
#[derive(Debug)]
pub struct Connections {
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }
}

impl Connections {
    /// Registers a new connection; it stays listed until its [`Registered`] drops.
    pub fn register(self: &Arc<Self>) -> (Arc<Activity>, Registered) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(self.epoch));
        self.open.lock().insert(id, activity.clone());
        (activity, Registered(self.clone(), id))
    }

    /// Asks the idle connection that has been quiet longest to close. Returns whether there
    /// was one.
    pub fn close_oldest_idle(&self) -> bool {
        // parking_lot mutex, never held across an await.
        let open = self.open.lock();
        let oldest = open
            .values()
            .filter(|a| a.is_idle() && !a.closing.load(Ordering::Relaxed))
            .min_by_key(|a| a.last_active_ms.load(Ordering::Relaxed));
        match oldest {
            Some(a) => {
                a.closing.store(true, Ordering::Relaxed);
                a.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Removes a connection from [`Connections`] when dropped.
pub struct Registered(Arc<Connections>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.open.lock().remove(&self.1);
    }
}

/// A client's TCP stream as hyper reads and writes it (see the module docs).
pub struct Conn {
    io: TcpStream,
    timeout: Duration,
    /// Started when a write first found the socket full; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
    framing: Framing,
    /// Checked bytes hyper has not read yet, from `pending_at`.
    pending: Vec<u8>,
    pending_at: usize,
    eof: bool,
    refused: Option<Rejection>,
    /// The refusal's bytes still to write at shutdown, from `reply_at`.
    reply: Option<Vec<u8>>,
    reply_at: usize,
    activity: Arc<Activity>,
}

impl Conn {
    pub fn new(io: TcpStream, timeout: Duration, max_head: usize, activity: Arc<Activity>) -> Conn {
        Conn {
            io,
            timeout,
            stalled: None,
            framing: Framing::new(max_head),
            pending: Vec::new(),
            pending_at: 0,
            eof: false,
            refused: None,
            reply: None,
            reply_at: 0,
            activity,
        }
    }

    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending => {
                let timeout = self.timeout;
                let stalled = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if stalled.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading its responses",
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn update_activity(&self) {
        let mid = self.pending_at < self.pending.len() || !self.framing.at_rest();
        self.activity.mid_message.store(mid, Ordering::Release);
    }
}

/// A refusal as a complete HTTP response: JSON, `x-worker-pid`, `Connection: close`.
fn refusal_bytes(r: &Rejection) -> Vec<u8> {
    let body = serde_json::json!({ "error": r.message }).to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\n{}: {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{}",
        r.status.as_u16(),
        r.status.canonical_reason().unwrap_or(""),
        super::WORKER_PID_HEADER,
        std::process::id(),
        body.len(),
        body
    )
    .into_bytes()
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.pending_at < this.pending.len() {
                let n = buf.remaining().min(this.pending.len() - this.pending_at);
                buf.put_slice(&this.pending[this.pending_at..this.pending_at + n]);
                this.pending_at += n;
                this.update_activity();
                return Poll::Ready(Ok(()));
            }
            this.pending.clear();
            this.pending_at = 0;
            if this.eof || this.refused.is_some() {
                // End of file: after a refusal, hyper answers what it has and shuts down.
                return Poll::Ready(Ok(()));
            }
            // Uninitialized: zeroing 8 KiB on every read (most find a 40-byte request, or
            // nothing) showed up in profiles. The socket only ever writes into it.
            let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); 8192];
            let mut read = ReadBuf::uninit(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
                return Poll::Ready(Ok(()));
            }
            this.activity.touch();
            if let Err(refusal) = this.framing.feed(read.filled(), &mut this.pending) {
                tracing::debug!(status = %refusal.status, reason = refusal.message, "request refused");
                this.refused = Some(refusal);
            }
            this.update_activity();
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.reply.is_none()
            && let Some(refusal) = &this.refused
        {
            this.reply = Some(refusal_bytes(refusal));
        }
        while let Some(reply) = &this.reply
            && this.reply_at < reply.len()
        {
            let poll = Pin::new(&mut this.io).poll_write(cx, &reply[this.reply_at..]);
            match ready!(this.watch(cx, poll)) {
                Err(e) => return Poll::Ready(Err(e)),
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => this.reply_at += n,
            }
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
