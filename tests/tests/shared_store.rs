//! Several daemons on one PostgreSQL store, and a PostgreSQL server that goes away
//! and comes back while the daemon serves.

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flaskbbd_tests::calls::{authenticate_in, context_of, get_user, set_plugin_enabled};
use std::{
    net::TcpListener,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use flaskbbd_tests::{
    daemon::{err, TestDaemon},
    pg_admin, pg_server, Scratch,
};
use serde_json::json;

/// A fresh database on the tests' PostgreSQL server, dropped at the end.
struct Db(String);

impl Db {
    fn new(name: &str) -> Db {
        let name = format!("fbd_shared_{name}_{}", std::process::id());
        pg_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        pg_admin(&format!("CREATE DATABASE {name}"));
        Db(name)
    }
    fn url(&self) -> String {
        format!("{}/{}", pg_server(), self.0)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            pg_admin(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0))
        });
    }
}

fn daemon_on(s: &Scratch, url: &str, extra: &str) -> TestDaemon {
    TestDaemon::start_with(s, s.config(&format!("[database]\nurl = {url:?}\n{extra}")))
}

#[test]
fn four_daemons_check_a_burst_no_more_than_attempts_times() {
    let db = Db::new("burst");
    let scratches: Vec<Scratch> = (0..4)
        .map(|i| Scratch::new(&format!("shared-burst-{i}")))
        .collect();
    // The default lockout (attempts = 5, per account and address, hidden), a hash slow
    // enough that the burst is still being checked when the right password arrives.
    let daemons: Vec<TestDaemon> = scratches
        .iter()
        .map(|s| daemon_on(s, &db.url(), "[auth]\nbcrypt_cost = 10\n"))
        .collect();
    daemons[0].add_user("ivy", "Secret123", true);
    let all: Vec<&TestDaemon> = daemons.iter().collect();
    let burst =
        flaskbbd_tests::daemon::login_burst(&all, "ivy", "Secret123", "198.51.100.9", 30, 5);
    assert_eq!(burst.checked, 5, "{burst:?}");
    assert!(
        !burst.right_accepted,
        "the right password got through a burst"
    );
}

#[test]
fn two_daemons_count_every_failure_and_lock_out_together() {
    let db = Db::new("count");
    let (s1, s2) = (Scratch::new("shared-a"), Scratch::new("shared-b"));
    // FlaskBB's lockout: the account, from everywhere, saying so.
    let flaskbbs = "[auth]\nbcrypt_cost = 4\nlockout = { scope = \"account\", reveal = true }\n";
    let a = daemon_on(&s1, &db.url(), flaskbbs);
    let b = daemon_on(&s2, &db.url(), flaskbbs);
    a.add_user("kim", "Secret123", true);
    std::thread::scope(|scope| {
        for i in 0..64 {
            let d = if i % 2 == 0 { &a } else { &b };
            scope.spawn(move || {
                assert_eq!(
                    err(d.auth("kim", "bad")).0,
                    "org.flaskbb.Auth.AuthenticationFailed"
                )
            });
        }
    });
    assert_eq!(a.user("kim")["login_attempts"], 64);
    assert_eq!(b.user("kim")["login_attempts"], 64);
    let locked = json!({ "reason": "Your account is currently locked out due to too many failed login attempts" });
    assert_eq!(err(a.auth("kim", "Secret123")).1, locked);
    assert_eq!(err(b.auth("kim", "Secret123")).1, locked);
}

#[test]
fn four_daemons_share_per_address_penalties_exactly() {
    let db = Db::new("penalties");
    let extra = r#"
[auth]
bcrypt_cost = 4
lockout = { account_attempts = 1000 }
[[plugin]]
name = "ratelimit"
library = "ratelimit"
config = { free_failures = 1, base_delay_ms = 0, refuse_after = 40, window_seconds = 600 }
"#;
    let scratches: Vec<Scratch> = (0..4)
        .map(|i| Scratch::new(&format!("penalties-{i}")))
        .collect();
    let daemons: Vec<TestDaemon> = scratches
        .iter()
        .map(|s| daemon_on(s, &db.url(), extra))
        .collect();
    daemons[0].add_user("kim", "Secret123", true);
    let login = |d: &TestDaemon, secret: &str, addr: &str| {
        d.send(&authenticate_in(
            "kim",
            secret,
            context_of(json!({ "remote_addr": addr })),
        ))
    };
    let evil = "198.51.100.40";
    // 39 guesses at once from one address, spread over the four daemons.
    std::thread::scope(|scope| {
        for i in 0..39 {
            let d = &daemons[i % 4];
            scope.spawn(move || assert!(login(d, "guess", evil).is_err()));
        }
    });
    // Every daemon sees all 39 in the lockout's count, and the rate limit has not
    // refused yet: not one increment was lost or counted twice.
    for d in &daemons {
        let lock = d.send(&get_user("kim")).unwrap()["lock"].clone();
        assert_eq!(lock["failures"], 39, "{lock}");
        assert_eq!(lock["addresses"][0]["failures"], 39, "{lock}");
        assert_eq!(lock["addresses"][0]["locked"], true, "{lock}");
    }
    assert_eq!(
        err(login(&daemons[3], "guess", evil)).1,
        json!({ "reason": "Wrong username or password." })
    );
    // That was the 40th: now every daemon refuses the address outright.
    for d in &daemons {
        assert_eq!(
            err(login(d, "Secret123", evil)).1,
            json!({ "reason": "Too many failed login attempts from your address. Try again later." })
        );
    }
    // kim, from her own address, is let in by any of them.
    assert!(login(&daemons[1], "Secret123", "203.0.113.40").is_ok());
}

