//! The daemon on a database FlaskBB made itself (`database.schema = "flaskbb"`):
//! FlaskBB's users log in with their werkzeug hashes, and FlaskBB's columns keep
//! their meaning.

use flaskbbd_tests::calls::{create_user, get_user, set_password};
use flaskbbd_tests::{
    backend,
    daemon::{err, TestDaemon},
    flaskbb, Scratch,
};
use serde_json::json;

const WRONG: &str = "Wrong username or password.";

fn failed(reason: &str) -> (String, serde_json::Value) {
    (
        "org.flaskbb.Auth.AuthenticationFailed".into(),
        json!({ "reason": reason }),
    )
}

/// A FlaskBB-made database and a daemon on it.
fn forum(s: &Scratch, auth: &str) -> (TestDaemon, String) {
    let uri = flaskbb::uri_for(backend(), &s.path, || s.db_url());
    flaskbb::make_database(&s.path, &uri);
    let url = uri
        .replacen("sqlite:///", "sqlite:////", 1)
        .replace("sqlite://///", "sqlite:////");
    // FlaskBB's hashes (pbkdf2, 600000 rounds when the daemon writes one) take a
    // core for a while: on a machine busy with the other tests, past the default
    // 5 s hook timeout. This file tests what is accepted, not how fast.
    let d = TestDaemon::start_with(
        s,
        s.config(&format!(
            "[daemon]\nhook_timeout_ms = 60000\n[database]\nurl = {url:?}\nschema = \"flaskbb\"\n[auth]\nbcrypt_cost = 4\n{auth}"
        )),
    );
    (d, url)
}

#[test]
fn flaskbbs_users_log_in_and_its_columns_keep_their_meaning() {
    let s = Scratch::new("flaskbb-db");
    let (d, url) = forum(&s, "");
    let sql = |q: &str| Scratch::sql_on(&url, q);
    let admin = d.auth("admin", "AdminPass123").unwrap()["user"].clone();
    assert_eq!(
        (admin["username"].clone(), admin["groups"].clone()),
        (json!("admin"), json!(["Administrator"]))
    );
    assert_eq!(
        d.auth("alice@example.org", "AlicePass123").unwrap()["user"]["groups"],
        json!(["Member"])
    );
    // Wrong password: FlaskBB's message, FlaskBB's counter.
    assert_eq!(err(d.auth("alice", "nope")), failed(WRONG));
    assert_eq!(err(d.auth("nobody", "nope")), failed(WRONG));
    let alice = d.user("alice");
    assert_eq!(alice["login_attempts"], 1);
    assert!(alice["last_failed_login"].as_str().is_some());
    // users.activated: unactivated users are refused (and counted).
    sql("UPDATE users SET activated = false WHERE username = 'alice'");
    assert_eq!(
        err(d.auth("alice", "AlicePass123")),
        failed("In order to use your account you have to activate it through the link we have sent to your email address.")
    );
    sql("UPDATE users SET activated = true WHERE username = 'alice'");
    // groups.banned: a user whose group is banned is refused.
    sql("UPDATE users SET primary_group_id = (SELECT id FROM groups WHERE banned = true) WHERE username = 'alice'");
    assert_eq!(
        err(d.auth("alice", "AlicePass123")),
        failed("Your account has been banned.")
    );
    sql("UPDATE users SET primary_group_id = (SELECT id FROM groups WHERE name = 'Member') WHERE username = 'alice'");
    // The lockout keeps its counts in a table it adds to FlaskBB's database, and by
    // default answers a locked login as a wrong password.
    for _ in 0..5 {
        let _ = d.auth("alice", "nope");
    }
    assert_eq!(err(d.auth("alice", "AlicePass123")), failed(WRONG));
    let lock = d.send(&get_user("alice")).unwrap()["lock"].clone();
    assert_eq!(
        (
            lock["addresses"][0]["address"].clone(),
            lock["addresses"][0]["locked"].clone()
        ),
        (json!("unknown"), json!(true)),
        "{lock}"
    );
    // The daemon never migrated FlaskBB's database: FlaskBB's alembic version is there
    // and no diesel bookkeeping appeared.
    let tables = flaskbb::python(&format!(
        "import sqlalchemy as sa; e = sa.create_engine({:?}); print(sa.inspect(e).get_table_names())",
        d_url(&s)
    ));
    assert!(
        tables.contains("'alembic_version'") && !tables.contains("__diesel_schema_migrations"),
        "{tables}"
    );
    assert!(tables.contains("'flaskbbd_plugin_registry'"), "{tables}");
}

