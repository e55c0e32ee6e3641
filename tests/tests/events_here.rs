//! Events whose chain is short run on the connection's own thread, watched from
//! outside (see the daemon's `executor`): through the real daemon, a hung call there is
//! still answered at its timeout, the connection goes on being served from another
//! task, other clients never notice, and the daemon still stops at once; an isolated
//! instance's hung call is ended by killing its host; pipelined calls are answered in
//! order.

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flaskbbd_protocol::{methods::Request, wire::encode_call};
use flaskbbd_tests::calls::{authenticate, get_info, post_save_before};
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    thread,
    time::{Duration, Instant},
};

use flaskbbd_tests::{
    daemon::{err, TestDaemon},
    fixture, Scratch,
};
use serde_json::{json, Value};

const HUNG: &str = "hook call timed out; the request fails and the call is left to finish on its thread (requests run on the pool until it returns)";

fn save(
    c: &mut flaskbbd_protocol::client::Client,
    content: &str,
) -> Result<Value, flaskbbd_protocol::client::CallError> {
    c.send(&post_save_before(json!({ "content": content })))
}

/// Enough quick calls for the chain to count as short (its first call, never measured,
/// runs on the pool).
fn warm_up(c: &mut flaskbbd_protocol::client::Client) {
    for _ in 0..5 {
        assert_eq!(
            save(c, "hello darn").unwrap()["post"]["content"],
            r"hello \*\*\*\*"
        );
    }
}

fn daemon(s: &Scratch, isolation: &str) -> TestDaemon {
    fixture("faults");
    TestDaemon::start(
        s,
        &format!(
            r#"
[daemon]
workers = 2
hook_timeout_ms = 300
max_stuck_calls = 4
[[plugin]]
name = "filter"
library = "wordfilter"
isolation = "none"
config = {{ words = ["darn"] }}
[[plugin]]
name = "faults"
library = "faults"
isolation = "{isolation}"
"#
        ),
    )
}

#[test]
fn a_call_hung_on_the_connections_thread_is_answered_on_time_and_the_connection_goes_on() {
    let s = Scratch::new("here-hung");
    let d = daemon(&s, "none");
    let mut c = d.client();
    warm_up(&mut c);
    let t = Instant::now();
    let (name, params) = err(save(&mut c, "sleep"));
    let took = t.elapsed();
    assert_eq!(name, "org.flaskbb.Events.InternalError");
    assert_eq!(
        params["message"],
        "instance \"faults\" did not answer flaskbb_event_post_save_before within 300 ms"
    );
    // Well before the call's 4 s sleep ends.
    assert!(took < Duration::from_millis(2000), "{took:?}");
    // The same connection is served on, while the call still sleeps on its thread.
    assert_eq!(
        save(&mut c, "more darn").unwrap()["post"]["content"],
        r"more \*\*\*\*"
    );
    // So are other clients, several at once.
    thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let mut c = d.client();
                for _ in 0..20 {
                    assert_eq!(
                        save(&mut c, "darn").unwrap()["post"]["content"],
                        r"\*\*\*\*"
                    );
                }
                c.get_info().unwrap();
            });
        }
    });
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    let log = d.log_text();
    assert_eq!(log.matches(HUNG).count(), 1, "{log}");
    // The call returns; its thread serves requests again.
    thread::sleep(Duration::from_millis(4500).saturating_sub(t.elapsed()));
    let returned = "an abandoned hook call returned; requests run on the async threads again";
    let until = Instant::now() + Duration::from_secs(5);
    while !d.log_text().contains(returned) {
        assert!(Instant::now() < until, "{}", d.log_text());
        thread::sleep(Duration::from_millis(50));
    }
    // Its four seconds made the chain long: it runs on the pool until quick calls
    // bring its average down, then on the connection's thread again, where a second
    // hang is answered the same way.
    for _ in 0..200 {
        save(&mut c, "darn").unwrap();
    }
    let (name, _) = err(save(&mut c, "sleep"));
    assert_eq!(name, "org.flaskbb.Events.InternalError");
    assert_eq!(
        save(&mut c, "darn").unwrap()["post"]["content"],
        r"\*\*\*\*"
    );
    assert_eq!(d.log_text().matches(HUNG).count(), 2, "{}", d.log_text());
}

