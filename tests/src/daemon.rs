//! A real `flaskbbd serve` on a scratch configuration: started, talked to over its
//! socket, stopped with SIGTERM.

use crate::calls::{authenticate, authenticate_in, context_of, get_user, list_plugins};
use std::{
    io::Write,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use flaskbbd_protocol::client::Client;
use serde_json::{json, Value};

use crate::{flaskbbd_bin, Scratch};

/// A running daemon; killed when dropped.
pub struct TestDaemon {
    /// The daemon's process.
    pub child: Child,
    /// The configuration file it was started with.
    pub config: PathBuf,
    /// Its socket, `run/flaskbbd.sock` in the scratch directory.
    pub socket: PathBuf,
    /// The file its stderr (the log) goes to.
    pub log: PathBuf,
}

impl TestDaemon {
    /// Writes `extra` after the test defaults (socket `run/flaskbbd.sock` in
    /// `scratch`, the scratch's database on the tests' backend) and starts the daemon;
    /// waits until it answers.
    pub fn start(scratch: &Scratch, extra: &str) -> TestDaemon {
        let config = scratch.config(&format!(
            "[database]\nurl = {:?}\n{extra}",
            scratch.db_url()
        ));
        Self::start_with(scratch, config)
    }

    /// Starts the daemon on an existing configuration file.
    pub fn start_with(scratch: &Scratch, config: PathBuf) -> TestDaemon {
        Self::start_bin(scratch, &flaskbbd_bin(), config)
    }

    /// Starts the daemon binary `bin` on an existing configuration file.
    pub fn start_bin(scratch: &Scratch, bin: &std::path::Path, config: PathBuf) -> TestDaemon {
        let mut d = Self::spawn(scratch, Command::new(bin), config);
        d.wait_ready();
        d
    }

    /// Spawns `command serve --config CONFIG` (with whatever environment or wrapper
    /// `command` carries) and returns at once, without waiting for the socket.
    pub fn spawn(scratch: &Scratch, mut command: Command, config: PathBuf) -> TestDaemon {
        let log = scratch.path.join("daemon.log");
        // The configuration's `[log] filter` (info unless it says otherwise), unless
        // whoever runs the tests sets RUST_LOG.
        if std::env::var_os("RUST_LOG").is_none() {
            command.env_remove("RUST_LOG");
        }
        let child = command
            .args(["serve", "--config", config.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the daemon starts");
        let socket = scratch.path.join("run/flaskbbd.sock");
        TestDaemon {
            child,
            config,
            socket,
            log,
        }
    }

    /// Waits until the daemon answers `GetInfo` on its socket.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the daemon exited with {status} before answering:\n{}",
                    self.log_text()
                );
            }
            if let Ok(mut c) = Client::connect(&self.socket) {
                if c.send(&flaskbbd_protocol::methods::ServiceCall::GetInfo)
                    .is_ok()
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "the daemon did not answer within 20 s:\n{}",
            self.log_text()
        );
    }

    /// A new connection.
    pub fn client(&self) -> Client {
        Client::connect(&self.socket).expect("connect to the daemon")
    }

    /// One call on a new connection.
    pub fn call(
        &self,
        method: &str,
        params: Value,
    ) -> Result<Value, flaskbbd_protocol::client::CallError> {
        self.client().call(method, params)
    }

    /// One typed call (see [`crate::calls`]) on a new connection.
    pub fn send(
        &self,
        call: &(impl flaskbbd_protocol::methods::Request + ?Sized),
    ) -> Result<Value, flaskbbd_protocol::client::CallError> {
        self.client().send(call)
    }

    /// One typed call on a new connection: the reply's parameters, or the error's
    /// name and parameters (what a test compares with `assert_eq!`).
    pub fn answer(&self, call: &(impl flaskbbd_protocol::methods::Request + ?Sized)) -> Answer {
        self.send(call).map_err(|e| err(Err(e)))
    }

    /// `Authenticate` with an empty context.
    pub fn auth(
        &self,
        identifier: &str,
        secret: &str,
    ) -> Result<Value, flaskbbd_protocol::client::CallError> {
        self.send(&authenticate(identifier, secret))
    }

    /// Creates a user through `org.flaskbb.Admin.CreateUser`; returns its id.
    pub fn add_user(&self, username: &str, password: &str, activated: bool) -> i64 {
        self.client()
            .create_user(
                username,
                &format!("{username}@example.org"),
                password,
                activated,
            )
            .expect("CreateUser")
            .id
    }

    /// A user as `GetUser` answers it.
    pub fn user(&self, identifier: &str) -> Value {
        self.send(&get_user(identifier)).expect("GetUser")["user"].clone()
    }

    /// The value of the sample `series` (name and labels as the text format writes
    /// them, e.g. `flaskbbd_lockout_actions_total{action="refused"}`) in `GetMetrics`,
    /// 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.client().get_metrics().expect("GetMetrics");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |v| v.trim().parse().expect("a sample value"))
    }

    /// The instance's entry in `ListPlugins` (with its plugin host, when isolated).
    pub fn plugin(&self, name: &str) -> Value {
        let all = self.send(&list_plugins()).unwrap();
        all["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no plugin {name} in {all}"))
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop within 20 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every user in the daemon's store, read from the database itself (not through
    /// the daemon: `flaskbbd user list` opens the store): username and failed-login
    /// count, sorted by username.
    pub fn users(&self) -> Vec<(String, i32)> {
        let out = crate::flaskbbd(&["user", "list", "--config", self.config.to_str().unwrap()]);
        let (stdout, stderr) = crate::text(&out);
        assert!(out.status.success(), "flaskbbd user list: {stderr}");
        // Columns: id, username, email, activated, failures, groups.
        let mut users: Vec<(String, i32)> = stdout
            .lines()
            .skip(1)
            .map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                let failures = cols.get(4).and_then(|f| f.parse().ok());
                match (cols.get(1), failures) {
                    (Some(name), Some(failures)) => (name.to_string(), failures),
                    _ => panic!("unexpected line of `flaskbbd user list`: {line:?}"),
                }
            })
            .collect();
        users.sort();
        users
    }

    /// The daemon's resident set size in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the daemon's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status")
    }

    /// How many threads the daemon runs right now (`/proc/PID/task`).
    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .expect("the daemon's /proc task directory")
            .count()
    }

    /// How many Unix-domain sockets the daemon holds open: its listener and its
    /// clients' connections (a database's TCP connections are not counted).
    pub fn open_sockets(&self) -> usize {
        let unix: std::collections::HashSet<String> =
            std::fs::read_to_string(format!("/proc/{}/net/unix", self.child.id()))
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(6).map(|i| format!("socket:[{i}]")))
                .collect();
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| std::fs::read_link(e.path()).ok())
                    .filter(|target| unix.contains(&*target.to_string_lossy()))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Panics with the log when the daemon has exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the daemon exited with {status}:\n{}", self.log_text());
        }
    }

    /// The daemon's log so far (empty if there is none yet).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `flaskbbd ARGS` with `stdin` fed in.
