//! A real FlaskBB 2.0.2 (FlaskBB 2.2 needs Python 3.12, which these machines lack):
//! installed once with the workplace's tool (`shared/tools/flaskbb-2.0.2` beside the
//! checkout; `tool_candidates` says where else it is looked for) in a virtual
//! environment under `target/`, and asked to make a database with its own commands. Also a current werkzeug, for its `scrypt:` hashes.

use std::{path::PathBuf, process::Command, sync::Mutex};

use crate::{root, Backend};

/// Where the workplace's FlaskBB tool is looked for, in order: `FLASKBBD_FLASKBB_TOOL`,
/// `shared/tools/flaskbb-2.0.2` beside this checkout, and beside the repository this
/// checkout was cloned from (a throw-away clone elsewhere still finds it).
fn tool_candidates() -> Vec<PathBuf> {
    const REL: &str = "../shared/tools/flaskbb-2.0.2";
    let mut places: Vec<PathBuf> = std::env::var_os("FLASKBBD_FLASKBB_TOOL")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    places.push(root().join(REL));
    let origin = Command::new("git")
        .args(["config", "--get", "remote.origin.url"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if let Some(origin) = origin {
        let path = PathBuf::from(origin.strip_prefix("file://").unwrap_or(&origin));
        if path.is_absolute() {
            places.push(path.join(REL));
        }
    }
    places
}

/// The workplace's FlaskBB tool directory.
fn tool() -> PathBuf {
    let places = tool_candidates();
    places
        .iter()
        .find(|t| t.join("install.sh").exists())
        .cloned()
        .unwrap_or_else(|| {
            let searched: Vec<String> = places.iter().map(|p| p.display().to_string()).collect();
            panic!(
                "FlaskBB's install tool (install.sh) is missing; searched: {}. Set \
                 FLASKBBD_FLASKBB_TOOL to the tools/flaskbb-2.0.2 directory.",
                searched.join(", ")
            )
        })
}

/// FlaskBB's working directory (virtual environment and migrations), made once.
pub fn install() -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = root().join("target/flaskbb-2.0.2");
    let ready = dir.join(".ready");
    if !ready.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new("bash")
            .arg(tool().join("install.sh"))
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "installing FlaskBB failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pip = dir.join("venv/bin/pip");
        let out = Command::new(&pip)
            .args([
                "install",
                "-q",
                "--no-cache-dir",
                "--no-deps",
                "psycopg2-binary==2.9.10",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "installing psycopg2 failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&ready, "").unwrap();
    }
    dir
}

/// Makes a FlaskBB database at `uri` with FlaskBB's own commands: `admin` /
/// `AdminPass123` (Administrator) and `alice` / `AlicePass123` (Member).
pub fn make_database(uri: &str) {
    let dir = install();
    // setup_db.sh writes flaskbb.cfg into the working directory: one at a time.
    static LOCK: Mutex<()> = Mutex::new(());
    let _one = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new("bash")
        .arg(tool().join("setup_db.sh"))
        .arg(&dir)
        .arg(uri)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "FlaskBB could not make its database at {uri}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs Python code in FlaskBB's environment; returns its stdout.
pub fn python(code: &str) -> String {
    let dir = install();
    let out = Command::new(dir.join("venv/bin/python"))
        .args(["-c", code])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A hash from a current werkzeug's `generate_password_hash` (scrypt by default).
pub fn werkzeug_hash(password: &str) -> String {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let venv = root().join("target/pyvenv-werkzeug");
    if !venv.join(".ready").exists() {
        assert!(Command::new("python3")
            .args(["-m", "venv", venv.to_str().unwrap()])
            .status()
            .unwrap()
            .success());
        let out = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "werkzeug>=3"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pip install werkzeug failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(venv.join(".ready"), "").unwrap();
    }
    let out = Command::new(venv.join("bin/python"))
        .args(["-c", "import sys; from werkzeug.security import generate_password_hash as g; print(g(sys.argv[1]))", password])
        .output()
        .unwrap();
    assert!(out.status.success());
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
