//! The operator's CLI against real files and a real daemon.

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flaskbbd_tests::{
    daemon::{flaskbbd_with_stdin, TestDaemon},
    flaskbbd, flaskbbd_bin, text, Scratch,
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
            && l.contains("libscripted.so (plugin-abi 1.4.0)")),
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

/// `flaskbbd ARGS` started from a shell whose umask is 022 (a login shell's), with
/// `stdin`.
fn flaskbbd_umask_022(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new("sh")
        .args(["-c", "umask 022; exec \"$0\" \"$@\""])
        .arg(flaskbbd_bin())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("flaskbbd runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Every file and directory under `dir` (not `dir`), with its permission bits.
fn modes_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        found.push((
            entry.path(),
            meta.permissions().mode() & 0o777,
            meta.is_dir(),
        ));
        if meta.is_dir() {
            found.extend(modes_under(&entry.path()));
        }
    }
    found
}

#[test]
fn what_the_daemon_and_cli_create_is_private_under_umask_022() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let s = Scratch::new("cli-modes");
    // The state as packaged: the database, the plugin copies and an audit log under
    // var/; one audit instance isolated (its file made by the daemon before the
    // sandbox), one in the daemon's process (its file made by the plugin).
    let cfg = s.config(
        r#"[database]
url = "sqlite:///var/db/flaskbb.db"
[[plugin]]
name = "audit"
library = "audit"
config = { path = "var/log/audit.jsonl" }
sandbox = { write = ["var/log/audit.jsonl"] }
[[plugin]]
name = "audit_here"
library = "audit"
isolation = "none"
config = { path = "var/here/audit.jsonl" }
[[plugin]]
name = "totp"
library = "totp"
"#,
    );
    let cfg = cfg.to_str().unwrap();
    let out = flaskbbd_umask_022(&["migrate", "-c", cfg], "");
    assert!(out.status.success(), "{:?}", text(&out));
    let out = flaskbbd_umask_022(
        &[
            "user",
            "add",
            "ada",
            "--email",
            "ada@example.org",
            "--activated",
            "-c",
            cfg,
        ],
        "Secret123\n",
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let out = flaskbbd_umask_022(
        &["store", "set", "totp", "secret:1", "-c", cfg],
        "JBSWY3DPEHPK3PXP\n",
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let mut serve = std::process::Command::new("sh");
    serve
        .args(["-c", "umask 022; exec \"$0\" \"$@\""])
        .arg(flaskbbd_bin());
    let mut d = TestDaemon::spawn(&s, serve, s.path.join("flaskbb.toml"));
    d.wait_ready();
    // Asks for the second factor: an answer, and an audit line.
    let _ = d.auth("ada", "Secret123");
    // While it runs, with the write-ahead log and its index open.
    let found = modes_under(&s.path);
    for name in [
        "var/db/flaskbb.db",
        "var/db/flaskbb.db-wal",
        "var/db/flaskbb.db-shm",
        "var/log/audit.jsonl",
        "var/here/audit.jsonl",
        "var/plugin-cache",
    ] {
        assert!(
            found.iter().any(|(p, _, _)| *p == s.path.join(name)),
            "{name} was made: {found:?}"
        );
    }
    for (path, mode, dir) in &found {
        let name = path.strip_prefix(&s.path).unwrap().to_string_lossy();
        // Written by the test, not the daemon.
        if name == "flaskbb.toml" || name == "daemon.log" {
            continue;
        }
        if std::fs::symlink_metadata(path)
            .unwrap()
            .file_type()
            .is_socket()
        {
            assert_eq!(*mode, 0o660, "the socket keeps daemon.socket_mode");
            continue;
        }
        let want = match (*dir, name.as_ref()) {
            // Others the socket's mode lets connect may search its directory.
            (true, "run") => 0o710,
            (true, _) => 0o700,
            (false, _) => 0o600,
        };
        assert_eq!(*mode, want, "{name} is {mode:04o}, not {want:04o}");
    }
    d.stop();
    // A database made too open by hand is not changed, but `check` says so.
    let db = s.path.join("var/db/flaskbb.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = flaskbbd(&["check", "--no-database", "-c", cfg]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out).1.contains(&format!(
            "the database file {} is mode 0644: other local users can read it; run `chmod 0600 {}`",
            db.display(),
            db.display()
        )),
        "{:?}",
        text(&out)
    );
}

