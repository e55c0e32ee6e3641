//! Authentication: wrong password vs unknown user vs locked account (`timing`), and
//! bcrypt against the physical limit (`bcrypt`).

use std::time::Instant;

use flaskbbd_tests::{
    calls::{authenticate, authenticate_in, context_of},
    Scratch,
};
use serde_json::json;

use crate::stats::{
    arg, for_seconds, median, ms, on_all_cores, percentile, release_daemon, steady_loop,
};

/// The three failures an attacker must not tell apart.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A wrong password for an account that is not locked.
    Wrong,
    /// A name no account has.
    Unknown,
    /// Any password for an account locked for the sending address (`reveal = false`).
    Locked,
}

const KINDS: [Kind; 3] = [Kind::Wrong, Kind::Unknown, Kind::Locked];

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Wrong => "wrong password",
            Kind::Unknown => "unknown user",
            Kind::Locked => "locked account",
        }
    }
}

/// A client address no lockout row has seen yet (so that wrong passwords and unknown
/// names never reach a lock), or the address carol is locked for.
fn address_for(kind: Kind) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    if kind == Kind::Locked {
        return LOCKED_FROM.into();
    }
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::net::Ipv4Addr::from(0x0a00_0000 | n).to_string()
}

const LOCKED_FROM: &str = "192.0.2.1";

/// One failed login of `kind` on `client`.
fn fail(client: &mut flaskbbd_protocol::client::Client, kind: Kind, who: &str) {
    let r = client.send(&authenticate_in(
        who,
        "wrong",
        context_of(json!({ "remote_addr": address_for(kind) })),
    ));
    let e = r.unwrap_err();
    assert_eq!(e.name(), Some("org.flaskbb.Auth.AuthenticationFailed"));
}

fn who(kind: Kind) -> &'static str {
    match kind {
        Kind::Wrong => "alice",
        Kind::Unknown => "nobody",
        Kind::Locked => "carol",
    }
}

/// Wrong password, unknown user and locked account: the ratios of their median answer
/// times through the socket, with the default lockout (`reveal = false`), on a quiet
/// daemon and then under load (other clients logging in with wrong passwords), since
/// the shared verification pool changes how calls queue. FlaskBB answers an unknown user at
/// once, and a locked one at once with its own message; flaskbbd spends the same
/// bcrypt work on all three, through the same verification pool, and answers them in
/// the same words.
pub(crate) fn timing(args: &[String]) {
    let cost = arg(args, "--cost", 10);
    let rounds = arg(args, "--rounds", 300) as usize;
    let s = Scratch::new("bench-timing");
    // The default lockout, but no account-wide delays: those hold answers back on
    // purpose, and the wrong passwords here all go to alice.
    let (d, _) = release_daemon(
        &s,
        &format!("[database]\nurl = \"sqlite:///bench.db\"\n[auth]\nbcrypt_cost = {cost}\nlockout = {{ account_attempts = 1000000000 }}\n[log]\nfilter = \"warn\"\n"),
    );
    for name in ["alice", "bob", "carol"] {
        d.add_user(name, "Secret123", true);
    }
    {
        let mut c = d.client();
        for _ in 0..5 {
            fail(&mut c, Kind::Locked, "carol");
        }
        let mut same = |k: Kind| {
            c.send(&authenticate_in(
                who(k),
                "wrong",
                context_of(json!({ "remote_addr": address_for(k) })),
            ))
            .unwrap_err()
            .to_string()
        };
        let answers: Vec<_> = KINDS.iter().map(|k| same(*k)).collect();
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "the three answers differ: {answers:?}"
        );
        println!("the three answers are the same: {}", answers[0]);
    }
    let measure = |label: &str| {
        let mut client = d.client();
        let mut time = |kind: Kind| {
            let t = Instant::now();
            fail(&mut client, kind, who(kind));
            t.elapsed()
        };
        // Warm up, then take turns so drift on a shared machine hits all alike.
        for _ in 0..3 {
            for k in KINDS {
                time(k);
            }
        }
        let mut times: [Vec<std::time::Duration>; 3] = Default::default();
        for _ in 0..rounds {
            for (i, k) in KINDS.iter().enumerate() {
                times[i].push(time(*k));
            }
        }
        report(label, &times);
    };
    println!(
        "wrong password, unknown user, locked account; bcrypt cost {cost}, {rounds} rounds each, one measuring connection:"
    );
    measure("quiet daemon");
    // Under load: two clients per core keep failing logins for bob meanwhile.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..threads * 2 {
            scope.spawn(|| {
                let mut c = d.client();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    fail(&mut c, Kind::Wrong, "bob");
                }
            });
        }
        measure(&format!(
            "under load ({} other clients failing logins)",
            threads * 2
        ));
        together(&d, rounds);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

