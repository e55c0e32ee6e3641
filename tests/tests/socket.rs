//! The Varlink socket itself: framing and bad input, ordering, introspection, peer
//! credentials, the socket file, graceful stop, and a client this project did not write.

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
    c.send_raw(bytes).unwrap();
    let reply = c.receive().unwrap().map(|r| r.message());
    // Is the connection still usable afterwards?
    let open = c.call("org.varlink.service.GetInfo", json!({})).is_ok();
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
        assert!(
            bystander
                .lock()
                .unwrap()
                .call("org.varlink.service.GetInfo", json!({}))
                .is_ok(),
            "{what}"
        );
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
        c.send_raw(br#"{"method":"org.flaskbb.Auth.Authenticate","parameters":{"identifier":"amy","secret":"bad"}}"#).unwrap();
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
    c.send_raw(br#"{"method":"org.flaskbb.Auth.Authenticate","parameters":{"identifier":"x","secret":"y"}}"#).unwrap();
    c.send_raw(br#"{"method":"org.flaskbb.Events.UserRegistered","parameters":{"username":"u"},"oneway":true}"#).unwrap();
    c.send_raw(br#"{"method":"org.varlink.service.GetInfo"}"#)
        .unwrap();
    c.send_raw(br#"{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"org.flaskbb.Events"}}"#).unwrap();
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
    let info = d.call("org.varlink.service.GetInfo", json!({})).unwrap();
    let ifaces: Vec<String> = serde_json::from_value(info["interfaces"].clone()).unwrap();
    assert_eq!(
        ifaces,
        [
            "org.varlink.service",
            "org.flaskbb.Auth",
            "org.flaskbb.Events",
            "org.flaskbb.Admin"
        ]
    );
    for i in &ifaces {
        let d = d
            .call(
                "org.varlink.service.GetInterfaceDescription",
                json!({ "interface": i }),
            )
            .unwrap();
        assert!(d["description"]
            .as_str()
            .unwrap()
            .contains(&format!("interface {i}\n")));
    }
    let (name, params) = err(d.call(
        "org.varlink.service.GetInterfaceDescription",
        json!({ "interface": "x.y" }),
    ));
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
        let config = s.config(&format!(
            "[database]\nurl = {:?}\n[daemon]\nsocket = {:?}\nsocket_mode = \"0666\"\nadmin_uids = {admin_uids}\n",
            s.db_url(),
            self.0.join("flaskbbd.sock")
        ));
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
    assert!(d.call("org.flaskbb.Admin.ListHooks", json!({})).is_ok());
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
    assert!(
        d.call("org.varlink.service.GetInfo", json!({})).is_ok(),
        "the first daemon still serves"
    );
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
        c.call(
            "org.flaskbb.Auth.Authenticate",
            json!({ "identifier": "pat", "secret": "Secret123" }),
        )
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
    assert_eq!(v["interfaces"].as_array().unwrap().len(), 4);
}

#[test]
fn an_idle_connection_stays_open() {
    // Idle connections stay open (no read timeout on the daemon's side).
    let s = Scratch::new("idle");
    let d = TestDaemon::start(&s, "");
    let mut c = d.client();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(c.call("org.varlink.service.GetInfo", json!({})).is_ok());
    let mut buf = [0u8; 1];
    c.stream().set_nonblocking(true).unwrap();
    assert!(
        c.stream().try_clone().unwrap().read(&mut buf).is_err(),
        "nothing unexpected was sent"
    );
}
