//! The operator's CLI against real files and a real daemon.

use flaskbbd_tests::{
    daemon::{flaskbbd_with_stdin, TestDaemon},
    flaskbbd, text, Scratch,
};

#[test]
fn user_add_then_auth_succeeds_and_a_wrong_password_fails_with_flaskbbs_message() {
    let s = Scratch::new("cli-auth");
    let d = TestDaemon::start(&s, "");
    let cfg = d.config.to_str().unwrap();
    let out = flaskbbd_with_stdin(
        &[
            "user",
            "add",
            "alice",
            "--email",
            "alice@example.org",
            "--activated",
            "-c",
            cfg,
        ],
        "Secret123\n",
    );
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).0, "created user alice (id 1)\n");
    let out = flaskbbd_with_stdin(&["auth", "alice", "-c", cfg], "Secret123\n");
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        text(&out).0,
        "authenticated: alice (id 1, groups: Member)\n"
    );
    let out = flaskbbd_with_stdin(&["auth", "alice", "-c", cfg], "wrong\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out).1,
        "AuthenticationFailed: Wrong username or password.\n"
    );
    let out = flaskbbd(&["user", "list", "-c", cfg]);
    let (stdout, _) = text(&out);
    // One failure, no lock: id, username, email, activated, failures, lock, groups.
    let row: Vec<&str> = stdout.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row,
        ["1", "alice", "alice@example.org", "yes", "1", "-", "Member"],
        "{stdout}"
    );
}

#[test]
fn user_commands_change_the_store() {
    let s = Scratch::new("cli-user");
    let cfg = s.config(&format!("[database]\nurl = {:?}\n", s.db_url()));
    let cfg = cfg.to_str().unwrap();
    assert!(flaskbbd_with_stdin(
        &[
            "user",
            "add",
            "bob",
            "--email",
            "bob@example.org",
            "-c",
            cfg
        ],
        "Pw123456\n"
    )
    .status
    .success());
    let out = flaskbbd_with_stdin(
        &[
            "user",
            "add",
            "bob",
            "--email",
            "other@example.org",
            "-c",
            cfg,
        ],
        "Pw123456\n",
    );
    assert!(!out.status.success());
    assert!(
        text(&out)
            .1
            .contains("a user with username \"bob\" or that email already exists"),
        "{:?}",
        text(&out)
    );
    assert_eq!(
        text(&flaskbbd(&["user", "activate", "bob", "-c", cfg])).0,
        "bob activated\n"
    );
    assert_eq!(
        text(&flaskbbd(&["user", "ban", "bob@example.org", "-c", cfg])).0,
        "bob banned\n"
    );
    let list = text(&flaskbbd(&["user", "list", "-c", cfg])).0;
    assert!(list.contains("yes") && list.contains("Banned"), "{list}");
    assert!(
        flaskbbd_with_stdin(&["user", "passwd", "bob", "-c", cfg], "NewPass1\n")
            .status
            .success()
    );
    let out = flaskbbd(&["user", "activate", "nobody", "-c", cfg]);
    assert!(
        text(&out)
            .1
            .contains("no user \"nobody\" (by username or email); see `flaskbbd user list`"),
        "{:?}",
        text(&out)
    );
    let out = flaskbbd_with_stdin(&["user", "passwd", "bob", "-c", cfg], &"x".repeat(73));
    assert!(!out.status.success());
    assert!(
        text(&out)
            .1
            .contains("longer than bcrypt's 72 bytes (73 bytes)"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn migrate_creates_the_database_and_is_idempotent() {
    let s = Scratch::new("cli-migrate");
    let cfg = s.config("[database]\nurl = \"sqlite:///data/forum.db\"\n");
    for _ in 0..2 {
        let out = flaskbbd(&["migrate", "-c", cfg.to_str().unwrap()]);
        assert!(out.status.success(), "{:?}", text(&out));
        assert_eq!(
            text(&out).0,
            "sqlite:///data/forum.db: database is up to date\n"
        );
    }
    assert!(s.path.join("data/forum.db").exists());
}

#[test]
fn errors_name_what_failed_and_what_to_do() {
    let s = Scratch::new("cli-errors");
    let out = flaskbbd(&["check", "-c", s.path.join("missing.toml").to_str().unwrap()]);
    assert!(
        text(&out)
            .1
            .contains("missing.toml: cannot read the configuration: No such file or directory"),
        "{:?}",
        text(&out)
    );
    let cfg = s.config("");
    let out = flaskbbd_with_stdin(&["auth", "alice", "-c", cfg.to_str().unwrap()], "x\n");
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("cannot reach the daemon at ")
            && stderr.contains("is `flaskbbd serve` running with this configuration?"),
        "{stderr}"
    );
    let out = flaskbbd(&["hooks", "-c", cfg.to_str().unwrap()]);
    assert!(
        text(&out).1.contains("cannot reach the daemon"),
        "{:?}",
        text(&out)
    );
    let out = flaskbbd_with_stdin(
        &[
            "auth",
            "a",
            "--context",
            "novalue",
            "-c",
            cfg.to_str().unwrap(),
        ],
        "",
    );
    assert!(
        text(&out)
            .1
            .contains("--context \"novalue\": write KEY=VALUE"),
        "{:?}",
        text(&out)
    );
    let bad = s.write("bad.toml", "[database]\nurl = \"mysql://x\"\n");
    let out = flaskbbd(&["serve", "-c", bad.to_str().unwrap()]);
    assert!(
        text(&out)
            .1
            .contains("bad.toml:2: database.url: must start with sqlite://"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn hooks_and_plugins_ask_the_running_daemon() {
    let s = Scratch::new("cli-hooks");
    let d = TestDaemon::start(&s, "[[plugin]]\nname = \"ex\"\nlibrary = \"scripted\"\n");
    let cfg = d.config.to_str().unwrap();
    let hooks = text(&flaskbbd(&["hooks", "-c", cfg])).0;
    let check = text(&flaskbbd(&["check", "-c", cfg])).0;
    assert!(
        check.starts_with(&hooks),
        "hooks and check print the same chains:\n{hooks}\n---\n{check}"
    );
    let plugins = text(&flaskbbd(&["plugins", "-c", cfg])).0;
    assert!(
        plugins.lines().any(|l| l.starts_with("ex ")
            && l.contains("enabled")
            && l.contains("libscripted.so (plugin-abi 1.3.0)")),
        "{plugins}"
    );
    assert!(
        plugins
            .lines()
            .any(|l| l.starts_with("lockout ") && l.contains("builtin")),
        "{plugins}"
    );
}

#[test]
fn commands_exit_cleanly_every_time() {
    // Regression: on PostgreSQL, OpenSSL's exit handler freed its state while the
    // connection pool's threads were mid-handshake; about one exit in six crashed.
    let s = Scratch::new("cli-exit");
    let cfg = s.config(&format!(
        "[database]\nurl = {:?}\n[[plugin]]\nname = \"totp\"\nlibrary = \"totp\"\n",
        s.db_url()
    ));
    let cfg = cfg.to_str().unwrap();
    for i in 0..40 {
        let out = flaskbbd_with_stdin(
            &["store", "set", "totp", &format!("k{i}"), "-c", cfg],
            "v\n",
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "run {i}: {:?} {:?}",
            out.status,
            text(&out)
        );
    }
}
