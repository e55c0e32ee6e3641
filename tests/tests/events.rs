//! The five event methods through the real daemon, with chains that change and
//! reject the post.

use flaskbbd_tests::calls::{
    post_save_after, post_save_before, topic_save_after, topic_save_before, user_registered,
};
use flaskbbd_tests::{
    daemon::{err, TestDaemon},
    flaskbbd_bin, trace, trace_calls, Scratch,
};
use serde_json::json;

const CHAIN: &str = r#"
[[plugin]]
name = "sign"
library = "scripted"
config = { trace = "trace.jsonl", on = { flaskbb_event_post_save_before = { action = "append", text = " -- signed" }, flaskbb_event_topic_save_before = { action = "append", text = " (edited)" } } }
sandbox = { write = ["trace.jsonl"] }
[[plugin]]
name = "tag"
library = "scripted"
config = { trace = "trace.jsonl", on = { flaskbb_event_post_save_before = { action = "append", text = " #tag" } } }
sandbox = { write = ["trace.jsonl"] }
"#;

#[test]
fn post_save_before_answers_the_post_as_the_chain_left_it() {
    let s = Scratch::new("events-post");
    let d = TestDaemon::start(&s, CHAIN);
    let post = json!({ "content": "Hello", "topic_id": 3, "username": "alice" });
    let r = d.send(&post_save_before(&post)).unwrap();
    // "tag" registered last runs first (pluggy), then "sign" sees tag's post.
    assert_eq!(
        r["post"],
        json!({ "content": "Hello #tag -- signed", "topic_id": 3, "username": "alice" })
    );
    let t = trace(&s, "trace.jsonl");
    assert_eq!(t[0]["instance"], "tag");
    assert_eq!(t[1]["args"]["post"]["content"], "Hello #tag");
}

#[test]
fn topic_save_before_changes_the_topic() {
    let s = Scratch::new("events-topic");
    let d = TestDaemon::start(&s, CHAIN);
    let r = d
        .send(&topic_save_before(
            json!({ "title": "T", "content": "Body", "forum_id": 1 }),
        ))
        .unwrap();
    assert_eq!(
        r["topic"],
        json!({ "title": "T", "content": "Body (edited)", "forum_id": 1 })
    );
}

#[test]
fn a_rejected_save_names_the_instance_and_reason() {
    let s = Scratch::new("events-reject");
    let d = TestDaemon::start(
        &s,
        &format!(
            "{CHAIN}[[plugin]]\nname = \"spam\"\nlibrary = \"scripted\"\nconfig = {{ trace = \"trace.jsonl\", on = {{ flaskbb_event_post_save_before = {{ action = \"reject\", reason = \"Looks like spam.\" }} }} }}\nsandbox = {{ write = [\"trace.jsonl\"] }}\n[plugin.hooks.flaskbb_event_post_save_before]\ntier = \"trylast\"\n"
        ),
    );
    let (name, params) = err(d.send(&post_save_before(json!({ "content": "buy now" }))));
    assert_eq!(name, "org.flaskbb.Events.Rejected");
    assert_eq!(
        params,
        json!({ "plugin": "spam", "reason": "Looks like spam." })
    );
    assert_eq!(trace_calls(&s, "trace.jsonl").last().unwrap().0, "spam");
}

