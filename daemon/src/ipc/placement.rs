//! Where a plugin host's lane thread runs: on the calling daemon thread's CPU while
//! the daemon is quiet, wherever the scheduler likes otherwise.
//!
//! A crossing wakes the host's lane thread and then sleeps until it answers. Left to
//! itself the scheduler often wakes the lane on another, idle CPU, and the answer
//! wakes the daemon's thread there in turn: two wake-ups of an idle CPU per crossing,
//! which on a virtual machine (an idle virtual CPU halts, and waking it is an
//! interrupt through the hypervisor) cost tens of microseconds each, more than the
//! crossing's work. On the caller's own CPU the same two hand-offs are context
//! switches: the caller is about to sleep, so the lane runs at once, and its answer
//! wakes the caller where it is. So while the daemon serves one call at a time (one
//! client calling in turn, as [`crate::server`]'s poll for the next call also
//! assumes), each lane is bound to the CPU of the thread that sends it a call, just
//! before the call is sent; when more is going on, the lane gets its own CPUs back
//! and the scheduler spreads the work over the cores as before.
//!
//! Binding a sleeping thread (as a lane's is between calls at one client) only sets
//! its allowed CPUs: the kernel acts on it at the next wake-up (the call), and moves
//! nothing now; a thread still running is moved at once. It costs `sched_getcpu` (no
//! system call) on every call, and two system calls (a check and the binding) when
//! the caller's CPU changes between calls. Only the lanes that a task awaits (an event
//! whose chain only crosses to plugin hosts, as the shipped defaults' does) are
//! placed; the blocking lanes of logins and mixed chains are not.
//!
//! The host says which of its threads serves a lane (it writes the thread id to the
//! lane's page). A host is not trusted to say the truth: the daemon binds only a
//! thread of the host's own process (`tgkill` with signal 0 checks that the thread
//! belongs to it), and any failure turns placement off for the lane, which then runs
//! wherever the scheduler puts it, as it did before. (A host cannot set another
//! process's CPUs itself either: its seccomp filter refuses it, `sandbox`.)

use std::mem::{size_of, zeroed};

use super::Page;

/// Where one lane's host thread may run, as the daemon last set it.
#[derive(Default)]
pub(crate) struct Placement {
    state: State,
}

#[derive(Default)]
enum State {
    /// The host has not said which thread serves the lane yet.
    #[default]
    Unknown,
    /// The lane's thread, its own CPUs (as they were before the daemon bound it), and
    /// the CPU it is bound to now, if any.
    Known {
        tid: libc::pid_t,
        own: Box<libc::cpu_set_t>,
        bound: Option<usize>,
    },
    /// Placement failed for this lane: it runs where the scheduler puts it.
    Off,
}

impl Placement {
    /// Before a call is sent on the lane of host `pid` with shared `page`: binds the
    /// lane's thread to this thread's CPU when `near` (the daemon is quiet), gives it
    /// back its own CPUs otherwise.
    pub(crate) fn place(&mut self, pid: u32, page: Option<&Page>, near: bool) {
        if let State::Unknown = self.state {
            if !near {
                return;
            }
            self.state = match page.map(Page::thread) {
                // The host has not written it yet (its lane thread just started).
                None | Some(0) => return,
                Some(tid) => known(pid, tid).unwrap_or_else(|e| off(pid, &e)),
            };
        }
        let State::Known { tid, own, bound } = &mut self.state else {
            return;
        };
        let wanted = if near { current_cpu(own) } else { None };
        if wanted == *bound {
            return;
        }
        let set = match wanted {
            Some(cpu) => only(cpu),
            None => **own,
        };
        match bind(pid, *tid, &set) {
            Ok(()) => *bound = wanted,
            Err(e) => {
                // Not left on one CPU when placement turns off (a cpuset changed, say).
                if bound.is_some() {
                    let _ = bind(pid, *tid, own);
                }
                self.state = off(pid, &e);
            }
        }
    }

    /// The CPU the lane's thread is bound to now, if any (for tests).
    #[cfg(test)]
    pub(crate) fn bound(&self) -> Option<usize> {
        match self.state {
            State::Known { bound, .. } => bound,
            _ => None,
        }
    }
}

/// The lane's thread `tid` as the host named it, checked to be a thread of host
/// `pid`, with its CPUs as they are now.
fn known(pid: u32, tid: u32) -> std::io::Result<State> {
    let tid = libc::pid_t::try_from(tid)
        .map_err(|_| std::io::Error::other(format!("the host named thread {tid}")))?;
    check_thread(pid, tid)?;
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity writes at most
    // its size into it.
    let mut own: Box<libc::cpu_set_t> = Box::new(unsafe { zeroed() });
    // SAFETY: as above.
    if unsafe { libc::sched_getaffinity(tid, size_of::<libc::cpu_set_t>(), &mut *own) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(State::Known {
        tid,
        own,
        bound: None,
    })
}

/// Fails unless `tid` is a thread of process `pid` (signal 0 checks without sending).
fn check_thread(pid: u32, tid: libc::pid_t) -> std::io::Result<()> {
    // SAFETY: tgkill with signal 0 sends nothing; it only looks `tid` up in `pid`'s
    // thread group.
    let found = unsafe { libc::syscall(libc::SYS_tgkill, pid as libc::pid_t, tid, 0) } == 0;
    if found {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "the host named thread {tid}, which is not one of its own ({})",
            std::io::Error::last_os_error()
        )))
    }
}

