//! A lane that carries several runs at once, in order: the daemon's way to cross to a
//! busy plugin host without a wake-up per call.
//!
//! A lane of its own per call in flight ([`super::AsyncLane`]) costs two wake-ups per
//! crossing: the host's thread for the lane sleeps in `read` between calls and the
//! call wakes it, and its answer wakes a daemon thread. On a busy machine those
//! wake-ups, not the plugins' work, are most of what isolation costs (a profile at 16
//! clients: a fifth of all CPU time was the host's lane threads being switched in and
//! the daemon waking them; docs/benchmarks.md). A pipe is one lane on which the daemon
//! writes each call as it comes, without waiting for the answer to the one before:
//! the host's thread, still busy with one run, finds the next in its socket and runs
//! it without sleeping, and one read of the daemon's takes several answers. The host
//! answers in the order the runs came (one thread serves the lane), so each answer
//! belongs to the oldest run unanswered; a host call ([`Up::Host`]) belongs to it too,
//! and its reply is written after runs sent ahead (the host keeps those aside until
//! the reply comes, `isolation::host`).
//!
//! What it costs: a run waits for the runs ahead of it in the pipe. So the daemon sends
//! a run down a pipe only while the pipe keeps up ([`Pipe::takes`]: few runs in it,
//! and the one in the host began a moment ago); otherwise the call takes a lane of its
//! own, as it always did, and runs beside the rest. A run that waits too long takes
//! back the runs the host has not begun ([`Pipe::take_back`]; the lane's page decides,
//! by compare-and-swap, whether a run was begun or taken back), which then go on lanes
//! of their own. A run that hangs holds only the run it is in until its timeout kills
//! the host, which ends every call in the host, in the pipe or not, as before.
//!
//! A reader task per pipe reads the host's frames and hands each to the run it belongs
//! to, through a small bounded channel: a host that writes faster than its callers
//! take frames is made to wait, not buffered without end. A run whose caller has gone
//! (its task dropped) still gets its host calls answered (with an error), so that the
//! host is never left waiting; and a pipe that fails ends every run in it with the
//! error, so no caller is left waiting either.

use std::{
    collections::VecDeque,
    io,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, OwnedMutexGuard};

use super::{encode, AsyncLane, Down, Frames, HostValue, Page, Up, WireError};

/// What a run hears from the host: its host calls, then its answer; or the error that
/// broke the pipe.
type Heard = io::Result<Up>;

/// How many frames the reader hands a run before waiting for it to take them.
const HEARD: usize = 8;

/// One lane carrying runs in order ([`self`]).
pub(crate) struct Pipe {
    tx: Arc<tokio::sync::Mutex<Tx>>,
    shared: Arc<Shared>,
    page: Option<Arc<Page>>,
}

/// The writing side: one frame at a time, in the order runs are queued.
struct Tx {
    sock: tokio::net::UnixStream,
    out: Vec<u8>,
}

/// Where the reader hands a run what the host says: its channel, and whether its
/// caller is gone (then the reader answers the run's host calls itself). Both sides
/// decide under `gone`'s lock, so a host call is handed over or answered, never
/// neither and never both.
struct Slot {
    told: mpsc::Sender<Heard>,
    gone: Mutex<bool>,
}

/// The runs in a pipe, and whether it still takes any.
struct Queue {
    /// The runs sent and not yet answered (nor taken back), oldest first, by number.
    runs: VecDeque<(u32, Arc<Slot>)>,
    /// Runs sent so far: the next run's number.
    sent: u32,
    /// The pipe failed or closed: it takes no more runs.
    done: bool,
    /// When the oldest run unanswered began in the host (at the latest: when the one
    /// before it was answered, or when it was sent), in µs since `Shared::epoch`.
    head_since: u64,
}

/// What the reader task and the writers share.
struct Shared {
    queue: Mutex<Queue>,
    epoch: Instant,
    /// The writing socket's descriptor, owned by the pipe's `Tx`, which everyone who
    /// holds this (the pipe, its runs, its reader task) holds too.
    fd: std::os::fd::RawFd,
}

