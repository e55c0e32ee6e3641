//! Against FlaskBB: the same authentication and event flows through FlaskBB's own
//! Python pipeline (FlaskBB 2.0.2, PluginAuthenticationManager and pluggy, in-process)
//! and through flaskbbd (its socket, FlaskBB mode on the very same database, so both
//! verify the same werkzeug pbkdf2 hash), on the same machine in the same run.

use std::{process::Command, time::Instant};

use flaskbbd_tests::{flaskbb, Backend, Scratch};
use serde_json::{json, Value};

use flaskbbd::{proto::Context, proto::Post, request::Request};

use crate::{
    events::{five_filters, CONTENT},
    stats::{arg, median, release_daemon},
};

/// `flaskbbd-bench flaskbb [--rounds N]`.
pub fn against_flaskbb(args: &[String]) {
    let rounds = arg(args, "--rounds", 40) as usize;
    let s = Scratch::new("bench-flaskbb");
    let uri = flaskbb::uri_for(Backend::Sqlite, &s.path, || unreachable!());
    flaskbb::make_database(&uri);
    let install = flaskbb::install();
    let script = s.write("flaskbb_pipeline.py", include_str!("flaskbb_pipeline.py"));
    let out = Command::new(install.join("venv/bin/python"))
        .arg(&script)
        .arg(install.join("flaskbb.cfg"))
        .arg(rounds.to_string())
        .arg(CONTENT)
        .current_dir(&install)
        .output()
        .expect("FlaskBB's python runs");
    assert!(
        out.status.success(),
        "FlaskBB's pipeline failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: Value = serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .expect("the script prints its figures"),
    )
    .unwrap();

    let url = uri
        .replacen("sqlite:///", "sqlite:////", 1)
        .replace("sqlite://///", "sqlite:////");
    let (d, cfg) = release_daemon(
        &s,
        &format!(
            "[database]\nurl = {url:?}\nschema = \"flaskbb\"\n[auth]\nbcrypt_cost = 10\nrehash_on_login = false\nlockout = {{ enabled = false }}\n[log]\nfilter = \"warn\"\n{}",
            five_filters()
        ),
    );
    let mut c = d.client();
    let mut time = |n: usize, method: &str, params: Value, ok: bool| {
        let mut once = || {
            let t = Instant::now();
            let r = c.call(method, params.clone());
            assert_eq!(r.is_ok(), ok, "{method}: {r:?}");
            t.elapsed()
        };
        once();
        median((0..n).map(|_| once()).collect()).as_secs_f64()
    };
    let ours = [
        time(
            rounds,
            "org.flaskbb.Auth.Authenticate",
            json!({ "identifier": "alice", "secret": "AlicePass123" }),
            true,
        ),
        time(
            rounds,
            "org.flaskbb.Auth.Authenticate",
            json!({ "identifier": "alice", "secret": "wrong" }),
            false,
        ),
        time(
            rounds * 50,
            "org.flaskbb.Events.PostSaveBefore",
            json!({ "post": { "content": CONTENT } }),
            true,
        ),
    ];
    // Leave alice as found.
    assert!(d.auth("alice", "AlicePass123").is_ok());
    // The same chain in this process, as pluggy's runs in FlaskBB's: no socket.
    let (g, store) = flaskbbd_tests::generation(&cfg);
    let req = Request::new(store, Context::new());
    let post = Post {
        content: CONTENT.into(),
        ..Default::default()
    };
    let once = || {
        let t = Instant::now();
        let p = flaskbbd::events::post_save_before(&g, &req, &post).expect("saved");
        assert!(p.content.contains("*****"));
        t.elapsed()
    };
    once();
    let in_process = median((0..rounds * 50).map(|_| once()).collect()).as_secs_f64();
    let theirs = [
        py["right"].as_f64().unwrap(),
        py["wrong"].as_f64().unwrap(),
        py["post_save_before"].as_f64().unwrap(),
    ];
    println!("FlaskBB 2.0.2 in-process (Python 3.11, pluggy) vs flaskbbd through its socket, one client, same database, same pbkdf2:sha256 hash:");
    println!(
        "{:<42} {:>14} {:>14} {:>14}",
        "flow", "FlaskBB µs", "flaskbbd µs", "FlaskBB/ours"
    );
    let ours = [ours[0], ours[1], ours[2], in_process];
    let theirs = [theirs[0], theirs[1], theirs[2], theirs[2]];
    for (i, name) in [
        "Authenticate, right password",
        "Authenticate, wrong password",
        "PostSaveBefore through 5 word filters",
        "  the same, flaskbbd's chain in-process",
    ]
    .iter()
    .enumerate()
    {
        println!(
            "{name:<42} {:>14.1} {:>14.1} {:>14.2}",
            theirs[i] * 1e6,
            ours[i] * 1e6,
            theirs[i] / ours[i]
        );
    }
}
