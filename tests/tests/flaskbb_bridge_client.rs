//! The FlaskBB bridge's own code, apart from FlaskBB: its Varlink client against a real
//! daemon (threads, forks, restarts) and its types (`mypy --strict`). Runs once, not
//! per database backend (nothing here touches the forum's database).

use std::process::Command;

use flaskbbd_tests::flaskbb::{self, bridge_tests as python_tests};

#[test]
fn the_client_keeps_answers_apart_across_threads_forks_and_restarts() {
    python_tests("test_client");
}

/// The bridge, its harness and its tests pass `mypy --strict` (with the allowances for
/// untyped FlaskBB in `bridges/flaskbb/pyproject.toml`).
#[test]
fn the_bridge_is_typed() {
    let venv =
        flaskbbd_tests::python_venv("mypy", &["mypy==1.13.0", "types-requests==2.33.0.20261030"]);
    let out = Command::new(venv.join("bin/mypy"))
        .args(["flaskbb_flaskbbd", "testing", "tests"])
        .current_dir(flaskbb::bridge_dir())
        .env(
            "MYPY_CACHE_DIR",
            flaskbbd_tests::root().join("target/mypy-cache"),
        )
        .output()
        .expect("mypy runs");
    assert!(
        out.status.success(),
        "mypy found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
