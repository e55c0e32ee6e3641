//! Interleaved bcrypt verification through the real daemon: concurrent logins share
//! a core's lanes (never more than `auth.bcrypt_lanes`) and each still gets its own
//! answer (right, wrong, unknown, every bcrypt prefix), every Authenticate costs
//! exactly one verification (the unknown user's dummy too), a `$2x$` hash is refused,
//! one client's logins one after another run alone, at once, and a reload's
//! `auth.bcrypt_lanes` applies to the next logins. The daemon logs
//! each hash at debug level (`bcrypt hash lanes=N alone=… …`, N the most lanes busy
//! beside it), which is what these tests read.

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flaskbbd_tests::calls::{authenticate, reload};
use std::sync::Barrier;

use bcrypt::Version;
use flaskbbd_tests::{
    daemon::{err, TestDaemon},
    Scratch,
};

const COST: u32 = 6;

fn daemon(s: &Scratch, workers: usize, lanes: usize) -> TestDaemon {
    TestDaemon::start(
        s,
        &format!(
            "[daemon]\nworkers = {workers}\n[auth]\nbcrypt_cost = {COST}\nbcrypt_lanes = {lanes}\nlockout = {{ enabled = false }}\n[log]\nfilter = \"info,flaskbbd::password::lanes=debug\"\n"
        ),
    )
}

/// Every hash the daemon logged, in order: the most lanes busy on its core while it
/// computed, and whether it ran alone on its request's thread.
fn hashes(d: &TestDaemon) -> Vec<(usize, bool)> {
    d.log_text()
        .lines()
        .filter(|l| l.contains("bcrypt hash"))
        .map(|l| {
            let field = |name: &str| -> &str {
                let at = l.find(&format!(" {name}=")).unwrap() + name.len() + 2;
                l[at..].split(' ').next().unwrap()
            };
            (field("lanes").parse().unwrap(), field("alone") == "true")
        })
        .collect()
}

/// Replaces `user`'s stored hash with one of `secret` in the given prefix.
fn set_hash(s: &Scratch, user: &str, secret: &str, version: Version) -> String {
    let hash = bcrypt::hash_with_salt(secret, COST, *b"flaskbbd-lanes!!")
        .unwrap()
        .format_for_version(version);
    s.sql(&format!(
        "UPDATE users SET password = '{hash}' WHERE username = '{user}'"
    ));
    hash
}

#[test]
fn concurrent_logins_share_lanes_and_each_gets_its_own_answer() {
    let s = Scratch::new("lanes-concurrent");
    let d = daemon(&s, 1, 3);
    let ids: Vec<i64> = ["ann", "bob", "cat", "dan"]
        .iter()
        .map(|u| d.add_user(u, &format!("pw-{u}"), true))
        .collect();
    set_hash(&s, "cat", "pw-cat", Version::TwoA);
    set_hash(&s, "dan", "pw-dan", Version::TwoY);
    let before = hashes(&d).len();
    assert_eq!(before, 0, "creating users hashes, it does not verify");

    // Right passwords (one per prefix), a wrong one, an unknown user.
    let cases: [(&str, &str, Option<i64>); 6] = [
        ("ann", "pw-ann", Some(ids[0])),
        ("bob", "pw-bob", Some(ids[1])),
        ("cat", "pw-cat", Some(ids[2])),
        ("dan", "pw-dan", Some(ids[3])),
        ("ann", "pw-bob", None),
        ("nobody", "pw-ann", None),
    ];
    let clients = 8;
    let rounds = 6;
    let start = Barrier::new(clients);
    std::thread::scope(|scope| {
        for c in 0..clients {
            let (d, start, cases) = (&d, &start, &cases);
            scope.spawn(move || {
                let mut client = d.client();
                start.wait();
                for r in 0..rounds {
                    let (who, secret, expect) = cases[(c + r) % cases.len()];
                    let got = client.send(&authenticate(who, secret));
                    match expect {
                        Some(id) => assert_eq!(got.unwrap()["user"]["id"], id, "{who}"),
                        None => {
                            let (name, params) = err(got);
                            assert_eq!(name, "org.flaskbb.Auth.AuthenticationFailed");
                            assert_eq!(params["reason"], "Wrong username or password.");
                        }
                    }
                }
            });
        }
    });
    let seen = hashes(&d);
    assert_eq!(
        seen.len(),
        clients * rounds,
        "one verification per login, unknown users included: {seen:?}"
    );
    assert!(
        seen.iter().any(|&(lanes, _)| lanes == 3),
        "eight clients on one core never filled its three lanes: {seen:?}"
    );
    assert!(
        seen.iter().all(|&(lanes, _)| (1..=3).contains(&lanes)),
        "more lanes than auth.bcrypt_lanes: {seen:?}"
    );
}