/// Binds thread `tid` of host `pid` to `set`, checking before and after that it is
/// the host's. The thread could end and its id be taken by another process's thread
/// between the check and the binding (the host cannot choose which); the check after
/// turns placement off then, and what was bound is one thread on one CPU, which the
/// host could not have arranged on purpose.
fn bind(pid: u32, tid: libc::pid_t, set: &libc::cpu_set_t) -> std::io::Result<()> {
    check_thread(pid, tid)?;
    // SAFETY: `set` is a whole cpu_set_t.
    if unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), set) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    check_thread(pid, tid)
}

/// Placement off for a lane of host `pid`, said once at debug level (the lane works
/// as before; nothing for an operator to do).
fn off(pid: u32, e: &std::io::Error) -> State {
    tracing::debug!(
        host_pid = pid,
        "a lane's thread stays where the scheduler puts it: {e}"
    );
    State::Off
}

/// The CPU this thread runs on, if the lane's thread may run there too.
fn current_cpu(own: &libc::cpu_set_t) -> Option<usize> {
    // SAFETY: sched_getcpu takes nothing and reads the kernel's per-thread record.
    let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).ok()?;
    // SAFETY: CPU_ISSET reads one bit of a whole set; `cpu` is bounds-checked.
    (cpu < libc::CPU_SETSIZE as usize && unsafe { libc::CPU_ISSET(cpu, own) }).then_some(cpu)
}

/// The set of one CPU.
fn only(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET sets one bit of it, and
    // `cpu` came from `current_cpu`, below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPUs thread `tid` may run on.
    fn allowed(tid: libc::pid_t) -> Vec<usize> {
        // SAFETY: as in `known`.
        let mut set: libc::cpu_set_t = unsafe { zeroed() };
        // SAFETY: sched_getaffinity writes at most a cpu_set_t into `set`.
        let got = unsafe { libc::sched_getaffinity(tid, size_of::<libc::cpu_set_t>(), &mut set) };
        assert_eq!(got, 0);
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: CPU_ISSET reads one bit of a whole set, `c` within it.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect()
    }

    /// A thread of this process that sleeps until told, and its id.
    fn lane_thread() -> (
        libc::pid_t,
        std::sync::mpsc::Sender<()>,
        std::thread::JoinHandle<()>,
    ) {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            // SAFETY: gettid takes nothing.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            let _ = stop_rx.recv();
        });
        (tid_rx.recv().unwrap(), stop_tx, t)
    }

    #[test]
    fn a_lane_is_bound_to_the_callers_cpu_while_near_and_given_back_its_own_after() {
        let (tid, stop, t) = lane_thread();
        let own = allowed(tid);
        let (page, _fd) = Page::create().unwrap();
        let mut p = Placement::default();
        // Not yet named by the host: nothing happens.
        p.place(std::process::id(), Some(&page), true);
        assert_eq!(p.bound(), None);
        page.set_thread(tid as u32);
        p.place(std::process::id(), Some(&page), true);
        let bound = p.bound().expect("bound to this thread's CPU");
        assert_eq!(allowed(tid), vec![bound]);
        p.place(std::process::id(), Some(&page), false);
        assert_eq!(p.bound(), None);
        assert_eq!(allowed(tid), own);
        stop.send(()).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn a_thread_the_host_does_not_own_is_never_bound() {
        // A host that names a thread of another process (here: the test's parent,
        // standing for any process of the daemon's user, or the daemon itself).
        let (page, _fd) = Page::create().unwrap();
        // SAFETY: getppid takes nothing.
        let other = unsafe { libc::getppid() };
        let before = allowed(other);
        page.set_thread(other as u32);
        let mut p = Placement::default();
        // This process stands for the host: `other` is not one of its threads.
        p.place(std::process::id(), Some(&page), true);
        p.place(std::process::id(), Some(&page), true);
        assert_eq!(p.bound(), None);
        assert_eq!(allowed(other), before);
        // And once off, a later true name changes nothing either.
        let (tid, stop, t) = lane_thread();
        let own = allowed(tid);
        page.set_thread(tid as u32);
        p.place(std::process::id(), Some(&page), true);
        assert_eq!(allowed(tid), own);
        stop.send(()).unwrap();
        t.join().unwrap();
    }
}
