//! The Varlink socket itself: framing and bad input, ordering, introspection, peer
//! credentials, the socket file, graceful stop, and a client this project did not write.

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flaskbbd_tests::calls::{
    authenticate, get_info, get_interface_description, list_hooks, reload,
};
use std::{
    io::{Read, Write},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    process::Command,
    time::Duration,
};

use flaskbbd_tests::{
    daemon::{err, TestDaemon},
    python_venv, text, Scratch,
};
use serde_json::{json, Value};

fn raw(d: &TestDaemon, bytes: &[u8]) -> (Option<Value>, bool) {
    let mut c = d.client();
    // The daemon may answer a message it refuses (one too long) and close before the
    // rest of it is written: the write then fails, and the answer is still to read.
    if let Err(e) = c.send_raw(bytes) {
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "sending: {e}"
        );
    }
    let reply = c.receive().unwrap().map(|r| r.message());
    // Is the connection still usable afterwards?
    let open = c.get_info().is_ok();
    (reply, open)
}

fn error_of(v: &Option<Value>) -> (String, Value) {
    let v = v.as_ref().expect("a reply");
    (
        v["error"].as_str().unwrap_or("").to_owned(),
        v["parameters"].clone(),
    )
}

#[test]
fn malformed_messages_get_the_matching_error_and_disturb_no_other_connection() {
    let s = Scratch::new("bad-input");
    let d = TestDaemon::start(&s, "[daemon]\nmax_message_bytes = 4096\n");
    let bystander = std::sync::Mutex::new(d.client());
    let invalid = |p: &str| {
        (
            "org.varlink.service.InvalidParameter".to_string(),
            p.to_string(),
        )
    };
    // (what, bytes, (expected error, the parameter/interface/method it names), connection stays open)
    type Case<'a> = (&'a str, Vec<u8>, (String, String), bool);
    let cases: Vec<Case> = vec![
        ("oversized", vec![b'x'; 5000], invalid("message"), false),
        ("invalid UTF-8", b"{\"method\":\"org.varlink.service.GetInfo\xff\"}".to_vec(), invalid("message"), false),
        ("invalid JSON", b"{\"method\": ".to_vec(), invalid("message"), false),
        ("not an object", b"[1,2]".to_vec(), invalid("message"), false),
        ("deep nesting", format!("{}{}", "[".repeat(1000), "]".repeat(1000)).into_bytes(), invalid("message"), false),
        ("no method", b"{\"parameters\":{}}".to_vec(), invalid("method"), true),
        (
            "unknown interface",
            br#"{"method":"org.example.Nope.Call"}"#.to_vec(),
            ("org.varlink.service.InterfaceNotFound".into(), "org.example.Nope".into()),
            true,
        ),
        (
            "unknown method",
            br#"{"method":"org.flaskbb.Auth.Nope"}"#.to_vec(),
            ("org.varlink.service.MethodNotFound".into(), "org.flaskbb.Auth.Nope".into()),
            true,
        ),
        ("wrong type", br#"{"method":"org.flaskbb.Auth.Authenticate","parameters":{"identifier":5,"secret":"x"}}"#.to_vec(), invalid("identifier"), true),
        ("missing parameter", br#"{"method":"org.flaskbb.Auth.Authenticate","parameters":{"identifier":"a"}}"#.to_vec(), invalid("secret"), true),
        ("unknown parameter", br#"{"method":"org.flaskbb.Auth.Authenticate","parameters":{"identifier":"a","secret":"b","extra":1}}"#.to_vec(), invalid("extra"), true),
        ("huge number", br#"{"method":"org.flaskbb.Auth.Reauthenticate","parameters":{"user_id":1e400,"secret":"b"}}"#.to_vec(), invalid("message"), false),
        ("number too big for an id", br#"{"method":"org.flaskbb.Auth.Reauthenticate","parameters":{"user_id":99999999999999999999,"secret":"b"}}"#.to_vec(), invalid("user_id"), true),
        ("NUL cannot be inside a message; string with escaped NUL is fine", br#"{"method":"org.flaskbb.Auth.Authenticate","parameters":{"identifier":"a\u0000b","secret":"x"}}"#.to_vec(), ("org.flaskbb.Auth.AuthenticationFailed".into(), "".into()), true),
        ("parameters not an object", br#"{"method":"org.flaskbb.Auth.Authenticate","parameters":[1]}"#.to_vec(), invalid("parameters"), true),
        ("upgrade", br#"{"method":"org.varlink.service.GetInfo","upgrade":true}"#.to_vec(), invalid("upgrade"), true),
        ("empty message", Vec::new(), invalid("message"), false),
        ("raw NUL inside a string: the message ends there, cut off", b"{\"method\":\"org.flaskbb.Auth.Authenticate\",\"parameters\":{\"identifier\":\"a\0b\",\"secret\":\"x\"}}".to_vec(), invalid("message"), false),
        ("truncated message", br#"{"method":"org.flaskbb.Auth.Authenticate","parameters":{"identi"#.to_vec(), invalid("message"), false),
        ("wrong type inside a post", br#"{"method":"org.flaskbb.Events.PostSaveBefore","parameters":{"post":{"content":5}}}"#.to_vec(), invalid("post"), true),
        ("oneway not a boolean", br#"{"method":"org.varlink.service.GetInfo","oneway":"yes"}"#.to_vec(), invalid("oneway"), true),
        ("method not a string", br#"{"method":["org.varlink.service.GetInfo"]}"#.to_vec(), invalid("method"), true),
        ("unknown admin method", br#"{"method":"org.flaskbb.Admin.DropTables"}"#.to_vec(), ("org.varlink.service.MethodNotFound".into(), "org.flaskbb.Admin.DropTables".into()), true),
        ("NUL escaped in a new username", br#"{"method":"org.flaskbb.Admin.CreateUser","parameters":{"username":"a\u0000b","email":"a@b","password":"x"}}"#.to_vec(), invalid("username"), true),
    ];
    for (what, bytes, (error, param), stays_open) in cases {
        let (reply, open) = raw(&d, &bytes);
        let (name, params) = error_of(&reply);
        assert_eq!(name, error, "{what}: {reply:?}");
        let p = params["parameter"]
            .as_str()
            .or(params["interface"].as_str())
            .or(params["method"].as_str())
            .unwrap_or("");
        assert_eq!(p, param, "{what}: {reply:?}");
        assert_eq!(open, stays_open, "{what}: connection open afterwards");
        // The bystander connection is unaffected.
        assert!(bystander.lock().unwrap().get_info().is_ok(), "{what}");
    }
    // Nothing lost, nothing made: no message created a user.
    assert_eq!(d.users(), Vec::<(String, i32)>::new());
}

#[test]
fn a_client_gone_mid_message_or_mid_request_loses_nothing() {
    let s = Scratch::new("gone");
    let d = TestDaemon::start(&s, "[daemon]\nhook_timeout_ms = 3000\n[[plugin]]\nname = \"slow\"\nlibrary = \"scripted\"\nconfig = { on = { flaskbb_authentication_failed = { action = \"sleep\", ms = 300 } } }\n");
    d.add_user("amy", "Secret123", true);
    {
        let c = d.client();
        c.stream()
            .try_clone()
            .unwrap()
            .write_all(br#"{"method":"org.flaskbb.Auth.Authen"#)
            .unwrap();
    }
    {
        let mut c = d.client();
        c.send_only(&authenticate("amy", "bad")).unwrap();
    } // gone before the answer
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        d.user("amy")["login_attempts"],
        1,
        "the abandoned request still committed"
    );
}

#[test]
fn requests_on_one_connection_are_answered_in_order_and_oneway_gets_no_reply() {
    let s = Scratch::new("order");
    let d = TestDaemon::start(&s, "");
    let mut c = d.client();
    c.send_only(&authenticate("x", "y")).unwrap();
    // By hand: the typed client sends no `oneway` call.
    c.send_raw(br#"{"method":"org.flaskbb.Events.UserRegistered","parameters":{"username":"u"},"oneway":true}"#).unwrap();
    c.send_only(&get_info()).unwrap();
    c.send_only(&get_interface_description("org.flaskbb.Events"))
        .unwrap();
    assert_eq!(
        c.receive().unwrap().unwrap().message()["error"],
        "org.flaskbb.Auth.AuthenticationFailed"
    );
    assert_eq!(
        c.receive().unwrap().unwrap().message()["parameters"]["product"],
        "flaskbbd"
    );
    let desc = c.receive().unwrap().unwrap().message()["parameters"]["description"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        desc.contains("interface org.flaskbb.Events")
            && desc.contains("method PostSaveBefore(post: Post) -> (post: Post)")
    );
}

#[test]
fn get_info_lists_every_interface_and_each_has_a_description() {
    let s = Scratch::new("info");
    let d = TestDaemon::start(&s, "");
    let info = d.send(&get_info()).unwrap();
    let ifaces: Vec<String> = serde_json::from_value(info["interfaces"].clone()).unwrap();
    assert_eq!(
        ifaces,
        [
            "org.varlink.service",
            "org.flaskbb.Auth",
            "org.flaskbb.Events",
            "org.flaskbb.Admin",
            "org.flaskbb.Account"
        ]
    );
    for i in &ifaces {
        let d = d.send(&get_interface_description(i)).unwrap();
        assert!(d["description"]
            .as_str()
            .unwrap()
            .contains(&format!("interface {i}\n")));
    }
    let (name, params) = err(d.send(&get_interface_description("x.y")));
    assert_eq!(
        (name.as_str(), params),
        (
            "org.varlink.service.InterfaceNotFound",
            json!({ "interface": "x.y" })
        )
    );
}

/// A directory uid 65534 can reach wherever the checkout is (a clone under a `0700`
/// mktemp directory is out of its reach): the daemon's socket, a configuration naming
/// it, and a copy of the binary. Removed when dropped.
struct PublicDir(std::path::PathBuf);

impl PublicDir {
    fn new(label: &str) -> PublicDir {
        let dir = std::env::temp_dir().join(format!("flaskbbd-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::copy(flaskbbd_tests::flaskbbd_bin(), dir.join("flaskbbd")).unwrap();
        std::fs::write(
            dir.join("client.toml"),
            format!("[daemon]\nsocket = {:?}\n", dir.join("flaskbbd.sock")),
        )
        .unwrap();
        PublicDir(dir)
    }

    /// Starts a daemon whose socket is here.
    fn daemon(&self, s: &Scratch, admin_uids: &str) -> TestDaemon {
        self.daemon_with(s, &format!("admin_uids = {admin_uids}\n"))
    }

    /// Writes the configuration of a daemon whose socket is here, with more keys of
    /// `[daemon]`.
    fn config_with(&self, s: &Scratch, daemon_keys: &str) -> std::path::PathBuf {
        s.config(&format!(
            "[database]\nurl = {:?}\n[daemon]\nsocket = {:?}\nsocket_mode = \"0666\"\n{daemon_keys}",
            s.db_url(),
            self.0.join("flaskbbd.sock")
        ))
    }

    /// Starts a daemon whose socket is here, with more keys of `[daemon]`.
    fn daemon_with(&self, s: &Scratch, daemon_keys: &str) -> TestDaemon {
        let config = self.config_with(s, daemon_keys);
        let mut d = TestDaemon::spawn(s, Command::new(flaskbbd_tests::flaskbbd_bin()), config);
        d.socket = self.0.join("flaskbbd.sock");
        d.wait_ready();
        d
    }

    /// `flaskbbd ARGS --config client.toml` as uid and gid 65534.
    fn run_as_nobody(&self, args: &[&str]) -> std::process::Output {
        Command::new(self.0.join("flaskbbd"))
            .args(args)
            .arg("--config")
            .arg(self.0.join("client.toml"))
            .uid(65534)
            .gid(65534)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for PublicDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn admin_methods_are_refused_to_peers_outside_admin_uids() {
    let s = Scratch::new("admin-perm");
    let public = PublicDir::new("admin-perm");
    let d = public.daemon(&s, "[]");
    assert_eq!(
        std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777,
        0o666
    );
    let out = public.run_as_nobody(&["hooks"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "org.flaskbb.Admin.ListHooks: permission denied: your uid is not in daemon.admin_uids"
        ),
        "{stderr}"
    );
    // Auth is for everyone who can reach the socket.
    let out = public.run_as_nobody(&["auth", "nobody"]);
    assert!(
        text(&out)
            .1
            .contains("AuthenticationFailed: Wrong username or password."),
        "{:?}",
        text(&out)
    );
    // The daemon's own uid (root here) is always an admin.
    assert!(d.send(&list_hooks()).is_ok());
    drop(d);
    let d = public.daemon(&s, "[65534]");
    let out = public.run_as_nobody(&["hooks"]);
    assert!(out.status.success(), "{:?}", text(&out));
    drop(d);
}

#[test]
fn the_socket_gets_its_mode_a_stale_file_is_replaced_and_a_live_one_is_not_stolen() {
    let s = Scratch::new("socket-file");
    std::fs::create_dir_all(s.path.join("run")).unwrap();
    // A stale socket: bound, then its owner went away.
    drop(std::os::unix::net::UnixListener::bind(s.path.join("run/flaskbbd.sock")).unwrap());
    let d = TestDaemon::start(&s, "");
    assert_eq!(
        std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777,
        0o660
    );
    let out = flaskbbd_tests::flaskbbd(&["serve", "--config", d.config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out)
            .1
            .contains("is in use: another flaskbbd is serving on it"),
        "{:?}",
        text(&out)
    );
    assert!(d.send(&get_info()).is_ok(), "the first daemon still serves");
    drop(d);
    // A regular file in the way is never deleted.
    let s2 = Scratch::new("socket-file-regular");
    std::fs::create_dir_all(s2.path.join("run")).unwrap();
    s2.write("run/flaskbbd.sock", "data");
    let cfg = s2.config("");
    let out = flaskbbd_tests::flaskbbd(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(
        text(&out)
            .1
            .contains("exists and is not a socket; refusing to replace it"),
        "{:?}",
        text(&out)
    );
    assert_eq!(s2.read("run/flaskbbd.sock"), "data");
}

#[test]
fn sigterm_finishes_requests_in_flight_and_exits_zero() {
    let s = Scratch::new("graceful");
    let d = TestDaemon::start(
        &s,
        "[[plugin]]\nname = \"slow\"\nlibrary = \"scripted\"\nconfig = { on = { flaskbb_authenticate = { action = \"sleep\", ms = 1000 } } }\n",
    );
    d.add_user("pat", "Secret123", true);
    let socket = d.socket.clone();
    let inflight = std::thread::spawn(move || {
        let mut c = flaskbbd_protocol::client::Client::connect(&socket).unwrap();
        c.send(&authenticate("pat", "Secret123"))
    });
    std::thread::sleep(Duration::from_millis(300));
    let socket = d.socket.clone();
    let log = d.log.clone();
    let status = d.stop();
    let answer = inflight.join().unwrap();
    assert_eq!(
        answer.unwrap()["user"]["username"],
        "pat",
        "the request in flight got its answer"
    );
    assert!(status.success(), "exit status {status}");
    assert!(!socket.exists(), "the socket file is removed");
    assert!(std::fs::read_to_string(log)
        .unwrap()
        .contains("SIGTERM: no new connections"));
}

#[test]
fn pythons_varlink_package_calls_the_daemon() {
    let python = python_venv("varlink", &["varlink==31.0.0"]).join("bin/python");
    let s = Scratch::new("python-varlink");
    let d = TestDaemon::start(&s, "");
    d.add_user("quinn", "Secret123", true);
    let script = r#"
import json, sys, varlink
out = {}
with varlink.Client(address="unix:" + sys.argv[1]) as client:
    with client.open("org.varlink.service") as svc:
        out["interfaces"] = svc.GetInfo()["interfaces"]
    with client.open("org.flaskbb.Auth", namespaced=True) as auth:
        out["user"] = auth.Authenticate("quinn", "Secret123", {"remote_addr": "192.0.2.1"}).user.username
        try:
            auth.Authenticate("quinn", "wrong", None)
        except varlink.VarlinkError as e:
            out["error"] = [e.error(), e.parameters()["reason"]]
    with client.open("org.flaskbb.Events") as ev:
        out["post"] = ev.PostSaveBefore({"content": "hi"})["post"]["content"]
    # The package parses each interface's description it opens.
    with client.open("org.flaskbb.Account", namespaced=True) as account:
        out["account"] = list(account.ListLocks().addresses) == []
print(json.dumps(out))
"#;
    let out = Command::new(python)
        .args(["-c", script, d.socket.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["user"], "quinn");
    assert_eq!(
        v["error"],
        json!([
            "org.flaskbb.Auth.AuthenticationFailed",
            "Wrong username or password."
        ])
    );
    assert_eq!(v["post"], "hi");
    assert_eq!(v["interfaces"].as_array().unwrap().len(), 5);
    assert_eq!(v["account"], true, "{stdout}");
}

#[test]
fn an_idle_connection_stays_open() {
    // Idle connections stay open (no read timeout on the daemon's side).
    let s = Scratch::new("idle");
    let d = TestDaemon::start(&s, "");
    let mut c = d.client();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(c.get_info().is_ok());
    let mut buf = [0u8; 1];
    c.stream().set_nonblocking(true).unwrap();
    assert!(
        c.stream().try_clone().unwrap().read(&mut buf).is_err(),
        "nothing unexpected was sent"
    );
}

/// Opens `n` connections to `socket` as uid and gid 65534 (`nobody`, its open-files
/// limit raised for them) and waits until `refused` of them have been answered (for
/// up to 20 s), then holds them all open until dropped.
struct Flood {
    child: std::process::Child,
    /// How many connections the daemon answered at once (refused), and the first
    /// answer.
    refused: usize,
    answer: Value,
}

impl Flood {
    fn as_nobody(socket: &std::path::Path, n: usize, refused: usize) -> Flood {
        const SCRIPT: &str = r#"
import json, os, select, socket, sys, time
path, n, expect = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    socks.append(s)
p = select.poll()
for s in socks:
    p.register(s, select.POLLIN)
answered, first = set(), None
deadline = time.monotonic() + 20
# Until the expected refusals came, then a little longer to catch any extra.
while time.monotonic() < deadline:
    if len(answered) >= expect:
        deadline = min(deadline, time.monotonic() + 0.5)
    for fd, _ in p.poll(100):
        answered.add(fd)
        p.unregister(fd)
        data = os.read(fd, 65536)
        if first is None and data:
            first = json.loads(data.rstrip(b"\0"))
print(json.dumps({"refused": len(answered), "answer": first}), flush=True)
sys.stdin.read()
"#;
        let limit = (n + 64) as libc::rlim_t;
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.args(["-c", SCRIPT])
            .arg(socket)
            .arg(n.to_string())
            .arg(refused.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        // SAFETY: only async-signal-safe system calls between fork and exec: raise the
        // open-files limit while still root, then drop to nobody.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0
                    || libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(65534) != 0
                    || libc::setuid(65534) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the flood's report {line:?}: {e}"));
        Flood {
            child,
            refused: v["refused"].as_u64().unwrap() as usize,
            answer: v["answer"].clone(),
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A login on a new connection, given up after 10 s (rather than waiting forever
/// in the listen queue).
fn login_within_10s(d: &TestDaemon, user: &str, password: &str) -> Result<Value, String> {
    let mut c = d.client();
    c.stream()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    c.send(&authenticate(user, password))
        .map_err(|e| format!("{e:?}"))
}

#[test]
fn one_uid_with_thousands_of_idle_connections_does_not_stop_another_uids_login() {
    // As many connections as the daemon takes in all, from one uid: with the default
    // share (a quarter of max_connections) it holds 500 and the rest are refused.
    const MAX: usize = 2000;
    let s = Scratch::new("conn-share");
    let public = PublicDir::new("conn-share");
    let d = public.daemon_with(&s, &format!("max_connections = {MAX}\n"));
    d.add_user("ann", "Secret123", true);
    std::thread::sleep(Duration::from_millis(300));
    let sockets = d.open_sockets();
    let flood = Flood::as_nobody(&d.socket, MAX, MAX - MAX / 4);
    // Another uid (root) logs in while nobody holds all it may.
    let user = login_within_10s(&d, "ann", "Secret123").expect("root's login answered");
    assert_eq!(user["user"]["username"], "ann");
    assert_eq!(flood.refused, MAX - MAX / 4, "{:?}", flood.answer);
    assert_eq!(
        flood.answer["error"], "org.varlink.service.PermissionDenied",
        "{:?}",
        flood.answer
    );
    // ... and so does nobody once it closes its connections.
    drop(flood);
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while d.open_sockets() > sockets && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = public.run_as_nobody(&["auth", "ann"]);
    assert!(
        text(&out)
            .1
            .contains("AuthenticationFailed: Wrong username or password."),
        "nobody after closing its connections: {:?}",
        text(&out)
    );
    let log = d.log_text();
    assert!(
        log.contains("refused connections of a uid that holds its share")
            && log.contains("uid=65534"),
        "{log}"
    );
}

#[test]
fn the_connection_past_a_uids_share_is_refused_with_permission_denied() {
    let s = Scratch::new("conn-share-n");
    let public = PublicDir::new("conn-share-n");
    let d = public.daemon_with(&s, "max_connections = 100\nmax_connections_per_uid = 8\n");
    // Nine connections of nobody: the ninth is answered at once and closed.
    let flood = Flood::as_nobody(&d.socket, 9, 1);
    assert_eq!(flood.refused, 1, "{:?}", flood.answer);
    assert_eq!(
        flood.answer["error"],
        "org.varlink.service.PermissionDenied"
    );
    let reason = flood.answer["parameters"]["reason"].as_str().unwrap();
    assert_eq!(
        reason,
        "uid 65534 already holds 8 connections, its share of the daemon's (daemon.max_connections_per_uid): close idle ones, or raise the share"
    );
    // Root's own share is untouched by nobody's: eight of its connections all answer.
    let mut mine: Vec<_> = (0..8).map(|_| d.client()).collect();
    for c in &mut mine {
        assert!(c.get_info().is_ok());
    }
    // A reload applies a new share to new connections: two more of nobody's get in,
    // the third is refused.
    public.config_with(&s, "max_connections = 100\nmax_connections_per_uid = 10\n");
    mine[0].send(&reload()).unwrap();
    let more = Flood::as_nobody(&d.socket, 3, 1);
    assert_eq!(more.refused, 1, "{:?}", more.answer);
    assert!(
        more.answer["parameters"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("uid 65534 already holds 10 connections"),
        "{:?}",
        more.answer
    );
    drop((flood, more));
}

#[test]
fn a_message_left_unfinished_is_closed_after_message_timeout_ms_and_idle_ones_are_not() {
    let s = Scratch::new("conn-stall");
    let d = TestDaemon::start(&s, "[daemon]\nmessage_timeout_ms = 1000\n");
    d.add_user("ann", "Secret123", true);
    // By hand, as bytes: halves of it are written.
    let call = br#"{"method":"org.flaskbb.Auth.Authenticate","parameters":{"identifier":"ann","secret":"Stalled-Secret-42"}}"#;
    // A connection idle between messages, and one that sends half a call and stalls.
    let mut idle = d.client();
    assert!(idle.get_info().is_ok());
    let mut stalled = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let sent = std::time::Instant::now();
    stalled.write_all(&call[..call.len() / 2]).unwrap();
    // A slow client whose call comes in two parts well inside the timeout is served.
    let mut slow = d.client();
    slow.stream().write_all(&call[..call.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    slow.send_raw(&call[call.len() / 2..]).unwrap();
    let reply = slow.receive().unwrap().unwrap().message();
    assert_eq!(reply["error"], "org.flaskbb.Auth.AuthenticationFailed");
    // The stalled one is answered and closed: after the timeout, long before 10 s.
    let mut got = Vec::new();
    stalled
        .read_to_end(&mut got)
        .expect("closed by the daemon, not left open");
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(1000) && waited < Duration::from_secs(8),
        "closed after {waited:?}"
    );
    let answer: Value = serde_json::from_slice(got.strip_suffix(b"\0").unwrap()).unwrap();
    assert_eq!(answer["error"], "org.varlink.service.InvalidParameter");
    assert_eq!(
        answer["parameters"]["reason"],
        "message not finished within daemon.message_timeout_ms (1000 ms)"
    );
    // The idle connection, idle longer than the timeout, still serves.
    std::thread::sleep(Duration::from_millis(500));
    assert!(idle.get_info().is_ok());
    let log = d.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("left a message unfinished"))
        .unwrap_or_else(|| panic!("no log line:\n{log}"));
    assert!(line.contains("uid=0") && line.contains("pid="), "{line}");
    assert!(
        !log.contains("Stalled"),
        "the message's content was logged:\n{log}"
    );
}

#[test]
fn the_memory_of_thousands_of_connections_is_given_back_when_they_close() {
    const N: usize = 12_000;
    let s = Scratch::new("conn-memory");
    let d = TestDaemon::start(
        &s,
        &format!("[daemon]\nmax_connections = {N}\nmax_connections_per_uid = {N}\n"),
    );
    assert!(d.send(&get_info()).is_ok());
    std::thread::sleep(Duration::from_millis(300));
    let sockets = d.open_sockets();
    let before = d.rss_kib();
    let held: Vec<_> = (0..N)
        .map(|i| {
            std::os::unix::net::UnixStream::connect(&d.socket).unwrap_or_else(|e| {
                panic!("connection {i}: {e} (raise ulimit -n above {})", N + 100)
            })
        })
        .collect();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while d.open_sockets() < sockets + N && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let open = d.rss_kib();
    drop(held);
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while d.open_sockets() > sockets && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = d.rss_kib();
    println!(
        "RSS {before} KiB idle, {open} KiB with {N} connections, {after} KiB after they closed"
    );
    // Without the trim a debug build keeps about 15 MB of these; with it, 1-2 MB.
    assert!(
        after < before + 6 * 1024,
        "RSS {before} KiB idle, {open} KiB with {N} connections, {after} KiB after they closed"
    );
    assert!(d.send(&get_info()).is_ok());
}