pub fn flaskbbd_with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(flaskbbd_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flaskbbd runs");
    // A command that fails before it reads (no daemon to ask) closes its stdin first:
    // what it answers is what the test looks at.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.unwrap(),
    }
    child.wait_with_output().unwrap()
}

/// A call's outcome as the tests compare it: the reply's parameters, or the error's
/// full name and parameters ([`TestDaemon::answer`]).
pub type Answer = Result<Value, (String, Value)>;

/// A second daemon on `first`'s database (SQLite file or PostgreSQL database), with
/// its own scratch `s` (socket, log) and `extra` configuration: for what two daemons
/// sharing one store must do once between them.
pub fn second_daemon(first: &Scratch, s: &Scratch, extra: &str) -> TestDaemon {
    let url = first.db_url();
    // A SQLite URL is relative to its configuration's directory: make it absolute.
    let url = match url.strip_prefix("sqlite:///") {
        Some(file) => format!("sqlite:///{}", first.path.join(file).display()),
        None => url,
    };
    TestDaemon::start_with(s, s.config(&format!("[database]\nurl = {url:?}\n{extra}")))
}

/// Runs every call at once, each on its own thread (each opens its own connection),
/// all released together by one barrier; their outcomes in call order. For races: the
/// same code, ceremony or confirmation used by several calls at the same moment.
pub fn at_once<T: Send>(calls: Vec<Box<dyn Fn() -> T + Sync + '_>>) -> Vec<T> {
    let gate = std::sync::Barrier::new(calls.len());
    std::thread::scope(|scope| {
        let handles: Vec<_> = calls
            .iter()
            .map(|call| {
                let gate = &gate;
                scope.spawn(move || {
                    gate.wait();
                    call()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The error name and parameters of a failed call.
pub fn err(r: Result<Value, flaskbbd_protocol::client::CallError>) -> (String, Value) {
    match r {
        Err(flaskbbd_protocol::client::CallError::Varlink { error, parameters }) => {
            (error, parameters)
        }
        other => panic!("expected a Varlink error, got {other:?}"),
    }
}

/// What a burst of concurrent logins from one address did ([`login_burst`]).
#[derive(Debug)]
pub struct Burst {
    /// How many of the attempts were checked against the password (not refused by
    /// the lockout before), over every daemon.
    pub checked: u32,
    /// Whether the right password, sent inside the burst, was accepted.
    pub right_accepted: bool,
}

/// Sends `wrong` wrong guesses for `who` at once from `addr`, spread over `daemons`,
/// and, inside the burst (once `attempts` of them have reached a daemon's lockout,
/// as `GetUser` shows, and while the rest are still being checked), the right
/// password `right`.
pub fn login_burst(
    daemons: &[&TestDaemon],
    who: &str,
    right: &str,
    addr: &str,
    wrong: usize,
    attempts: u32,
) -> Burst {
    const REFUSED: &str = "flaskbbd_lockout_actions_total{action=\"refused\"}";
    let refused = || daemons.iter().map(|d| d.metric(REFUSED)).sum::<f64>();
    let before = refused();
    let login = |d: &TestDaemon, secret: &str| {
        d.send(&authenticate_in(
            who,
            secret,
            context_of(json!({ "remote_addr": addr })),
        ))
    };
    let counted = || -> u32 {
        let lock = daemons[0].send(&get_user(who)).expect("GetUser")["lock"].clone();
        lock["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a["failures"].as_u64().unwrap_or(0) as u32)
            .max()
            .unwrap_or(0)
    };
    let gate = std::sync::Barrier::new(wrong + 1);
    let right_accepted = std::thread::scope(|scope| {
        for i in 0..wrong {
            let (d, gate) = (daemons[i % daemons.len()], &gate);
            scope.spawn(move || {
                gate.wait();
                let (name, _) = err(login(d, "not the password"));
                assert_eq!(name, "org.flaskbb.Auth.AuthenticationFailed");
            });
        }
        gate.wait();
        let until = Instant::now() + Duration::from_secs(30);
        while counted() < attempts && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
        login(daemons[daemons.len() - 1], right).is_ok()
    });
    let refused_now = refused() - before;
    Burst {
        checked: (wrong as u32 + 1).saturating_sub(refused_now as u32),
        right_accepted,
    }
}