/// Python in FlaskBB's environment, on the test's database: `e` is the engine,
/// `check` werkzeug's check_password_hash (FlaskBB's own password check).
fn flaskbb_py(s: &Scratch, code: &str) -> String {
    flaskbb::python(&format!(
        "import sqlalchemy as sa\nfrom werkzeug.security import check_password_hash as check, generate_password_hash as gen\n\
         e = sa.create_engine({:?})\n{code}",
        d_url(s)
    ))
}

#[test]
fn werkzeug_hashes_verify_and_a_rehash_leaves_flaskbbs_own_login_working() {
    let s = Scratch::new("flaskbb-rehash");
    let (d, url) = forum(&s, "rehash_on_login = true\n");
    // A user with a hash from a current werkzeug (scrypt); FlaskBB 2.0.2's 120-character
    // column is too narrow for it, as FlaskBB 2.2's is not: widen it as 2.2 has it.
    let scrypt = flaskbb::werkzeug_hash("CarolPass123");
    assert!(scrypt.starts_with("scrypt:"), "{scrypt}");
    if backend() == flaskbbd_tests::Backend::Postgres {
        Scratch::sql_on(
            &url,
            "ALTER TABLE users ALTER COLUMN password TYPE VARCHAR(512)",
        );
    }
    Scratch::sql_on(&url, &format!(
        "INSERT INTO users (username, email, password, date_joined, login_attempts, activated, primary_group_id) \
         VALUES ('carol', 'carol@example.org', '{scrypt}', '2024-01-01 00:00:00', 0, true, 4)"
    ));
    assert_eq!(
        d.auth("carol", "CarolPass123").unwrap()["user"]["username"],
        "carol"
    );
    assert_eq!(err(d.auth("carol", "carolpass123")), failed(WRONG));
    assert!(d.auth("admin", "AdminPass123").is_ok());
    // Both logins rehashed to bcrypt, into the daemon's own wide column; FlaskBB's
    // column is untouched and FlaskBB's own check still accepts both passwords.
    let ours = flaskbb_py(
        &s,
        "print(' '.join(r[0][:4] + ':' + str(len(r[0])) for r in e.execute(\
        \"SELECT hash FROM flaskbbd_password_hashes ORDER BY user_id\")))",
    );
    assert_eq!(ours, "$2b$:60 $2b$:60");
    // (FlaskBB 2.0.2's werkzeug cannot read scrypt hashes at all, FlaskBB 2.2's can:
    // carol's is checked to be exactly as it was.)
    let flaskbb_checks = flaskbb_py(
        &s,
        "u = dict(e.execute(\"SELECT username, password FROM users\").fetchall())\n\
         print(check(u['admin'], 'AdminPass123'), u['carol'])",
    );
    assert_eq!(flaskbb_checks, format!("True {scrypt}"));
    assert!(d.auth("carol", "CarolPass123").is_ok());
    assert!(d.auth("admin", "AdminPass123").is_ok());
    // A password changed in FlaskBB wins over the daemon's older bcrypt hash.
    flaskbb_py(
        &s,
        "e.execute(\"UPDATE users SET password = %s WHERE username = 'admin'\" \
        .replace('%s', \"'\" + gen('NewAdminPass456') + \"'\"))",
    );
    assert_eq!(err(d.auth("admin", "AdminPass123")), failed(WRONG));
    assert!(d.auth("admin", "NewAdminPass456").is_ok());
}

