//! The operator's view of a running daemon: `/metrics` on `metrics.listen` scraped
//! during a mixed load (logins that pass, fail and lock; posts a plugin rejects; a
//! plugin that panics and one that hangs; calls that are no calls), with every count
//! the load caused found exactly and the text read by a Prometheus parser; the same
//! text through `Admin.GetMetrics`; `GetStatus` and `flaskbbd status`; and the
//! errors of a bad or taken `metrics.listen`.

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flaskbbd_tests::calls::{
    authenticate_in, context_of, post_save_after, post_save_before, reload, topic_save_before,
};
use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use flaskbbd_tests::{
    daemon::{err, TestDaemon},
    flaskbbd, text, Scratch,
};
use prometheus_parse::{LineInfo, Scrape, Value as Prom};
use serde_json::json;

/// A free TCP port on loopback (free when this returns).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.1: the status line, the headers and the body.
fn http_get(port: u16, path: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics.listen");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.into(), headers.into(), body.into())
}

/// The samples of a scrape, by `name{labels sorted}`; every line must be one the
/// text format defines (a parser that skips what it cannot read must not hide one).
fn parse(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "the exposition ends in # EOF");
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        assert!(
            !matches!(LineInfo::parse(line), LineInfo::Ignored | LineInfo::Empty),
            "not a line of the text format: {line:?}"
        );
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    let mut out = HashMap::new();
    for s in scrape.samples {
        let mut labels: Vec<_> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let key = format!("{}{{{}}}", s.metric, labels.join(","));
        match s.value {
            Prom::Counter(v) | Prom::Gauge(v) | Prom::Untyped(v) => {
                out.insert(key, v);
            }
            Prom::Histogram(buckets) => {
                // The +Inf bucket is the count.
                let inf = buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .expect("a +Inf bucket");
                out.insert(format!("{key}#count"), inf.count);
            }
            Prom::Summary(_) => panic!("no summaries expected: {key}"),
        }
    }
    out
}

/// The value of `name` with `labels` (`k=v`, any order), 0 when absent.
fn get(m: &HashMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    let mut l: Vec<_> = labels.iter().map(|s| s.to_string()).collect();
    l.sort();
    *m.get(&format!("{name}{{{}}}", l.join(","))).unwrap_or(&0.0)
}

// The method labels the metrics carry.
const AUTH: &str = "org.flaskbb.Auth.Authenticate";
const POST: &str = "org.flaskbb.Events.PostSaveBefore";
const TOPIC: &str = "org.flaskbb.Events.TopicSaveBefore";
const AFTER: &str = "org.flaskbb.Events.PostSaveAfter";

