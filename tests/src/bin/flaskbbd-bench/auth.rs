//! Authentication: unknown user vs wrong password (`timing`), and bcrypt against the
//! physical limit (`bcrypt`).

use std::time::Instant;

use flaskbbd_tests::Scratch;
use serde_json::json;

use crate::stats::{arg, closed_loop, median, ms, on_all_cores, percentile, release_daemon};

/// Unknown user vs wrong password: the ratio of their median answer times through the
/// socket, on a quiet daemon and then under load (other clients logging in with
/// wrong passwords), since batched verification changes how calls queue. FlaskBB
/// answers an unknown user at once; flaskbbd spends the same bcrypt work, through
/// the same verification pool.
pub fn timing(args: &[String]) {
    let cost = arg(args, "--cost", 10);
    let rounds = arg(args, "--rounds", 40) as usize;
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
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
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
        let per_thread = if cost == 10 { 16 } else { 4 };
        let hash = bcrypt::hash(secret, cost).unwrap();
        let setting = Setting::parse(&hash).unwrap();
        println!("\ncost {cost}, raw engines, one thread per core:");
        let (times, wall) = on_all_cores(threads, per_thread, &|| {
            assert_eq!(
                libxcrypt_crypt(secret, &hash).as_deref(),
                Some(hash.as_str())
            );
        });
        let libx = (threads * per_thread) as f64 / wall.as_secs_f64();
        let spread = percentile(times.clone(), 0.99).as_secs_f64() / median(times).as_secs_f64();
        println!(
            "  {:<34} {libx:>8.2} hashes/s                 (p99/p50 of a call {spread:.2})",
            "libxcrypt crypt_rn"
        );
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
        // Saturation is the steady state: a second of it first, not measured.
        closed_loop(&d, clients, 1.0, &login);
        let (times, wall) = closed_loop(&d, clients, seconds as f64, &login);
        let rate = times.len() as f64 / wall.as_secs_f64();
        let (p50, p99) = (percentile(times.clone(), 0.5), percentile(times, 0.99));
        println!("cost {cost}, Authenticate through the socket, {clients} clients (4 per core), {seconds} s:");
        println!(
            "  {rate:.2} calls/s = {:.2}× raw libxcrypt on all cores (target >= 1.6)",
            rate / libx
        );
        println!(
            "  p50 {:.1} ms, p99 {:.1} ms: p99/p50 {:.3} (target <= 1.3)",
            ms(p50),
            ms(p99),
            p99.as_secs_f64() / p50.as_secs_f64()
        );

        // A lone client, alternating with a single libxcrypt verify in this process.
        let rounds = if cost == 10 { 30 } else { 10 };
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
