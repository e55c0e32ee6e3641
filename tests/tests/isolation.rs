//! Isolated plugin instances (`isolation = "process"`), through the real daemon: a
//! chain answers exactly as in-process (and may mix both), an instance's state is
//! shared by its concurrent calls, reload and `SetPluginEnabled` replace hosts and
//! retire the old ones, a host killed from outside is replaced, hung calls never
//! count as stuck, and the sandbox refuses what the instance did not declare.
//! Instances of one library with one sandbox share a host: a chain through them is
//! one round trip, and a crash there fails that run and is replaced for all of them.
//!
//! The faults themselves (segfault, abort, exit, spin, unbounded allocation), with
//! other traffic flowing and nothing lost, are in `reliability.rs`.

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flaskbbd_tests::calls::{
    authenticate, authenticate_in, context_of, list_hooks, post_save_after, post_save_before,
    reauthenticate, reload, set_plugin_enabled, topic_save_before, user_registered,
};
use std::{
    path::Path,
    thread,
    time::{Duration, Instant},
};

use flaskbbd_tests::{
    daemon::{err, flaskbbd_with_stdin, TestDaemon},
    fixture, flaskbbd, text, Scratch,
};
use serde_json::{json, Value};

/// The pid of the instance's running host.
fn host_pid(d: &TestDaemon, name: &str) -> u32 {
    let p = d.plugin(name);
    assert_eq!(p["host"]["state"], "running", "{p}");
    p["host"]["pid"].as_u64().unwrap() as u32
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Waits up to five seconds for `pid` to be gone.
fn gone(pid: u32) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if !alive(pid) {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// CPU time (user + system) `pid` has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// The configuration every equivalence daemon runs: a wrapper (audit), a tracer,
/// a draft changer, two filters (isolated, one host and one round trip for both), a
/// second factor and a stop, with `{a}`..`{e}` standing for each instance's isolation.
const CHAIN: &str = r#"
[auth]
bcrypt_cost = 4
lockout = { enabled = true, attempts = 3, window_minutes = 15 }
[[plugin]]
name = "audit"
library = "audit"
isolation = "{a}"
config = { path = "audit.jsonl" }
{sandbox_a}
[[plugin]]
name = "trace"
library = "scripted"
isolation = "{b}"
config = { trace = "trace.jsonl", on = { flaskbb_event_post_save_before = { action = "append", text = " -- signed" }, flaskbb_reauth_failed = { action = "force_logout", reason = "Bye." } } }
{sandbox_b}
[[plugin]]
name = "filter"
library = "wordfilter"
isolation = "{c}"
config = { words = ["darn"], action = "mask" }
[[plugin]]
name = "filter2"
library = "wordfilter"
isolation = "{c}"
config = { words = ["works"], action = "mask" }
[[plugin]]
name = "totp"
library = "totp"
isolation = "{d}"
[[plugin]]
name = "closed"
library = "scripted"
isolation = "{e}"
config = { on = { flaskbb_event_topic_save_before = { action = "reject", reason = "Topics are closed." } } }
[plugin.hooks.flaskbb_event_topic_save_before]
tier = "trylast"
"#;

/// Runs the same requests against a daemon whose instances are isolated as `iso`
/// says; returns every answer, the users, the trace and the audit log (without
/// times), for comparison.
fn scenario(label: &str, iso: [&str; 5]) -> Vec<Value> {
    let s = Scratch::new(label);
    let sandbox = |i: usize, file: &str| {
        if iso[i] == "process" {
            format!("sandbox = {{ write = [\"{file}\"] }}")
        } else {
            String::new()
        }
    };
    let cfg = CHAIN
        .replace("{a}", iso[0])
        .replace("{b}", iso[1])
        .replace("{c}", iso[2])
        .replace("{d}", iso[3])
        .replace("{e}", iso[4])
        .replace("{sandbox_a}", &sandbox(0, "audit.jsonl"))
        .replace("{sandbox_b}", &sandbox(1, "trace.jsonl"));
    let d = TestDaemon::start(&s, &cfg);
    let ann = d.add_user("ann", "Secret123", true);
    let bob = d.add_user("bob", "Secret123", true);
    let out = flaskbbd_with_stdin(
        &[
            "store",
            "set",
            "totp",
            &format!("secret:{bob}"),
            "-c",
            d.config.to_str().unwrap(),
        ],
        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n",
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let ctx = json!({ "remote_addr": "192.0.2.1" });
    let mut answers = Vec::new();
    let mut note = |r: Result<Value, flaskbbd_protocol::client::CallError>| {
        answers.push(match r {
            Ok(v) => json!({ "ok": v }),
            Err(e) => {
                let (name, mut parameters) = err(Err(e));
                // A second step's token is random: only that there is one compares.
                if let Some(token) = parameters.get_mut("pending_login") {
                    *token = json!("<token>");
                }
                json!({ "error": name, "parameters": parameters })
            }
        });
    };
    let auth = |who: &str, pw: &str| d.send(&authenticate_in(who, pw, context_of(&ctx)));
    note(auth("ann", "Secret123"));
    note(auth("ann", "wrong"));
    note(auth("nobody", "x"));
    note(auth("bob", "Secret123")); // enrolled: asks for the code
    for _ in 0..3 {
        note(auth("ann", "wrong")); // the third locks ann out
    }
    note(auth("ann", "Secret123"));
    note(d.send(&reauthenticate(bob, "Secret123")));
    note(d.send(&reauthenticate(bob, "nope")));
    note(d.send(&post_save_before(
        json!({ "content": "Darn, it works.", "user_id": ann }),
    )));
    note(d.send(&topic_save_before(json!({ "title": "Hello" }))));
    note(d.send(&post_save_after(json!({ "id": 7, "content": "x" }), true)));
    note(d.send(&user_registered("cy")));
    note(d.send(&list_hooks()));
    let users: Vec<Value> = d.users().into_iter().map(|(u, n)| json!([u, n])).collect();
    answers.push(json!(users));
    let strip = |mut v: Value| {
        if let Some(o) = v.as_object_mut() {
            o.remove("duration_us");
        }
        v
    };
    for file in ["trace.jsonl", "audit.jsonl"] {
        let lines: Vec<Value> = s
            .read(file)
            .lines()
            .map(|l| strip(serde_json::from_str(l).unwrap()))
            .collect();
        assert!(!lines.is_empty(), "{label}: {file} is empty");
        answers.push(json!({ file: lines }));
    }
    answers.into_iter().map(without_times).collect()
}

/// `v` with every timestamp replaced by `"<time>"`: the daemons ran at different
/// moments.
fn without_times(v: Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| match k.as_str() {
                    "time" | "date_joined" | "last_failed_login" if v.is_string() => {
                        (k, json!("<time>"))
                    }
                    _ => (k, without_times(v)),
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_times).collect()),
        other => other,
    }
}

#[test]
fn an_isolated_chain_answers_exactly_as_in_process_and_may_mix_both() {
    let inline = scenario("iso-same-none", ["none"; 5]);
    let isolated = scenario("iso-same-process", ["process"; 5]);
    let mixed = scenario(
        "iso-same-mixed",
        ["process", "none", "process", "none", "process"],
    );
    // Origins differ only in isolation, which ListHooks does not show.
    for (name, other) in [("isolated", &isolated), ("mixed", &mixed)] {
        assert_eq!(inline.len(), other.len());
        for (i, (a, b)) in inline.iter().zip(other.iter()).enumerate() {
            assert_eq!(a, b, "{name}: answer {i} differs");
        }
    }
    // The scenario did what it says (so that the comparison means something).
    assert_eq!(inline[0]["ok"]["user"]["username"], "ann");
    assert_eq!(
        inline[3]["parameters"]["ask"],
        json!(["otp"]),
        "{}",
        inline[3]
    );
    assert_eq!(inline[7]["error"], "org.flaskbb.Auth.AuthenticationFailed");
    assert_eq!(inline[9]["error"], "org.flaskbb.Auth.ForceLogout");
    assert_eq!(
        inline[10]["ok"]["post"]["content"],
        r"\*\*\*\*, it \*\*\*\*\*. -- signed"
    );
    assert_eq!(
        inline[11]["parameters"]["reason"], "Topics are closed.",
        "{}",
        inline[11]
    );
}

#[test]
fn an_isolated_instances_state_is_shared_by_its_concurrent_calls() {
    fixture("faults");
    let s = Scratch::new("iso-shared");
    let d = TestDaemon::start(
        &s,
        "[daemon]\nworkers = 4\n[auth]\nbcrypt_cost = 4\nlockout = { enabled = false }\n[[plugin]]\nname = \"faults\"\nlibrary = \"faults\"\n",
    );
    let pid = host_pid(&d, "faults");
    let counts: Vec<u64> = thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let mut c = d.client();
                    (0..10)
                        .map(|_| {
                            let (_, p) = err(c.send(&authenticate("count", "x")));
                            let reason = p["reason"].as_str().unwrap().to_owned();
                            reason.strip_prefix("count ").unwrap().parse().unwrap()
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    let mut sorted = counts.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=80).collect::<Vec<u64>>());
    // One host served them all, over several lanes at once.
    assert_eq!(host_pid(&d, "faults"), pid);
    assert_eq!(d.plugin("faults")["host"]["restarts"], 0);
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    assert!(
        threads > 2,
        "one lane thread per concurrent call: {threads}"
    );
}

#[test]
fn reload_and_set_plugin_enabled_start_new_hosts_and_retire_the_old_ones() {
    let s = Scratch::new("iso-reload");
    let d = TestDaemon::start(
        &s,
        "[[plugin]]\nname = \"filter\"\nlibrary = \"wordfilter\"\nconfig = { words = [\"darn\"] }\n\
         [[plugin]]\nname = \"hello\"\nlibrary = \"hello\"\n",
    );
    let save = || {
        d.send(&post_save_before(json!({ "content": "darn" })))
            .unwrap()["post"]["content"]
            .clone()
    };
    assert_eq!(save(), r"\*\*\*\*");
    let (filter, hello) = (host_pid(&d, "filter"), host_pid(&d, "hello"));
    d.send(&reload()).unwrap();
    let (filter2, hello2) = (host_pid(&d, "filter"), host_pid(&d, "hello"));
    assert!(filter2 != filter && hello2 != hello);
    assert!(
        gone(filter) && gone(hello),
        "the old generation's hosts exit"
    );
    assert_eq!(save(), r"\*\*\*\*");

    d.send(&set_plugin_enabled("filter", false)).unwrap();
    let p = d.plugin("filter");
    assert_eq!(p["enabled"], false);
    assert!(
        p.get("host").is_none(),
        "a disabled instance has no host: {p}"
    );
    assert!(gone(filter2));
    assert_eq!(save(), "darn");
    d.send(&set_plugin_enabled("filter", true)).unwrap();
    assert_eq!(save(), r"\*\*\*\*");
    assert!(alive(host_pid(&d, "filter")));
}

#[test]
fn a_host_killed_from_outside_is_replaced_at_the_next_call() {
    let s = Scratch::new("iso-killed");
    let d = TestDaemon::start(
        &s,
        "[[plugin]]\nname = \"filter\"\nlibrary = \"wordfilter\"\nconfig = { words = [\"darn\"] }\n",
    );
    let pid = host_pid(&d, "filter");
    // SAFETY: kill(2) on the host's pid, which the daemon has not reaped yet.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(gone(pid));
    // The daemon records the death when it reaps the host, a moment after the
    // process is gone.
    let until = Instant::now() + Duration::from_secs(10);
    let mut p = d.plugin("filter");
    while p["host"]["state"] != "stopped" && Instant::now() < until {
        thread::sleep(Duration::from_millis(20));
        p = d.plugin("filter");
    }
    assert_eq!(p["host"]["state"], "stopped", "{p}");
    assert_eq!(
        p["host"]["last_exit"],
        "was killed by signal 9 (SIGKILL), not by the daemon (the kernel's out-of-memory killer?)"
    );
    let r = d
        .send(&post_save_before(json!({ "content": "darn" })))
        .unwrap();
    assert_eq!(r["post"]["content"], r"\*\*\*\*");
    let p = d.plugin("filter");
    assert_eq!(p["host"]["state"], "running");
    assert_eq!(p["host"]["restarts"], 1);
    // Killed before it was given a call: logged as a start failure (which counts
    // towards a back-off), and replaced.
    assert!(d
        .log_text()
        .contains("plugin host failed to start or died before it was given a call; the next call starts a new one"));
    let shown = text(&flaskbbd(&["plugins", "-c", d.config.to_str().unwrap()])).0;
    assert!(
        shown.contains("    process: running, pid ")
            && shown.contains("1 restart(s), landlock ")
            && shown.contains("last exit: was killed by signal 9 (SIGKILL)"),
        "{shown}"
    );
}

#[test]
fn isolated_hung_calls_are_killed_and_never_count_as_stuck() {
    fixture("faults");
    let s = Scratch::new("iso-hung");
    let mut d = TestDaemon::start(
        &s,
        "[daemon]\nworkers = 1\nhook_timeout_ms = 300\nmax_stuck_calls = 1\n\
         [[plugin]]\nname = \"faults\"\nlibrary = \"faults\"\n",
    );
    d.add_user("hal", "Secret123", true);
    // Two hung calls in a row, then two at once: with one worker and
    // max_stuck_calls = 1, in-process calls would have refused requests by now. (A
    // fifth death within a minute would back the instance off: reliability.rs.)
    let mut pids = vec![host_pid(&d, "faults")];
    for _ in 0..2 {
        let t = Instant::now();
        let (name, params) = err(d.auth("spin", "x"));
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert_eq!(name, "org.flaskbb.Auth.InternalError");
        assert_eq!(
            params["message"],
            "instance \"faults\" did not answer flaskbb_authenticate within 300 ms"
        );
        assert!(d.auth("hal", "Secret123").is_ok());
        pids.push(host_pid(&d, "faults"));
    }
    let at_once: Vec<String> = thread::scope(|scope| {
        let calls: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| err(d.auth("spin", "x")).0))
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert_eq!(at_once, ["org.flaskbb.Auth.InternalError"; 2]);
    assert!(d.auth("hal", "Secret123").is_ok());
    // Every spinning host is gone, and nothing burns a core any more.
    for pid in &pids[..pids.len() - 1] {
        assert!(gone(*pid), "host {pid} still runs");
    }
    let daemon = d.child.id();
    let (before, host_before) = (cpu_ticks(daemon), cpu_ticks(host_pid(&d, "faults")));
    thread::sleep(Duration::from_secs(1));
    let (after, host_after) = (cpu_ticks(daemon), cpu_ticks(host_pid(&d, "faults")));
    // A spinning thread would use ~100 ticks a second; idle uses ~0.
    assert!(
        after - before < 30 && host_after - host_before < 30,
        "daemon {} ticks, host {} ticks in 1 s",
        after - before,
        host_after - host_before
    );
    assert!(!d.log_text().contains("refusing new requests"));
    assert!(d
        .log_text()
        .contains("hook call timed out; its plugin host is killed and replaced"));
    d.assert_alive();
}

#[test]
fn the_sandbox_refuses_what_the_instance_did_not_declare() {
    fixture("faults");
    let s = Scratch::new("iso-sandbox");
    std::fs::write(s.path.join("granted.txt"), "hello").unwrap();
    std::fs::write(s.path.join("secret.txt"), "hush").unwrap();
    let d = TestDaemon::start(
        &s,
        r#"
[[plugin]]
name = "closed"
library = "faults"
sandbox = { read = ["granted.txt"], write = ["out/"] }
"#,
    );
    let probe = |what: &str| -> String {
        let (name, p) = err(d.auth(what, "x"));
        assert_eq!(name, "org.flaskbb.Auth.AuthenticationFailed", "{what}: {p}");
        p["reason"].as_str().unwrap().to_owned()
    };
    let path = |f: &str| s.path.join(f).display().to_string();
    assert_eq!(
        probe(&format!("read:{}", path("granted.txt"))),
        "read 5 bytes"
    );
    assert!(probe(&format!("read:{}", path("secret.txt")))
        .starts_with("read refused: Permission denied"));
    assert!(probe("read:/etc/passwd").starts_with("read refused: Permission denied"));
    assert_eq!(probe(&format!("write:{}", path("out/x.log"))), "write done");
    assert!(probe(&format!("write:{}", path("elsewhere.log"))).starts_with("write refused"));
    assert!(!s.path.join("elsewhere.log").exists());
    assert!(probe("exec").starts_with("exec refused: Operation not permitted"));
    assert!(probe("net").starts_with("net refused: Operation not permitted"));
    assert!(probe("kill-parent").starts_with("kill refused: Operation not permitted"));
    // Nor pin, starve, renice or take open files from the daemon (same user): each
    // refused, while its own CPUs are its to set.
    let refused = "refused: Operation not permitted (os error 1)";
    assert_eq!(
        probe("reach-parent"),
        format!(
            "setaffinity {refused}, setscheduler {refused}, prlimit {refused}, setpriority {refused}, setpriority-user {refused}, ioprio {refused}, own setaffinity allowed"
        )
    );
    assert!(probe("fork").starts_with("fork refused: Operation not permitted"));
    let socket = d.socket.display().to_string();
    assert!(probe(&format!("admin:{socket}")).starts_with("connect refused"));
    // With sandbox.network, it may.
    let open_scratch = Scratch::new("iso-sandbox-open");
    let open = TestDaemon::start(
        &open_scratch,
        "[[plugin]]\nname = \"open\"\nlibrary = \"faults\"\nsandbox = { network = true }\n",
    );
    let (_, p) = err(open.auth("net", "x"));
    assert_eq!(p["reason"], "net open");
    // It reaches the daemon's socket then, as the daemon's own user, which is always
    // an admin: but not from a plugin host.
    let (_, p) = err(open.auth(&format!("admin:{}", open.socket.display()), "x"));
    assert_eq!(p["reason"], "org.flaskbb.Admin.PermissionDenied");
    // Nor the forum's interface, though the daemon's own uid may call it.
    let (_, p) = err(open.auth(&format!("account:{}", open.socket.display()), "x"));
    assert_eq!(p["reason"], "org.flaskbb.Account.PermissionDenied");
    assert!(open
        .log_text()
        .contains("connected to the daemon's socket; org.flaskbb.Admin and org.flaskbb.Account are refused to it"));
    assert_eq!(
        d.plugin("closed")["host"]["landlock"],
        "enforced, network closed"
    );
    // What the kernel says of the host: no new privileges, a seccomp filter, the
    // memory limit (plugins.host_memory_mb, 256 MiB), no core files.
    let pid = host_pid(&d, "closed");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    // No capabilities, even started by a root daemon (as the tests often are).
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert!(
            status.contains(&format!("{set}:\t0000000000000000")),
            "{set}: {status}"
        );
    }
    // A system call newer than the filter knows answers as on an older kernel.
    assert!(
        probe("newer").ends_with("Function not implemented (os error 38)"),
        "{}",
        probe("newer")
    );
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let limit = |name: &str| -> Vec<String> {
        let line = limits.lines().find(|l| l.starts_with(name)).unwrap();
        line[name.len()..]
            .split_whitespace()
            .take(2)
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(limit("Max data size"), ["268435456", "268435456"]);
    assert_eq!(limit("Max core file size"), ["0", "0"]);
    // In the daemon's own process nothing is confined (isolation = "none").
    let inline_scratch = Scratch::new("iso-sandbox-none");
    let inline = TestDaemon::start(
        &inline_scratch,
        "[[plugin]]\nname = \"inline\"\nlibrary = \"faults\"\nisolation = \"none\"\n",
    );
    let (_, p) = err(inline.auth("read:/etc/passwd", "x"));
    assert!(p["reason"].as_str().unwrap().starts_with("read "), "{p}");
    assert!(!p["reason"].as_str().unwrap().contains("refused"), "{p}");
}

/// A TCP listener on 127.0.0.1 that records whether anything ever connected.
fn tripwire() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

#[test]
fn a_host_without_network_reaches_nothing_by_any_route() {
    fixture("faults");
    let (listener, addr) = tripwire();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let udp_addr = udp.local_addr().unwrap().to_string();
    let s = Scratch::new("iso-nonet");
    let d = TestDaemon::start(&s, "[[plugin]]\nname = \"closed\"\nlibrary = \"faults\"\n");
    let probe = |what: &str| -> String {
        let (_, p) = err(d.auth(what, "x"));
        p["reason"].as_str().unwrap_or_default().to_owned()
    };
    let refused = |what: &str, answer: String| {
        assert!(answer.contains("refused"), "{what}: {answer}");
    };
    // socket(2): TCP to a listener, to PostgreSQL's port, UDP, raw and packet sockets,
    // the daemon's own socket.
    refused("tcp", probe(&format!("connect:{addr}")));
    refused("postgres", probe("connect:127.0.0.1:5432"));
    refused("udp", probe(&format!("udp:{udp_addr}")));
    refused("raw", probe("raw"));
    refused("packet", probe("packet"));
    refused("netlink", probe("netlink"));
    refused("unix", probe(&format!("admin:{}", d.socket.display())));
    // io_uring, whose IORING_OP_SOCKET/CONNECT the system call filter would not see:
    // the issue's route, a socket made by the ring then a plain connect, to the
    // listener and to PostgreSQL; a packet socket made by the ring.
    assert!(
        probe("uring").starts_with("uring refused: Operation not permitted"),
        "{}",
        probe("uring")
    );
    refused("uring tcp", probe(&format!("uring-connect:{addr}")));
    refused("uring postgres", probe("uring-connect:127.0.0.1:5432"));
    refused("uring packet", probe("uring-packet"));
    // The x32 ABI, whose system call numbers a filter for x86_64 would not know.
    if cfg!(target_arch = "x86_64") {
        refused("x32", probe("x32"));
    }
    // Nothing arrived.
    assert!(
        listener.accept().is_err(),
        "a host without network connected"
    );
    assert!(
        udp.recv_from(&mut [0u8; 8]).is_err(),
        "a host without network sent UDP"
    );
    let status = d.plugin("closed")["host"].clone();
    assert_eq!(status["landlock"], "enforced, network closed", "{status}");

    // With sandbox.network, TCP and UDP go out, and still no raw, packet or io_uring.
    let open_scratch = Scratch::new("iso-net");
    let open = TestDaemon::start(
        &open_scratch,
        "[[plugin]]\nname = \"open\"\nlibrary = \"faults\"\nsandbox = { network = true }\n",
    );
    let probe = |what: &str| -> String {
        let (_, p) = err(open.auth(what, "x"));
        p["reason"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(probe(&format!("connect:{addr}")), "connect open");
    assert_eq!(probe(&format!("udp:{udp_addr}")), "udp sent");
    // A name resolved as clients do (the resolver's own sockets allowed) reaches it too.
    let port = addr.rsplit_once(':').unwrap().1;
    assert_eq!(
        probe(&format!("resolve:localhost:{port}")),
        "resolve connect open"
    );
    listener.set_nonblocking(false).unwrap();
    assert!(listener.accept().is_ok());
    refused("raw with network", probe("raw"));
    refused("packet with network", probe("packet"));
    refused("netlink with network", probe("netlink"));
    assert!(
        probe("uring").starts_with("uring refused"),
        "{}",
        probe("uring")
    );
    refused("uring packet with network", probe("uring-packet"));
    listener.set_nonblocking(false).unwrap();
    assert!(listener.accept().is_ok());
    // The route by io_uring stays closed even where the network is open.
    listener.set_nonblocking(true).unwrap();
    refused(
        "uring tcp with network",
        probe(&format!("uring-connect:{addr}")),
    );
    assert!(
        listener.accept().is_err(),
        "io_uring connected with network"
    );
    assert!(
        open.plugin("open")["host"]["landlock"]
            .as_str()
            .unwrap()
            .ends_with("network open (sandbox.network)"),
        "{}",
        open.plugin("open")["host"]
    );
}

#[test]
fn hosts_that_cannot_start_back_the_instance_off() {
    fixture("faults");
    let s = Scratch::new("iso-backoff");
    let marker = s.path.join("broken/now");
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    let d = TestDaemon::start(
        &s,
        &format!(
            "[[plugin]]\nname = \"flaky\"\nlibrary = \"faults\"\nsandbox = {{ read = [\"broken/\"] }}\nconfig = {{ fail_start_if = {:?} }}\n",
            marker.display().to_string()
        ),
    );
    let save = || d.send(&post_save_before(json!({ "content": "hello" })));
    assert!(save().is_ok());
    // From now on a new host refuses to start; the running one is killed from
    // outside (it served a call: its death is no start failure).
    std::fs::write(&marker, "").unwrap();
    let pid = host_pid(&d, "flaky");
    // SAFETY: kill(2) on the host's pid, which the daemon has not reaped yet.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(gone(pid));
    let mut messages = Vec::new();
    // (A first call may still meet the killed host, before its death is reaped.)
    for _ in 0..7 {
        let (name, p) = err(save());
        assert_eq!(name, "org.flaskbb.Events.InternalError", "{p}");
        messages.push(p["message"].as_str().unwrap().to_owned());
        if messages.last().unwrap().contains("backed off") {
            break;
        }
    }
    let failed_starts = messages
        .iter()
        .filter(|m| {
            m.contains("a new plugin host could not be started")
                && m.contains("exists: refusing to start")
        })
        .count();
    assert_eq!(failed_starts, 5, "{messages:?}");
    assert!(
        messages
            .last()
            .unwrap()
            .contains("backed off: its plugin host failed to start 5 times within 60 s"),
        "{messages:?}"
    );

    assert_eq!(d.plugin("flaky")["host"]["state"], "backed-off");
    // Backed off: the calls fail at once, without trying to start a host.
    std::fs::remove_file(&marker).unwrap();
    let (_, p) = err(save());
    assert!(p["message"].as_str().unwrap().contains("backed off"), "{p}");
}

#[test]
fn spinning_isolated_calls_hold_no_thread_that_other_requests_need() {
    fixture("faults");
    let s = Scratch::new("iso-spinners");
    let d = TestDaemon::start(
        &s,
        r#"
[daemon]
hook_timeout_ms = 10000
[[plugin]]
name = "spinner"
library = "faults"
[plugin.hooks.flaskbb_authenticate]
enabled = false
"#,
    );
    d.add_user("ada", "Secret123", true);
    std::thread::scope(|scope| {
        let spins: Vec<_> = (0..16)
            .map(|_| scope.spawn(|| d.send(&post_save_before(json!({ "content": "spin" })))))
            .collect();
        // Let the sixteen reach the host.
        thread::sleep(Duration::from_millis(1500));
        let t = Instant::now();
        let topic = d.send(&topic_save_before(json!({ "title": "unrelated" })));
        let topic_took = t.elapsed();
        assert!(topic.is_ok(), "{topic:?}");
        let t = Instant::now();
        assert!(d.auth("ada", "Secret123").is_ok());
        let login_took = t.elapsed();
        // Answered long before the spinning calls' 10 s timeout (they end at 10 s).
        assert!(topic_took < Duration::from_secs(4), "{topic_took:?}");
        assert!(login_took < Duration::from_secs(4), "{login_took:?}");
        for spin in spins {
            let (name, _) = err(spin.join().unwrap());
            assert_eq!(name, "org.flaskbb.Events.InternalError");
        }
    });
}

#[test]
fn events_waiting_on_a_plugin_host_hold_no_daemon_thread() {
    fixture("faults");
    let s = Scratch::new("iso-no-thread");
    let d = TestDaemon::start(
        &s,
        r#"
[daemon]
hook_timeout_ms = 20000
[[plugin]]
name = "sleeper"
library = "faults"
[plugin.hooks.flaskbb_authenticate]
enabled = false
"#,
    );
    // A first call starts the host's lanes; the daemon's threads after it.
    let first = d.send(&post_save_before(json!({ "content": "hello" })));
    assert_eq!(first.unwrap()["post"]["content"], "hello");
    let before = d.threads();
    std::thread::scope(|scope| {
        let sleepers: Vec<_> = (0..32)
            .map(|_| scope.spawn(|| d.send(&post_save_before(json!({ "content": "sleep" })))))
            .collect();
        // The thirty-two are in the host, each asleep for 4 s.
        thread::sleep(Duration::from_millis(1500));
        let during = d.threads();
        // The chain only crosses to the host: each call waits as a task, on no thread
        // of its own (through the pool, each would hold a worker, and the pool would
        // have grown by dozens).
        assert!(
            during <= before + 2,
            "{before} threads before, {during} with 32 calls waiting on the host"
        );
        for sleeper in sleepers {
            let answered = sleeper.join().unwrap().unwrap();
            assert_eq!(answered["post"]["content"], "sleep");
        }
    });
}

/// A daemon under `hook_timeout_ms` whose one instance, `slow` (of `faults`, events
/// only), takes `start_ms` to start, with its host just killed from outside (so the
/// next event starts a new one); and the killed host's pid.
fn slow_host_killed(s: &Scratch, hook_timeout_ms: u64, start_ms: u64) -> (TestDaemon, u32) {
    fixture("faults");
    let d = TestDaemon::start(
        s,
        &format!(
            r#"
[daemon]
hook_timeout_ms = {hook_timeout_ms}
[[plugin]]
name = "slow"
library = "faults"
config = {{ start_sleep_ms = "{start_ms}" }}
[plugin.hooks.flaskbb_authenticate]
enabled = false
"#
        ),
    );
    let pid = host_pid(&d, "slow");
    // SAFETY: kill(2) on the host's pid, which the daemon has not reaped yet.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(gone(pid));
    assert!(eventually(|| d.plugin("slow")["host"]["state"] == "stopped"));
    (d, pid)
}

#[test]
fn an_event_past_its_timeout_while_its_host_starts_is_answered_and_never_sent() {
    let s = Scratch::new("iso-slow-start");
    let (mut d, pid) = slow_host_killed(&s, 300, 1500);
    // The next event starts a new host, which takes 1.5 s: its call is past its
    // 300 ms before the host can take it. Sent then, a spinning call would have
    // nothing to end it, and its client would wait for ever.
    let mut c = d.client();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(c.send(&post_save_before(json!({ "content": "spin" }))));
    });
    let answered = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("no answer in 20 s: the call went to the new host with nothing to end it");
    let (name, params) = err(answered);
    assert_eq!(name, "org.flaskbb.Events.InternalError");
    assert_eq!(
        params["message"],
        "instance \"slow\" did not answer flaskbb_event_post_save_before within 300 ms"
    );
    // The new host serves, and nothing spins in it.
    let host = host_pid(&d, "slow");
    assert_ne!(host, pid);
    let before = cpu_ticks(host);
    thread::sleep(Duration::from_secs(1));
    let after = cpu_ticks(host);
    assert!(
        after - before < 30,
        "the new host used {} ticks in 1 s",
        after - before
    );
    let r = d.send(&post_save_before(json!({ "content": "hello" })));
    assert_eq!(r.unwrap()["post"]["content"], "hello");
    assert!(d
        .log_text()
        .contains("an abandoned hook call returned; requests run on the async threads again"));
    d.assert_alive();
}

#[test]
fn events_waiting_for_their_host_to_start_leave_the_daemon_answering() {
    let s = Scratch::new("iso-start-wait");
    let (mut d, _) = slow_host_killed(&s, 20000, 3000);
    // Eight events at once: the first starts a new host (3 s), the others wait for
    // it. None may wait on an async thread, or the daemon would answer nothing else
    // until the host is up.
    let events: Vec<_> = (0..8)
        .map(|_| {
            let mut c = d.client();
            thread::spawn(move || c.send(&post_save_before(json!({ "content": "hello" }))))
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    d.send(&flaskbbd_tests::calls::get_info()).unwrap();
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "GetInfo took {took:?} while events waited for a host to start"
    );
    for e in events {
        assert_eq!(e.join().unwrap().unwrap()["post"]["content"], "hello");
    }
    d.assert_alive();
}

#[test]
fn an_isolated_event_impl_uses_the_store_through_the_host_api() {
    fixture("faults");
    let s = Scratch::new("iso-event-store");
    let d = TestDaemon::start(
        &s,
        "[[plugin]]\nname = \"keeper\"\nlibrary = \"faults\"\n[plugin.hooks.flaskbb_authenticate]\nenabled = false\n",
    );
    let stored = |d: &TestDaemon| {
        let (name, p) = err(d.send(&post_save_before(json!({ "content": "stored" }))));
        assert_eq!(name, "org.flaskbb.Events.Rejected", "{p}");
        p["reason"].as_str().unwrap().to_owned()
    };
    // Each call reads the count the one before committed, and writes the next.
    for n in 1..=3 {
        assert_eq!(stored(&d), format!("stored {n}"));
    }
    // Committed to the store: a daemon started again on it goes on counting.
    let config = d.config.clone();
    assert!(d.stop().success());
    let d = TestDaemon::start_with(&s, config);
    assert_eq!(stored(&d), "stored 4");
}

#[test]
fn a_hosts_output_is_logged_under_its_instances_name() {
    fixture("faults");
    let s = Scratch::new("iso-output");
    let forged = "INFO flaskbbd::daemon: the daemon did not write this";
    let d = TestDaemon::start(
        &s,
        &format!("[[plugin]]\nname = \"chatty\"\nlibrary = \"faults\"\nconfig = {{ say = {forged:?} }}\n"),
    );
    let pid = host_pid(&d, "chatty");
    let logged = |log: &str, stream: &str| {
        log.lines().any(|l| {
            l.contains("plugin host output")
                && l.contains("instance=\"chatty\"")
                && l.contains(&format!("pid={pid}"))
                && l.contains(&format!("stream=\"{stream}\""))
                && l.contains(&format!("output={forged:?}"))
        })
    };
    // The two streams are forwarded by two threads: wait for both lines (under load
    // the second can come well after the first).
    let until = Instant::now() + Duration::from_secs(10);
    let mut log = d.log_text();
    while !(logged(&log, "stdout") && logged(&log, "stderr")) && Instant::now() < until {
        thread::sleep(Duration::from_millis(20));
        log = d.log_text();
    }
    for stream in ["stdout", "stderr"] {
        assert!(logged(&log, stream), "no {stream} line: {log}");
    }
    // No line of the log is the plugin's text on its own.
    assert!(
        !log.lines().any(|l| l.trim_start().starts_with(forged)),
        "{log}"
    );
}

#[test]
fn sandbox_mistakes_are_refused_at_start_naming_file_and_line() {
    fixture("faults");
    let s = Scratch::new("iso-bad");
    let cfg = s.config(
        "[[plugin]]\nname = \"f\"\nlibrary = \"faults\"\nisolation = \"none\"\nsandbox = { network = true }\n",
    );
    let (out, errs) = text(&flaskbbd(&["check", "-c", cfg.to_str().unwrap()]));
    assert!(out.is_empty());
    assert!(
        errs.contains(
            "flaskbb.toml:9: plugin.sandbox: instance \"f\" runs with isolation = \"none\""
        ),
        "{errs}"
    );
    let cfg = s.config(
        "[[plugin]]\nname = \"f\"\nlibrary = \"faults\"\nsandbox = { read = [\"nowhere/ca.pem\"] }\n",
    );
    let (_, errs) = text(&flaskbbd(&["check", "-c", cfg.to_str().unwrap()]));
    assert!(
        errs.contains("instance \"f\" (line 6): plugin ")
            && errs.contains("sandbox.read: ")
            && errs.contains("nowhere/ca.pem does not exist"),
        "{errs}"
    );
    let cfg =
        s.config("[[plugin]]\nname = \"f\"\nlibrary = \"faults\"\nisolation = \"sideways\"\n");
    let (_, errs) = text(&flaskbbd(&["check", "-c", cfg.to_str().unwrap()]));
    assert!(
        errs.contains("flaskbb.toml") && errs.contains("sideways") && errs.contains("none"),
        "{errs}"
    );
}

/// Calls of `instance`'s `hook` that ended `outcome`, as `/metrics` counts them.
fn hook_calls(d: &TestDaemon, instance: &str, hook: &str, outcome: &str) -> f64 {
    let text = d.client().get_metrics().expect("GetMetrics");
    text.lines()
        .filter(|l| {
            l.starts_with("flaskbbd_hook_calls_total{")
                && l.contains(&format!("instance=\"{instance}\""))
                && l.contains(&format!("hook=\"{hook}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().trim().parse::<f64>().unwrap())
        .sum()
}

/// Five filters of one library and sandbox, each with its own words, a sixth with
/// another sandbox, and a seventh that asks for a host of its own.
const SHARED: &str = r#"
[[plugin]]
name = "w1"
library = "wordfilter"
config = { words = ["alpha"] }
[[plugin]]
name = "w2"
library = "wordfilter"
config = { words = ["bravo"] }
[[plugin]]
name = "w3"
library = "wordfilter"
config = { words = ["charlie"] }
[[plugin]]
name = "w4"
library = "wordfilter"
config = { words = ["delta"] }
[[plugin]]
name = "w5"
library = "wordfilter"
config = { words = ["echo"] }
[[plugin]]
name = "apart"
library = "wordfilter"
config = { words = ["foxtrot"] }
sandbox = { memory_mb = 128 }
[[plugin]]
name = "alone"
library = "wordfilter"
config = { words = ["golf"] }
sandbox = { own_host = true }
"#;

#[test]
fn instances_of_one_library_and_sandbox_share_a_host_and_a_chain_through_them_is_one_round_trip() {
    let s = Scratch::new("iso-shared");
    let d = TestDaemon::start(&s, SHARED);
    let pid = host_pid(&d, "w1");
    for w in ["w2", "w3", "w4", "w5"] {
        assert_eq!(host_pid(&d, w), pid, "{w} shares w1's host");
    }
    assert_ne!(host_pid(&d, "apart"), pid, "another sandbox, another host");
    assert_ne!(host_pid(&d, "alone"), pid, "sandbox.own_host");
    let w1 = d.plugin("w1");
    assert_eq!(w1["host"]["shared_with"], json!(["w2", "w3", "w4", "w5"]));
    assert!(d.plugin("apart")["host"].get("shared_with").is_none());
    let trips = |name: &str| d.plugin(name)["host"]["round_trips"].as_u64().unwrap();
    let (before, apart_before) = (trips("w1"), trips("apart"));

    let r = d
        .send(&post_save_before(
            json!({ "content": "alpha bravo charlie delta echo foxtrot golf hotel" }),
        ))
        .unwrap();

    // Each instance masked its own word: its own configuration, and the draft of the
    // one before it.
    // (A post is Markdown: wordfilter writes its stars escaped.)
    let m = |n: usize| r"\*".repeat(n);
    assert_eq!(
        r["post"]["content"],
        format!(
            "{} {} {} {} {} {} {} hotel",
            m(5),
            m(5),
            m(7),
            m(5),
            m(4),
            m(7),
            m(4)
        )
    );
    // Five impls in one round trip to the shared host, one to the other.
    assert_eq!(trips("w1"), before + 1);
    assert_eq!(trips("w5"), before + 1);
    assert_eq!(trips("apart"), apart_before + 1);
    // Each impl is counted as its own call.
    let hook = "flaskbb_event_post_save_before";
    for w in ["w1", "w2", "w3", "w4", "w5", "apart", "alone"] {
        assert_eq!(hook_calls(&d, w, hook, "ok"), 1.0, "{w}");
    }
    let shown = text(&flaskbbd(&["plugins", "-c", d.config.to_str().unwrap()])).0;
    assert!(shown.contains("; shared with w2, w3, w4, w5"), "{shown}");
}

#[test]
fn a_crash_in_a_shared_host_fails_the_run_in_flight_and_a_new_host_serves_all_its_instances() {
    fixture("faults");
    let s = Scratch::new("iso-shared-crash");
    let d = TestDaemon::start(
        &s,
        "[[plugin]]\nname = \"f1\"\nlibrary = \"faults\"\n\
         [[plugin]]\nname = \"f2\"\nlibrary = \"faults\"\n\
         [[plugin]]\nname = \"filter\"\nlibrary = \"wordfilter\"\nconfig = { words = [\"darn\"] }\n",
    );
    let (pid, filter) = (host_pid(&d, "f1"), host_pid(&d, "filter"));
    assert_eq!(host_pid(&d, "f2"), pid);
    let hook = "flaskbb_event_post_save_before";

    let (code, e) = err(d.send(&post_save_before(json!({ "content": "segv" }))));

    assert_eq!(code, "org.flaskbb.Events.InternalError", "{e}");
    let message = e["message"].as_str().unwrap();
    // The chain calls the later instance first (as pluggy does): f2 met the segv.
    assert_eq!(
        message,
        format!(
            "instance \"f2\" failed in flaskbb_event_post_save_before: its plugin host (pid {pid}, which serves f1, f2) was killed by signal 11 (SIGSEGV); a new one starts at the next call"
        )
    );
    assert!(gone(pid));
    // The other library's host is untouched.
    assert_eq!(host_pid(&d, "filter"), filter);
    assert_eq!(hook_calls(&d, "f2", hook, "failed"), 1.0);
    assert_eq!(hook_calls(&d, "f1", hook, "failed"), 0.0, "f1 never ran");
    // The next event starts one new host for both instances, and the chain goes on.
    let r = d
        .send(&post_save_before(json!({ "content": "darn" })))
        .unwrap();
    assert_eq!(r["post"]["content"], r"\*\*\*\*");
    let new = host_pid(&d, "f1");
    assert_ne!(new, pid);
    assert_eq!(host_pid(&d, "f2"), new);
    for f in ["f1", "f2"] {
        let p = d.plugin(f);
        assert_eq!(p["host"]["restarts"], 1, "{p}");
        assert_eq!(
            p["host"]["last_exit"], "was killed by signal 11 (SIGSEGV)",
            "{p}"
        );
    }
    for f in ["f1", "f2"] {
        assert_eq!(hook_calls(&d, f, hook, "ok"), 1.0, "{f}");
    }
    assert!(d
        .log_text()
        .contains("plugin host died; the next call starts a new one"));
}

/// Two `faults` instances in one host (the chain calls f2, then f1: a run of two) and
/// a timeout short enough to wait for.
const PAIR: &str = "[daemon]\nhook_timeout_ms = 1000\n\
     [[plugin]]\nname = \"f1\"\nlibrary = \"faults\"\n\
     [[plugin]]\nname = \"f2\"\nlibrary = \"faults\"\n";

/// Hook timeouts `/metrics` counts for `instance`.
fn hook_timeouts(d: &TestDaemon, instance: &str) -> f64 {
    let text = d.client().get_metrics().expect("GetMetrics");
    text.lines()
        .filter(|l| {
            l.starts_with("flaskbbd_hook_timeouts_total{")
                && l.contains(&format!("instance=\"{instance}\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().trim().parse::<f64>().unwrap())
        .sum()
}

/// Waits up to five seconds for `f` to hold (a run's worker records its failed call
/// after the request has been answered).
fn eventually(f: impl Fn() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    f()
}

#[test]
fn a_crash_or_a_timeout_in_a_later_impl_of_a_shared_hosts_run_is_that_impls() {
    fixture("faults");
    let s = Scratch::new("iso-shared-blame");
    let d = TestDaemon::start(&s, PAIR);
    let pid = host_pid(&d, "f1");
    assert_eq!(host_pid(&d, "f2"), pid);
    let hook = "flaskbb_event_post_save_before";
    let save = |content: &str| err(d.send(&post_save_before(json!({ "content": content }))));

    // f2 (the run's first impl) lets the post pass; f1, the second, crashes.
    let (code, e) = save("segv@f1");
    assert_eq!(code, "org.flaskbb.Events.InternalError", "{e}");
    assert_eq!(
        e["message"],
        format!(
            "instance \"f1\" failed in {hook}: its plugin host (pid {pid}, which serves f1, f2) was killed by signal 11 (SIGSEGV); a new one starts at the next call"
        )
    );
    assert_eq!(hook_calls(&d, "f1", hook, "failed"), 1.0);
    assert_eq!(
        hook_calls(&d, "f2", hook, "failed"),
        0.0,
        "f2 did not crash"
    );
    assert!(gone(pid));

    // The same for a crash in the run's first impl, as before.
    let (_, e) = save("abort@f2");
    assert!(
        e["message"].as_str().unwrap().starts_with(&format!(
            "instance \"f2\" failed in {hook}: its plugin host"
        )),
        "{e}"
    );
    assert_eq!(hook_calls(&d, "f2", hook, "failed"), 1.0);
    assert_eq!(hook_calls(&d, "f1", hook, "failed"), 1.0);

    // f1 spins: the timeout is f1's (its answer, its metric, its log line), not f2's.
    let pid = host_pid_after_call(&d);
    let (code, e) = save("spin@f1");
    assert_eq!(code, "org.flaskbb.Events.InternalError", "{e}");
    assert_eq!(
        e["message"],
        format!("instance \"f1\" did not answer {hook} within 1000 ms")
    );
    assert_eq!(hook_timeouts(&d, "f1"), 1.0);
    assert_eq!(hook_timeouts(&d, "f2"), 0.0);
    assert!(
        eventually(|| hook_calls(&d, "f1", hook, "failed") == 2.0),
        "f1's hung call counts as failed"
    );
    assert_eq!(hook_calls(&d, "f2", hook, "failed"), 1.0);
    assert!(gone(pid));
    let log = d.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("hook call timed out") && l.contains("instance=f1")),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("hook call timed out") && l.contains("instance=f2")),
        "{log}"
    );
    // And the pair serves the next post.
    assert!(d
        .send(&post_save_before(json!({ "content": "fine" })))
        .is_ok());
}

/// The pair's host pid once a call has started it (after a death, the next call does).
fn host_pid_after_call(d: &TestDaemon) -> u32 {
    d.send(&post_save_before(json!({ "content": "hello" })))
        .unwrap();
    host_pid(d, "f1")
}

#[test]
fn a_shared_host_that_dies_making_an_instance_names_that_instance() {
    fixture("faults");
    let s = Scratch::new("iso-shared-start");
    // f1 starts; f2's `new` aborts the host they share.
    let cfg = s.config(
        "[[plugin]]\nname = \"f1\"\nlibrary = \"faults\"\n\
         [[plugin]]\nname = \"f2\"\nlibrary = \"faults\"\nconfig = { abort_at_start = \"yes\" }\n",
    );
    let (_, errs) = text(&flaskbbd(&["check", "-c", cfg.to_str().unwrap()]));
    let line = |name: &str| {
        errs.lines()
            .find(|l| l.contains(&format!("instance \"{name}\" (line")))
            .unwrap_or_else(|| panic!("no error for {name}: {errs}"))
            .to_owned()
    };
    let f2 = line("f2");
    assert!(
        f2.contains("was killed by signal 6 (SIGABRT) while making instance \"f2\""),
        "{errs}"
    );
    let f1 = line("f1");
    assert!(
        f1.contains("not started: it shares a plugin host with instance \"f2\""),
        "{errs}"
    );
    assert!(
        !f1.contains("SIGABRT"),
        "f1 is not the one that failed: {errs}"
    );
}

#[test]
fn a_shared_hosts_output_is_logged_once_as_the_hosts() {
    fixture("faults");
    let s = Scratch::new("iso-shared-output");
    let said = "hello from one of two";
    let d = TestDaemon::start(
        &s,
        &format!(
            "[[plugin]]\nname = \"f1\"\nlibrary = \"faults\"\nconfig = {{ say = {said:?} }}\n\
             [[plugin]]\nname = \"f2\"\nlibrary = \"faults\"\n"
        ),
    );
    let pid = host_pid(&d, "f1");
    assert!(eventually(|| d
        .log_text()
        .lines()
        .filter(|l| l.contains("plugin host output"))
        .count()
        >= 2));
    let log = d.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("plugin host output"))
        .collect();
    // One line per stream: the host's, naming both instances, never one of them alone.
    assert_eq!(lines.len(), 2, "{log}");
    for l in lines {
        assert!(
            l.contains("host_instances=\"f1, f2\"")
                && l.contains(&format!("pid={pid}"))
                && l.contains(&format!("output={said:?}"))
                && !l.contains("instance=\""),
            "{l}"
        );
    }
}

#[test]
fn a_shared_host_that_fails_before_any_instance_blames_none_and_names_them_all() {
    let s = Scratch::new("iso-shared-nolib");
    // Not a shared object: the host's loader refuses it before making any instance.
    let bogus = s.path.join("libbogus.so");
    std::fs::write(&bogus, b"not an ELF file").unwrap();
    let cfg = s.config(&format!(
        "[[plugin]]\nname = \"b1\"\nlibrary = {p:?}\n[[plugin]]\nname = \"b2\"\nlibrary = {p:?}\n",
        p = bogus.display().to_string()
    ));
    let (_, errs) = text(&flaskbbd(&["check", "-c", cfg.to_str().unwrap()]));
    for (me, other) in [("b1", "b2"), ("b2", "b1")] {
        let line = errs
            .lines()
            .find(|l| l.contains(&format!("instance \"{me}\" (line")))
            .unwrap_or_else(|| panic!("no error for {me}: {errs}"));
        assert!(
            line.contains(&format!(
                "its plugin host, which it shares with instance(s) \"{other}\" (same library and sandbox), could not start: "
            )),
            "{errs}"
        );
        assert!(!line.contains("not started: it shares"), "{errs}");
    }
}

/// The CPUs thread `tid` of process `pid` may run on, as the kernel lists them
/// (`Cpus_allowed_list`, e.g. "0-1" or "1").
fn cpus_allowed(pid: u32, tid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The ids of the threads of `pid` named `name`.
fn threads_named(pid: u32, name: &str) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .unwrap_or_default()
                .trim()
                == name
        })
        .map(|t| t.file_name().to_string_lossy().parse().unwrap())
        .collect()
}

/// `n` more connections held open, each seen by the daemon (it answered a call on it).
fn held_open(d: &TestDaemon, n: usize) -> Vec<flaskbbd_protocol::client::Client> {
    (0..n)
        .map(|_| {
            let mut c = d.client();
            c.send(&list_hooks()).unwrap();
            c
        })
        .collect()
}

#[test]
fn a_quiet_daemon_runs_a_lane_on_the_callers_cpu_and_a_busy_one_lets_it_go() {
    fixture("faults");
    let s = Scratch::new("iso-placement");
    let d = TestDaemon::start(
        &s,
        "[[plugin]]\nname = \"faults\"\nlibrary = \"faults\"\n[plugin.hooks.flaskbb_authenticate]\nenabled = false\n",
    );
    // One client calling in turn, on one connection.
    let client = std::cell::RefCell::new(d.client());
    let hello = || {
        let r = client
            .borrow_mut()
            .send(&post_save_before(json!({ "content": "hello" })));
        assert_eq!(r.unwrap()["post"]["content"], "hello");
    };
    hello();
    let pid = host_pid(&d, "faults");
    let own = cpus_allowed(pid, pid);
    let lanes = threads_named(pid, "lane");
    assert_eq!(lanes.len(), 1, "one client calling in turn uses one lane");
    let one_cpu = || cpus_allowed(pid, lanes[0]).parse::<usize>().is_ok();
    // Quiet (once the daemon has seen host_pid's connection close): the lane's thread
    // may only run on one CPU (its caller's, wherever that was), so the crossing wakes
    // no other core.
    assert!(
        eventually(|| {
            hello();
            one_cpu()
        }),
        "the lane's thread may run on {}, not on one CPU (its host on {own})",
        cpus_allowed(pid, lanes[0])
    );
    // With more connections open the daemon is busy: calls go down the host's pipe
    // (a lane of its own, whose thread nobody binds), for the scheduler to spread the
    // work.
    let others = held_open(&d, 3);
    hello();
    let now: Vec<u32> = threads_named(pid, "lane");
    assert_eq!(now.len(), 2, "the quiet lane and the pipe's");
    let pipe = now.iter().find(|t| !lanes.contains(t)).unwrap();
    assert_eq!(cpus_allowed(pid, *pipe), own);
    drop(others);
    // Quiet again: bound again.
    assert!(eventually(|| {
        hello();
        one_cpu()
    }));
}

#[test]
fn a_host_that_names_another_process_as_its_lane_thread_gets_nothing_bound() {
    fixture("faults");
    let s = Scratch::new("iso-placement-lie");
    let d = TestDaemon::start(
        &s,
        "[log]\nfilter = \"info,flaskbbd::ipc::placement=debug\"\n[[plugin]]\nname = \"liar\"\nlibrary = \"faults\"\nsandbox = { read = [\"/proc\"] }\n[plugin.hooks.flaskbb_authenticate]\nenabled = false\n",
    );
    let daemon_pid = d.child.id();
    let daemon_cpus: Vec<(u32, String)> = std::fs::read_dir(format!("/proc/{daemon_pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| {
            let tid = t.file_name().to_string_lossy().parse().unwrap();
            (tid, cpus_allowed(daemon_pid, tid))
        })
        .collect();
    let client = std::cell::RefCell::new(d.client());
    let post = |content: &str| {
        client
            .borrow_mut()
            .send(&post_save_before(json!({ "content": content })))
    };
    // Busy (so the daemon reads no page yet), the plugin names the daemon's main
    // thread as the thread serving its lanes, in the lanes' shared pages: the pipe's,
    // napping, and the lane of its own that the next call takes because the pipe is
    // slow (one the daemon will use when quiet).
    let others = held_open(&d, 3);
    // The host starts, and its pipe opens, at a first call.
    assert_eq!(post("hello").unwrap()["post"]["content"], "hello");
    std::thread::scope(|scope| {
        let napping = scope.spawn(|| {
            let mut c = d.client();
            c.send(&post_save_before(json!({ "content": "nap:1500" })))
        });
        thread::sleep(Duration::from_millis(300));
        let (name, p) = err(post("name-parent"));
        assert_eq!(name, "org.flaskbb.Events.Rejected", "{p}");
        assert_eq!(p["reason"], "named the parent in 2 pages", "{p}");
        assert!(!napping.is_finished(), "went round the nap");
        assert_eq!(
            napping.join().unwrap().unwrap()["post"]["content"],
            "nap:1500"
        );
    });
    drop(others);
    // Quiet: the daemon would bind the lane's thread to the caller's CPU, and finds
    // that the thread the page names is not the host's. Nothing of the daemon's is
    // bound, the calls go on, and the lane runs where the scheduler puts it.
    let refused = "which is not one of its own";
    assert!(
        eventually(|| {
            assert_eq!(post("hello").unwrap()["post"]["content"], "hello");
            d.log_text().contains(refused)
        }),
        "{}",
        d.log_text()
    );
    for _ in 0..20 {
        assert_eq!(post("hello").unwrap()["post"]["content"], "hello");
    }
    for (tid, before) in daemon_cpus {
        if Path::new(&format!("/proc/{daemon_pid}/task/{tid}")).exists() {
            assert_eq!(cpus_allowed(daemon_pid, tid), before, "daemon thread {tid}");
        }
    }
    let pid = host_pid(&d, "liar");
    for lane in threads_named(pid, "lane") {
        assert_eq!(cpus_allowed(pid, lane), cpus_allowed(pid, pid));
    }
}

/// ListPlugins' count of runs sent down `name`'s host's pipe behind another.
fn pipelined(d: &TestDaemon, name: &str) -> u64 {
    d.plugin(name)["host"]["pipelined"].as_u64().unwrap()
}

/// `posts` sent at once, one per connection and thread, from a barrier: their answers
/// (or errors), in order. Unlike [`flaskbbd_tests::daemon::at_once`], the connections
/// are open before the barrier, so that the calls reach the daemon together (runs
/// behind others in the pipe, which the test needs, rather than calls spread out by
/// each one's connect).
fn at_once(d: &TestDaemon, posts: &[&str]) -> Vec<Result<Value, (String, Value)>> {
    let start = std::sync::Barrier::new(posts.len());
    std::thread::scope(|scope| {
        let calls: Vec<_> = posts
            .iter()
            .map(|content| {
                let start = &start;
                let mut c = d.client();
                scope.spawn(move || {
                    start.wait();
                    c.send(&post_save_before(json!({ "content": content })))
                        .map_err(|e| err(Err(e)))
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    })
}

#[test]
fn a_busy_daemon_sends_runs_down_one_pipe_and_those_behind_a_slow_one_go_round_it() {
    fixture("faults");
    let s = Scratch::new("iso-pipe");
    let d = TestDaemon::start(
        &s,
        "[log]\nfilter = \"info,flaskbbd::isolation::supervisor=debug\"\n[daemon]\nhook_timeout_ms = 20000\n[[plugin]]\nname = \"faults\"\nlibrary = \"faults\"\n[plugin.hooks.flaskbb_authenticate]\nenabled = false\n",
    );
    let _busy = held_open(&d, 3);
    // Calls at once from sixteen clients: every one answered as it was sent, several
    // behind another in the pipe (each taken by the host's thread without a wake-up).
    for _ in 0..10 {
        let posts: Vec<String> = (0..16).map(|i| format!("post {i}")).collect();
        let posts: Vec<&str> = posts.iter().map(String::as_str).collect();
        for (post, answer) in posts.iter().zip(at_once(&d, &posts)) {
            assert_eq!(answer.unwrap()["post"]["content"], *post);
        }
    }
    let behind = pipelined(&d, "faults");
    assert!(behind > 0, "no run went down the pipe behind another");

    // A slow run does not hold the runs behind it: those the host has not begun are
    // taken back and go on lanes of their own, answered while it naps.
    let took_back = "took back";
    assert!(
        eventually(|| {
            let start = std::sync::Barrier::new(9);
            let (nap_done, quick_done) = std::thread::scope(|scope| {
                let mut c = d.client();
                let start = &start;
                let nap = scope.spawn(move || {
                    start.wait();
                    let r = c.send(&post_save_before(json!({ "content": "nap:1500" })));
                    assert_eq!(r.unwrap()["post"]["content"], "nap:1500");
                    Instant::now()
                });
                let quick: Vec<_> = (0..8)
                    .map(|_| {
                        let mut c = d.client();
                        scope.spawn(move || {
                            start.wait();
                            let r = c.send(&post_save_before(json!({ "content": "quick" })));
                            assert_eq!(r.unwrap()["post"]["content"], "quick");
                            Instant::now()
                        })
                    })
                    .collect();
                let quick = quick.into_iter().map(|q| q.join().unwrap()).max();
                (nap.join().unwrap(), quick.unwrap())
            });
            assert!(quick_done < nap_done, "a quick post waited for the nap");
            d.log_text().contains(took_back)
        }),
        "nothing was taken back: {}",
        d.log_text()
    );
    // Posts that come while a run is slow go round the pipe at once.
    std::thread::scope(|scope| {
        let nap = scope.spawn(|| {
            let mut c = d.client();
            c.send(&post_save_before(json!({ "content": "nap:3000" })))
        });
        thread::sleep(Duration::from_millis(200));
        for answer in at_once(&d, &["quick"; 8]) {
            assert_eq!(answer.unwrap()["post"]["content"], "quick");
        }
        assert!(!nap.is_finished(), "the quick posts waited for the nap");
        assert!(nap.join().unwrap().is_ok());
    });

    // The host API from runs in the pipe: a run's host call is answered while runs
    // sent after it wait in the host; every call is answered from the store.
    let before = pipelined(&d, "faults");
    assert!(
        eventually(|| {
            for answer in at_once(&d, &["stored"; 12]) {
                let (name, p) = answer.unwrap_err();
                assert_eq!(name, "org.flaskbb.Events.Rejected", "{p}");
                assert!(p["reason"].as_str().unwrap().starts_with("stored "), "{p}");
            }
            pipelined(&d, "faults") > before
        }),
        "no host-API run went behind another"
    );

    // A crash with runs queued behind it: every call is answered (its own answer, or
    // the host's death for one in it; those it never began are sent again, to a new
    // host), and a new host serves the next ones.
    let pid = host_pid(&d, "faults");
    let mut posts = vec!["segv"];
    posts.extend(["after"; 8]);
    let answers = at_once(&d, &posts);
    let (code, e) = answers[0].clone().unwrap_err();
    assert_eq!(code, "org.flaskbb.Events.InternalError", "{e}");
    assert!(e["message"].as_str().unwrap().contains("SIGSEGV"), "{e}");
    for answer in &answers[1..] {
        match answer {
            Ok(v) => assert_eq!(v["post"]["content"], "after"),
            Err((code, e)) => {
                assert_eq!(code, "org.flaskbb.Events.InternalError", "{e}");
                assert!(
                    e["message"].as_str().unwrap().contains("plugin host"),
                    "{e}"
                );
            }
        }
    }
    assert!(gone(pid));
    for answer in at_once(&d, &["again"; 8]) {
        assert_eq!(answer.unwrap()["post"]["content"], "again");
    }
}

/// Checks that every answer of a burst sent to a host that misbehaves in it is the
/// post itself or an internal error naming the plugin host (a call it was in when it
/// was killed), never anything else and never missing.
fn each_post_or_the_hosts_end(answers: &[Result<Value, (String, Value)>], post: &str) {
    for answer in answers {
        match answer {
            Ok(v) => assert_eq!(v["post"]["content"], post),
            Err((code, e)) => {
                assert_eq!(code, "org.flaskbb.Events.InternalError", "{e}");
                assert!(
                    e["message"].as_str().unwrap().contains("plugin host"),
                    "{e}"
                );
            }
        }
    }
}

#[test]
fn a_host_that_sends_what_does_not_decode_is_killed_and_a_new_one_serves() {
    fixture("faults");
    let s = Scratch::new("iso-junk-frame");
    let d = TestDaemon::start(
        &s,
        "[daemon]\nhook_timeout_ms = 20000\n[[plugin]]\nname = \"faults\"\nlibrary = \"faults\"\n[plugin.hooks.flaskbb_authenticate]\nenabled = false\n",
    );
    let save = |content: &str| {
        d.client()
            .send(&post_save_before(json!({ "content": content })))
            .map_err(|e| err(Err(e)))
    };
    // On a quiet daemon (the call on a lane of its own): the frame before the answer
    // is what the daemon reads, and it ends the host.
    assert_eq!(save("first").unwrap()["post"]["content"], "first");
    let pid = host_pid(&d, "faults");
    let (code, e) = save("junk-frame").unwrap_err();
    assert_eq!(code, "org.flaskbb.Events.InternalError", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("unreadable message"),
        "{e}"
    );
    assert!(gone(pid));
    assert_eq!(save("next").unwrap()["post"]["content"], "next");

    // On a busy daemon the call goes down the host's pipe, whose reader reads the
    // junk (whether or not a run waits) and has the host killed.
    let _busy = held_open(&d, 3);
    for answer in at_once(&d, &["warm"; 4]) {
        assert_eq!(answer.unwrap()["post"]["content"], "warm");
    }
    let pid = host_pid(&d, "faults");
    let (code, e) = save("junk-frame").unwrap_err();
    assert_eq!(code, "org.flaskbb.Events.InternalError", "{e}");
    assert!(gone(pid));
    assert!(
        d.log_text()
            .contains("it sent an unreadable message on its pipe"),
        "{}",
        d.log_text()
    );
    // And with runs in the pipe behind it: every call answered, a new host serves.
    assert_eq!(save("restart").unwrap()["post"]["content"], "restart");
    let pid = host_pid(&d, "faults");
    let mut posts = vec!["junk-frame"];
    posts.extend(["after"; 8]);
    let answers = at_once(&d, &posts);
    let (code, e) = answers[0].clone().unwrap_err();
    assert_eq!(code, "org.flaskbb.Events.InternalError", "{e}");
    each_post_or_the_hosts_end(&answers[1..], "after");
    assert!(gone(pid));
    for answer in at_once(&d, &["again"; 8]) {
        assert_eq!(answer.unwrap()["post"]["content"], "again");
    }
}

#[test]
fn a_host_that_lies_on_its_pipes_page_about_the_next_run_is_killed_and_a_new_one_serves() {
    fixture("faults");
    let s = Scratch::new("iso-junk-next");
    // A short timeout: a burst none of whose runs went behind another in the pipe (so
    // that the lie is not seen) ends with it, and the test tries again.
    let d = TestDaemon::start(
        &s,
        "[log]\nfilter = \"info,flaskbbd::isolation::supervisor=debug\"\n[daemon]\nhook_timeout_ms = 3000\n[[plugin]]\nname = \"faults\"\nlibrary = \"faults\"\nsandbox = { read = [\"/proc\"] }\n[plugin.hooks.flaskbb_authenticate]\nenabled = false\n",
    );
    let _busy = held_open(&d, 3);
    let lie = "is the next to begin";
    let mut seen = false;
    for _ in 0..8 {
        // Runs in the pipe first (the daemon is busy: it makes one at its first
        // crossing), so that the host has the pipe's page to lie on.
        for answer in at_once(&d, &["before"; 16]) {
            assert_eq!(answer.unwrap()["post"]["content"], "before");
        }
        let pid = host_pid(&d, "faults");
        let (code, e) = d
            .client()
            .send(&post_save_before(json!({ "content": "junk-next" })))
            .map_err(|e| err(Err(e)))
            .unwrap_err();
        assert_eq!(code, "org.flaskbb.Events.Rejected", "{e}");
        assert!(
            e["reason"]
                .as_str()
                .unwrap()
                .starts_with("wrote the next run in "),
            "{e}"
        );
        // The host now skips every run it is sent (none is the one its page names):
        // the first run behind another that waits the pipe's stall finds the page
        // says what cannot be, and the host is killed with every call in it. When no
        // run went behind another, they all end at the timeout instead: again (the
        // log of this burst only).
        let logged = d.log_text().len();
        let answers = at_once(&d, &["after"; 16]);
        assert!(gone(pid), "the host was not killed");
        if String::from_utf8_lossy(&d.log_text().as_bytes()[logged..]).contains(lie) {
            each_post_or_the_hosts_end(&answers, "after");
            seen = true;
            break;
        }
    }
    assert!(seen, "the lie was never seen: {}", d.log_text());
    for answer in at_once(&d, &["again"; 8]) {
        assert_eq!(answer.unwrap()["post"]["content"], "again");
    }
}