/// `clients` concurrent right-password logins for `user`, `rounds` each.
fn storm(d: &TestDaemon, user: &str, secret: &str, clients: usize, rounds: usize) {
    let start = Barrier::new(clients);
    std::thread::scope(|scope| {
        for _ in 0..clients {
            let start = &start;
            scope.spawn(move || {
                let mut client = d.client();
                start.wait();
                for _ in 0..rounds {
                    let got = client.send(&authenticate(user, secret));
                    assert!(got.is_ok(), "{got:?}");
                }
            });
        }
    });
}

#[test]
fn a_reload_changes_the_lanes_of_the_next_logins() {
    let s = Scratch::new("lanes-reload");
    let d = daemon(&s, 1, 3);
    d.add_user("ann", "pw-ann", true);
    storm(&d, "ann", "pw-ann", 6, 4);
    let before = hashes(&d);
    assert!(before.iter().any(|&(lanes, _)| lanes == 3), "{before:?}");

    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        text.replace("bcrypt_lanes = 3", "bcrypt_lanes = 1"),
    )
    .unwrap();
    d.send(&reload()).unwrap();
    storm(&d, "ann", "pw-ann", 6, 4);
    let after = &hashes(&d)[before.len()..];
    assert_eq!(after.len(), 24, "{after:?}");
    assert!(
        after.iter().all(|&(lanes, _)| lanes == 1),
        "a hash shared its core after the reload set one lane: {after:?}"
    );
    // A bad value is refused, naming the key, and the last good one stays.
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        text.replace("bcrypt_lanes = 1", "bcrypt_lanes = 9"),
    )
    .unwrap();
    let (_, params) = err(d.send(&reload()));
    assert!(
        params
            .to_string()
            .contains("auth.bcrypt_lanes: must be between 1 and 4"),
        "{params}"
    );
    storm(&d, "ann", "pw-ann", 4, 2);
    let last = &hashes(&d)[before.len() + 24..];
    assert!(last.iter().all(|&(lanes, _)| lanes == 1), "{last:?}");
}

#[test]
fn one_client_after_another_runs_alone_at_once() {
    let s = Scratch::new("lanes-alone");
    let d = daemon(&s, 2, 2);
    d.add_user("ann", "pw-ann", true);
    let mut client = d.client();
    for i in 0..6 {
        let secret = if i % 2 == 0 { "pw-ann" } else { "wrong" };
        let got = client.send(&authenticate("ann", secret));
        assert_eq!(got.is_ok(), i % 2 == 0, "{got:?}");
    }
    let seen = hashes(&d);
    // Alone, at once on the request's own thread.
    assert_eq!(seen, vec![(1, true); 6]);
}

#[test]
fn a_2x_hash_is_refused_with_the_usual_answer_after_the_usual_work() {
    let s = Scratch::new("lanes-2x");
    let d = daemon(&s, 1, 2);
    d.add_user("old", "pw-old", true);
    let hash = set_hash(&s, "old", "pw-old", Version::TwoB);
    s.sql(&format!(
        "UPDATE users SET password = '{}' WHERE username = 'old'",
        hash.replacen("$2b$", "$2x$", 1)
    ));
    let (name, params) = err(d.auth("old", "pw-old"));
    assert_eq!(name, "org.flaskbb.Auth.AuthenticationFailed");
    assert_eq!(params["reason"], "Wrong username or password.");
    // The dummy verification ran (equal time), and the log says why, without the hash.
    assert_eq!(hashes(&d).len(), 1);
    let log = d.log_text();
    assert!(
        log.contains("a stored password hash ($2x) cannot be checked: $2x$ hashes were made with crypt_blowfish's sign-extension bug"),
        "{log}"
    );
    assert!(
        !log.contains(&hash[29..]),
        "the hash's checksum is in the log"
    );
}
