//! Small statistics, load and set-up helpers shared by the benchmarks.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use flaskbbd_tests::{build_release, daemon::TestDaemon, Scratch};

/// The median of `v`.
pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The `p` quantile of `v` (0.99 for p99).
pub(crate) fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// The number after `name` in `args`, or `default`.
pub(crate) fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Milliseconds, for printing.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `work` on each of `threads` threads at once; returns the durations they all
/// measured and the wall time of the whole run.
fn in_parallel(
    threads: usize,
    work: &(dyn Fn() -> Vec<Duration> + Sync),
) -> (Vec<Duration>, Duration) {
    let start = Instant::now();
    let times = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    (times, start.elapsed())
}

/// Runs `per_thread` calls of `f` on each of `threads` threads at once; returns every
/// call's duration and the wall time of the whole run.
pub(crate) fn on_all_cores(
    threads: usize,
    per_thread: usize,
    f: &(dyn Fn() + Sync),
) -> (Vec<Duration>, Duration) {
    in_parallel(threads, &|| {
        (0..per_thread)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect()
    })
}

/// On each of `threads` threads, `make()` once, then `step` on what it made again and
/// again until `warmup + seconds` have passed; returns the durations of the steps
/// begun after the warm-up and the wall time from then to the last step's end.
fn for_duration<S>(
    threads: usize,
    warmup: f64,
    seconds: f64,
    make: &(dyn Fn() -> S + Sync),
    step: &(dyn Fn(&mut S) + Sync),
) -> (Vec<Duration>, Duration) {
    let begin = Instant::now() + Duration::from_secs_f64(warmup);
    let stop = begin + Duration::from_secs_f64(seconds);
    let (times, _) = in_parallel(threads, &|| {
        let mut state = make();
        let mut v = Vec::new();
        while Instant::now() < stop {
            let t = Instant::now();
            step(&mut state);
            if t >= begin {
                v.push(t.elapsed());
            }
        }
        v
    });
    (times, begin.elapsed())
}

/// `f` on each of `threads` threads for `seconds`: calls per second, and p99/p50 of
/// a call.
pub(crate) fn for_seconds(threads: usize, seconds: f64, f: &(dyn Fn() + Sync)) -> (f64, f64) {
    let (times, wall) = for_duration(threads, 0.0, seconds, &|| (), &|_| f());
    let rate = times.len() as f64 / wall.as_secs_f64();
    let spread = percentile(times.clone(), 0.99).as_secs_f64() / median(times).as_secs_f64();
    (rate, spread)
}

/// `clients` connections made by `connect`, each calling `call` in a closed loop for
/// `seconds`; returns every call's latency and the wall time.
pub(crate) fn run_clients(
    clients: usize,
    seconds: f64,
    connect: &(dyn Fn() -> flaskbbd_protocol::client::Client + Sync),
    call: &(dyn Fn(&mut flaskbbd_protocol::client::Client) + Sync),
) -> (Vec<Duration>, Duration) {
    for_duration(clients, 0.0, seconds, connect, call)
}

/// `clients` connections to `d`, each calling `call` in a closed loop for `warmup +
/// seconds` without a break, only the calls that began after the warm-up counted:
/// the steady state, with no start-up burst in it.
pub(crate) fn steady_loop(
    d: &TestDaemon,
    clients: usize,
    warmup: f64,
    seconds: f64,
    call: &(dyn Fn(&mut flaskbbd_protocol::client::Client) + Sync),
) -> (Vec<Duration>, Duration) {
    for_duration(clients, warmup, seconds, &|| d.client(), call)
}

/// Starts the release daemon, with the release build's plugins, on `extra` (which
/// gives at least `[database]`) written to `flaskbb.toml` in `s`; returns it and the
/// configuration's path.
pub(crate) fn release_daemon(s: &Scratch, extra: &str) -> (TestDaemon, PathBuf) {
    let dir = build_release();
    release_daemon_bin(s, extra, &dir.join("flaskbbd"))
}

/// As [`release_daemon`], the daemon being `bin` (another build of it, to compare),
/// with this build's plugins.
pub(crate) fn release_daemon_bin(
    s: &Scratch,
    extra: &str,
    bin: &std::path::Path,
) -> (TestDaemon, PathBuf) {
    let dir = build_release();
    let cfg = s.write(
        "flaskbb.toml",
        &format!(
            "[plugins]\ndirs = [{:?}]\n{extra}",
            dir.display().to_string()
        ),
    );
    (TestDaemon::start_bin(s, bin, cfg.clone()), cfg)
}