impl Shared {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        lock(&self.queue)
    }

    /// Ends the pipe: it takes no more runs, every run in it hears `error` (or, when
    /// its channel is full, sees the channel end, which it takes for the same), and the
    /// writing side closes, so that the host's thread for it ends.
    fn fail(&self, error: &io::Error) {
        let left: Vec<_> = {
            let mut queue = self.queue();
            queue.done = true;
            queue.runs.drain(..).collect()
        };
        for (_, run) in left {
            let _ = run
                .told
                .try_send(Err(io::Error::new(error.kind(), error.to_string())));
        }
        // SAFETY: shutdown(2) on the socket the pipe's `Tx` owns, alive while `self` is
        // (see `fd`); it closes no descriptor.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_WR);
        }
    }
}

/// One run sent down a pipe: what the host says about it comes here.
pub(crate) struct Run {
    /// Its number on the pipe: the host is in it while [`Page::runs`] is this plus one.
    pub(crate) number: u32,
    /// It went after another run still unanswered: the host's thread was busy, and
    /// took it without sleeping (unless it ran out of runs meanwhile).
    pub(crate) behind: bool,
    heard: mpsc::Receiver<Heard>,
    slot: Arc<Slot>,
    /// The host waits for the reply to a host call of this run.
    owes_reply: bool,
    tx: Arc<tokio::sync::Mutex<Tx>>,
    shared: Arc<Shared>,
}

impl Pipe {
    /// Makes `lane` a pipe and starts its reader task (on the runtime: call it there).
    /// `unreadable` hears what the host sent that is no message, or an answer to a
    /// run it was not sent (whether or not a run was waiting; not once the daemon
    /// ended the pipe itself): its supervisor kills it.
    pub(crate) fn of(lane: AsyncLane, unreadable: impl Fn(&io::Error) + Send + 'static) -> Pipe {
        let AsyncLane {
            rx,
            tx,
            frames,
            out,
            page,
            ..
        } = lane;
        // A lane used before has had its runs numbered from 0 by both sides, and all
        // of them answered: the next run's number is where the host's count stands.
        let sent = page.as_deref().map_or(0, Page::next_run);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                runs: VecDeque::new(),
                sent,
                done: false,
                head_since: 0,
            }),
            epoch: Instant::now(),
            fd: std::os::fd::AsRawFd::as_raw_fd(&tx),
        });
        let tx = Arc::new(tokio::sync::Mutex::new(Tx { sock: tx, out }));
        tokio::spawn(read_answers(
            rx,
            frames,
            shared.clone(),
            tx.clone(),
            page.clone(),
            unreadable,
        ));
        Pipe { tx, shared, page }
    }

    /// Whether a run sent now would be answered about as soon as on a lane of its own:
    /// the pipe takes runs, holds fewer than `most`, and the one in the host began less
    /// than `stall` ago (a slow or hung run makes the others go round it).
    pub(crate) fn takes(&self, most: usize, stall: Duration) -> bool {
        let queue = self.shared.queue();
        let stall = u64::try_from(stall.as_micros()).unwrap_or(u64::MAX);
        !queue.done
            && (queue.runs.is_empty()
                || queue.runs.len() < most
                    && self.shared.now().saturating_sub(queue.head_since) < stall)
    }

    /// Takes back every run of the pipe that the host has not begun (they wait behind
    /// one that is slow), and says how many: each of their callers hears
    /// [`is_taken_back`] and may send its run another way. Nothing is taken when the
    /// host begins the first of them meanwhile. An error, and nothing taken, when
    /// what the host wrote on the page cannot be (more runs unbegun than the pipe
    /// holds, or runs begun that were never sent): a host that lies about its runs,
    /// which its supervisor kills.
    pub(crate) fn take_back(&self) -> Result<usize, String> {
        self.page
            .as_deref()
            .map_or(Ok(0), |page| take_back(&self.shared, page))
    }

    /// Whether the host has begun run `number` (or one after it), as its page says.
    pub(crate) fn has_begun(&self, number: u32) -> bool {
        self.page.as_ref().is_none_or(|page| {
            // Runs begun so far, less the run's own count: under half the number
            // space ahead means at or past it.
            page.runs().wrapping_sub(number.wrapping_add(1)) < u32::MAX / 2
        })
    }

    /// Whether the pipe takes no more runs (it failed or closed).
    pub(crate) fn is_done(&self) -> bool {
        self.shared.queue().done
    }

    /// Closes the pipe (its host is retiring, which happens once no call of its
    /// generation is left): it takes no more runs, and the host's thread for it ends.
    pub(crate) fn close(&self) {
        self.shared.fail(&not_sent("the pipe was closed"));
    }

    /// The lane's shared page, if it has one.
    pub(crate) fn page(&self) -> Option<&Arc<Page>> {
        self.page.as_ref()
    }

    /// Sends `down` (a call or a chain: a run) after the runs already in the pipe. The
    /// frame is written whole even if the caller's task is dropped meanwhile. An error
    /// for which [`is_taken_back`] holds says that nothing was sent (the pipe takes no
    /// more runs).
    pub(crate) async fn send(&self, down: &Down, patience: Duration) -> io::Result<Run> {
        // The lock is held long only while a frame waits for room in the socket, which
        // the host makes only between runs: a slow run is in the host. Not behind it.
        let Ok(mut tx) = tokio::time::timeout(patience, self.tx.clone().lock_owned()).await else {
            return Err(not_sent("the pipe's socket is full"));
        };
        encode(&mut tx.out, down)?;
        let (told, heard) = mpsc::channel(HEARD);
        let slot = Arc::new(Slot {
            told,
            gone: Mutex::new(false),
        });
        let (number, behind) = {
            let mut queue = self.shared.queue();
            if queue.done {
                return Err(not_sent("the pipe takes no more runs"));
            }
            let behind = !queue.runs.is_empty();
            if !behind {
                queue.head_since = self.shared.now();
            }
            let number = queue.sent;
            queue.sent = number.wrapping_add(1);
            queue.runs.push_back((number, slot.clone()));
            (number, behind)
        };
        write_whole(tx, self.shared.clone())?;
        Ok(Run {
            number,
            behind,
            heard,
            slot,
            owes_reply: false,
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        })
    }
}

