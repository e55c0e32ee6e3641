//! The verification pool: bcrypt computations queue here and run interleaved, up to
//! `auth.bcrypt_lanes` ([`DEFAULT_LANES`]) on each core
//! ([`flaskbbd_bcrypt::Interleaved`]).
//!
//! One lane thread per slot (core) computes. Each advances its busy lanes one
//! key-schedule pass at a time (tens of microseconds) and, between passes, takes the
//! oldest queued job into a free lane. So a login never waits for a batch to end: it
//! waits only while every lane is busy, and then for the first lane to free; first
//! come, first served holds across slots. A job goes to the slot with the fewest busy
//! lanes, so two logins on a two-core machine compute on both cores.
//!
//! A lone job on an idle pool runs at once on the thread that asked, on the fastest
//! engine for one hash: the system's libxcrypt where it is installed (our one lane
//! measured 5–8 % slower than it here; the two agree bit for bit, tested), else our
//! engine's single lane. So the latency of a login on a quiet forum does not grow.
//! It holds a slot while it computes; what arrives meanwhile goes to the lane threads.
//!
//! Lane threads are started with the first job that needs one and end when the pool
//! is dropped.

use std::{
    collections::VecDeque,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Condvar, Mutex, MutexGuard,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use flaskbbd_bcrypt::{Interleaved, Setting, MAX_LANES};
use zeroize::Zeroizing;

/// How many hashes one core computes at once unless `auth.bcrypt_lanes` says
/// otherwise, chosen by measurement (docs/benchmarks.md): two lanes verify 1.7–1.8
/// times libxcrypt's hashes per second and their times spread no more than one
/// hash's do; four verify 2.2–2.5 times as many, but on the shared machines measured
/// their times spread as much as 1.5 (p99/p50) where two lanes' spread 1.1–1.2.
pub const DEFAULT_LANES: usize = 2;

/// A job waiting for its hash.
struct Pending {
    key: Zeroizing<Vec<u8>>,
    setting: Setting,
    queued_at: Instant,
    /// The most lanes busy on its core while it computed (itself included).
    company: AtomicUsize,
    /// The hash once computed: `Some(None)` when computing it failed (a panic in the
    /// engine).
    done: Mutex<Option<Option<String>>>,
    ready: Condvar,
}

impl Pending {
    fn finish(&self, hash: Option<String>) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = Some(hash);
        self.ready.notify_one();
    }

    fn wait(&self) -> Option<String> {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(hash) = done.take() {
                return hash;
            }
            done = self.ready.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }
}

struct State {
    queue: VecDeque<Arc<Pending>>,
    /// Busy lanes of each lane thread (index = thread).
    busy: Vec<usize>,
    /// Lone jobs computing on the threads that asked.
    solo: usize,
    /// Lanes each lane thread may fill (`auth.bcrypt_lanes`).
    lanes: usize,
    /// Whether the lane threads run.
    started: bool,
    /// Set when the pool is dropped: lane threads end.
    stop: bool,
    /// One hash's time at each cost (index = cost) on one thread, as last measured.
    single: [Option<Duration>; 32],
}

impl State {
    /// Slots computing: lone jobs and lane threads with a busy lane.
    fn slots_in_use(&self) -> usize {
        self.solo + self.busy.iter().filter(|&&b| b > 0).count()
    }
}

