//! Running under systemd: the notify protocol, the watchdog, socket activation, live
//! reload under load, failed reloads, plugins upgraded in place, enabling and
//! disabling instances, and the unit files themselves.

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flaskbbd_tests::calls::{
    authenticate, get_info, list_hooks, list_plugins, reload, set_plugin_enabled, user_registered,
};
use std::{
    os::unix::net::UnixDatagram,
    process::Command,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use flaskbbd_tests::{
    daemon::{err, TestDaemon},
    fixture, flaskbbd_bin, root, text, variant_plugin, Scratch,
};
use serde_json::json;

/// A notify socket the daemon reports to.
struct NotifySocket {
    sock: UnixDatagram,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn new(s: &Scratch) -> NotifySocket {
        let path = s.path.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        NotifySocket { sock, path }
    }

    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self
            .sock
            .recv(&mut buf)
            .expect("a notification within 20 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Skips messages until one contains `needle`; returns it.
    fn until(&self, needle: &str) -> String {
        loop {
            let m = self.next();
            if m.contains(needle) {
                return m;
            }
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(flaskbbd_bin());
        c.env("NOTIFY_SOCKET", &self.path);
        c
    }
}

fn config(s: &Scratch, extra: &str) -> std::path::PathBuf {
    s.config(&format!("[database]\nurl = {:?}\n{extra}", s.db_url()))
}

#[test]
fn ready_comes_only_once_the_socket_answers_then_reloading_ready_and_stopping() {
    let s = Scratch::new("notify");
    let n = NotifySocket::new(&s);
    let d = TestDaemon::spawn(&s, n.command(), config(&s, ""));
    let ready = n.until("READY=1");
    // The very first call after READY must be answered: no retry.
    assert!(
        d.send(&get_info()).is_ok(),
        "READY came before the socket answered"
    );
    assert!(
        ready.contains("STATUS=serving generation 1 with 0 plugin instance(s) on "),
        "{ready}"
    );

    d.signal(libc::SIGHUP);
    let reloading = n.until("RELOADING=1");
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC beside RELOADING=1")
        .parse()
        .unwrap();
    assert!(usec > 0);
    assert!(n.until("READY=1").contains("STATUS=serving generation 2"));

    d.send(&reload()).unwrap();
    n.until("RELOADING=1");
    assert!(n.until("READY=1").contains("STATUS=serving generation 3"));

    let status = d.stop();
    assert!(status.success());
    assert!(n.until("STOPPING=1").contains("STATUS=stopping"));
}

#[test]
fn the_watchdog_is_fed_only_while_the_request_path_answers() {
    /// The most threads the request pool grows to (executor.rs, MIN_MAX_WORKERS).
    const POOL_CAP: usize = 64;
    let s = Scratch::new("watchdog");
    let n = NotifySocket::new(&s);
    let mut cmd = n.command();
    cmd.env("WATCHDOG_USEC", "600000");
    // One worker (so a pool of four threads, the daemon's four per core, that grows
    // to 64 while jobs wait), and an in-process plugin that keeps a thread busy for
    // 3 s: 64 such calls and the pool cannot answer.
    let d = TestDaemon::spawn(
        &s,
        cmd,
        config(
            &s,
            "[daemon]\nworkers = 1\nhook_timeout_ms = 10000\n[[plugin]]\nname = \"busy\"\nlibrary = \"scripted\"\nisolation = \"none\"\nconfig = { on = { flaskbb_event_user_registered = { action = \"sleep\", ms = 3000 } } }\n",
        ),
    );
    n.until("READY=1");
    n.until("WATCHDOG=1");
    n.until("WATCHDOG=1");
    // One more than the pool holds: an event may also run on a connection's thread.
    let busy: Vec<_> = (0..=POOL_CAP)
        .map(|_| {
            let socket = d.socket.clone();
            std::thread::spawn(move || {
                flaskbbd_protocol::client::Client::connect(&socket)
                    .unwrap()
                    .send(&user_registered("u"))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    // While every pool thread is busy, no WATCHDOG=1 arrives.
    n.sock
        .set_read_timeout(Some(Duration::from_millis(1800)))
        .unwrap();
    let mut buf = [0u8; 512];
    let mut fed = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1800) {
        match n.sock.recv(&mut buf) {
            Ok(k) if String::from_utf8_lossy(&buf[..k]).contains("WATCHDOG=1") => fed += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(
        fed, 0,
        "the watchdog was fed while requests could not be served"
    );
    for b in busy {
        assert!(b.join().unwrap().is_ok());
    }
    n.sock
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    n.until("WATCHDOG=1");
    assert!(
        d.log_text()
            .contains("watchdog: the request path did not answer"),
        "{}",
        d.log_text()
    );
}

#[test]
fn serves_on_a_socket_passed_by_systemd_socket_activate() {
    let s = Scratch::new("activation");
    let activated = s.path.join("activated.sock");
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.args([
        "-l",
        activated.to_str().unwrap(),
        flaskbbd_bin().to_str().unwrap(),
    ]);
    let mut d = TestDaemon::spawn(&s, cmd, config(&s, ""));
    d.socket = activated.clone();
    d.wait_ready();
    d.add_user("ann", "Secret123", true);
    assert_eq!(
        d.auth("ann", "Secret123").unwrap()["user"]["username"],
        "ann"
    );
    assert!(
        !s.path.join("run/flaskbbd.sock").exists(),
        "daemon.socket is ignored under activation"
    );
    assert!(d.log_text().contains("activated=true"), "{}", d.log_text());
    assert!(d.stop().success());
}

#[test]
fn a_reload_under_a_steady_stream_of_authenticate_calls_fails_none() {
    let s = Scratch::new("reload-load");
    let with = |n: usize| {
        let mut extra = String::new();
        for i in 0..n {
            extra.push_str(&format!(
                "[[plugin]]\nname = \"p{i}\"\nlibrary = \"scripted\"\n"
            ));
        }
        config(&s, &extra)
    };
    let d = TestDaemon::start_with(&s, with(1));
    d.add_user("bea", "Secret123", true);
    let stop = AtomicBool::new(false);
    let (ok, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let mut c = d.client();
                while !stop.load(Ordering::Relaxed) {
                    match c.send(&authenticate("bea", "Secret123")) {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("failed during reload: {e}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            });
        }
        for round in 0..6 {
            with(round % 3 + 1);
            if round % 2 == 0 {
                d.signal(libc::SIGHUP);
            } else {
                d.send(&reload()).unwrap();
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(
        ok.load(Ordering::Relaxed) > 20,
        "only {} calls went through",
        ok.load(Ordering::Relaxed)
    );
    let hooks = d.send(&list_hooks()).unwrap();
    let auth_chain: Vec<String> = hooks["hooks"][0]["impls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["instance"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        auth_chain,
        ["lockout", "p2", "p1", "p0", "default_provider"]
    );
}

#[test]
fn a_failed_reload_keeps_serving_the_old_chains_and_says_why() {
    let s = Scratch::new("reload-fail");
    let cfg = config(&s, "[[plugin]]\nname = \"deny\"\nlibrary = \"scripted\"\nconfig = { on = { flaskbb_authenticate = { action = \"stop\", reason = \"closed\" } } }\n");
    let d = TestDaemon::start_with(&s, cfg.clone());
    let deny = (
        "org.flaskbb.Auth.AuthenticationFailed".to_string(),
        json!({ "reason": "closed" }),
    );
    assert_eq!(err(d.auth("x", "y")), deny);

    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{good}[daemon]\nhook_timeout_ms = \"soon\"\n"),
    )
    .unwrap();
    let (name, params) = err(d.send(&reload()));
    assert_eq!(name, "org.flaskbb.Admin.ReloadFailed");
    let reason = params["reason"].as_str().unwrap();
    assert!(
        reason.contains("flaskbb.toml") && reason.contains("hook_timeout_ms"),
        "{reason}"
    );
    assert_eq!(err(d.auth("x", "y")), deny, "the old chains keep serving");

    std::fs::write(
        &cfg,
        format!("{good}[[plugin]]\nname = \"gone\"\nlibrary = \"nosuchplugin\"\n"),
    )
    .unwrap();
    let (name, params) = err(d.send(&reload()));
    assert_eq!(name, "org.flaskbb.Admin.ReloadFailed");
    assert!(
        params["reason"]
            .as_str()
            .unwrap()
            .contains("plugin libnosuchplugin.so: missing file"),
        "{params}"
    );

    // SIGHUP reloads in the background: wait for its verdict in the log.
    d.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    while d
        .log_text()
        .matches("reload failed; generation 1 keeps serving")
        .count()
        < 3
    {
        assert!(
            Instant::now() < deadline,
            "no verdict for the SIGHUP reload:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(err(d.auth("x", "y")), deny);
}

#[test]
fn a_plugin_rebuilt_in_place_is_picked_up_by_a_reload() {
    let old = fixture("old-abi").join("liboldabi.so");
    let new = variant_plugin("upgraded", "1.1.0", |t| t);
    let s = Scratch::new("upgrade");
    let plugins = s.path.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(&old, plugins.join("libup.so")).unwrap();
    let d = TestDaemon::start_with(
        &s,
        config(
            &s,
            &format!(
                "[[plugin]]\nname = \"up\"\nlibrary = {:?}\n",
                plugins.join("libup.so").display().to_string()
            ),
        ),
    );
    let info = |d: &TestDaemon| {
        let all = d.send(&list_plugins()).unwrap();
        all["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "up")
            .unwrap()
            .clone()
    };
    assert_eq!(
        (
            info(&d)["abi_version"].clone(),
            info(&d)["description"].clone()
        ),
        (json!("1.0.0"), json!("built against plugin-abi 1.0.0"))
    );
    // Install the new build as a package manager would: write beside it, rename over it.
    std::fs::copy(&new, plugins.join(".libup.so.tmp")).unwrap();
    std::fs::rename(plugins.join(".libup.so.tmp"), plugins.join("libup.so")).unwrap();
    d.send(&reload()).unwrap();
    assert_eq!(
        (
            info(&d)["abi_version"].clone(),
            info(&d)["description"].clone()
        ),
        (json!("1.1.0"), json!("test variant"))
    );
    let copies = std::fs::read_dir(s.path.join("var/plugin-cache"))
        .unwrap()
        .count();
    assert_eq!(copies, 2, "each content loaded from its own copy");
    assert!(d.send(&get_info()).is_ok());
    // A restart prunes the copies no longer in use.
    let config = d.config.clone();
    assert!(d.stop().success());
    let d = TestDaemon::start_with(&s, config);
    assert_eq!(
        std::fs::read_dir(s.path.join("var/plugin-cache"))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(info(&d)["description"], "test variant");
}

#[test]
fn a_disabled_instance_is_skipped_at_once_and_stays_disabled_after_a_restart() {
    let s = Scratch::new("disable");
    let cfg = config(&s, "[[plugin]]\nname = \"deny\"\nlibrary = \"scripted\"\nconfig = { on = { flaskbb_authenticate = { action = \"stop\", reason = \"closed\" } } }\n");
    let d = TestDaemon::start_with(&s, cfg.clone());
    d.add_user("cy", "Secret123", true);
    assert_eq!(
        err(d.auth("cy", "Secret123")).1,
        json!({ "reason": "closed" })
    );
    d.send(&set_plugin_enabled("deny", false)).unwrap();
    assert!(d.auth("cy", "Secret123").is_ok(), "disabled at once");
    let (name, params) = err(d.send(&set_plugin_enabled("nope", false)));
    assert_eq!(
        (name.as_str(), params),
        ("org.flaskbb.Admin.NoSuchPlugin", json!({ "name": "nope" }))
    );
    // A built-in too.
    d.send(&set_plugin_enabled("block_unactivated", false))
        .unwrap();
    assert!(d.stop().success());

    let d = TestDaemon::start_with(&s, cfg);
    assert!(
        d.auth("cy", "Secret123").is_ok(),
        "still disabled after a restart"
    );
    let plugins = d.send(&list_plugins()).unwrap();
    let enabled = |n: &str| {
        plugins["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .unwrap()["enabled"]
            .clone()
    };
    assert_eq!(
        (
            enabled("deny"),
            enabled("block_unactivated"),
            enabled("lockout")
        ),
        (json!(false), json!(false), json!(true))
    );
    d.send(&set_plugin_enabled("deny", true)).unwrap();
    assert_eq!(
        err(d.auth("cy", "Secret123")).1,
        json!({ "reason": "closed" })
    );
}

#[test]
fn both_unit_files_pass_systemd_analyze_verify() {
    let s = Scratch::new("units");
    let dir = root().join("daemon/systemd");
    let service = std::fs::read_to_string(dir.join("flaskbbd.service"))
        .unwrap()
        .replace("/usr/bin/flaskbbd", flaskbbd_bin().to_str().unwrap());
    s.write("flaskbbd.service", &service);
    s.write(
        "flaskbbd.socket",
        &std::fs::read_to_string(dir.join("flaskbbd.socket")).unwrap(),
    );
    let out = Command::new("systemd-analyze")
        .args(["verify", "flaskbbd.service", "flaskbbd.socket"])
        .current_dir(&s.path)
        .output()
        .expect("systemd-analyze runs (.ci/run installs it)");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stderr.trim(), "", "verify printed warnings");
    let out = Command::new("systemd-analyze")
        .args([
            "security",
            "--offline=yes",
            "--threshold=20",
            "flaskbbd.service",
        ])
        .current_dir(&s.path)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "exposure over 2.0:\n{stdout}{stderr}");
    let overall = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_default()
        .to_owned();
    assert!(overall.contains(" OK"), "{overall}");
}

#[test]
fn enabling_an_instance_that_cannot_load_changes_nothing() {
    let s = Scratch::new("enable-fail");
    let cfg = config(
        &s,
        "[[plugin]]\nname = \"gone\"\nlibrary = \"nosuchplugin\"\nenabled = false\n",
    );
    let d = TestDaemon::start_with(&s, cfg.clone());
    let (name, params) = err(d.send(&set_plugin_enabled("gone", true)));
    assert_eq!(name, "org.flaskbb.Admin.ReloadFailed");
    assert!(
        params["reason"]
            .as_str()
            .unwrap()
            .contains("libnosuchplugin.so: missing file"),
        "{params}"
    );
    let plugins = d.send(&list_plugins()).unwrap();
    let gone = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "gone")
        .unwrap()
        .clone();
    assert_eq!(gone["enabled"], false);
    // The failed change was not remembered: the daemon restarts on flaskbb.toml alone.
    assert!(d.stop().success());
    let d = TestDaemon::start_with(&s, cfg);
    assert!(d.send(&get_info()).is_ok());
}

#[test]
fn serve_raises_its_open_files_soft_limit_to_the_hard_limit() {
    let s = Scratch::new("nofile");
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -Sn 256 && exec \"$0\" \"$@\"",
        flaskbbd_bin().to_str().unwrap(),
    ]);
    let mut d = TestDaemon::spawn(&s, cmd, config(&s, ""));
    d.wait_ready();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    assert_eq!(soft, hard, "{line}");
    assert_ne!(soft, "256", "{line}");
}
