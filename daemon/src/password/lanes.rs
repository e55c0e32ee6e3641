//! The verification pool: bcrypt computations queue here and run in batches, up to
//! [`LANES`] of the same cost interleaved on one core ([`flaskbbd_bcrypt`]).
//!
//! The threads that need a hash (request workers) queue it and wait. At most `cores`
//! of them compute at once ("slots"); a waiting thread whose own job is still queued
//! takes a free slot and runs the oldest job with every later queued job of the same
//! cost, up to [`LANES`], then hands each hash to its waiter. So first come, first
//! served holds across batches, and no thread is added for bcrypt.
//!
//! A lone job runs at once, on the fastest engine for one hash: the system's
//! libxcrypt where it is installed (our one lane measured 5–8 % slower than it here;
//! the two agree bit for bit, tested), else our engine's single lane. So the latency
//! of a login on a quiet forum does not grow.
//!
//! Under load, answers leave in batches and their clients' next requests arrive a
//! millisecond or so apart, so a thread about to run a short batch while there are
//! more jobs than slots (queued or computing), or right after a batch of several
//! ended, first lingers a moment — a 16th of one hash's time, 40 ms at most — for it
//! to fill.

use std::{
    collections::VecDeque,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock},
    time::{Duration, Instant},
};

use flaskbbd_bcrypt::{crypt_many, Job, Setting};
use zeroize::Zeroizing;

/// How many hashes one core computes at once: measured with
/// `cargo run --release -p flaskbbd-bcrypt --example lanes` (docs/benchmarks.md), 4
/// lanes gave 2.2–2.5 times one lane's hashes per second, 3 lanes about as many, 2
/// lanes 1.7–1.9 times.
pub const LANES: usize = 4;

/// The longest a short batch waits to fill.
const MAX_LINGER: Duration = Duration::from_millis(40);

/// A job waiting for its hash.
struct Pending {
    key: Zeroizing<Vec<u8>>,
    setting: Setting,
    /// The hash, or `None` when computing it failed (a panic in the engine).
    done: OnceLock<Option<String>>,
}

struct State {
    queue: VecDeque<Arc<Pending>>,
    /// Slots computing now.
    computing: usize,
    /// Jobs in the batches computing now.
    in_flight: usize,
    /// When the last batch ended, and how many jobs it had.
    last_end: Option<(Instant, usize)>,
    /// One hash's time on one lane at each cost (index = cost), as last measured.
    single: [Option<Duration>; 32],
}