#[test]
fn a_scrape_during_mixed_load_finds_exactly_the_counts_it_caused() {
    let s = Scratch::new("metrics-load");
    let port = free_port();
    let mut d = TestDaemon::start(
        &s,
        &format!(
            r#"
[daemon]
hook_timeout_ms = 300
[metrics]
listen = "127.0.0.1:{port}"
[auth]
bcrypt_cost = 4
lockout = {{ attempts = 3, account_attempts = 1000 }}
[[plugin]]
name = "gate"
library = "scripted"
config = {{ on = {{ flaskbb_event_post_save_before = {{ action = "reject", reason = "no spam" }}, flaskbb_event_topic_save_before = {{ action = "panic" }}, flaskbb_event_post_save_after = {{ action = "sleep", ms = 1500 }} }} }}
"#
        ),
    );
    d.add_user("meg42", "Secret123", true);
    d.add_user("tom42", "Secret123", true);

    let (status, headers, body) = http_get(port, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{headers}"
    );
    let before = parse(&body);

    // Scrapes all through the load: each must parse, no counter may go back.
    let done = Arc::new(AtomicBool::new(false));
    let scraper = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut last: HashMap<String, f64> = HashMap::new();
            let mut scrapes = 0;
            while !done.load(Ordering::Acquire) {
                let m = parse(&http_get(port, "/metrics").2);
                for (k, v) in &m {
                    if k.contains("_total{") || k.ends_with("#count") {
                        assert!(*v >= last.get(k).copied().unwrap_or(0.0), "{k} went back");
                    }
                }
                last = m;
                scrapes += 1;
            }
            scrapes
        })
    };

    // The load, from four clients at once.
    const ROUNDS: usize = 10;
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let mut c = d.client();
            std::thread::spawn(move || {
                for i in 0..ROUNDS {
                    // ann logs in from her own address, always.
                    let ok = c.send(&authenticate_in(
                        "meg42",
                        "Secret123",
                        context_of(json!({ "remote_addr": format!("192.0.2.{w}") })),
                    ));
                    assert!(ok.is_ok(), "{ok:?}");
                    // Wrong passwords for bob, each worker from its own address: the
                    // first three of each address are counted, the rest refused.
                    let (name, _) = err(c.send(&authenticate_in(
                        "tom42",
                        format!("guess{i}"),
                        context_of(json!({ "remote_addr": format!("198.51.100.{w}") })),
                    )));
                    assert_eq!(name, "org.flaskbb.Auth.AuthenticationFailed");
                    let (name, _) = err(c.send(&post_save_before(json!({ "content": "buy" }))));
                    assert_eq!(name, "org.flaskbb.Events.Rejected");
                    let (name, _) = err(c.send(&topic_save_before(json!({ "title": "t" }))));
                    assert_eq!(name, "org.flaskbb.Events.InternalError");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    // One call that hangs past its timeout, and two that are no calls.
    let (name, params) = err(d.send(&post_save_after(json!({ "content": "x" }), true)));
    assert_eq!(name, "org.flaskbb.Events.InternalError", "{params}");
    let (name, _) = err(d.call("org.flaskbb.Auth.Nope", json!({})));
    assert_eq!(name, "org.varlink.service.MethodNotFound");
    let (name, _) = err(d.call("org.flaskbb.Admin.GetUser", json!({ "nope": 1 })));
    assert_eq!(name, "org.varlink.service.InvalidParameter");
    d.client().send(&reload()).unwrap();
    done.store(true, Ordering::Release);
    let scrapes = scraper.join().unwrap();
    assert!(scrapes > 0);

    let after = parse(&http_get(port, "/metrics").2);
    let delta =
        |name: &str, labels: &[&str]| get(&after, name, labels) - get(&before, name, labels);
    let n = (4 * ROUNDS) as f64;
    let req = "flaskbbd_requests_total";
    assert_eq!(delta(req, &[&format!("method={AUTH}"), "outcome=ok"]), n);
    assert_eq!(
        delta(
            req,
            &[
                &format!("method={AUTH}"),
                "outcome=org.flaskbb.Auth.AuthenticationFailed"
            ]
        ),
        n
    );
    assert_eq!(
        delta(
            req,
            &[
                &format!("method={POST}"),
                "outcome=org.flaskbb.Events.Rejected"
            ]
        ),
        n
    );
    assert_eq!(
        delta(
            req,
            &[
                &format!("method={TOPIC}"),
                "outcome=org.flaskbb.Events.InternalError"
            ]
        ),
        n
    );
    assert_eq!(
        delta(
            req,
            &[
                &format!("method={AFTER}"),
                "outcome=org.flaskbb.Events.InternalError"
            ]
        ),
        1.0
    );
    // A method that does not exist counts as (invalid), not under its name.
    assert_eq!(
        delta(
            req,
            &[
                "method=(invalid)",
                "outcome=org.varlink.service.MethodNotFound"
            ]
        ),
        1.0
    );
    assert!(!after.keys().any(|k| k.contains("Nope")));
    assert_eq!(
        delta(
            req,
            &[
                "method=org.flaskbb.Admin.GetUser",
                "outcome=org.varlink.service.InvalidParameter"
            ]
        ),
        1.0
    );
    let hist = |m: &HashMap<String, f64>, method: &str| {
        *m.get(&format!(
            "flaskbbd_request_duration_seconds{{method={method}}}#count"
        ))
        .unwrap_or(&0.0)
    };
    assert_eq!(hist(&after, AUTH) - hist(&before, AUTH), 2.0 * n);

    // Per instance and hook: every call, by outcome, and its time.
    let hook = |h: &str, outcome: &str| {
        delta(
            "flaskbbd_hook_calls_total",
            &[
                "instance=gate",
                &format!("hook={h}"),
                &format!("outcome={outcome}"),
            ],
        )
    };
    assert_eq!(hook("flaskbb_event_post_save_before", "refused"), n);
    assert_eq!(hook("flaskbb_event_topic_save_before", "failed"), n);
    assert_eq!(
        delta(
            "flaskbbd_hook_timeouts_total",
            &["instance=gate", "hook=flaskbb_event_post_save_after"]
        ),
        1.0
    );
    let hook_seconds = |m: &HashMap<String, f64>| {
        *m.get("flaskbbd_hook_call_duration_seconds{hook=flaskbb_event_post_save_before,instance=gate}#count")
            .unwrap_or(&0.0)
    };
    assert_eq!(hook_seconds(&after) - hook_seconds(&before), n);
    // The built-in password check answered ann's logins and refused bob's counted ones.
    let locked = n - 4.0 * 3.0; // past three per address, bob's tries were refused
    assert_eq!(
        delta(
            "flaskbbd_hook_calls_total",
            &[
                "instance=lockout",
                "hook=flaskbb_authenticate",
                "outcome=refused"
            ]
        ),
        locked
    );
    assert_eq!(
        delta("flaskbbd_lockout_actions_total", &["action=refused"]),
        locked
    );
    // Every failure is counted, refused ones too (they run the failure hooks).
    assert_eq!(
        delta("flaskbbd_lockout_actions_total", &["action=counted"]),
        n
    );

    assert_eq!(delta("flaskbbd_reloads_total", &["result=ok"]), 1.0);
    assert_eq!(get(&after, "flaskbbd_generation", &[]), 2.0);
    assert!(get(&after, "flaskbbd_start_time_seconds", &[]) > 1.7e9);
    // Nothing that identifies a person: no user name, address or password anywhere.
    for secret in [
        "meg42",
        "tom42",
        "Secret123",
        "guess",
        "192.0.2",
        "198.51.100",
        "buy",
    ] {
        assert!(!body_of(port).contains(secret), "{secret:?} in the metrics");
    }

    // The same text through the socket.
    let via_socket = d.client().get_metrics().unwrap();
    let m = parse(&via_socket);
    assert_eq!(
        get(&m, req, &[&format!("method={AUTH}"), "outcome=ok"]),
        get(&after, req, &[&format!("method={AUTH}"), "outcome=ok"])
    );

    // The hung call returns; the stuck gauge goes back to zero.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = parse(&body_of(port));
        if get(&m, "flaskbbd_stuck_calls", &[]) == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "a stuck call never came back");
        std::thread::sleep(Duration::from_millis(100));
    }

    // GetStatus: the gate's calls are what the metrics counted, its failures the
    // panics and the timeout.
    let st = d.client().get_status().unwrap();
    assert_eq!(st.generation, 2);
    let gate = st.plugins.iter().find(|p| p.plugin.name == "gate").unwrap();
    let gate_calls: f64 = after
        .iter()
        .filter(|(k, _)| {
            k.starts_with("flaskbbd_hook_calls_total{")
                && k.contains("instance=gate")
                && !k.contains("outcome=not_implemented")
        })
        .map(|(_, v)| v)
        .sum();
    assert!(gate_calls > 2.0 * n);
    assert_eq!(gate.calls as f64, gate_calls, "{gate:?}");
    assert_eq!(gate.failed, n as u64 + 1, "{gate:?}");
    assert!(gate.mean_ms > 0.0);

    // Other paths answer plainly.
    let (status, _, _) = http_get(port, "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "POST /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 405 "), "{reply}");
    d.assert_alive();
}

fn body_of(port: u16) -> String {
    http_get(port, "/metrics").2
}

#[test]
fn status_shows_a_person_what_the_daemon_is_doing() {
    let s = Scratch::new("metrics-status");
    let d = TestDaemon::start(
        &s,
        r#"
[[plugin]]
name = "words"
library = "wordfilter"
config = { words = ["spam"] }
"#,
    );
    d.add_user("cy", "Secret123", true);
    assert!(d.auth("cy", "Secret123").is_ok());
    assert!(d.auth("cy", "wrong").is_err());
    for _ in 0..3 {
        let _ = d.send(&post_save_before(json!({ "content": "hello" })));
    }
    // The last minute counts whole seconds only.
    std::thread::sleep(Duration::from_millis(1100));
    let st = d.client().get_status().unwrap();
    // The start's GetInfo, CreateUser, two logins, three posts (GetStatus itself is
    // not yet answered).
    assert_eq!(st.last_minute.requests, 7, "{st:?}");
    assert_eq!(st.last_minute.refused, 1, "{st:?}");
    assert_eq!(st.last_minute.failed, 0, "{st:?}");
    let words = st
        .plugins
        .iter()
        .find(|p| p.plugin.name == "words")
        .unwrap();
    assert_eq!(words.calls, 3);

    let out = flaskbbd(&["status", "--config", d.config.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("flaskbbd "), "{stdout}");
    assert!(stdout.contains(", generation 1, up "), "{stdout}");
    assert!(stdout.contains("requests ("), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("words "))
        .unwrap_or_else(|| panic!("no line for words:\n{stdout}"));
    let cols: Vec<_> = line.split_whitespace().collect();
    // wordfilter runs in a plugin host of its own (the default isolation).
    assert_eq!(&cols[..2], ["words", "running"], "{line}");
    assert!(cols[2].parse::<u32>().is_ok(), "{line}");
    assert_eq!(&cols[3..5], ["3", "0"], "{line}");

    let out = flaskbbd(&["metrics", "--config", d.config.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let m = parse(&stdout);
    assert_eq!(
        get(
            &m,
            "flaskbbd_hook_calls_total",
            &[
                "instance=words",
                "hook=flaskbb_event_post_save_before",
                "outcome=ok"
            ]
        ),
        3.0
    );
}

#[test]
fn a_bad_or_taken_metrics_address_is_refused_naming_the_key() {
    let s = Scratch::new("metrics-bad");
    let config = s.config(&format!(
        "[database]\nurl = {:?}\n[metrics]\nlisten = \"localhost:http\"\n",
        s.db_url()
    ));
    let out = flaskbbd(&["check", "--config", config.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("metrics.listen: \"localhost:http\" is not an IP address and port"),
        "{stderr}"
    );
    assert!(stderr.contains("flaskbb.toml:"), "{stderr}");

    // A port already taken: the daemon does not start, and says why.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = s.config(&format!(
        "[database]\nurl = {:?}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        s.db_url()
    ));
    let out = flaskbbd(&["serve", "--config", config.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "metrics.listen: cannot listen on 127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    // It left no socket behind.
    assert!(!s.path.join("run/flaskbbd.sock").exists());
}
