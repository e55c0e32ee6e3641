//! A lane's shared page: a few words of memory the daemon and a plugin host both map,
//! for what the daemon must be able to learn about a call even when the host died or
//! hangs in it (which run it is in, and which impl of it), without a message and its
//! wake-up, and which of the host's threads serves the lane (for
//! [`crate::ipc::placement`]).
//!
//! The daemon makes the page (a sealed memfd: the host cannot shrink it, so reading
//! it can never fault the daemon) and sends it with the lane. The host writes; the
//! daemon reads to place blame and to find the lane's thread, and checks what it
//! reads: a host is not trusted to write the truth, only to be unable to hurt the
//! daemon (or anything else) through what it writes on the page.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, Ordering},
};

/// The page's size: one page, whatever the words in use.
const SIZE: usize = 4096;

/// Word 0: the step of a [`super::Down::Chain`] the host is running now.
const STEP: usize = 0;

/// Word 1: the id of the host's thread that serves the lane (0 until it says).
const THREAD: usize = 1;

/// Word 2: how many runs (calls and chains) the host has begun on the lane: the one
/// it is in now is this count less one (see [`super::pipe`]).
const RUNS: usize = 2;

/// Word 3: the number of the next run that may begin (the runs before it have begun,
/// or the daemon took them back to send them elsewhere): the host claims a run by
/// moving it on by one, the daemon takes unbegun runs back by moving it past them,
/// each with a compare-and-swap, so a run either begins in the host or is taken back,
/// never both ([`super::pipe`]).
const NEXT: usize = 3;

/// One lane's shared page, mapped.
pub(crate) struct Page {
    words: NonNull<AtomicU32>,
}

// SAFETY: the mapping is only ever accessed through atomics, from any thread; it lives
// until the Page drops.
unsafe impl Send for Page {}
// SAFETY: as above.
unsafe impl Sync for Page {}

impl Page {
    /// Makes a new page (the daemon's side): the mapping, and the descriptor to send to
    /// the host.
    pub(crate) fn create() -> io::Result<(Page, OwnedFd)> {
        // SAFETY: memfd_create with a NUL-terminated name; the fd it returns is ours.
        let fd = unsafe {
            libc::memfd_create(
                c"flaskbbd-lane".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just made and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate and fcntl on our own memfd.
        let sealed = unsafe {
            libc::ftruncate(fd.as_raw_fd(), SIZE as libc::off_t) == 0
                && libc::fcntl(
                    fd.as_raw_fd(),
                    libc::F_ADD_SEALS,
                    libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
                ) == 0
        };
        if !sealed {
            return Err(io::Error::last_os_error());
        }
        let page = Page::map(&fd)?;
        Ok((page, fd))
    }

    /// Maps a page the daemon made (the host's side, or the daemon's own). The file
    /// must be at least one page long.
    pub(crate) fn map(fd: &OwnedFd) -> io::Result<Page> {
        // SAFETY: fstat into a struct we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if (st.st_size as u64) < SIZE as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a lane's page of {} bytes (want {SIZE})", st.st_size),
            ));
        }
        // SAFETY: a new shared mapping of SIZE bytes of the file; nothing else is at
        // the address the kernel picks.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(at.cast::<AtomicU32>())
            .map(|words| Page { words })
            .ok_or_else(|| io::Error::other("mmap answered a null mapping"))
    }

    fn word(&self, i: usize) -> &AtomicU32 {
        debug_assert!((i + 1) * 4 <= SIZE);
        // SAFETY: the mapping is SIZE bytes, page-aligned, and lives as long as `self`;
        // word `i` is within it; any bit pattern is a valid u32.
        unsafe { &*self.words.as_ptr().add(i) }
    }

    /// The step the host said it is running (as it wrote it: bound it before use).
    pub(crate) fn step(&self) -> u32 {
        self.word(STEP).load(Ordering::Acquire)
    }

    /// Says that step `step` of a run starts now.
    pub(crate) fn set_step(&self, step: u32) {
        self.word(STEP).store(step, Ordering::Release);
    }

    /// How many runs the host said it has begun on the lane (as it wrote it: a hint).
    pub(crate) fn runs(&self) -> u32 {
        self.word(RUNS).load(Ordering::Acquire)
    }

    /// Says that a run begins (the host's side): its step is 0 until it says another,
    /// and it is run number `runs` less one.
    pub(crate) fn begin_run(&self, runs: u32) {
        self.word(STEP).store(0, Ordering::Release);
        self.word(RUNS).store(runs, Ordering::Release);
    }

    /// Claims run `run` to begin it (the host's side): false when the daemon took it
    /// back (the host then skips it: no step, no answer).
    pub(crate) fn claim(&self, run: u32) -> bool {
        self.word(NEXT)
            .compare_exchange(
                run,
                run.wrapping_add(1),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// The number of the next run that may begin (as the host left it: a hint).
    pub(crate) fn next_run(&self) -> u32 {
        self.word(NEXT).load(Ordering::Acquire)
    }

    /// Takes back the runs from `from` to `to` (not included), unless the host has
    /// moved on from `from` meanwhile (the daemon's side).
    pub(crate) fn take_back(&self, from: u32, to: u32) -> bool {
        self.word(NEXT)
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The thread the host said serves the lane, 0 until it said (as it wrote it:
    /// check it before use).
    pub(crate) fn thread(&self) -> u32 {
        self.word(THREAD).load(Ordering::Acquire)
    }

    /// Says which thread serves the lane (the host's side, from that thread).
    pub(crate) fn set_thread(&self, tid: u32) {
        self.word(THREAD).store(tid, Ordering::Release);
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping of SIZE bytes, used by nothing after this.
        unsafe {
            libc::munmap(self.words.as_ptr().cast(), SIZE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_mappings_see_one_word_and_the_file_cannot_shrink() {
        let (daemon, fd) = Page::create().unwrap();
        let host = Page::map(&fd).unwrap();
        host.set_step(3);
        assert_eq!(daemon.step(), 3);
        daemon.set_step(0);
        assert_eq!(host.step(), 0);
        // A host that tries to shrink the page (to fault the daemon's reads) cannot.
        // SAFETY: ftruncate on our own descriptor.
        assert_ne!(unsafe { libc::ftruncate(fd.as_raw_fd(), 0) }, 0);
        assert_eq!(daemon.step(), 0);
        host.set_step(2);
        host.begin_run(7);
        assert_eq!((daemon.runs(), daemon.step()), (7, 0));
        // A run is begun or taken back, never both.
        assert!(host.claim(0));
        assert!(daemon.take_back(1, 3));
        assert!(!host.claim(1) && !host.claim(2));
        assert!(!daemon.take_back(1, 4));
        assert!(host.claim(3));
        assert_eq!(daemon.next_run(), 4);
    }
}