/// The pool. Shared by every verifier of a daemon (the cost may change on reload; the
/// cores do not).
pub struct Lanes {
    state: Mutex<State>,
    changed: Condvar,
    slots: usize,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Lanes {
    /// A pool computing on at most `slots` threads at once (one per core).
    pub fn new(slots: usize) -> Lanes {
        Lanes {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                computing: 0,
                in_flight: 0,
                last_end: None,
                single: calibrate(),
            }),
            changed: Condvar::new(),
            slots: slots.max(1),
        }
    }

    /// Hashes waiting for a lane right now.
    pub fn queued(&self) -> usize {
        lock(&self.state).queue.len()
    }

    /// A pool with one slot per core.
    pub fn per_core() -> Lanes {
        Lanes::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
    }

    /// One hash's time at `cost` on one lane, as last measured (or estimated at start).
    pub fn hash_time(&self, cost: u32) -> Option<Duration> {
        lock(&self.state)
            .single
            .get(cost as usize)
            .copied()
            .flatten()
    }

    /// A warning when, under load, a login could wait near or past `timeout`: it may
    /// wait for the batch computing on its slot, then compute in its own (each about
    /// twice one hash's time with four lanes). `None` when the margin is comfortable.
    pub fn timeout_warning(&self, cost: u32, timeout: Duration) -> Option<String> {
        let single = self.hash_time(cost)?;
        let worst = single * 4;
        (worst > timeout / 2).then(|| {
            format!(
                "auth.bcrypt_cost = {cost} takes about {} ms per hash here; under load a login may wait for a batch and compute in the next, about {} ms, against daemon.hook_timeout_ms = {}: logins will time out under load; raise daemon.hook_timeout_ms to at least {} or lower the cost",
                single.as_millis(),
                worst.as_millis(),
                timeout.as_millis(),
                (worst * 2).as_millis()
            )
        })
    }

    /// `crypt(key, setting)`, computed in a batch with whatever else is queued;
    /// `None` if the engine failed. Blocks until done.
    pub fn crypt(&self, key: &[u8], setting: Setting) -> Option<String> {
        let me = Arc::new(Pending {
            key: Zeroizing::new(key.to_vec()),
            setting,
            done: OnceLock::new(),
        });
        let mut st = lock(&self.state);
        st.queue.push_back(me.clone());
        // A thread lingering for its batch to fill may want this one.
        self.changed.notify_all();
        loop {
            if let Some(done) = me.done.get() {
                return done.clone();
            }
            let queued = st.queue.iter().any(|p| Arc::ptr_eq(p, &me));
            if queued && st.computing < self.slots {
                st.computing += 1;
                let lingered;
                (st, lingered) = self.linger(st);
                let batch = take_batch(&mut st.queue);
                if batch.is_empty() {
                    // Another slot lingered for the same jobs and took them.
                    st.computing -= 1;
                    continue;
                }
                st.in_flight += batch.len();
                drop(st);
                self.compute(&batch, lingered);
                st = lock(&self.state);
                st.computing -= 1;
                st.in_flight -= batch.len();
                st.last_end = Some((Instant::now(), batch.len()));
                self.changed.notify_all();
                continue;
            }
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits, holding a slot, for the oldest job's batch to fill while more jobs are
    /// likely on their way: there are more jobs than slots (queued or computing), or
    /// a batch of several ended just now (its clients are sending again). Never for a
    /// lone job on a quiet pool, nor for one client's jobs one after another.
    /// Returns how long it waited.
    fn linger<'a>(&'a self, mut st: MutexGuard<'a, State>) -> (MutexGuard<'a, State>, Duration) {
        let Some(cost) = st.queue.front().map(|p| p.setting.cost()) else {
            return (st, Duration::ZERO);
        };
        let Some(single) = st.single[cost as usize] else {
            return (st, Duration::ZERO);
        };
        let linger = (single / 16).min(MAX_LINGER);
        let contended = st.queue.len() + st.in_flight > self.slots;
        let returning = st
            .last_end
            .is_some_and(|(t, jobs)| jobs > 1 && t.elapsed() < linger * 4);
        if !contended && !returning {
            return (st, Duration::ZERO);
        }
        let start = Instant::now();
        let deadline = start + linger;
        while batch_len(&st.queue) < LANES {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .changed
                .wait_timeout(st, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        (st, start.elapsed())
    }

    /// Runs one batch and hands out its hashes.
    fn compute(&self, batch: &[Arc<Pending>], lingered: Duration) {
        let _batch_class = BatchScheduling::enter();
        let start = Instant::now();
        let hashes = catch_unwind(AssertUnwindSafe(|| match batch {
            [one] => vec![super::libxcrypt_single(&one.key, one.setting.as_str())
                .unwrap_or_else(|| flaskbbd_bcrypt::crypt(&one.key, &one.setting).into_string())],
            _ => {
                let jobs: Vec<Job<'_>> = batch
                    .iter()
                    .map(|p| Job {
                        key: &p.key,
                        setting: &p.setting,
                    })
                    .collect();
                crypt_many(&jobs, LANES)
                    .into_iter()
                    .map(|h| h.into_string())
                    .collect()
            }
        }));
        let took = start.elapsed();
        tracing::debug!(
            jobs = batch.len(),
            cost = batch.first().map_or(0, |p| p.setting.cost()),
            took_ms = took.as_secs_f64() * 1e3,
            lingered_us = lingered.as_micros() as u64,
            "bcrypt batch"
        );
        match hashes {
            Ok(hashes) => {
                if let (1, Some(p)) = (batch.len(), batch.first()) {
                    lock(&self.state).single[p.setting.cost() as usize] = Some(took);
                }
                for (p, h) in batch.iter().zip(hashes) {
                    let _ = p.done.set(Some(h));
                }
            }
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!("bcrypt failed on a batch of {}: {why}", batch.len());
                for p in batch {
                    let _ = p.done.set(None);
                }
            }
        }
    }
}

/// While alive, the calling thread runs under Linux's `SCHED_BATCH` policy: the
/// scheduler treats it as CPU-bound and lets woken threads (the daemon's socket
/// threads, other requests, the clients on the same machine) preempt it sooner, so
/// the next logins reach the queue while this batch computes instead of after its
/// time slice. Nice values are untouched; the thread returns to `SCHED_OTHER` after.
/// Unprivileged, both ways. If the kernel refuses, nothing changes.
struct BatchScheduling(bool);

impl BatchScheduling {
    fn enter() -> BatchScheduling {
        BatchScheduling(set_policy(libc::SCHED_BATCH))
    }
}

impl Drop for BatchScheduling {
    fn drop(&mut self) {
        if self.0 {
            set_policy(libc::SCHED_OTHER);
        }
    }
}

/// Sets the calling thread's scheduling policy (priority 0, as both non-real-time
/// policies require); whether it took.
fn set_policy(policy: libc::c_int) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
}

