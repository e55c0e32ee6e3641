//! Authentication: unknown user vs wrong password (`timing`), and bcrypt against the
//! physical limit (`bcrypt`).

use std::time::Instant;

use flaskbbd_tests::Scratch;
use serde_json::json;

use crate::stats::{arg, closed_loop, median, ms, on_all_cores, percentile, release_daemon, Job};

/// Unknown user vs wrong password: the ratio of their median answer times through the
/// socket. FlaskBB answers an unknown user at once; flaskbbd spends the same bcrypt work.
pub fn timing(args: &[String]) {
    let cost = arg(args, "--cost", 10);
    let rounds = arg(args, "--rounds", 40) as usize;
    let s = Scratch::new("bench-timing");
    let (d, _) = release_daemon(
        &s,
        &format!("[database]\nurl = \"sqlite:///bench.db\"\n[auth]\nbcrypt_cost = {cost}\nlockout = {{ enabled = false }}\n"),
    );
    d.add_user("alice", "Secret123", true);
    let mut client = d.client();
    let mut time = |identifier: &str| {
        let t = Instant::now();
        let r = client.call(
            "org.flaskbb.Auth.Authenticate",
            json!({ "identifier": identifier, "secret": "wrong" }),
        );
        assert_eq!(
            r.unwrap_err().name(),
            Some("org.flaskbb.Auth.AuthenticationFailed")
        );
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
    println!(
        "unknown user vs wrong password, bcrypt cost {cost}, {rounds} rounds each, one connection:"
    );
    println!(
        "  wrong password: median {:>8.2} ms  p99 {:>8.2} ms",
        ms(mw),
        ms(percentile(wrong, 0.99))
    );
    println!(
        "  unknown user:   median {:>8.2} ms  p99 {:>8.2} ms",
        ms(mu),
        ms(percentile(unknown, 0.99))
    );
    println!(
        "  ratio unknown/wrong (medians): {:.3} (target: within 0.98..1.02)",
        mu.as_secs_f64() / mw.as_secs_f64()
    );
}

/// One benchmarked call.
/// bcrypt verification: the bcrypt crate, the system's libxcrypt, and flaskbbd's
/// verifier, each on all cores at cost 10 and 12; then Authenticate through the socket
/// at saturation against raw libxcrypt in the same run.
pub fn bcrypt_bench(args: &[String]) {
    use flaskbbd::embed::{libxcrypt_crypt, Engine, Verifier};
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let seconds = arg(args, "--seconds", 20);
    println!("bcrypt verification on {threads} cores (one thread per core), every call verifies a right password:");
    println!(
        "{:<8} {:<28} {:>14} {:>12}",
        "cost", "engine", "median/call", "calls/s"
    );
    let (mut libx_rate_10, mut crate_rate_10) = (0.0, 0.0);
    for cost in [10u32, 12] {
        let per_thread = if cost == 10 { 12 } else { 4 };
        let hash = bcrypt::hash("correct horse battery", cost).unwrap();
        let ours = Verifier::new(cost).unwrap();
        assert_eq!(
            ours.engine(),
            Engine::Libxcrypt,
            "libxcrypt is not available"
        );
        let engines: [(&str, Job); 3] = [
            (
                "bcrypt crate (bcrypt::verify)",
                Box::new(|| assert!(bcrypt::verify("correct horse battery", &hash).unwrap())),
            ),
            (
                "libxcrypt crypt_rn (raw)",
                Box::new(|| {
                    assert_eq!(
                        libxcrypt_crypt("correct horse battery", &hash).as_deref(),
                        Some(hash.as_str())
                    )
                }),
            ),
            (
                "flaskbbd Verifier::verify",
                Box::new(|| assert!(ours.verify("correct horse battery", Some(&hash)))),
            ),
        ];
        let mut results = Vec::new();
        for (name, f) in &engines {
            let (times, wall) = on_all_cores(threads, per_thread, f.as_ref());
            let rate = times.len() as f64 / wall.as_secs_f64();
            let med = median(times);
            println!("{cost:<8} {name:<28} {:>11.2} ms {rate:>12.2}", ms(med));
            results.push((med, rate));
        }
        // The same two again, interleaved call by call on every thread, so that
        // whatever else the machine does falls on both alike.
        let both = std::sync::Mutex::new((Vec::new(), Vec::new()));
        on_all_cores(threads, per_thread, &|| {
            let t = Instant::now();
            (engines[1].1)();
            let x = t.elapsed();
            let t = Instant::now();
            (engines[2].1)();
            let o = t.elapsed();
            let mut b = both.lock().unwrap();
            b.0.push(x);
            b.1.push(o);
        });
        let (xs, os) = both.into_inner().unwrap();
        println!(
            "{cost:<8} interleaved medians: libxcrypt {:.2} ms, flaskbbd {:.2} ms, ratio {:.3}",
            ms(median(xs.clone())),
            ms(median(os.clone())),
            median(os).as_secs_f64() / median(xs).as_secs_f64()
        );
        let (c, x, o) = (results[0], results[1], results[2]);
        println!(
            "{cost:<8} ratios: time/call ours/libxcrypt {:.3} (target <= 1.00), crate/libxcrypt {:.3}; calls/s ours/libxcrypt {:.3}",
            o.0.as_secs_f64() / x.0.as_secs_f64(),
            c.0.as_secs_f64() / x.0.as_secs_f64(),
            o.1 / x.1
        );
        if cost == 10 {
            libx_rate_10 = x.1;
            crate_rate_10 = c.1;
        }
    }

    // Through the socket: the release daemon, 4 clients per core, right passwords.
    let s = Scratch::new("bench-bcrypt");
    let (d, _) = release_daemon(
        &s,
        "[database]\nurl = \"sqlite:///bench.db\"\n[auth]\nbcrypt_cost = 10\n[log]\nfilter = \"warn\"\n",
    );
    d.add_user("alice", "correct horse battery", true);
    let clients = threads * 4;
    let (times, wall) = closed_loop(&d, clients, seconds as f64, &|c| {
        c.call(
            "org.flaskbb.Auth.Authenticate",
            json!({ "identifier": "alice", "secret": "correct horse battery" }),
        )
        .expect("Authenticate");
    });
    let rate = times.len() as f64 / wall.as_secs_f64();
    let (p50, p99) = (percentile(times.clone(), 0.5), percentile(times, 0.99));
    println!(
        "Authenticate through the socket, cost 10, {clients} concurrent clients, {seconds} s:"
    );
    println!(
        "  {rate:.2} calls/s; p50 {:.1} ms, p99 {:.1} ms; p99/p50 {:.3} (target <= 1.2)",
        ms(p50),
        ms(p99),
        p99.as_secs_f64() / p50.as_secs_f64()
    );
    println!(
        "  ratio to raw bcrypt::verify calls/s on all cores: {:.3} (target >= 0.95)",
        rate / crate_rate_10
    );
    println!(
        "  ratio to raw libxcrypt calls/s on all cores: {:.3} (the faster of the two raw engines)",
        rate / libx_rate_10
    );
}
