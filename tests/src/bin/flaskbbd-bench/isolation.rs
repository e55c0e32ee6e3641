//! Isolation's cost: one impl call in a plugin host against the same call in the
//! daemon's process, and `PostSaveBefore` through five word filters each way, on quiet
//! cores and with a busy loop on every core at the same priority (a FlaskBB box is
//! never idle), beside a bare Varlink echo server.

use std::{
    hint::black_box,
    io::{Read, Write},
    os::{fd::AsFd, unix::net::UnixStream},
    process::{Command, Stdio},
    time::Instant,
};

use flaskbbd::embed::{Chains, Context, EventCall};
use flaskbbd_tests::{build_release, fixture_release, Scratch};

use crate::{
    events::{five_filters, micros, EchoServer, Row, Tally, CONTENT},
    stats::{arg, percentile, release_daemon, release_daemon_bin},
};

/// `flaskbbd-bench isolation [--calls N] [--seconds N] [--rounds N] [--baseline
/// DAEMON] [--filters-only]`: with `--baseline`, another build of the daemon (say,
/// the last release) is measured isolated beside this one in the five-filter rows;
/// `--filters-only` measures only those rows, each server for `--seconds` per cell in
/// `--rounds` turns. Each row also says what the daemon and
/// its hosts spent per call: CPU time and sleeps (each a wake-up to come).
pub(crate) fn isolation(args: &[String]) {
    let calls = arg(args, "--calls", 20_000) as usize;
    let seconds = arg(args, "--seconds", 5) as f64;
    let rounds = arg(args, "--rounds", 5).max(1) as usize;
    let baseline = args
        .iter()
        .position(|a| a == "--baseline")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from);
    if !args.iter().any(|a| a == "--filters-only") {
        socket_floor(calls);
        println!();
        one_call(calls);
        println!();
        floor_under_load(seconds);
        println!();
    }
    five_filters_each_way(seconds, rounds, baseline.as_deref());
}

/// What a daemon and its plugin hosts spent: CPU time and the times their threads
/// went to sleep (each one a wake-up later), from `/proc`.
#[derive(Clone, Copy, Default)]
struct Usage {
    /// User and system time, in clock ticks (1/100 s).
    ticks: u64,
    /// Voluntary context switches: a thread slept (in `read`, a futex, `epoll_wait`).
    sleeps: u64,
    /// Involuntary ones: a thread was preempted.
    preempted: u64,
}

impl Usage {
    /// The daemon `pid`'s (every thread), and its children's (its plugin hosts').
    fn of(pid: u32) -> [Usage; 2] {
        let mut hosts = Vec::new();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                let children =
                    std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                hosts.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
        [Usage::of_pids(&[pid]), Usage::of_pids(&hosts)]
    }

    /// Every thread of `pids`.
    fn of_pids(pids: &[u32]) -> Usage {
        let mut u = Usage::default();
        for p in pids {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
                continue;
            };
            for t in tasks.flatten() {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                if let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) {
                    let f: Vec<&str> = after.split(' ').collect();
                    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                    u.ticks += n(11) + n(12);
                }
                let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
                for l in status.lines() {
                    let n = |l: &str| {
                        l.split_whitespace()
                            .nth(1)
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(0)
                    };
                    if l.starts_with("voluntary_ctxt_switches") {
                        u.sleeps += n(l);
                    } else if l.starts_with("nonvoluntary_ctxt_switches") {
                        u.preempted += n(l);
                    }
                }
            }
        }
        u
    }

    /// `self` plus what was spent from `before` to `after`. (A host that did not
    /// exist before counts from nothing; one that ended takes nothing back.)
    fn plus(self, before: Usage, after: Usage) -> Usage {
        Usage {
            ticks: self.ticks + after.ticks.saturating_sub(before.ticks),
            sleeps: self.sleeps + after.sleeps.saturating_sub(before.sleeps),
            preempted: self.preempted + after.preempted.saturating_sub(before.preempted),
        }
    }

    /// Per call, from `before` to `self`: CPU µs, sleeps, preemptions. (A host that
    /// did not exist before counts from nothing.)
    fn per_call(self, before: Usage, calls: usize) -> (f64, f64, f64) {
        let calls = calls.max(1) as f64;
        (
            self.ticks.saturating_sub(before.ticks) as f64 * 10_000.0 / calls,
            self.sleeps.saturating_sub(before.sleeps) as f64 / calls,
            self.preempted.saturating_sub(before.preempted) as f64 / calls,
        )
    }
}

