//! Memory and start-up: time from start to READY, RSS idle with the shipped plugins on
//! the shipped `flaskbb.toml` (and what their plugin hosts take), and RSS with 10,000
//! idle connections.

use std::{
    os::unix::net::{UnixDatagram, UnixStream},
    process::Command,
    time::{Duration, Instant},
};

use flaskbbd_tests::{build_release, daemon::TestDaemon, root, Scratch};

use crate::stats::{arg, median, ms};

/// The shipped `flaskbb.toml` with its plugin directory made absolute, in `s`.
fn shipped_config(s: &Scratch, dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(root().join("flaskbb.toml")).unwrap();
    let text = text.replace(
        "dirs = [\"target/release\"]",
        &format!("dirs = [{:?}]", dir.display().to_string()),
    );
    assert!(
        text.contains(&dir.display().to_string()),
        "flaskbb.toml names its plugin directory differently"
    );
    // One client (this bench) opens all the idle connections below.
    let text = text.replacen(
        "[daemon]\n",
        "[daemon]\nmax_connections_per_uid = 16384\n",
        1,
    );
    std::fs::create_dir_all(s.path.join("var")).unwrap();
    s.write("flaskbb.toml", &text)
}

/// The processes whose parent is `pid` (an isolated instance's plugin hosts).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            stat.rfind(')')
                .and_then(|i| stat[i + 2..].split(' ').nth(1)?.parse::<u32>().ok())
                == Some(pid)
        })
        .collect()
}

/// Raises this process's open-files soft limit to its hard limit.
fn raise_nofile() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
    l.rlim_cur
}

/// `flaskbbd-bench memory [--starts N] [--connections N]`.
pub(crate) fn memory(args: &[String]) {
    let starts = arg(args, "--starts", 10) as usize;
    let connections = arg(args, "--connections", 10_000) as usize;
    let dir = build_release();
    let bin = dir.join("flaskbbd");

    // Start-up: spawn to READY=1 on NOTIFY_SOCKET. The first start creates the
    // database and copies the plugins into the cache; later starts are restarts.
    let s = Scratch::new("bench-start");
    let cfg = shipped_config(&s, &dir);
    let notify = s.path.join("notify");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut to_ready = Vec::new();
    let mut first_start = Duration::ZERO;
    for i in 0..starts {
        let mut cmd = Command::new(&bin);
        cmd.env("NOTIFY_SOCKET", &notify);
        let t = Instant::now();
        let d = TestDaemon::spawn(&s, cmd, cfg.clone());
        let mut buf = [0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).expect("READY=1 within 30 s");
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                break;
            }
        }
        let took = t.elapsed();
        if i == 0 {
            first_start = took;
        } else {
            to_ready.push(took);
        }
        assert!(d.stop().success());
        // Drain what the stop announced.
        sock.set_nonblocking(true).unwrap();
        while sock.recv(&mut buf).is_ok() {}
        sock.set_nonblocking(false).unwrap();
    }
    println!("start-up with the shipped plugins on the shipped flaskbb.toml (release build):");
    println!(
        "  spawn to READY=1: first start (creates the database) {:.1} ms; median of {} restarts {:.1} ms",
        ms(first_start),
        to_ready.len(),
        ms(median(to_ready))
    );

    // Memory: the same configuration, idle, then with idle connections.
    let s = Scratch::new("bench-memory");
    let cfg = shipped_config(&s, &dir);
    let mut d = TestDaemon::spawn(&s, Command::new(&bin), cfg);
    d.wait_ready();
    std::thread::sleep(Duration::from_secs(1));
    let idle = d.rss_kib();
    println!("  RSS idle: {:.1} MiB", idle as f64 / 1024.0);
    let hosts = children(d.child.id());
    let field = |pid: u32, file: &str, key: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let rss: u64 = hosts.iter().map(|&p| field(p, "status", "VmRSS:")).sum();
    let pss: u64 = hosts
        .iter()
        .map(|&p| field(p, "smaps_rollup", "Pss:"))
        .sum();
    println!(
        "  plugin hosts (one per isolated instance): {}, RSS {:.1} MiB together, PSS {:.1} MiB ({:.1} MiB each)",
        hosts.len(),
        rss as f64 / 1024.0,
        pss as f64 / 1024.0,
        pss as f64 / 1024.0 / hosts.len().max(1) as f64
    );
    let limit = raise_nofile();
    assert!(
        limit as usize > connections + 64,
        "open-files limit {limit} is too low for {connections} connections: ulimit -n"
    );
    let base = d.open_sockets();
    let held: Vec<UnixStream> = (0..connections)
        .map(|_| UnixStream::connect(&d.socket).expect("connect"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.open_sockets() < connections && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let busy = d.rss_kib();
    println!(
        "  RSS with {connections} idle connections: {:.1} MiB ({:.2} KiB per connection; ratio to idle {:.2})",
        busy as f64 / 1024.0,
        (busy - idle) as f64 / connections as f64,
        busy as f64 / idle as f64
    );
    drop(held);
    // Closed, the connections' memory goes back to the system.
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.open_sockets() > base && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = d.rss_kib();
    println!(
        "  RSS after they closed: {:.1} MiB ({:+.1} MiB from idle)",
        after as f64 / 1024.0,
        (after as f64 - idle as f64) / 1024.0
    );
}