impl Run {
    /// The next thing the host says about this run: a host call, or its answer (the
    /// last); an error when the pipe broke before.
    pub(crate) async fn next(&mut self) -> io::Result<Up> {
        let heard = match self.heard.recv().await {
            Some(heard) => heard,
            None => Err(broken_pipe()),
        };
        if let Ok(Up::Host { call, .. }) = &heard {
            self.owes_reply = call.answers();
        }
        heard
    }

    /// Answers the run's last host call.
    pub(crate) async fn reply(&mut self, reply: Result<HostValue, WireError>) -> io::Result<()> {
        let written = send_reply(&self.tx, &self.shared, reply).await;
        self.owes_reply = false;
        written
    }
}

impl Drop for Run {
    /// A run whose caller is gone while the host waits for a reply (a host call handed
    /// over and not answered) gets one, an error, so that the host's thread goes on.
    fn drop(&mut self) {
        // The reader answers what it cannot hand over from now on.
        let mut gone = lock(&self.slot.gone);
        *gone = true;
        self.heard.close();
        while let Ok(heard) = self.heard.try_recv() {
            if let Ok(Up::Host { call, .. }) = heard {
                self.owes_reply = call.answers();
            }
        }
        drop(gone);
        if !self.owes_reply {
            return;
        }
        let (tx, shared) = (self.tx.clone(), self.shared.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = send_reply(&tx, &shared, abandoned()).await;
            });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// [`Pipe::take_back`], on the pipe's `shared` state and `page`.
fn take_back(shared: &Shared, page: &Page) -> Result<usize, String> {
    let taken: Vec<_> = {
        let mut queue = shared.queue();
        let next = page.next_run();
        // The host begins runs in order, only runs it was sent and after the runs
        // answered: of those sent, the unbegun are at most those still in the pipe.
        let unbegun = queue.sent.wrapping_sub(next) as usize;
        if queue.done {
            return Ok(0);
        }
        if unbegun > queue.runs.len() {
            return Err(format!(
                "it wrote on its pipe's page that run {next} is the next to begin, when {} runs were sent and {} of them are unanswered",
                queue.sent,
                queue.runs.len()
            ));
        }
        if unbegun == 0 || !page.take_back(next, queue.sent) {
            return Ok(0);
        }
        let keep = queue.runs.len() - unbegun;
        queue.runs.drain(keep..).collect()
    };
    let n = taken.len();
    for (_, run) in taken {
        // Its channel holds nothing (the host never began it), so there is room.
        let _ = run.told.try_send(Err(not_sent(
            "the run was taken back from the pipe before the host began it",
        )));
    }
    Ok(n)
}

/// What a run taken back from its pipe, or never sent down it, hears.
#[derive(Debug)]
struct NotSent(&'static str);

impl std::fmt::Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for NotSent {}

fn not_sent(why: &'static str) -> io::Error {
    io::Error::other(NotSent(why))
}

/// Whether `e` says that the run is not in the pipe (taken back, or never sent): its
/// caller may send it another way.
pub(crate) fn is_taken_back(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|e| e.is::<NotSent>())
}

fn broken_pipe() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the lane to the host closed before the call's answer",
    )
}