/// One hash's time at every cost, estimated from one cost-4 hash timed now (about a
/// millisecond): each cost doubles the work. Measured lone hashes replace these.
fn calibrate() -> [Option<Duration>; 32] {
    let Ok(setting) = Setting::parse("$2b$04$CalibratingTheBcryptPo") else {
        return [None; 32];
    };
    let start = Instant::now();
    let _ = flaskbbd_bcrypt::crypt(b"calibration", &setting);
    let t4 = start.elapsed();
    std::array::from_fn(|cost| (cost >= 4).then(|| t4 * (1u32 << (cost - 4).min(27))))
}

/// How many queued jobs the next batch would take.
fn batch_len(queue: &VecDeque<Arc<Pending>>) -> usize {
    let Some(cost) = queue.front().map(|p| p.setting.cost()) else {
        return 0;
    };
    queue
        .iter()
        .filter(|p| p.setting.cost() == cost)
        .take(LANES)
        .count()
}

/// Takes the oldest job and the following jobs of its cost, up to [`LANES`], in order.
fn take_batch(queue: &mut VecDeque<Arc<Pending>>) -> Vec<Arc<Pending>> {
    let Some(cost) = queue.front().map(|p| p.setting.cost()) else {
        return Vec::new();
    };
    let mut batch = Vec::with_capacity(LANES);
    let mut i = 0;
    while i < queue.len() && batch.len() < LANES {
        if queue[i].setting.cost() == cost {
            if let Some(p) = queue.remove(i) {
                batch.push(p);
            }
        } else {
            i += 1;
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(cost: u32) -> Setting {
        Setting::parse(&format!("$2b${cost:02}$abcdefghijklmnopqrstuu")).unwrap()
    }

    fn pending(cost: u32) -> Arc<Pending> {
        Arc::new(Pending {
            key: Zeroizing::new(b"k".to_vec()),
            setting: setting(cost),
            done: OnceLock::new(),
        })
    }

    #[test]
    fn batches_take_the_oldest_cost_in_order_and_leave_the_rest() {
        let q: Vec<Arc<Pending>> = [4, 5, 4, 4, 5, 4, 4].into_iter().map(pending).collect();
        let mut queue: VecDeque<_> = q.iter().cloned().collect();
        assert_eq!(batch_len(&queue), LANES.min(5));
        let batch = take_batch(&mut queue);
        let idx = |p: &Arc<Pending>| q.iter().position(|x| Arc::ptr_eq(x, p)).unwrap();
        assert_eq!(
            batch.iter().map(idx).collect::<Vec<_>>(),
            [0, 2, 3, 5, 6][..LANES.min(5)]
        );
        // The cost-5 jobs keep their places at the front.
        assert_eq!(queue.front().map(|p| p.setting.cost()), Some(5));
        assert_eq!(take_batch(&mut queue).len(), 2);
    }

    #[test]
    fn a_cost_whose_batches_near_the_timeout_is_warned_about() {
        let lanes = Lanes::new(1);
        let t4 = lanes.hash_time(4).unwrap();
        assert_eq!(lanes.hash_time(10), Some(t4 * 64));
        assert_eq!(lanes.timeout_warning(4, Duration::from_secs(5)), None);
        let w = lanes
            .timeout_warning(20, Duration::from_secs(5))
            .expect("cost 20 is seconds per hash");
        assert!(
            w.starts_with("auth.bcrypt_cost = 20 takes about ")
                && w.contains("daemon.hook_timeout_ms = 5000"),
            "{w}"
        );
    }

    #[test]
    fn concurrent_jobs_get_their_own_hashes() {
        let lanes = Arc::new(Lanes::new(2));
        let threads: Vec<_> = (0..12)
            .map(|i| {
                let lanes = lanes.clone();
                std::thread::spawn(move || {
                    let key = format!("key{i}");
                    let s = setting(4 + (i % 2) as u32);
                    let got = lanes.crypt(key.as_bytes(), s.clone()).unwrap();
                    assert_eq!(
                        got,
                        flaskbbd_bcrypt::crypt(key.as_bytes(), &s).as_str(),
                        "{i}"
                    );
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let st = lock(&lanes.state);
        assert!(st.queue.is_empty() && st.computing == 0);
    }
}
