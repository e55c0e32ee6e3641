//! flaskbbd's benchmarks: figures measured in one run, reported as ratios, never
//! asserted (these machines are shared and noisy). See docs/benchmarks.md.
//!
//! `cargo run --release -p flaskbbd-tests --bin flaskbbd-bench -- timing [--cost N] [--rounds N]`

use std::time::{Duration, Instant};

use flaskbbd_tests::{build_release, daemon::TestDaemon, Scratch};
use serde_json::json;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Unknown user vs wrong password: the ratio of their median answer times through the
/// socket. FlaskBB answers an unknown user at once; flaskbbd spends the same bcrypt work.
fn timing(args: &[String]) {
    let cost = arg(args, "--cost", 10);
    let rounds = arg(args, "--rounds", 40) as usize;
    let dir = build_release();
    let s = Scratch::new("bench-timing");
    let cfg = s.write(
        "flaskbb.toml",
        &format!(
            "[plugins]\ndirs = [{:?}]\n[database]\nurl = \"sqlite:///bench.db\"\n[auth]\nbcrypt_cost = {cost}\nlockout = {{ enabled = false }}\n",
            dir.display().to_string()
        ),
    );
    let d = TestDaemon::start_bin(&s, &dir.join("flaskbbd"), cfg);
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("timing") => timing(&args[1..]),
        _ => {
            eprintln!("usage: flaskbbd-bench timing [--cost N] [--rounds N]");
            std::process::exit(2);
        }
    }
}