#[test]
fn after_hooks_and_user_registered_run_every_impl() {
    let s = Scratch::new("events-after");
    let d = TestDaemon::start(&s, CHAIN);
    let post = json!({ "id": 9, "content": "x" });
    assert_eq!(d.send(&post_save_after(&post, true)).unwrap(), json!({}));
    let topic = json!({ "id": 2, "title": "t" });
    assert_eq!(d.send(&topic_save_after(&topic, false)).unwrap(), json!({}));
    assert_eq!(d.send(&user_registered("newbie")).unwrap(), json!({}));
    let calls = trace_calls(&s, "trace.jsonl");
    let hooks: Vec<(&str, &str)> = calls
        .iter()
        .map(|(i, h)| (i.as_str(), h.as_str()))
        .collect();
    assert_eq!(
        hooks,
        [
            ("tag", "flaskbb_event_post_save_after"),
            ("sign", "flaskbb_event_post_save_after"),
            ("tag", "flaskbb_event_topic_save_after"),
            ("sign", "flaskbb_event_topic_save_after"),
            ("tag", "flaskbb_event_user_registered"),
            ("sign", "flaskbb_event_user_registered"),
        ]
    );
    let t = trace(&s, "trace.jsonl");
    assert_eq!(
        t[0]["args"],
        json!({ "post": { "id": 9, "content": "x" }, "is_new": true })
    );
    assert_eq!(t[4]["args"], json!({ "username": "newbie" }));
}

#[test]
fn a_failing_event_plugin_is_an_internal_error_naming_it() {
    let s = Scratch::new("events-error");
    let d = TestDaemon::start(
        &s,
        "[[plugin]]\nname = \"bad\"\nlibrary = \"scripted\"\nconfig = { on = { flaskbb_event_user_registered = { action = \"error\", message = \"mail server down\" } } }\n",
    );
    let (name, params) = err(d.send(&user_registered("u")));
    assert_eq!(name, "org.flaskbb.Events.InternalError");
    assert_eq!(
        params["message"],
        "instance \"bad\" failed in flaskbb_event_user_registered: mail server down"
    );
}

/// A daemon on `extra` whose log level is its configuration's, whatever RUST_LOG the
/// tests run with (it would win over `log.filter`).
fn without_rust_log(s: &Scratch, extra: &str) -> TestDaemon {
    let mut command = std::process::Command::new(flaskbbd_bin());
    command.env_remove("RUST_LOG");
    let config = s.config(&format!("[database]\nurl = {:?}\n{extra}", s.db_url()));
    let mut d = TestDaemon::spawn(s, command, config);
    d.wait_ready();
    d
}

#[test]
fn events_answered_ok_log_at_debug_and_refusals_and_logins_at_info() {
    let spam = "[[plugin]]\nname = \"spam\"\nlibrary = \"scripted\"\nconfig = { on = { flaskbb_event_topic_save_before = { action = \"reject\", reason = \"Looks like spam.\" } } }\n";
    let ok_line = "method=\"org.flaskbb.Events.PostSaveBefore\" outcome=\"ok\"";
    let calls = |d: &TestDaemon| {
        d.send(&post_save_before(json!({ "content": "Hello" })))
            .unwrap();
        let (name, _) = err(d.send(&topic_save_before(json!({ "title": "Buy now" }))));
        assert_eq!(name, "org.flaskbb.Events.Rejected");
        let (name, _) = err(d.auth("nobody", "wrong"));
        assert_eq!(name, "org.flaskbb.Auth.AuthenticationFailed");
    };
    // At the shipped level (info, whatever RUST_LOG the tests run with): the forum's
    // routine traffic makes no line each.
    let s = Scratch::new("events-log-info");
    let d = without_rust_log(&s, spam);
    calls(&d);
    let log = d.log_text();
    assert!(!log.contains(ok_line), "{log}");
    assert!(
        log.contains(
            "method=\"org.flaskbb.Events.TopicSaveBefore\" outcome=\"org.flaskbb.Events.Rejected\""
        ),
        "{log}"
    );
    assert!(
        log.contains("method=\"org.flaskbb.Auth.Authenticate\" outcome=\"org.flaskbb.Auth.AuthenticationFailed\""),
        "{log}"
    );
    // At debug (whatever RUST_LOG says), every request has its line.
    let s = Scratch::new("events-log-debug");
    let d = without_rust_log(&s, &format!("[log]\nfilter = \"debug\"\n{spam}"));
    calls(&d);
    assert!(d.log_text().contains(ok_line), "{}", d.log_text());
}
