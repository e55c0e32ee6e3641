//! Isolation's cost: one impl call in a plugin host against the same call in the
//! daemon's process, and `PostSaveBefore` through five word filters each way.

use std::{
    hint::black_box,
    io::{Read, Write},
    os::{fd::AsFd, unix::net::UnixStream},
    process::{Command, Stdio},
    time::Instant,
};

use flaskbbd::embed::{Chains, Context, EventCall};
use flaskbbd_tests::{build_release, fixture_release, Scratch};
use serde_json::json;

use crate::{
    events::{five_filters, CONTENT},
    stats::{arg, closed_loop, ms, percentile, release_daemon},
};

/// `flaskbbd-bench isolation [--calls N] [--seconds N]`.
pub fn isolation(args: &[String]) {
    let calls = arg(args, "--calls", 20_000) as usize;
    let seconds = arg(args, "--seconds", 5) as f64;
    socket_floor(calls);
    println!();
    one_call(calls);
    println!();
    five_filters_each_way(seconds);
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
pub fn echo_peer() {
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
/// isolated, with 1 and 16 clients.
fn five_filters_each_way(seconds: f64) {
    println!("PostSaveBefore through 5 wordfilter instances over the socket, {seconds} s per row, release build:");
    println!(
        "{:>10} {:>8} {:>14} {:>10} {:>10}",
        "isolation", "clients", "round trips/s", "p50 ms", "p99 ms"
    );
    for isolation in ["none", "process"] {
        let s = Scratch::new(&format!("bench-isolation-events-{isolation}"));
        let (d, _) = release_daemon(
            &s,
            &format!(
                "[database]\nurl = \"sqlite:///bench.db\"\n[log]\nfilter = \"warn\"\n{}",
                five_filters(isolation)
            ),
        );
        for clients in [1usize, 16] {
            let (times, wall) = closed_loop(&d, clients, seconds, &|c| {
                let r = c
                    .call(
                        "org.flaskbb.Events.PostSaveBefore",
                        json!({ "post": { "content": CONTENT, "user_id": 2 } }),
                    )
                    .expect("PostSaveBefore");
                assert!(r["post"]["content"]
                    .as_str()
                    .unwrap()
                    .contains(r"\*\*\*\*\*"));
            });
            let rate = times.len() as f64 / wall.as_secs_f64();
            println!(
                "{isolation:>10} {clients:>8} {rate:>14.0} {:>10.3} {:>10.3}",
                ms(percentile(times.clone(), 0.5)),
                ms(percentile(times, 0.99))
            );
        }
    }
}
