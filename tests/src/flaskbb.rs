//! A real FlaskBB 2.0.2 (FlaskBB 2.2 needs Python 3.12, which these machines lack),
//! installed from PyPI by the bridge's own script
//! (`bridges/flaskbb/testing/install-flaskbb.sh`) into `target/flaskbb-2.0.2`, with
//! the bridge (`pip install ./bridges/flaskbb`), and asked to make databases with its
//! own commands. Also a current werkzeug, for its `scrypt:` hashes.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use crate::{root, Backend};

/// The bridge's directory (its package, its test harness and its tests).
pub fn bridge_dir() -> PathBuf {
    root().join("bridges/flaskbb")
}

/// A fingerprint of the installer and its pins: a change reinstalls FlaskBB.
fn installer_stamp() -> String {
    let testing = bridge_dir().join("testing");
    let mut h = DefaultHasher::new();
    for file in ["install-flaskbb.sh", "flaskbb-2.0.2.txt"] {
        std::fs::read(testing.join(file))
            .unwrap_or_else(|e| panic!("reading {file}: {e}"))
            .hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

/// FlaskBB's installation (`venv/` and `migrations/`), made once per installer
/// version, with the bridge installed into it once per test process (so that it is
/// always the working tree's).
pub fn install() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = root().join("target/flaskbb-2.0.2");
            let stamp = installer_stamp();
            let ready = dir.join(".installed");
            if std::fs::read_to_string(&ready).ok().as_deref() != Some(stamp.as_str()) {
                let _ = std::fs::remove_dir_all(&dir);
                run(
                    Command::new("bash")
                        .arg(bridge_dir().join("testing/install-flaskbb.sh"))
                        .arg(&dir),
                    "installing FlaskBB 2.0.2 (install-flaskbb.sh)",
                );
                std::fs::write(&ready, &stamp).expect("writing FlaskBB's install stamp");
            }
            // The README's command, as an operator runs it.
            run(
                Command::new(dir.join("venv/bin/pip"))
                    .args([
                        "install",
                        "-q",
                        "--disable-pip-version-check",
                        "./bridges/flaskbb",
                    ])
                    .current_dir(root()),
                "pip install ./bridges/flaskbb",
            );
            dir
        })
        .clone()
}

fn run(cmd: &mut Command, what: &str) {
    crate::checked(cmd, what);
}

/// Makes a FlaskBB database at `uri` with FlaskBB's own commands (its config goes in
/// `dir`): `admin` / `AdminPass123` (Administrator) and `alice` / `AlicePass123`
/// (Member).
pub fn make_database(dir: &Path, uri: &str) {
    let install = install();
    run(
        Command::new(install.join("venv/bin/python"))
            .args(["-m", "testing.forum", "make", "--install"])
            .arg(&install)
            .arg("--dir")
            .arg(dir.join("forum"))
            .args(["--db", uri])
            .current_dir(bridge_dir()),
        &format!("making FlaskBB's database at {uri}"),
    );
}

/// Runs Python code in FlaskBB's environment; returns its stdout.
pub fn python(code: &str) -> String {
    let dir = install();
    let out = Command::new(dir.join("venv/bin/python"))
        .args(["-c", code])
        .output()
        .expect("FlaskBB's python runs");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A hash from a current werkzeug's `generate_password_hash` (scrypt by default).
pub fn werkzeug_hash(password: &str) -> String {
    let venv = crate::python_venv("werkzeug", &["werkzeug>=3"]);
    let out = Command::new(venv.join("bin/python"))
        .args(["-c", "import sys; from werkzeug.security import generate_password_hash as g; print(g(sys.argv[1]))", password])
        .output()
        .expect("werkzeug's python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The database URI FlaskBB should use for a test on `backend`.
pub fn uri_for(
    backend: Backend,
    scratch_path: &std::path::Path,
    pg_url: impl FnOnce() -> String,
) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite:///{}", scratch_path.join("forum.sqlite").display()),
        Backend::Postgres => pg_url(),
    }
}

/// Runs the bridge's test module `bridges/flaskbb/tests/<module>.py` with unittest in
/// FlaskBB's virtualenv, against the debug daemon and plugins, on the tests' backend;
/// fails unless every test in it ran and passed.
pub fn bridge_tests(module: &str) {
    let bin = crate::build();
    let install = install();
    let s = crate::Scratch::new(&format!("bridge-{module}"));
    let out = Command::new(install.join("venv/bin/python"))
        .args(["-m", "unittest", "-v", &format!("tests.{module}")])
        .current_dir(bridge_dir())
        .env("FLASKBBD_BIN", bin.join("flaskbbd"))
        .env("FLASKBBD_PLUGIN_DIRS", &bin)
        .env("FLASKBB_INSTALL", &install)
        .env("FLASKBBD_TEST_SCRATCH", &s.path)
        .env(
            "FLASKBBD_TEST_DB",
            match crate::backend() {
                Backend::Sqlite => "sqlite",
                Backend::Postgres => "postgres",
            },
        )
        .env("FLASKBBD_TEST_PG", crate::pg_server())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("FlaskBB's python runs");
    let report = String::from_utf8_lossy(&out.stderr);
    // What the tests printed: a failed browser test names its screenshot there.
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bridges/flaskbb/tests/{module}.py failed ({}); scratch kept in {}:\n{report}\n{printed}",
        out.status,
        s.path.display()
    );
    // Nothing skipped quietly: every test in the module ran and passed.
    assert!(
        report.lines().any(|l| l.starts_with("Ran ")) && report.trim_end().ends_with("OK"),
        "{report}"
    );
}