#[test]
fn migrate_prints_the_database_url_without_its_password() {
    if flaskbbd_tests::backend() != flaskbbd_tests::Backend::Postgres {
        return; // Only a PostgreSQL URL has a password (the cli_pg twin runs this).
    }
    let s = Scratch::new("cli-migrate-pw");
    // Trust authentication: the server ignores the password, the URL still has one.
    let url = s.db_url().replacen(
        "postgresql://postgres@",
        "postgresql://postgres:hunter2@",
        1,
    );
    assert!(url.contains(":hunter2@"), "{url}");
    let cfg = s.config(&format!("[database]\nurl = {url:?}\n"));
    for args in [&["migrate"][..], &["check"], &["user", "list"]] {
        let mut args = args.to_vec();
        args.extend(["-c", cfg.to_str().unwrap()]);
        let out = flaskbbd(&args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
        assert!(
            !stdout.contains("hunter2") && !stderr.contains("hunter2"),
            "{args:?}: {stdout}{stderr}"
        );
    }
    let out = flaskbbd(&["migrate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(
        text(&out).0,
        format!(
            "{}: database is up to date\n",
            url.replace(":hunter2@", ":***@")
        )
    );
}

#[test]
fn a_toml_error_shows_the_broken_line_without_its_password() {
    let s = Scratch::new("cli-toml-pw");
    let cfg = s.write(
        "flaskbb.toml",
        "[database]\nurl = \"postgresql://forum:hunter2@db.example/forum\"\n\
         [[plugin]]\nname = \"ldap\"\nlibrary = \"ldap\"\n[plugin.config]\n\
         url = \"ldap://ldap.example\"\nbind_password = \"hunter2 # the closing quote forgotten\n",
    );
    for command in ["check", "serve", "migrate"] {
        let out = flaskbbd(&[command, "-c", cfg.to_str().unwrap()]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
        // Where and what, as TOML says it, and the line with the value hidden.
        assert!(
            stderr.contains("flaskbb.toml: TOML parse error at line 8, column"),
            "{stderr}"
        );
        assert!(stderr.contains("8 | bind_password = \"***\n"), "{stderr}");
        assert!(stderr.contains("invalid basic string"), "{stderr}");
    }
    // A database URL broken on its own line keeps all but its password.
    let cfg = s.write(
        "flaskbb.toml",
        "[database]\nurl = \"postgresql://forum:hunter2@db.example/forum\" x\n",
    );
    let (_, stderr) = text(&flaskbbd(&["check", "-c", cfg.to_str().unwrap()]));
    assert!(
        !stderr.contains("hunter2")
            && stderr.contains("2 | url = \"postgresql://forum:***@db.example/forum\" x"),
        "{stderr}"
    );
}

#[test]
fn postgresql_errors_say_what_failed_and_check_tries_the_database() {
    let s = Scratch::new("cli-pg-errors");
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgresql://forum:hunter2@127.0.0.1:{port}/forum");
    let cfg = s.config(&format!(
        "[database]\nurl = {url:?}\nconnect_timeout_ms = 10000\n"
    ));
    let cfg = cfg.to_str().unwrap();
    for args in [&["check"][..], &["migrate"], &["serve"], &["user", "list"]] {
        let mut args = args.to_vec();
        args.extend(["-c", cfg]);
        let started = std::time::Instant::now();
        let out = flaskbbd(&args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        for said in [
            format!("PostgreSQL database postgresql://forum:***@127.0.0.1:{port}/forum"),
            format!("port {port} failed: Connection refused"),
            "start PostgreSQL, or correct the host and port in database.url".into(),
        ] {
            assert!(stderr.contains(&said), "{args:?}: {said:?} in {stderr}");
        }
        assert!(
            !stderr.contains("hunter2") && !stderr.contains("multiconnection"),
            "{args:?}: {stderr}"
        );
        // `check` fails at once; the others retry until the timeout (10 s).
        if args[0] == "check" {
            assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
        }
    }
    // Without the database, check passes and says it did not try.
    let out = flaskbbd(&["check", "--no-database", "-c", cfg]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out)
        .0
        .contains("database: not tried (--no-database)\n"));
    let help = text(&flaskbbd(&["check", "--help"])).0;
    assert!(help.contains("--no-database"), "{help}");

    // A database that does not exist, on a server that does.
    if flaskbbd_tests::backend() == flaskbbd_tests::Backend::Postgres {
        let url = format!("{}/fbd_no_such_database", flaskbbd_tests::pg_server());
        let cfg = s.config(&format!("[database]\nurl = {url:?}\n"));
        for command in ["check", "migrate"] {
            let (_, stderr) = text(&flaskbbd(&[command, "-c", cfg.to_str().unwrap()]));
            assert!(
                stderr.contains("database \"fbd_no_such_database\" does not exist")
                    && stderr.contains("createdb")
                    && !stderr.contains("multiconnection"),
                "{command}: {stderr}"
            );
        }
        // And one that does: connected, its migrations counted.
        let cfg = s.config(&format!("[database]\nurl = {:?}\n", s.db_url()));
        let out = flaskbbd(&["check", "-c", cfg.to_str().unwrap()]);
        assert!(
            text(&out).0.contains("connected, 2 of 2 migrations to run"),
            "{:?}",
            text(&out)
        );
        assert!(flaskbbd(&["migrate", "-c", cfg.to_str().unwrap()])
            .status
            .success());
        let out = flaskbbd(&["check", "-c", cfg.to_str().unwrap()]);
        assert!(
            text(&out).0.contains("connected, schema up to date"),
            "{:?}",
            text(&out)
        );
    }
}

#[test]
fn check_opens_an_sqlite_database_without_creating_one() {
    let s = Scratch::new("cli-check-sqlite");
    let cfg = s.config("[database]\nurl = \"sqlite:///data/forum.db\"\n");
    let cfg = cfg.to_str().unwrap();
    let out = flaskbbd(&["check", "-c", cfg]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out)
            .0
            .contains("does not exist yet; `flaskbbd migrate`"),
        "{:?}",
        text(&out)
    );
    assert!(!s.path.join("data").exists(), "check created nothing");
    assert!(flaskbbd(&["migrate", "-c", cfg]).status.success());
    let out = flaskbbd(&["check", "-c", cfg]);
    assert!(
        text(&out).0.contains(": connected, schema up to date"),
        "{:?}",
        text(&out)
    );
    // Not a database: named, and the check fails.
    std::fs::write(
        s.path.join("data/forum.db"),
        "not sqlite at all, not at all....",
    )
    .unwrap();
    let out = flaskbbd(&["check", "-c", cfg]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(text(&out).1.contains("forum.db"), "{:?}", text(&out));
}
