//! The daemon on a database FlaskBB made itself (`database.schema = "flaskbb"`):
//! FlaskBB's users log in with their werkzeug hashes, and FlaskBB's columns keep
//! their meaning.

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
    flaskbb::make_database(&uri);
    let url = uri
        .replacen("sqlite:///", "sqlite:////", 1)
        .replace("sqlite://///", "sqlite:////");
    let d = TestDaemon::start_with(
        s,
        s.config(&format!(
            "[database]\nurl = {url:?}\nschema = \"flaskbb\"\n[auth]\nbcrypt_cost = 4\n{auth}"
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
    // login_attempts and last_failed_login: the lockout reads them.
    for _ in 0..5 {
        let _ = d.auth("alice", "nope");
    }
    assert_eq!(
        err(d.auth("alice", "AlicePass123")),
        failed("Your account is currently locked out due to too many failed login attempts")
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

#[test]
fn werkzeug_scrypt_hashes_verify_and_are_rehashed_to_bcrypt_on_login_when_configured() {
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
    // admin's pbkdf2 hash from FlaskBB itself, then both rehashed to bcrypt.
    assert!(d.auth("admin", "AdminPass123").is_ok());
    let hashes = flaskbb::python(&format!(
        "import sqlalchemy as sa; e = sa.create_engine({:?}); \
         print(' '.join(r[0][:4] for r in e.execute(\"SELECT password FROM users WHERE username IN ('admin', 'carol') ORDER BY username\")))",
        d_url(&s)
    ));
    assert_eq!(hashes, "$2b$ $2b$");
    // The new hashes verify through the daemon; alice, who did not log in, keeps hers.
    assert!(d.auth("carol", "CarolPass123").is_ok());
    assert!(d.auth("admin", "AdminPass123").is_ok());
    let alice = flaskbb::python(&format!(
        "import sqlalchemy as sa; e = sa.create_engine({:?}); print(e.execute(\"SELECT password FROM users WHERE username = 'alice'\").scalar()[:7])",
        d_url(&s)
    ));
    assert_eq!(alice, "pbkdf2:");
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
    flaskbb::make_database(&uri);
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