#[test]
fn an_instance_disabled_through_one_daemon_is_disabled_in_the_other() {
    let db = Db::new("registry");
    let deny = "[daemon]\nregistry_poll_ms = 200\n[[plugin]]\nname = \"deny\"\nlibrary = \"scripted\"\nconfig = { on = { flaskbb_authenticate = { action = \"stop\", reason = \"closed\" } } }\n";
    let (s1, s2) = (Scratch::new("registry-a"), Scratch::new("registry-b"));
    let a = daemon_on(&s1, &db.url(), deny);
    let b = daemon_on(&s2, &db.url(), deny);
    a.add_user("lou", "Secret123", true);
    assert_eq!(
        err(b.auth("lou", "Secret123")).1,
        json!({ "reason": "closed" })
    );
    a.send(&set_plugin_enabled("deny", false)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.auth("lou", "Secret123").is_err() {
        assert!(
            Instant::now() < deadline,
            "the other daemon never saw the change:\n{}",
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        b.log_text().contains("plugin_registry changed"),
        "{}",
        b.log_text()
    );
}

/// A PostgreSQL server of our own, so that stopping it disturbs no other test.
struct OwnPostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl OwnPostgres {
    fn start() -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect(
                "PostgreSQL's server binaries under /usr/lib/postgresql (.ci/run installs them)",
            )
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("initdb");
        let dir = std::env::temp_dir().join(format!("flaskbbd-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(Command::new("chown")
            .args(["postgres:postgres", dir.to_str().unwrap()])
            .status()
            .unwrap()
            .success());
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = OwnPostgres { dir, bin, port };
        let out = pg.as_postgres(&[
            "initdb",
            "-A",
            "trust",
            "-U",
            "postgres",
            "-D",
            pg.data().to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.up();
        pg
    }
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
    fn as_postgres(&self, args: &[&str]) -> std::process::Output {
        let mut full = vec!["-u", "postgres", "--"];
        let tool = self.bin.join(args[0]);
        full.push(tool.to_str().unwrap());
        full.extend_from_slice(&args[1..]);
        Command::new("runuser")
            .args(&full)
            .current_dir(&self.dir)
            .output()
            .unwrap()
    }
    fn up(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("pg.log");
        let out = self.as_postgres(&[
            "pg_ctl",
            "-D",
            self.data().to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-o",
            &opts,
            "-w",
            "start",
        ]);
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fn down(&self) {
        let out = self.as_postgres(&[
            "pg_ctl",
            "-D",
            self.data().to_str().unwrap(),
            "-m",
            "fast",
            "-w",
            "stop",
        ]);
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self.as_postgres(&[
            "pg_ctl",
            "-D",
            self.data().to_str().unwrap(),
            "-m",
            "immediate",
            "stop",
        ]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn while_postgres_is_down_only_internal_errors_and_afterwards_success_without_a_restart() {
    let pg = OwnPostgres::start();
    let s = Scratch::new("pg-restart");
    // Requests wait at most 500 ms for a connection: well inside the 3 s outage, so
    // the outage is seen as errors instead of being waited out.
    let d = daemon_on(&s, &pg.url(), "connect_timeout_ms = 500\n");
    d.add_user("max", "Secret123", true);
    let pid = d.child.id();
    assert!(d.auth("max", "Secret123").is_ok());

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (ok, internal) = (
        std::sync::atomic::AtomicUsize::new(0),
        std::sync::atomic::AtomicUsize::new(0),
    );
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match d.auth("max", "Secret123") {
                    Ok(_) => ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    Err(e) => {
                        assert_eq!(
                            e.name(),
                            Some("org.flaskbb.Auth.InternalError"),
                            "never a wrong password: {e}"
                        );
                        internal.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    }
                };
            }
        });
        std::thread::sleep(Duration::from_millis(500));
        pg.down();
        std::thread::sleep(Duration::from_secs(3));
        pg.up();
        // The daemon recovers by itself.
        let deadline = Instant::now() + Duration::from_secs(30);
        while d.auth("max", "Secret123").is_err() {
            assert!(Instant::now() < deadline, "no recovery:\n{}", d.log_text());
            std::thread::sleep(Duration::from_millis(200));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert!(
        internal.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the outage was never seen"
    );
    assert!(ok.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert_eq!(d.child.id(), pid);
    assert_eq!(
        d.user("max")["login_attempts"],
        0,
        "an outage is not a failed login"
    );
    assert!(d.auth("max", "nope").is_err());
    assert_eq!(d.user("max")["login_attempts"], 1);
}
