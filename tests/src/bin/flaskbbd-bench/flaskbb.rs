//! Against FlaskBB: the same authentication and event flows through FlaskBB's own
//! Python pipeline (FlaskBB 2.0.2, PluginAuthenticationManager and pluggy, in-process)
//! and through flaskbbd (its socket, FlaskBB mode on the very same database, so both
//! verify the same werkzeug pbkdf2 hash), on the same machine in the same run.

use std::{process::Command, time::Instant};

use flaskbbd_tests::{
    calls::{authenticate, post_save_before},
    flaskbb, Backend, Scratch,
};
use serde_json::{json, Value};

use flaskbbd::embed::{Chains, Context, EventAnswer, EventCall};
use flaskbbd_protocol::{methods::Request, types::Post};

use crate::{
    events::{five_filters, CONTENT},
    stats::{arg, median, release_daemon},
};

/// `flaskbbd-bench flaskbb [--rounds N]`.
pub(crate) fn against_flaskbb(args: &[String]) {
    let rounds = arg(args, "--rounds", 40) as usize;
    let s = Scratch::new("bench-flaskbb");
    let uri = flaskbb::uri_for(Backend::Sqlite, &s.path, || unreachable!());
    flaskbb::make_database(&s.path, &uri);
    let install = flaskbb::install();
    let script = s.write("flaskbb_pipeline.py", include_str!("flaskbb_pipeline.py"));
    let out = Command::new(install.join("venv/bin/python"))
        .arg(&script)
        .arg(s.path.join("forum/flaskbb.cfg"))
        .arg(rounds.to_string())
        .arg(CONTENT)
        .current_dir(s.path.join("forum"))
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
            five_filters("none")
        ),
    );
    let mut c = d.client();
    let mut time = |n: usize, call: &dyn Request, ok: bool| {
        let mut once = || {
            let t = Instant::now();
            let r = c.send(call);
            assert_eq!(r.is_ok(), ok, "{}: {r:?}", call.full_name());
            t.elapsed()
        };
        once();
        median((0..n).map(|_| once()).collect()).as_secs_f64()
    };
    let ours = [
        time(rounds, &authenticate("alice", "AlicePass123"), true),
        time(rounds, &authenticate("alice", "wrong"), false),
        time(
            rounds * 50,
            &post_save_before(json!({ "content": CONTENT })),
            true,
        ),
    ];
    // Leave alice as found.
    assert!(d.auth("alice", "AlicePass123").is_ok());
    // The same chain in this process, as pluggy's runs in FlaskBB's: no socket.
    let chains = Chains::load(&cfg).expect("the configuration builds");
    let req = chains.request(Context::new());
    let post = Post {
        content: CONTENT.into(),
        ..Default::default()
    };
    let once = || {
        let call = EventCall::PostSaveBefore { post: post.clone() };
        let t = Instant::now();
        let answer = chains.fire(&req, call).expect("saved");
        let elapsed = t.elapsed();
        assert!(matches!(answer, EventAnswer::Post(p) if p.content.contains(r"\*\*\*\*\*")));
        elapsed
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

/// `flaskbbd-bench bridge [--rounds N]`: a login and a topic post over HTTP, on a
/// plain FlaskBB and on one with the bridge (and the release daemon, built-ins only,
/// lockout off so that the repeated logins are all the same work), same database,
/// interleaved in one run (`bridges/flaskbb/testing/bench.py`).
pub(crate) fn bridge(args: &[String]) {
    let rounds = arg(args, "--rounds", 40);
    let release = flaskbbd_tests::build_release();
    let install = flaskbb::install();
    let s = Scratch::new("bench-bridge");
    let out = Command::new(install.join("venv/bin/python"))
        .args(["-m", "testing.bench", "--install"])
        .arg(&install)
        .arg("--dir")
        .arg(&s.path)
        .arg("--daemon")
        .arg(release.join("flaskbbd"))
        .arg("--plugins")
        .arg(&release)
        .args(["--rounds", &rounds.to_string()])
        .current_dir(flaskbb::bridge_dir())
        .output()
        .expect("FlaskBB's python runs");
    assert!(
        out.status.success(),
        "the bridge benchmark failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: Value = serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .expect("the script prints its figures"),
    )
    .expect("the figures are JSON");
    let m = &figures["median_ms"];
    println!("FlaskBB 2.0.2 over HTTP (its own server), plain vs with the bridge, same database, {rounds} interleaved rounds, medians:");
    println!(
        "{:<34} {:>12} {:>12} {:>16}",
        "request", "plain ms", "bridged ms", "bridged/plain"
    );
    for (name, key, ratio) in [
        ("login (POST /auth/login)", "login", "login_ratio"),
        ("new topic (POST /1/topic/new)", "post", "post_ratio"),
    ] {
        println!(
            "{name:<34} {:>12.2} {:>12.2} {:>16.2}",
            m[format!("{key}_plain")].as_f64().unwrap_or(f64::NAN),
            m[format!("{key}_bridged")].as_f64().unwrap_or(f64::NAN),
            figures[ratio].as_f64().unwrap_or(f64::NAN)
        );
    }
}