#[test]
fn the_daemon_stops_at_once_with_a_call_hung_on_a_connections_thread() {
    let s = Scratch::new("here-stop");
    let d = daemon(&s, "none");
    let mut c = d.client();
    warm_up(&mut c);
    let t = Instant::now();
    err(save(&mut c, "sleep"));
    assert!(d.log_text().contains(HUNG));
    let status = d.stop();
    assert!(status.success(), "{status:?}");
    // The drain does not wait for the hung call (it sleeps 4 s).
    assert!(
        t.elapsed() < Duration::from_millis(3500),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn an_isolated_call_hung_on_the_connections_thread_ends_with_its_host() {
    let s = Scratch::new("here-isolated");
    let d = daemon(&s, "process");
    let mut c = d.client();
    warm_up(&mut c);
    let pid = d.plugin("faults")["host"]["pid"].as_u64().unwrap();
    let t = Instant::now();
    let (name, params) = err(save(&mut c, "spin"));
    assert!(
        t.elapsed() < Duration::from_millis(2000),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(name, "org.flaskbb.Events.InternalError");
    assert_eq!(
        params["message"],
        "instance \"faults\" did not answer flaskbb_event_post_save_before within 300 ms"
    );
    // The connection goes on; a new host answers; nothing was abandoned.
    assert_eq!(
        save(&mut c, "darn").unwrap()["post"]["content"],
        r"\*\*\*\*"
    );
    assert_ne!(d.plugin("faults")["host"]["pid"].as_u64().unwrap(), pid);
    let log = d.log_text();
    assert!(
        log.contains("hook call timed out; its plugin host is killed and replaced"),
        "{log}"
    );
    assert!(!log.contains(HUNG), "{log}");
}

/// Calls sent together on one connection (events on the connection's thread, a login
/// on the pool, introspection, a malformed one) are answered in the order sent.
#[test]
fn pipelined_calls_are_answered_in_order() {
    let s = Scratch::new("here-pipeline");
    let d = daemon(&s, "none");
    warm_up(&mut d.client());
    let mut stream = UnixStream::connect(&d.socket).unwrap();
    let mut batch = Vec::new();
    let mut expect = Vec::new();
    let typed = |call: &dyn Request| encode_call(call.full_name(), &call.parameters());
    for i in 0..50 {
        let (call, want) = match i % 5 {
            0 => (
                typed(&authenticate("nobody", "x")),
                "org.flaskbb.Auth.AuthenticationFailed".to_owned(),
            ),
            1 => (typed(&get_info()), "flaskbbd".to_owned()),
            2 => (
                // An unknown method: by name, as no typed call names it.
                encode_call("org.flaskbb.Events.NoSuchEvent", &json!({})),
                "org.varlink.service.MethodNotFound".to_owned(),
            ),
            _ => (
                typed(&post_save_before(json!({ "content": format!("darn {i}") }))),
                format!(r"\*\*\*\* {i}"),
            ),
        };
        batch.extend_from_slice(&call);
        expect.push(want);
    }
    stream.write_all(&batch).unwrap();
    let mut reader = BufReader::new(stream);
    for want in expect {
        let mut reply = Vec::new();
        reader.read_until(0, &mut reply).unwrap();
        reply.pop();
        let v: Value = serde_json::from_slice(&reply).unwrap();
        let got = v["error"]
            .as_str()
            .or(v["parameters"]["post"]["content"].as_str())
            .or(v["parameters"]["vendor"].as_str())
            .unwrap_or_default();
        assert_eq!(got, want, "{v}");
    }
}

/// bcrypt never holds up events: with one pool thread busy with a queue of logins,
/// events are answered meanwhile, on the connections' own threads.
#[test]
fn events_are_answered_while_logins_queue_for_bcrypt() {
    let s = Scratch::new("here-bcrypt");
    let d = TestDaemon::start(
        &s,
        r#"
[daemon]
workers = 1
[auth]
bcrypt_cost = 12
failure_delay_ms = 0
lockout = { enabled = false }
[[plugin]]
name = "filter"
library = "wordfilter"
isolation = "none"
config = { words = ["darn"] }
"#,
    );
    d.add_user("ann", "Secret123", true);
    warm_up(&mut d.client());
    let (logins_done, events_done) = thread::scope(|scope| {
        let logins: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    let (name, _) = err(d.auth("ann", "wrong"));
                    assert_eq!(name, "org.flaskbb.Auth.AuthenticationFailed");
                    Instant::now()
                })
            })
            .collect();
        // Let the logins reach the pool's queue first.
        thread::sleep(Duration::from_millis(100));
        let mut c = d.client();
        for _ in 0..50 {
            assert_eq!(
                save(&mut c, "darn").unwrap()["post"]["content"],
                r"\*\*\*\*"
            );
        }
        let events_done = Instant::now();
        let last_login = logins.into_iter().map(|h| h.join().unwrap()).max().unwrap();
        (last_login, events_done)
    });
    // Six bcrypt verifications at cost 12 on one thread take far longer than fifty
    // events; had the events waited in the same queue, they would end after them.
    assert!(
        events_done < logins_done,
        "the events waited for the logins"
    );
}