/// One server of the five-filter rows: its socket, how its answer is checked, and,
/// for a daemon, its process (to read what it and its hosts spent).
struct Server<'a> {
    socket: &'a std::path::Path,
    check: fn(&serde_json::Value),
    pid: Option<u32>,
}

/// What one server did in a cell: its round trips, and for a daemon what it and its
/// hosts spent over them.
#[derive(Default)]
struct Spent {
    tally: Tally,
    usage: [Usage; 2],
}

impl Spent {
    /// The row, and per call what the daemon and its hosts spent (CPU µs, sleeps,
    /// preemptions).
    fn per_call(&self) -> (Row, [(f64, f64, f64); 2]) {
        let row = self.tally.row();
        let per = self.usage.map(|u| u.per_call(Usage::default(), row.calls));
        (row, per)
    }
}

/// `servers` at `clients` clients each, in `rounds` spells of `seconds / rounds`,
/// the servers taking turns within each round and each round starting one server
/// further on: a drift in what the machine's neighbours take (these machines are
/// shared) then falls on every server alike instead of on whichever ran at the time.
fn interleaved(servers: &[Server<'_>], clients: usize, seconds: f64, rounds: usize) -> Vec<Spent> {
    let mut spent: Vec<Spent> = servers.iter().map(|_| Spent::default()).collect();
    let spell = seconds / rounds as f64;
    for round in 0..rounds {
        for k in 0..servers.len() {
            let i = (round + k) % servers.len();
            let server = &servers[i];
            let before = server.pid.map(Usage::of);
            spent[i]
                .tally
                .sample(server.socket, clients, spell, server.check);
            if let (Some(pid), Some(before)) = (server.pid, before) {
                let after = Usage::of(pid);
                let u = &mut spent[i].usage;
                *u = [
                    u[0].plus(before[0], after[0]),
                    u[1].plus(before[1], after[1]),
                ];
            }
        }
    }
    spent
}

/// One busy loop per core, each a process of its own at the benchmark's priority (as
/// a FlaskBB worker or a build would be); ended when dropped.
struct Hogs(Vec<std::process::Child>);

impl Hogs {
    fn start() -> Hogs {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hogs(
            (0..cores)
                .map(|_| {
                    Command::new(std::env::current_exe().expect("this binary"))
                        .arg("hog")
                        .spawn()
                        .expect("a busy loop starts")
                })
                .collect(),
        )
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for h in &mut self.0 {
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}

/// `flaskbbd-bench hog` (not for people): a busy loop that never sleeps.
pub(crate) fn hog() {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// What one wake-up costs when every core is busy: the socket floor's blocking round
/// trip (two wake-ups: the peer's, then the caller's) for `seconds`, quiet and with a
/// busy loop on every core.
fn floor_under_load(seconds: f64) {
    let measure = || {
        let (mut ours, theirs) = UnixStream::pair().expect("a socketpair");
        let mut peer = Command::new(std::env::current_exe().expect("this binary"))
            .arg("echo-peer")
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .spawn()
            .expect("the echo peer starts");
        let mut buf = [0u8; 8];
        let mut times = Vec::new();
        let until = Instant::now() + std::time::Duration::from_secs_f64(seconds);
        while Instant::now() < until {
            let t = Instant::now();
            ours.write_all(&[1; 8]).unwrap();
            ours.read_exact(&mut buf).unwrap();
            times.push(t.elapsed());
        }
        drop(ours);
        let _ = peer.wait();
        times
    };
    let quiet = measure();
    let busy = {
        let _hogs = Hogs::start();
        measure()
    };
    println!("a blocking 8-byte round trip to another process (two wake-ups), {seconds} s each:");
    println!(
        "{:>28} {:>10} {:>10} {:>10}",
        "", "round trips", "p50 µs", "p99 µs"
    );
    for (label, t) in [("quiet", quiet), ("a busy loop on every core", busy)] {
        println!(
            "{label:>28} {:>10} {:>10.1} {:>10.1}",
            t.len(),
            micros(percentile(t.clone(), 0.5)),
            micros(percentile(t, 0.99))
        );
    }
}

/// The floor: a bare 8-byte round trip over a socketpair to another process that
/// echoes it, the caller blocking, and the caller spinning as the daemon does.
fn socket_floor(calls: usize) {
    let (mut ours, theirs) = UnixStream::pair().expect("a socketpair");
    let mut peer = Command::new(std::env::current_exe().expect("this binary"))
        .arg("echo-peer")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .spawn()
        .expect("the echo peer starts");
    let mut buf = [0u8; 8];
    let mut round = |spin: bool| {
        ours.set_nonblocking(spin).unwrap();
        let t = Instant::now();
        for _ in 0..calls {
            ours.write_all(&[1; 8]).unwrap();
            let mut got = 0;
            while got < 8 {
                match ours.read(&mut buf[got..]) {
                    Ok(0) => panic!("the echo peer went away"),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        t.elapsed().as_nanos() as f64 / calls as f64 / 1000.0
    };
    round(false);
    let (mut blocking, mut spinning) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        blocking.push(round(false));
        spinning.push(round(true));
    }
    blocking.sort_by(f64::total_cmp);
    spinning.sort_by(f64::total_cmp);
    drop(ours);
    let _ = peer.wait();
    println!("the socket's own floor: an 8-byte round trip over a socketpair to an echoing process, median of 5:");
    println!(
        "  caller blocking {:.2} µs; caller spinning {:.2} µs",
        blocking[2], spinning[2]
    );
}

/// The other end of [`socket_floor`]: echoes what comes on stdin (a socket) until it
/// closes.
pub(crate) fn echo_peer() {
    let mut s = UnixStream::from(
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .expect("stdin is the socket"),
    );
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// One `flaskbb_event_user_registered` impl (a no-op), in-process and isolated.
fn one_call(calls: usize) {
    // The hosts run the daemon's binary; this benchmark's own has no host mode.
    Chains::set_plugin_host_program(build_release().join("flaskbbd"));
    let noop = fixture_release("bench");
    let chain = |isolation: &str| {
        let s = Scratch::new(&format!("bench-isolation-{isolation}"));
        let cfg = format!(
            "[plugins]\ndirs = [{:?}]\n[database]\nurl = \"sqlite:///bench.db\"\n\
             [[plugin]]\nname = \"noop\"\nlibrary = \"noop\"\nisolation = \"{isolation}\"\n",
            noop.display().to_string()
        );
        let path = s.write("flaskbb.toml", &cfg);
        (s, Chains::load(&path).expect("the configuration builds"))
    };
    let (_a, inline) = chain("none");
    let (_b, isolated) = chain("process");
    let run = |chains: &Chains| {
        let req = chains.request(Context::new());
        let events: Vec<EventCall> = (0..calls)
            .map(|_| EventCall::UserRegistered {
                username: "bench".into(),
            })
            .collect();
        let t = Instant::now();
        for event in events {
            assert!(chains.fire(&req, black_box(event)).is_ok());
        }
        t.elapsed()
    };
    run(&inline);
    run(&isolated);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        a.push(run(&inline));
        b.push(run(&isolated));
    }
    a.sort();
    b.sort();
    let (an, bn) = (
        a[4].as_nanos() as f64 / calls as f64,
        b[4].as_nanos() as f64 / calls as f64,
    );
    println!("one no-op impl of flaskbb_event_user_registered, {calls} calls per batch, median of 9 interleaved batches, release build:");
    println!(
        "{:>14} {:>14} {:>8} {:>20}",
        "in-process ns", "isolated ns", "ratio", "added µs per call"
    );
    println!(
        "{an:>14.0} {bn:>14.0} {:>8.1} {:>20.2}",
        bn / an,
        (bn - an) / 1000.0
    );
}

/// `PostSaveBefore` over the socket through five `wordfilter`s, in-process and
/// isolated (the shipped default), beside a Varlink echo server answering the same
/// message, at 1 and 16 clients; on quiet cores, then with a busy loop on every core.
fn five_filters_each_way(seconds: f64, rounds: usize, baseline: Option<&std::path::Path>) {
    // The shipped log level (info), as every other default.
    let config = |isolation: &str| {
        format!(
            "[database]\nurl = \"sqlite:///bench.db\"\n{}",
            five_filters(isolation)
        )
    };
    let daemon = |isolation: &str| {
        let s = Scratch::new(&format!("bench-isolation-events-{isolation}"));
        let (d, _) = release_daemon(&s, &config(isolation));
        (s, d)
    };
    let (_a, inline) = daemon("none");
    let (_b, isolated) = daemon("process");
    let base = baseline.map(|bin| {
        let s = Scratch::new("bench-isolation-events-baseline");
        let (d, _) = release_daemon_bin(&s, &config("process"), bin);
        (s, d)
    });
    let echo_dir = Scratch::new("bench-isolation-echo");
    let mut echo = EchoServer::start(&echo_dir.path.join("echo.sock"));
    let masked = |r: &serde_json::Value| {
        assert!(r["post"]["content"]
            .as_str()
            .unwrap()
            .contains(r"\*\*\*\*\*"));
    };
    let echoed = |r: &serde_json::Value| {
        assert_eq!(r["post"]["content"].as_str(), Some(CONTENT));
    };
    println!("PostSaveBefore through 5 wordfilter instances over the socket, in-process (none) and isolated (process, the default), beside a Varlink echo server; {seconds} s per cell and server, in {rounds} spells taking turns, release build:");
    println!(
        "{:>5} {:>7} | {:>9} {:>9} {:>9} | {:>8} {:>8} {:>8} | {:>9} {:>9} | {:>9} {:>9}",
        "load",
        "clients",
        "none rt/s",
        "proc rt/s",
        "echo rt/s",
        "none p50",
        "proc p50",
        "echo p50",
        "proc÷none",
        "proc÷echo",
        "proc÷none",
        "proc÷echo"
    );
    let mut servers = vec![
        Server {
            socket: &inline.socket,
            check: masked,
            pid: Some(inline.child.id()),
        },
        Server {
            socket: &isolated.socket,
            check: masked,
            pid: Some(isolated.child.id()),
        },
        Server {
            socket: &echo.socket,
            check: echoed,
            pid: None,
        },
    ];
    if let Some((_, d)) = &base {
        servers.push(Server {
            socket: &d.socket,
            check: masked,
            pid: None,
        });
    }
    for load in ["quiet", "busy"] {
        let hogs = (load == "busy").then(Hogs::start);
        for clients in [1usize, 16] {
            let spent = interleaved(&servers, clients, seconds, rounds);
            let (none, none_use) = spent[0].per_call();
            let (process, proc_use) = spent[1].per_call();
            let bare = spent[2].tally.row();
            let before = spent.get(3).map(|b| b.tally.row());
            println!(
                "{load:>5} {clients:>7} | {:>9.0} {:>9.0} {:>9.0} | {:>8.1} {:>8.1} {:>8.1} | {:>9.3} {:>9.3} | {:>9.2} {:>9.2}",
                none.rate,
                process.rate,
                bare.rate,
                micros(none.p50),
                micros(process.p50),
                micros(bare.p50),
                process.rate / none.rate,
                process.rate / bare.rate,
                micros(process.p50) / micros(none.p50),
                micros(process.p50) / micros(bare.p50),
            );
            for (label, [daemon, hosts]) in [("none", none_use), ("process", proc_use)] {
                println!(
                    "{:>13} | {label:>7} per call: daemon {:.1} µs CPU, {:.2} sleeps, {:.2} preemptions; hosts {:.1} µs CPU, {:.2} sleeps, {:.2} preemptions",
                    "", daemon.0, daemon.1, daemon.2, hosts.0, hosts.1, hosts.2
                );
            }
            if let Some(b) = before {
                println!(
                    "{:>13} | {:>19} {:>9.0} | {:>17} {:>8.1} | baseline (isolated) ÷ this build: calls/s {:.3}, p50 {:.2}",
                    "baseline",
                    "",
                    b.rate,
                    "",
                    micros(b.p50),
                    b.rate / process.rate,
                    micros(b.p50) / micros(process.p50)
                );
            }
        }
        drop(hogs);
    }
    println!("(p50 in µs; the first pair of ratios is of calls/s, the second of p50; busy: one busy loop per core at the same priority)");
    echo.stop();
}
