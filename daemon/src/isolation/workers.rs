//! How a plugin host serves its lanes: a few worker threads wait on one epoll over
//! every lane, each takes a lane whose call has come, serves it and goes back for the
//! next, so that a worker that finds another call already waiting serves it without
//! sleeping first.
//!
//! EXPERIMENT: the worker count is capped by `FLASKBBD_HOST_WORKERS` (default: one per lane).

use std::{
    collections::HashMap,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    thread::JoinHandle,
};

use crate::ipc::{page::Page, Lane};

/// The stack of a worker (as a spawned Rust thread's default).
const WORKER_STACK: usize = 2 << 20;
/// The epoll token of the event that tells every worker to end.
const END: u64 = u64::MAX;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves one frame of a lane (the lane's lock is taken by it as needed); false when
/// the lane has ended.
pub(crate) type ServeOne = dyn Fn(&Mutex<Lane>, Option<&Page>) -> bool + Send + Sync;

/// One lane as the workers share it.
struct Slot {
    lane: Mutex<Lane>,
    page: Option<Arc<Page>>,
    fd: RawFd,
}

/// The lanes, by epoll token.
#[derive(Default)]
struct Slots {
    next: u64,
    open: HashMap<u64, Arc<Slot>>,
    ending: bool,
}

/// The host's lanes and the workers serving them.
pub(crate) struct Workers {
    epoll: OwnedFd,
    end: OwnedFd,
    serve: Box<ServeOne>,
    slots: Mutex<Slots>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    count: AtomicUsize,
    cap: usize,
    names: String,
}

impl Workers {
    /// An epoll with nothing in it yet; `serve` answers one frame of a lane.
    pub(crate) fn new(names: &str, serve: Box<ServeOne>) -> io::Result<Arc<Workers>> {
        // SAFETY: plain system calls; each result is checked before it is owned.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor just made and owned by nobody else.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        // SAFETY: as above.
        let end = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if end < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        let end = unsafe { OwnedFd::from_raw_fd(end) };
        ctl(&epoll, libc::EPOLL_CTL_ADD, end.as_raw_fd(), libc::EPOLLIN as u32, END)?;
        let cap = std::env::var("FLASKBBD_HOST_WORKERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX);
        Ok(Arc::new(Workers {
            epoll,
            end,
            serve,
            slots: Mutex::new(Slots::default()),
            threads: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            cap,
            names: names.to_owned(),
        }))
    }

    /// Takes a lane to serve.
    pub(crate) fn add(self: &Arc<Self>, lane: Lane) -> io::Result<()> {
        let fd = lane.reads_from().as_raw_fd();
        let slot = Arc::new(Slot {
            page: lane.page().cloned(),
            lane: Mutex::new(lane),
            fd,
        });
        let token = {
            let mut slots = lock(&self.slots);
            let token = slots.next;
            slots.next += 1;
            slots.open.insert(token, slot);
            token
        };
        if let Err(e) = ctl(&self.epoll, libc::EPOLL_CTL_ADD, fd, armed(), token) {
            lock(&self.slots).open.remove(&token);
            return Err(e);
        }
        if self.count.load(Ordering::Relaxed) < self.cap {
            self.spawn()?;
        }
        Ok(())
    }

    fn spawn(self: &Arc<Self>) -> io::Result<()> {
        let me = self.clone();
        let t = std::thread::Builder::new()
            .name("lane".into())
            .stack_size(WORKER_STACK)
            .spawn(move || me.work())?;
        self.count.fetch_add(1, Ordering::Relaxed);
        lock(&self.threads).push(t);
        Ok(())
    }

    fn work(&self) {
        loop {
            let mut ev = libc::epoll_event { events: 0, u64: 0 };
            // SAFETY: one event into a live epoll_event.
            let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), &mut ev, 1, -1) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                eprintln!("flaskbbd-plugin-host {}: waiting for calls: {e}", self.names);
                return;
            }
            if n == 0 {
                continue;
            }
            let token = ev.u64;
            if token == END {
                return;
            }
            let Some(slot) = lock(&self.slots).open.get(&token).cloned() else {
                continue;
            };
            let mut open = (self.serve)(&slot.lane, slot.page.as_deref());
            while open && lock(&slot.lane).buffered() {
                open = (self.serve)(&slot.lane, slot.page.as_deref());
            }
            if open && ctl(&self.epoll, libc::EPOLL_CTL_MOD, slot.fd, armed(), token).is_ok() {
                continue;
            }
            self.close(token);
        }
    }

    fn close(&self, token: u64) {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.open.remove(&token) {
            let _ = ctl(&self.epoll, libc::EPOLL_CTL_DEL, slot.fd, 0, token);
        }
        if slots.ending && slots.open.is_empty() {
            self.signal_end();
        }
    }

    fn signal_end(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: eight bytes to an eventfd this owns.
        unsafe { libc::write(self.end.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    /// The daemon is done: once every lane has closed, the workers end; waits for them.
    pub(crate) fn finish(&self) {
        {
            let mut slots = lock(&self.slots);
            slots.ending = true;
            if slots.open.is_empty() {
                self.signal_end();
            }
        }
        loop {
            let Some(t) = lock(&self.threads).pop() else {
                return;
            };
            let _ = t.join();
        }
    }
}

fn armed() -> u32 {
    (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32
}

fn ctl(epoll: &OwnedFd, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: a live epoll and event.
    if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