/// The reply to a host call whose run's caller is gone.
fn abandoned() -> Result<HostValue, WireError> {
    Err(WireError::Failed(
        "the call was abandoned: its request ended".into(),
    ))
}

/// Writes the frame in `tx.out`: at once when the socket takes it (the usual case),
/// else from a task that holds the lock until it is written, so that no frame is ever
/// left half written for the next one to follow. A write that fails ends the pipe.
fn write_whole(mut tx: OwnedMutexGuard<Tx>, shared: Arc<Shared>) -> io::Result<()> {
    let mut done = 0;
    while done < tx.out.len() {
        match tx.sock.try_write(&tx.out[done..]) {
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let Tx { sock, out, .. } = &mut *tx;
                    if let Err(e) = sock.write_all(&out[done..]).await {
                        shared.fail(&e);
                    }
                });
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                shared.fail(&e);
                return Err(e);
            }
        }
    }
    Ok(())
}

async fn send_reply(
    tx: &Arc<tokio::sync::Mutex<Tx>>,
    shared: &Arc<Shared>,
    reply: Result<HostValue, WireError>,
) -> io::Result<()> {
    let mut guard = tx.clone().lock_owned().await;
    if shared.queue().done {
        return Err(broken_pipe());
    }
    encode(&mut guard.out, &Down::Reply(reply))?;
    write_whole(guard, shared.clone())
}

/// The pipe's reader task: hands each frame from the host to the oldest run
/// unanswered, and ends the pipe when the host's side ends or says something it may
/// not: the runs the host never began are taken back (nothing of them ran: their
/// callers send them again, to a new host if this one died), the rest hear the error.
async fn read_answers(
    mut rx: tokio::net::UnixStream,
    mut frames: Frames,
    shared: Arc<Shared>,
    tx: Arc<tokio::sync::Mutex<Tx>>,
    page: Option<Arc<Page>>,
    unreadable: impl Fn(&io::Error),
) {
    use tokio::io::AsyncReadExt;
    let error = loop {
        let up: Up = match frames.next() {
            Some(Ok(up)) => up,
            Some(Err(e)) => break e,
            None => {
                let read = match rx.read(frames.room()).await {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    read => read,
                };
                match read.and_then(|n| frames.filled(n)) {
                    Ok(()) => continue,
                    Err(e) => break e,
                }
            }
        };
        let answers_call = matches!(&up, Up::Host { call, .. } if call.answers());
        let ends_run = matches!(up, Up::Done(_) | Up::ChainDone(_));
        let run = {
            let mut queue = shared.queue();
            let run = if ends_run {
                queue.runs.pop_front().map(|(_, run)| run)
            } else {
                queue.runs.front().map(|(_, run)| run.clone())
            };
            if ends_run && run.is_some() {
                queue.head_since = shared.now();
            }
            run
        };
        let Some(run) = run else {
            break io::Error::new(
                io::ErrorKind::InvalidData,
                "the host said something about a call it was not given",
            );
        };
        let handed = match run.told.reserve().await {
            Ok(room) => {
                let gone = lock(&run.gone);
                if !*gone {
                    room.send(Ok(up));
                }
                !*gone
            }
            Err(_) => false,
        };
        if !handed && answers_call {
            // Its caller is gone: the host still waits for the reply.
            if send_reply(&tx, &shared, abandoned()).await.is_err() {
                break broken_pipe();
            }
        }
    };
    // Not when the daemon had ended the pipe itself (the host retiring, or a write
    // that failed): a run the host was still in then finds no run to answer.
    if error.kind() == io::ErrorKind::InvalidData && !shared.queue().done {
        unreadable(&error);
    }
    if let Some(page) = &page {
        // A host that lied about its runs has them all fail with it.
        let _ = take_back(&shared, page);
    }
    shared.fail(&error);
}
