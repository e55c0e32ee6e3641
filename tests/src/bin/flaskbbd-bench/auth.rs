//! Authentication: unknown user vs wrong password (`timing`), and bcrypt against the
//! physical limit (`bcrypt`).

use std::time::Instant;

use flaskbbd_tests::Scratch;
use serde_json::json;

use crate::stats::{
    arg, for_seconds, median, ms, on_all_cores, percentile, release_daemon, steady_loop,
};

/// Unknown user vs wrong password: the ratio of their median answer times through the
/// socket, on a quiet daemon and then under load (other clients logging in with
/// wrong passwords), since batched verification changes how calls queue. FlaskBB
/// answers an unknown user at once; flaskbbd spends the same bcrypt work, through
/// the same verification pool.
pub fn timing(args: &[String]) {
    let cost = arg(args, "--cost", 10);
    let rounds = arg(args, "--rounds", 100) as usize;
    let s = Scratch::new("bench-timing");
    let (d, _) = release_daemon(
        &s,
        &format!("[database]\nurl = \"sqlite:///bench.db\"\n[auth]\nbcrypt_cost = {cost}\nlockout = {{ enabled = false }}\n[log]\nfilter = \"warn\"\n"),
    );
    d.add_user("alice", "Secret123", true);
    d.add_user("bob", "Secret123", true);
    let fail = |client: &mut flaskbbd_protocol::client::Client, identifier: &str| {
        let r = client.call(
            "org.flaskbb.Auth.Authenticate",
            json!({ "identifier": identifier, "secret": "wrong" }),
        );
        assert_eq!(
            r.unwrap_err().name(),
            Some("org.flaskbb.Auth.AuthenticationFailed")
        );
    };
    let measure = |label: &str| {
        let mut client = d.client();
        let mut time = |identifier: &str| {
            let t = Instant::now();
            fail(&mut client, identifier);
            t.elapsed()
        };
        // Warm up, then alternate so drift on a shared machine hits both sides alike.
        for _ in 0..3 {
            time("alice");
            time("nobody");
        }
        let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            wrong.push(time("alice"));
            unknown.push(time("nobody"));
        }
        let (mw, mu) = (median(wrong.clone()), median(unknown.clone()));
        println!("  {label}:");
        println!(
            "    wrong password: median {:>8.2} ms  p99 {:>8.2} ms",
            ms(mw),
            ms(percentile(wrong, 0.99))
        );
        println!(
            "    unknown user:   median {:>8.2} ms  p99 {:>8.2} ms",
            ms(mu),
            ms(percentile(unknown, 0.99))
        );
        println!(
            "    ratio unknown/wrong (medians): {:.3} (target: within 0.98..1.02)",
            mu.as_secs_f64() / mw.as_secs_f64()
        );
    };
    println!(
        "unknown user vs wrong password, bcrypt cost {cost}, {rounds} rounds each, one measuring connection:"
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
                    fail(&mut c, "bob");
                }
            });
        }
        measure(&format!(
            "under load ({} other clients failing logins)",
            threads * 2
        ));
        paired(&d, rounds, &fail);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