/// What the pool and its lane threads share.
struct Shared {
    state: Mutex<State>,
    /// Idle lane threads wait here for a job or a free slot.
    work: Condvar,
    /// `state.queue.len()`, for busy lane threads to look at between passes without
    /// taking the lock.
    queued: AtomicUsize,
    slots: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The pool. Shared by every verifier of a daemon (the cost may change on reload; the
/// cores do not).
pub struct Lanes {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("slots", &self.shared.slots)
            .finish_non_exhaustive()
    }
}

impl Lanes {
    /// A pool computing on at most `slots` threads at once (one per core), each
    /// interleaving up to `lanes` hashes (1 to [`MAX_LANES`]).
    pub fn new(slots: usize, lanes: usize) -> Lanes {
        let slots = slots.max(1);
        Lanes {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    busy: vec![0; slots],
                    solo: 0,
                    lanes: lanes.clamp(1, MAX_LANES),
                    started: false,
                    stop: false,
                    single: calibrate(),
                }),
                work: Condvar::new(),
                queued: AtomicUsize::new(0),
                slots,
            }),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Hashes waiting for a lane right now.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// A pool with one slot per core and [`DEFAULT_LANES`] lanes.
    pub fn per_core() -> Lanes {
        Lanes::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            DEFAULT_LANES,
        )
    }

    /// Lanes each slot fills from now on (a reload's `auth.bcrypt_lanes`; hashes in
    /// flight finish where they are).
    pub fn set_lanes(&self, lanes: usize) {
        let mut st = self.shared.lock();
        st.lanes = lanes.clamp(1, MAX_LANES);
        drop(st);
        self.shared.work.notify_all();
    }

    /// One hash's time at `cost` on one lane, as last measured (or estimated at start).
    pub fn hash_time(&self, cost: u32) -> Option<Duration> {
        self.shared
            .lock()
            .single
            .get(cost as usize)
            .copied()
            .flatten()
    }

    /// A warning when, under load, a login could wait near or past `timeout`: it may
    /// wait for a lane to free, then compute beside the other busy lanes (each about
    /// twice one hash's time with four lanes). `None` when the margin is comfortable.
    pub fn timeout_warning(&self, cost: u32, timeout: Duration) -> Option<String> {
        let single = self.hash_time(cost)?;
        let worst = single * 4;
        (worst > timeout / 2).then(|| {
            format!(
                "auth.bcrypt_cost = {cost} takes about {} ms per hash here; under load a login may wait for a lane and then compute beside others, about {} ms, against daemon.hook_timeout_ms = {}: logins will time out under load; raise daemon.hook_timeout_ms to at least {} or lower the cost",
                single.as_millis(),
                worst.as_millis(),
                timeout.as_millis(),
                (worst * 2).as_millis()
            )
        })
    }

    /// `crypt(key, setting)`: at once on this thread when the pool is idle, else on the
    /// first free lane; `None` if the engine failed. Blocks until done.
    pub fn crypt(&self, key: &[u8], setting: Setting) -> Option<String> {
        let mut st = self.shared.lock();
        if !st.started && st.slots_in_use() > 0 {
            st.started = self.start_lane_threads() > 0;
        }
        // Alone on an idle pool; or, should no lane thread have started, always (more
        // hashes than cores at once beats logins that never end).
        if (st.queue.is_empty() && st.slots_in_use() == 0) || !st.started {
            st.solo += 1;
            drop(st);
            let hash = self.solo(key, &setting);
            let mut st = self.shared.lock();
            st.solo -= 1;
            if !st.queue.is_empty() {
                // A slot is free for a lane thread that could not start.
                self.shared.work.notify_all();
            }
            return hash;
        }
        let me = Arc::new(Pending {
            key: Zeroizing::new(key.to_vec()),
            setting,
            queued_at: Instant::now(),
            company: AtomicUsize::new(0),
            done: Mutex::new(None),
            ready: Condvar::new(),
        });
        st.queue.push_back(me.clone());
        self.shared.queued.store(st.queue.len(), Ordering::Relaxed);
        drop(st);
        self.shared.work.notify_all();
        me.wait()
    }

    /// A lone hash on this thread, timed: the time is one hash's at its cost.
    fn solo(&self, key: &[u8], setting: &Setting) -> Option<String> {
        let _batch_class = BatchScheduling::enter();
        let start = Instant::now();
        let hash = catch_unwind(AssertUnwindSafe(|| {
            super::libxcrypt_single(key, setting.as_str())
                .unwrap_or_else(|| flaskbbd_bcrypt::crypt(key, setting).into_string())
        }));
        let took = start.elapsed();
        tracing::debug!(
            lanes = 1,
            alone = true,
            cost = setting.cost(),
            took_ms = took.as_secs_f64() * 1e3,
            "bcrypt hash"
        );
        match hash {
            Ok(hash) => {
                self.shared.lock().single[setting.cost() as usize] = Some(took);
                Some(hash)
            }
            Err(panic) => {
                tracing::error!("bcrypt failed on a lone hash: {}", panic_message(&*panic));
                None
            }
        }
    }

    /// Starts the lane threads; how many are running.
    fn start_lane_threads(&self) -> usize {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        for index in 0..self.shared.slots {
            let shared = self.shared.clone();
            match std::thread::Builder::new()
                .name(format!("flaskbbd-bcrypt-{index}"))
                .spawn(move || lane_thread(&shared, index))
            {
                Ok(handle) => threads.push(handle),
                // The threads that did start serve every slot's jobs; none at all is
                // the error below.
                Err(e) => tracing::error!("could not start bcrypt lane thread {index}: {e}"),
            }
        }
        if threads.is_empty() {
            tracing::error!("no bcrypt lane thread could start: every login computes on its own request thread; restart the daemon when the system has threads to spare");
        }
        threads.len()
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.work.notify_all();
        let threads = std::mem::take(self.threads.get_mut().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// A job on a lane: when it was queued and when it took the lane.
type OnLane = (Arc<Pending>, Instant);

/// One slot's thread: takes queued jobs into free lanes between passes and hands each
/// hash to its waiter as it ends.
fn lane_thread(shared: &Shared, me: usize) {
    // Only ever computes: let the threads that carry the next logins preempt it.
    let _batch_class = BatchScheduling::enter();
    let mut engine: Interleaved<OnLane> = Interleaved::new(MAX_LANES);
    // `auth.bcrypt_lanes` as last seen under the lock (a reload's change is seen when
    // a hash ends).
    let mut limit = MAX_LANES;
    loop {
        let had = engine.len();
        if engine.len() < limit && (engine.is_empty() || shared.queued.load(Ordering::Relaxed) > 0)
        {
            let mut st = shared.lock();
            loop {
                admit(&mut st, &mut engine, me, shared.slots);
                limit = st.lanes;
                shared.queued.store(st.queue.len(), Ordering::Relaxed);
                if !engine.is_empty() {
                    break;
                }
                if st.stop {
                    return;
                }
                st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
        let lanes = engine.len();
        if lanes > had {
            for (p, _) in engine.tags() {
                p.company.fetch_max(lanes, Ordering::Relaxed);
            }
        }
        let step = catch_unwind(AssertUnwindSafe(|| {
            engine.step(|(p, started), hash| {
                tracing::debug!(
                    lanes = p.company.load(Ordering::Relaxed),
                    alone = false,
                    cost = p.setting.cost(),
                    waited_ms = started.saturating_duration_since(p.queued_at).as_secs_f64() * 1e3,
                    took_ms = started.elapsed().as_secs_f64() * 1e3,
                    "bcrypt hash"
                );
                p.finish(Some(hash.into_string()));
            })
        }));
        if let Err(panic) = step {
            tracing::error!(
                "bcrypt failed with {lanes} hashes in flight: {}",
                panic_message(&*panic)
            );
            // Its waiters get a failure; the lanes start clean.
            engine.abandon(|(p, _)| p.finish(None));
        }
        if engine.len() != lanes {
            let mut st = shared.lock();
            st.busy[me] = engine.len();
            limit = st.lanes;
            if engine.is_empty() && !st.queue.is_empty() {
                // This slot is free: a lane thread that could not start may.
                shared.work.notify_all();
            }
        }
    }
}

/// Takes the oldest queued jobs into `engine`'s free lanes (up to `auth.bcrypt_lanes`)
/// while this thread has the fewest busy lanes of the slots that could take them (an
/// idle lane thread counts only while a slot is free for it to start); records its
/// busy lanes.
fn admit(st: &mut State, engine: &mut Interleaved<OnLane>, me: usize, slots: usize) {
    while engine.len() < st.lanes && !st.queue.is_empty() {
        let free_slot = st.slots_in_use() < slots;
        if engine.is_empty() && !free_slot {
            break;
        }
        let fewest_elsewhere = st
            .busy
            .iter()
            .enumerate()
            .filter(|&(i, &b)| i != me && (b > 0 || free_slot))
            .map(|(_, &b)| b)
            .min();
        if fewest_elsewhere.is_some_and(|other| other < engine.len()) {
            break;
        }
        let Some(p) = st.queue.pop_front() else { break };
        // The lane copies what it needs; the key is not copied again here.
        let tag = (p.clone(), Instant::now());
        if let Err((p, _)) = engine.admit(&p.key, &p.setting, tag) {
            st.queue.push_front(p);
            break;
        }
        st.busy[me] = engine.len();
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// While alive, the calling thread runs under Linux's `SCHED_BATCH` policy: the
/// scheduler treats it as CPU-bound and lets woken threads (the daemon's socket
/// threads, other requests, the clients on the same machine) preempt it sooner, so
/// the next logins reach the queue while it computes instead of after its time
/// slice. Nice values are untouched; the thread returns to `SCHED_OTHER` after.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(cost: u32) -> Setting {
        Setting::parse(&format!("$2b${cost:02}$abcdefghijklmnopqrstuu")).unwrap()
    }

    #[test]
    fn a_cost_whose_hashes_near_the_timeout_is_warned_about() {
        let lanes = Lanes::new(1, DEFAULT_LANES);
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
    fn concurrent_jobs_of_mixed_costs_get_their_own_hashes() {
        for slots in [1, 2, 3] {
            let lanes = Arc::new(Lanes::new(slots, 1 + slots));
            let threads: Vec<_> = (0..12)
                .map(|i| {
                    let lanes = lanes.clone();
                    std::thread::spawn(move || {
                        let key = format!("key{i}");
                        let s = setting(4 + (i % 3) as u32);
                        for _ in 0..3 {
                            let got = lanes.crypt(key.as_bytes(), s.clone()).unwrap();
                            assert_eq!(
                                got,
                                flaskbbd_bcrypt::crypt(key.as_bytes(), &s).as_str(),
                                "{i}"
                            );
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            // A lane gives its slot back just after handing over the hash: wait for the
            // last one (a busy machine may delay it).
            let until = std::time::Instant::now() + Duration::from_secs(10);
            while lanes.shared.lock().slots_in_use() != 0 && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            let st = lanes.shared.lock();
            assert!(st.queue.is_empty(), "{slots} slots");
            assert_eq!(st.slots_in_use(), 0, "{slots} slots");
            assert!(st.started, "12 threads at once used the lane threads");
            drop(st);
            // Dropping the pool ends its lane threads.
            let lanes = Arc::into_inner(lanes).unwrap();
            let shared = Arc::downgrade(&lanes.shared);
            drop(lanes);
            assert!(
                shared.upgrade().is_none(),
                "a lane thread outlived its pool"
            );
        }
    }

    #[test]
    fn a_lone_job_computes_on_its_own_thread() {
        let lanes = Lanes::new(2, DEFAULT_LANES);
        let s = setting(4);
        assert_eq!(
            lanes.crypt(b"alone", s.clone()).as_deref(),
            Some(flaskbbd_bcrypt::crypt(b"alone", &s).as_str())
        );
        let st = lanes.shared.lock();
        assert!(!st.started, "a lone job started the lane threads");
    }

    #[test]
    fn jobs_go_to_the_least_busy_slot_and_idle_slots_start_only_when_free() {
        fn pending() -> Arc<Pending> {
            Arc::new(Pending {
                key: Zeroizing::new(b"k".to_vec()),
                setting: setting(4),
                queued_at: Instant::now(),
                company: AtomicUsize::new(0),
                done: Mutex::new(None),
                ready: Condvar::new(),
            })
        }
        let mut st = State {
            queue: (0..6).map(|_| pending()).collect(),
            busy: vec![0, 2],
            solo: 0,
            lanes: 4,
            started: true,
            stop: false,
            single: [None; 32],
        };
        // Thread 0 is idle and a slot is free: it takes jobs until it has as many
        // busy lanes as thread 1 has, then one more while thread 1 could too.
        let mut zero = Interleaved::new(MAX_LANES);
        admit(&mut st, &mut zero, 0, 2);
        assert_eq!((zero.len(), st.busy[0]), (3, 3));
        // Thread 1 (2 busy lanes) takes the rest up to its four.
        let mut one = Interleaved::new(MAX_LANES);
        for p in [pending(), pending()] {
            assert!(one
                .admit(&p.key, &p.setting, (p.clone(), Instant::now()))
                .is_ok());
        }
        admit(&mut st, &mut one, 1, 2);
        assert_eq!((one.len(), st.queue.len()), (4, 1));
        // No slot free (a lone job holds one): an idle thread takes nothing.
        st.busy = vec![0, 4];
        st.solo = 1;
        let mut idle = Interleaved::new(MAX_LANES);
        admit(&mut st, &mut idle, 0, 2);
        assert_eq!((idle.len(), st.queue.len()), (0, 1));
        // Fewer lanes (a reload's auth.bcrypt_lanes): a slot fills only as many.
        st.busy = vec![0, 0];
        st.solo = 0;
        st.lanes = 1;
        st.queue.extend([pending(), pending()]);
        admit(&mut st, &mut idle, 0, 2);
        assert_eq!((idle.len(), st.busy[0], st.queue.len()), (1, 1, 2));
    }
}