/// Prints the medians and p99s of `times` (in [`KINDS`] order) and the ratios of the
/// medians to the wrong password's.
fn report(label: &str, times: &[Vec<std::time::Duration>; 3]) {
    println!("  {label}:");
    let medians: Vec<f64> = times
        .iter()
        .map(|t| median(t.clone()).as_secs_f64())
        .collect();
    for (i, k) in KINDS.iter().enumerate() {
        println!(
            "    {:<15} median {:>8.2} ms  p99 {:>8.2} ms",
            format!("{}:", k.label()),
            medians[i] * 1e3,
            ms(percentile(times[i].clone(), 0.99))
        );
    }
    println!(
        "    ratio unknown/wrong {:.3}, locked/wrong {:.3} (medians; target: within 0.98..1.02)",
        medians[1] / medians[0],
        medians[2] / medians[0]
    );
}

/// Under load, where a call's time is mostly how long it waits for a lane: the three
/// kinds sent at the same instant from three connections (they share the queue and
/// wait alike), each path's own difference without the queueing noise.
/// Kinds rotate over the connections every round.
fn together(d: &flaskbbd_tests::daemon::TestDaemon, rounds: usize) {
    let all = std::sync::Barrier::new(3);
    let times: Vec<Vec<(Kind, std::time::Duration)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|side| {
                let all = &all;
                scope.spawn(move || {
                    let mut c = d.client();
                    (0..rounds)
                        .map(|r| {
                            let kind = KINDS[(r + side) % 3];
                            all.wait();
                            let t = Instant::now();
                            fail(&mut c, kind, who(kind));
                            (kind, t.elapsed())
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut by_kind: [Vec<std::time::Duration>; 3] = Default::default();
    for (kind, t) in times.into_iter().flatten() {
        by_kind[KINDS.iter().position(|k| *k == kind).unwrap()].push(t);
    }
    report(
        &format!("under the same load, the three sent at the same instant ({rounds} rounds)"),
        &by_kind,
    );
}

/// bcrypt verification against the physical limit, at cost 10 and 12 (or `--cost`):
/// raw libxcrypt on every core (one hash per thread at a time, as every peer
/// verifies) beside the daemon's engine at 1 to 4 lanes per thread; then
/// Authenticate through the socket at 4 clients per core (throughput, and the spread
/// of answer times beside the machine's own spread at as many lanes) with the default
/// lanes and with four; and a lone client's latency, each against raw libxcrypt in
/// the same run.
pub(crate) fn bcrypt_bench(args: &[String]) {
    use flaskbbd::embed::{libxcrypt_crypt, DEFAULT_LANES};
    use flaskbbd_bcrypt::{crypt_many, Job as Lane, Setting, MAX_LANES};
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let seconds = arg(args, "--seconds", 20);
    let costs = match arg(args, "--cost", 0) {
        0 => vec![10, 12],
        c => vec![c as u32],
    };
    let secret = "correct horse battery";
    println!("bcrypt verification on {threads} cores; every call verifies a right password.");
    for cost in costs {
        let per_thread: usize = if cost == 10 { 16 } else { 4 };
        let hash = bcrypt::hash(secret, cost).unwrap();
        let setting = Setting::parse(&hash).unwrap();
        println!("\ncost {cost}, raw engines, one thread per core:");
        // The wall, measured long enough to mean something (a quarter of the socket
        // run) before the socket runs and again after them; the ratios use the mean.
        let raw_libxcrypt = || {
            for_seconds(threads, seconds as f64 / 4.0, &|| {
                assert_eq!(
                    libxcrypt_crypt(secret, &hash).as_deref(),
                    Some(hash.as_str())
                );
            })
        };
        let (libx_before, spread) = raw_libxcrypt();
        println!(
            "  {:<34} {libx_before:>8.2} hashes/s                 (p99/p50 of a call {spread:.2})",
            "libxcrypt crypt_rn"
        );
        let jobs = |lanes: usize| -> Vec<Lane<'_>> {
            (0..lanes)
                .map(|_| Lane {
                    key: secret.as_bytes(),
                    setting: &setting,
                })
                .collect()
        };
        for lanes in 1..=MAX_LANES {
            let jobs = jobs(lanes);
            let batches = per_thread.div_ceil(lanes);
            let (times, wall) = on_all_cores(threads, batches, &|| {
                for h in crypt_many(&jobs, lanes) {
                    assert!(h.matches(&hash));
                }
            });
            let rate = (threads * batches * lanes) as f64 / wall.as_secs_f64();
            let spread =
                percentile(times.clone(), 0.99).as_secs_f64() / median(times).as_secs_f64();
            println!(
                "  {:<34} {rate:>8.2} hashes/s  {:.2}× libxcrypt  (p99/p50 of a call {spread:.2})",
                format!("flaskbbd engine, {lanes} lane(s)"),
                rate / libx_before
            );
        }

        let clients = threads * 4;
        // Saturation is the steady state: the same clients' first seconds (the burst
        // of eight logins at once on an idle daemon) are not counted.
        let warmup = if cost == 10 { 2.0 } else { 5.0 };
        let mut socket_runs = Vec::new();
        let mut default_daemon = None;
        for lanes in [DEFAULT_LANES, MAX_LANES] {
            let s = Scratch::new("bench-bcrypt");
            let (d, _) = release_daemon(
                &s,
                &format!("[database]\nurl = \"sqlite:///bench.db\"\n[auth]\nbcrypt_cost = {cost}\nbcrypt_lanes = {lanes}\n[log]\nfilter = \"warn\"\n"),
            );
            d.add_user("alice", secret, true);
            let (times, wall) =
                steady_loop(&d, clients, warmup, seconds as f64, &|c| login(c, secret));
            let rate = times.len() as f64 / wall.as_secs_f64();
            let quantiles = [0.5, 0.9, 0.99].map(|q| percentile(times.clone(), q));
            // The machine's own spread over as long: our engine at as many lanes,
            // back to back on every core, with no daemon.
            let jobs = jobs(lanes);
            let (_, machine) = for_seconds(threads, seconds as f64, &|| {
                crypt_many(&jobs, lanes);
            });
            socket_runs.push((lanes, rate, quantiles, machine));
            if lanes == DEFAULT_LANES {
                default_daemon = Some((s, d));
            }
        }
        let (libx_after, _) = raw_libxcrypt();
        let libx_mean = (libx_before + libx_after) / 2.0;
        println!("cost {cost}, Authenticate through the socket, {clients} clients (4 per core), {seconds} s after {warmup} s (libxcrypt {libx_before:.2} hashes/s before, {libx_after:.2} after):");
        for (lanes, rate, [p50, p90, p99], machine) in socket_runs {
            let default = if lanes == DEFAULT_LANES {
                ", the default"
            } else {
                ""
            };
            println!(
                "  auth.bcrypt_lanes = {lanes}{default}: {rate:.2} calls/s = {:.2}× raw libxcrypt on all cores (target >= 1.6)",
                rate / libx_mean
            );
            println!(
                "    p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms: p99/p50 {:.3} (target <= 1.3); the machine's own: raw {lanes}-lane hashes on every core for {seconds} s, p99/p50 {:.3}",
                ms(p50),
                ms(p90),
                ms(p99),
                p99.as_secs_f64() / p50.as_secs_f64(),
                machine
            );
        }
        let Some((_s, d)) = default_daemon else {
            return;
        };

        // A lone client, alternating with a single libxcrypt verify in this process.
        let rounds = if cost == 10 { 60 } else { 30 };
        let mut client = d.client();
        let (mut alone, mut raw) = (Vec::new(), Vec::new());
        login(&mut client, secret);
        for _ in 0..rounds {
            let t = Instant::now();
            assert_eq!(
                libxcrypt_crypt(secret, &hash).as_deref(),
                Some(hash.as_str())
            );
            raw.push(t.elapsed());
            let t = Instant::now();
            login(&mut client, secret);
            alone.push(t.elapsed());
        }
        let (ma, mr) = (median(alone), median(raw));
        println!(
            "cost {cost}, a lone Authenticate: median {:.2} ms vs libxcrypt's single verify {:.2} ms: {:.3}× (target <= 1.05)",
            ms(ma),
            ms(mr),
            ma.as_secs_f64() / mr.as_secs_f64()
        );
    }
}

/// alice's login with `secret`, which must succeed.
fn login(c: &mut flaskbbd_protocol::client::Client, secret: &str) {
    c.send(&authenticate("alice", secret))
        .expect("Authenticate");
}