/// Under load, where a call's time is mostly where it lands among the batches, a
/// wrong password and an unknown user sent at the same instant from two connections
/// (they share the queue and, mostly, a batch): the path's own difference, without
/// the queueing noise. Sides swap connections every round.
fn paired(
    d: &flaskbbd_tests::daemon::TestDaemon,
    rounds: usize,
    fail: &(dyn Fn(&mut flaskbbd_protocol::client::Client, &str) + Sync),
) {
    let both = std::sync::Barrier::new(2);
    let times: Vec<Vec<(bool, std::time::Duration)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|side| {
                let both = &both;
                scope.spawn(move || {
                    let mut c = d.client();
                    (0..rounds)
                        .map(|r| {
                            let unknown = (r + side) % 2 == 0;
                            both.wait();
                            let t = Instant::now();
                            fail(&mut c, if unknown { "nobody" } else { "alice" });
                            (unknown, t.elapsed())
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for (a, b) in times[0].iter().zip(&times[1]) {
        for (is_unknown, t) in [a, b] {
            if *is_unknown {
                unknown.push(*t)
            } else {
                wrong.push(*t)
            }
        }
    }
    let (mu, mw) = (median(unknown), median(wrong));
    println!("  under the same load, sent in pairs at the same instant ({rounds} pairs):");
    println!(
        "    wrong password: median {:>8.2} ms; unknown user: median {:>8.2} ms",
        ms(mw),
        ms(mu)
    );
    println!(
        "    ratio unknown/wrong (medians): {:.3} (target: within 0.98..1.02)",
        mu.as_secs_f64() / mw.as_secs_f64()
    );
}

/// bcrypt verification against the physical limit, at cost 10 and 12: raw libxcrypt
/// on every core (one hash per thread at a time, as every peer verifies) beside the
/// daemon's engine at 1 to 4 lanes per thread; then Authenticate through the socket
/// at 4 clients per core (throughput and its spread) and a lone client's latency,
/// each against raw libxcrypt in the same run.
pub fn bcrypt_bench(args: &[String]) {
    use flaskbbd::embed::libxcrypt_crypt;
    use flaskbbd_bcrypt::{crypt_many, Job as Lane, Setting, MAX_LANES};
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let seconds = arg(args, "--seconds", 20);
    let secret = "correct horse battery";
    println!("bcrypt verification on {threads} cores; every call verifies a right password.");
    for cost in [10u32, 12] {
        let per_thread: usize = if cost == 10 { 16 } else { 4 };
        let hash = bcrypt::hash(secret, cost).unwrap();
        let setting = Setting::parse(&hash).unwrap();
        println!("\ncost {cost}, raw engines, one thread per core:");
        // The wall, measured long enough to mean something (a quarter of the socket
        // run) before the socket run and again after it; the ratio uses the mean.
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
        let libx = libx_before;
        for lanes in 1..=MAX_LANES {
            let jobs: Vec<Lane<'_>> = (0..lanes)
                .map(|_| Lane {
                    key: secret.as_bytes(),
                    setting: &setting,
                })
                .collect();
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
                rate / libx
            );
        }

        let s = Scratch::new("bench-bcrypt");
        let (d, _) = release_daemon(
            &s,
            &format!("[database]\nurl = \"sqlite:///bench.db\"\n[auth]\nbcrypt_cost = {cost}\n[log]\nfilter = \"warn\"\n"),
        );
        d.add_user("alice", secret, true);
        let login = |c: &mut flaskbbd_protocol::client::Client| {
            c.call(
                "org.flaskbb.Auth.Authenticate",
                json!({ "identifier": "alice", "secret": secret }),
            )
            .expect("Authenticate");
        };
        let clients = threads * 4;
        // Saturation is the steady state: the same clients' first seconds (the burst
        // of eight logins at once on an idle daemon) are not counted.
        let warmup = if cost == 10 { 2.0 } else { 5.0 };
        let (times, wall) = steady_loop(&d, clients, warmup, seconds as f64, &login);
        let rate = times.len() as f64 / wall.as_secs_f64();
        let (p50, p99) = (percentile(times.clone(), 0.5), percentile(times, 0.99));
        let (libx_after, _) = raw_libxcrypt();
        let libx_mean = (libx + libx_after) / 2.0;
        println!("cost {cost}, Authenticate through the socket, {clients} clients (4 per core), {seconds} s after {warmup} s:");
        println!(
            "  {rate:.2} calls/s = {:.2}× raw libxcrypt on all cores (target >= 1.6; libxcrypt {libx:.2} hashes/s before, {libx_after:.2} after)",
            rate / libx_mean
        );
        // The machine's own spread over as long: our engine's four-lane batches,
        // back to back on every core, with no daemon.
        let jobs: Vec<Lane<'_>> = (0..MAX_LANES)
            .map(|_| Lane {
                key: secret.as_bytes(),
                setting: &setting,
            })
            .collect();
        let (_, machine) = for_seconds(threads, seconds as f64, &|| {
            crypt_many(&jobs, MAX_LANES);
        });
        println!(
            "  p50 {:.1} ms, p99 {:.1} ms: p99/p50 {:.3} (target <= 1.3); the machine's own: raw {MAX_LANES}-lane batches on every core for {seconds} s, p99/p50 {:.3}",
            ms(p50),
            ms(p99),
            p99.as_secs_f64() / p50.as_secs_f64(),
            machine
        );

        // A lone client, alternating with a single libxcrypt verify in this process.
        let rounds = if cost == 10 { 60 } else { 30 };
        let mut client = d.client();
        let (mut alone, mut raw) = (Vec::new(), Vec::new());
        login(&mut client);
        for _ in 0..rounds {
            let t = Instant::now();
            assert_eq!(
                libxcrypt_crypt(secret, &hash).as_deref(),
                Some(hash.as_str())
            );
            raw.push(t.elapsed());
            let t = Instant::now();
            login(&mut client);
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