#[test]
fn passwords_set_through_the_daemon_are_ones_flaskbb_verifies() {
    let s = Scratch::new("flaskbb-passwd");
    let (d, _) = forum(&s, "");
    let id = d.user("alice")["id"].clone();
    d.send(&set_password(id.as_i64().unwrap(), "Changed789"))
        .unwrap();
    let alice = d.auth("alice", "Changed789");
    assert!(alice.is_ok(), "{alice:?}\n{}", d.log_text());
    d.send(&create_user(
        "dora",
        "dora@example.org",
        "DoraPass123",
        true,
    ))
    .unwrap();
    let dora = d.auth("dora", "DoraPass123");
    assert!(dora.is_ok(), "{dora:?}\n{}", d.log_text());
    let checks = flaskbb_py(
        &s,
        "u = dict(e.execute(\"SELECT username, password FROM users\").fetchall())\n\
         print(check(u['alice'], 'Changed789'), check(u['dora'], 'DoraPass123'))",
    );
    assert_eq!(checks, "True True");
}

#[test]
fn users_the_daemon_creates_carry_the_defaults_flaskbb_keeps_in_python() {
    let s = Scratch::new("flaskbb-defaults");
    let (d, _) = forum(&s, "");
    d.add_user("dora", "DoraPass123", true);
    // FlaskBB's model fills these in Python; its tables have no defaults. With a NULL
    // post_count FlaskBB failed on the user's first post, after committing the topic.
    let row = flaskbb_py(
        &s,
        "r = e.execute(\"SELECT post_count, language, lastseen IS NOT NULL FROM users WHERE username = 'dora'\").fetchone()\n\
         print(r[0], r[1], bool(r[2]))",
    );
    assert_eq!(row, "0 en True");
}

/// The database URL in SQLAlchemy's spelling, for FlaskBB's Python.
fn d_url(s: &Scratch) -> String {
    flaskbb::uri_for(backend(), &s.path, || s.db_url())
}

#[test]
fn flaskbbs_own_password_check_still_accepts_what_the_daemon_did_not_rehash() {
    let s = Scratch::new("flaskbb-accepts");
    let (d, _) = forum(&s, "");
    assert!(d.auth("alice", "AlicePass123").is_ok());
    // FlaskBB's own check (werkzeug) on the hash the daemon verified and left in place.
    let ok = flaskbb::python(&format!(
        "import sqlalchemy as sa; from werkzeug.security import check_password_hash as c; \
         e = sa.create_engine({:?}); h = e.execute(\"SELECT password FROM users WHERE username = 'alice'\").scalar(); \
         print(c(h, 'AlicePass123'))",
        d_url(&s)
    ));
    assert_eq!(ok, "True");
}

#[test]
fn our_own_schema_refuses_a_flaskbb_database_and_flaskbb_schema_refuses_ours() {
    let s = Scratch::new("flaskbb-schema-guard");
    let uri = flaskbb::uri_for(backend(), &s.path, || s.db_url());
    flaskbb::make_database(&s.path, &uri);
    let url = uri
        .replacen("sqlite:///", "sqlite:////", 1)
        .replace("sqlite://///", "sqlite:////");
    let cfg = s.config(&format!("[database]\nurl = {url:?}\n"));
    let out = flaskbbd_tests::flaskbbd(&["migrate", "-c", cfg.to_str().unwrap()]);
    let (_, stderr) = flaskbbd_tests::text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("was made by FlaskBB: set database.schema = \"flaskbb\""),
        "{stderr}"
    );
    let s2 = Scratch::new("flaskbb-schema-guard-2");
    let cfg = s2.config(&format!(
        "[database]\nurl = {:?}\nschema = \"flaskbb\"\n",
        s2.db_url()
    ));
    let out = flaskbbd_tests::flaskbbd(&["migrate", "-c", cfg.to_str().unwrap()]);
    let (_, stderr) = flaskbbd_tests::text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("database.schema = \"flaskbb\", but"),
        "{stderr}"
    );
}
