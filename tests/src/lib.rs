//! The black-box test harness: builds the real daemon and plugins once, builds the
//! loader fixtures, makes scratch directories, runs the CLI, and starts daemons on
//! real sockets with real SQLite files.

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod calls;
pub mod daemon;
pub mod flaskbb;
pub mod slapd;
pub mod totp;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, OnceLock,
    },
};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Runs `cmd` to its end and returns its output; panics, naming `what` and showing
/// what it printed, when it cannot start or fails.
pub fn checked(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn run_cargo(args: &[&str], what: &str) {
    checked(
        cargo().args(args).current_dir(root()),
        &format!("building {what}"),
    );
}

/// Builds the workspace (daemon and every shipped plugin, debug profile) once per test
/// process; returns the directory holding `flaskbbd` and the plugins' `.so` files.
pub fn build() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            run_cargo(
                &["build", "--workspace", "--exclude", "flaskbbd-tests"],
                "the workspace",
            );
            root().join("target/debug")
        })
        .clone()
}

/// Builds the workspace with the release profile once; returns `target/release`.
/// Benchmarks use this, tests use [`build`].
pub fn build_release() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            run_cargo(
                &[
                    "build",
                    "--release",
                    "--workspace",
                    "--exclude",
                    "flaskbbd-tests",
                ],
                "the workspace (release)",
            );
            root().join("target/release")
        })
        .clone()
}

/// The cargo-deb the package is built with: installed into `target/tools` when the
/// machine has none (CI's clean machine), at a version known to work.
fn cargo_deb() -> PathBuf {
    let on_path = Command::new("cargo-deb").arg("--version").output();
    if on_path.is_ok_and(|o| o.status.success()) {
        return PathBuf::from("cargo-deb");
    }
    let tools = root().join("target/tools");
    let bin = tools.join("bin/cargo-deb");
    if !bin.exists() {
        run_cargo(
            &[
                "install",
                "--locked",
                "cargo-deb",
                "--version",
                "=3.8.0",
                "--root",
                tools.to_str().expect("a UTF-8 path"),
            ],
            "cargo-deb",
        );
    }
    bin
}

/// Builds the Debian package once (`cargo build --release`, then `cargo deb -p
/// flaskbbd --no-build`, as docs/operations.md says); returns the `.deb`.
pub fn build_deb() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            build_release();
            let out_dir = root().join("target/debian");
            let out = checked(
                Command::new(cargo_deb())
                    .args(["deb", "-p", "flaskbbd", "--no-build", "--output"])
                    .arg(&out_dir)
                    .env(
                        "CARGO",
                        std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
                    )
                    .current_dir(root()),
                "cargo deb",
            );
            let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let deb = PathBuf::from(path.lines().last().unwrap_or_default());
            assert!(
                deb.extension().is_some_and(|e| e == "deb") && deb.exists(),
                "cargo deb printed no package path: {path:?}"
            );
            deb
        })
        .clone()
}

/// Builds the libFuzzer target `name` of `fuzz/` once, instrumented for coverage the
/// way `cargo fuzz build --sanitizer none` does (which works on a stable toolchain),
/// in `target/fuzz`; returns the binary.
pub fn build_fuzz_target(name: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .expect("rustc runs");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc -vV names the host");
    let target_dir = root().join("target/fuzz");
    // An explicit --target keeps the instrumentation off build scripts and proc macros.
    let flags = [
        "-Cpasses=sancov-module",
        "-Cllvm-args=-sanitizer-coverage-level=4",
        "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
        "-Cllvm-args=-sanitizer-coverage-pc-table",
        "-Cllvm-args=-sanitizer-coverage-trace-compares",
        "--cfg=fuzzing",
    ];
    let out = cargo()
        .args(["build", "--release", "--bin", name, "--target", &host])
        .arg("--manifest-path")
        .arg(root().join("fuzz/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", flags.join(" "))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .current_dir(root())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "building fuzz target {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target_dir.join(host).join("release").join(name)
}

/// The daemon binary.
pub fn flaskbbd_bin() -> PathBuf {
    build().join("flaskbbd")
}

/// Builds a fixture workspace under `tests/fixtures/<name>` once; returns the
/// directory holding its `.so` files.
pub fn fixture(name: &str) -> PathBuf {
    fixture_with(name, false)
}

/// [`fixture`] with the release profile (for the benchmarks); returns the directory
/// holding its `.so` files.
pub fn fixture_release(name: &str) -> PathBuf {
    fixture_with(name, true)
}

fn fixture_with(name: &str, release: bool) -> PathBuf {
    static BUILT: Mutex<Vec<(String, bool)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let target = root().join("target/fixtures");
    if !built.iter().any(|(b, r)| b == name && *r == release) {
        let manifest = root().join("tests/fixtures").join(name).join("Cargo.toml");
        let mut args = vec![
            "build",
            "--manifest-path",
            manifest.to_str().unwrap(),
            "--target-dir",
            target.to_str().unwrap(),
        ];
        if release {
            args.push("--release");
        }
        run_cargo(&args, &format!("fixture {name}"));
        built.push((name.to_owned(), release));
    }
    target.join(if release { "release" } else { "debug" })
}

/// Builds a copy of the current `plugin-abi` with its version set to `version` and
/// `patch` applied to `abi.rs`, and a one-hook plugin against it; returns the `.so`.
/// Used for version and layout mismatches without committing more frozen copies.
pub fn variant_plugin(name: &str, version: &str, patch: impl Fn(String) -> String) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = root().join("target/fixtures/gen").join(name);
    // Cargo names a path dependency's artifacts by its path relative to the workspace
    // root: give each variant's copy its own, or variants sharing target/fixtures would
    // overwrite each other's plugin-abi.
    let abi_dir = format!("plugin-abi-{name}");
    let abi = dir.join(&abi_dir);
    fs::create_dir_all(abi.join("src")).unwrap();
    // Every source file of the current plugin-abi, abi.rs patched.
    for entry in fs::read_dir(root().join("plugin-abi/src")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        let text = fs::read_to_string(&path).unwrap();
        let text = if name == "abi.rs" { patch(text) } else { text };
        write_if_changed(&abi.join("src").join(name), &text);
    }
    write_if_changed(&abi.join("Cargo.toml"), &variant_abi_manifest(version));
    let plugin = dir.join("plugin");
    fs::create_dir_all(plugin.join("src")).unwrap();
    write_if_changed(
        &plugin.join("Cargo.toml"),
        &format!(
            "[package]\nname = \"{name}\"\nversion = \"1.0.0\"\nedition = \"2021\"\n[lib]\ncrate-type = [\"cdylib\"]\n\
             [dependencies]\nplugin-abi = {{ package = \"flaskbbd-plugin-abi\", path = \"../{abi_dir}\" }}\n\
             abi_stable = {{ version = \"0.11.3\", default-features = false }}\n"
        ),
    );
    write_if_changed(
        &plugin.join("src/lib.rs"),
        "use plugin_abi::prelude::*;\npub struct P;\nimpl PluginInstance for P { fn new(_: &Init) -> Result<Self, String> { Ok(P) } }\n\
         impl PostAuthenticationHandler for P { fn handle_post_auth(&self, _: &Ctx<'_>, _: &User) -> HookResult<()> { Ok(()) } }\n\
         export_plugin! { plugin: P, name: \"variant\", description: \"test variant\", hooks: [PostAuthenticationHandler] }\n",
    );
    write_if_changed(
        &dir.join("Cargo.toml"),
        "[workspace]\nresolver = \"2\"\nmembers = [\"plugin\"]\n",
    );
    let target = root().join("target/fixtures");
    run_cargo(
        &[
            "build",
            "--manifest-path",
            dir.join("Cargo.toml").to_str().unwrap(),
            "--target-dir",
            target.to_str().unwrap(),
        ],
        &format!("variant plugin {name}"),
    );
    target.join("debug").join(format!("lib{name}.so"))
}

/// plugin-abi's own manifest as a crate of its own with `version`: its dependencies
/// as plugin-abi declares them, the workspace's versions filled in and paths made
/// absolute, so a variant always builds with what plugin-abi needs.
fn variant_abi_manifest(version: &str) -> String {
    let read = |p: &str| fs::read_to_string(root().join(p)).expect("a manifest of the workspace");
    let (abi, workspace) = (read("plugin-abi/Cargo.toml"), read("Cargo.toml"));
    let section = |text: &str, name: &str| -> Vec<String> {
        text.lines()
            .skip_while(|l| l.trim() != name)
            .skip(1)
            .take_while(|l| !l.starts_with('['))
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    let inherited = section(&workspace, "[workspace.dependencies]");
    let mut deps = String::new();
    for line in section(&abi, "[dependencies]") {
        let name = line.split(['.', '=', ' ']).next().unwrap_or("").to_owned();
        let line = if line.contains(".workspace = true") {
            inherited
                .iter()
                .find(|l| l.split([' ', '=']).next() == Some(name.as_str()))
                .cloned()
                .unwrap_or_else(|| panic!("{name} is not in [workspace.dependencies]"))
        } else if let Some(rel) = line.split("path = \"../").nth(1) {
            let rel = rel.split('"').next().unwrap_or("");
            line.replace(
                &format!("\"../{rel}\""),
                &format!("{:?}", root().join(rel).display().to_string()),
            )
        } else {
            line
        };
        deps.push_str(&line);
        deps.push('\n');
    }
    format!(
        "[package]\nname = \"flaskbbd-plugin-abi\"\nversion = \"{version}\"\nedition = \"2021\"\n\
         [lib]\nname = \"plugin_abi\"\n[dependencies]\n{deps}"
    )
}

fn write_if_changed(path: &Path, text: &str) {
    if fs::read_to_string(path).ok().as_deref() != Some(text) {
        fs::write(path, text).unwrap();
    }
}

/// A Python virtual environment `target/pyvenv-<name>` with `packages` from PyPI,
/// made once (again when the package list changes); returns its directory.
pub fn python_venv(name: &str, packages: &[&str]) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let venv = root().join(format!("target/pyvenv-{name}"));
    let stamp = venv.join(".installed");
    let wanted = packages.join("\n");
    if fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let _ = fs::remove_dir_all(&venv);
        let out = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "python3 -m venv {}: {}",
            venv.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .args(packages)
            .output()
            .expect("pip runs");
        assert!(
            out.status.success(),
            "pip install {} failed:\n{}",
            packages.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        fs::write(&stamp, &wanted).expect("writing the venv's stamp");
    }
    venv
}

/// The database backend black-box tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, a `test.db` file in the scratch directory.
    Sqlite,
    /// PostgreSQL ([`pg_server`]), a new database per scratch directory.
    Postgres,
}

/// SQLite, unless `FLASKBBD_TEST_DB=postgres`, or the test binary is a `*_pg` twin
/// (tests/Cargo.toml builds each black-box test file twice; the twin runs the same
/// tests on PostgreSQL, so `cargo test --workspace` covers both backends).
pub fn backend() -> Backend {
    if let Ok(v) = std::env::var("FLASKBBD_TEST_DB") {
        return if v == "postgres" {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
    }
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    match exe {
        Some(name)
            if name
                .split('-')
                .next()
                .is_some_and(|stem| stem.ends_with("_pg")) =>
        {
            Backend::Postgres
        }
        _ => Backend::Sqlite,
    }
}

/// The PostgreSQL server tests use: `FLASKBBD_TEST_PG`, or the local one with trust
/// auth (`.ci/run` starts one where none runs).
pub fn pg_server() -> String {
    std::env::var("FLASKBBD_TEST_PG")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432".into())
}

/// Runs SQL on the PostgreSQL server's `postgres` database.
pub fn pg_admin(statement: &str) {
    use diesel::{connection::SimpleConnection, Connection, PgConnection};
    let url = format!("{}/postgres", pg_server());
    let mut c =
        PgConnection::establish(&url).unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e}"));
    c.batch_execute(statement)
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// A scratch directory under `target/test-runs`, removed when dropped (kept when the
/// test panicked, for a look), with its own database.
pub struct Scratch {
    /// The directory.
    pub path: PathBuf,
    /// The PostgreSQL database made for this scratch, if one was.
    pg_db: Mutex<Option<String>>,
}

impl Scratch {
    /// Makes a new, empty scratch directory named after `label` (the test's name).
    pub fn new(label: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = root().join("target/test-runs").join(format!(
            "{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Scratch {
            path,
            pg_db: Mutex::new(None),
        }
    }

    /// The URL of this scratch's database on the tests' backend: `test.db` here, or a
    /// new PostgreSQL database dropped with the scratch.
    pub fn db_url(&self) -> String {
        match backend() {
            Backend::Sqlite => "sqlite:///test.db".into(),
            Backend::Postgres => {
                let mut db = self.pg_db.lock().unwrap_or_else(|e| e.into_inner());
                let name = db.get_or_insert_with(|| {
                    let label: String = self
                        .path
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .chars()
                        .map(|c| {
                            if c.is_ascii_alphanumeric() {
                                c.to_ascii_lowercase()
                            } else {
                                '_'
                            }
                        })
                        .collect();
                    let name = format!("fbd_{label}");
                    pg_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                    pg_admin(&format!("CREATE DATABASE {name}"));
                    name
                });
                format!("{}/{name}", pg_server())
            }
        }
    }

    /// Runs `statement` on this scratch's database (after the daemon made it).
    pub fn sql(&self, statement: &str) {
        use diesel::{connection::SimpleConnection, Connection, PgConnection, SqliteConnection};
        match backend() {
            Backend::Sqlite => {
                let mut c =
                    SqliteConnection::establish(self.path.join("test.db").to_str().unwrap())
                        .unwrap();
                c.batch_execute(&format!("PRAGMA busy_timeout = 5000; {statement}"))
                    .unwrap();
            }
            Backend::Postgres => {
                let mut c = PgConnection::establish(&self.db_url()).unwrap();
                c.batch_execute(statement).unwrap();
            }
        }
    }

    /// Runs `statement` on the database at `url` (`sqlite:////abs/path` or
    /// `postgresql://…`).
    pub fn sql_on(url: &str, statement: &str) {
        use diesel::{connection::SimpleConnection, Connection, PgConnection, SqliteConnection};
        if let Some(path) = url.strip_prefix("sqlite:///") {
            let mut c = SqliteConnection::establish(path).unwrap();
            c.batch_execute(&format!("PRAGMA busy_timeout = 5000; {statement}"))
                .unwrap();
        } else {
            let mut c = PgConnection::establish(url).unwrap();
            c.batch_execute(statement)
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
    }

    /// Holds a lock that keeps the daemon from writing (readers still read) until
    /// the returned guard is dropped.
    pub fn hold_write_lock(&self) -> Box<dyn std::any::Any> {
        use diesel::{connection::SimpleConnection, Connection, PgConnection, SqliteConnection};
        match backend() {
            Backend::Sqlite => {
                let mut c =
                    SqliteConnection::establish(self.path.join("test.db").to_str().unwrap())
                        .unwrap();
                // Wait out a write in progress (the daemon may be mid-commit).
                c.batch_execute("PRAGMA busy_timeout = 10000; BEGIN EXCLUSIVE")
                    .unwrap();
                Box::new(c)
            }
            Backend::Postgres => {
                let mut c = PgConnection::establish(&self.db_url()).unwrap();
                c.batch_execute("BEGIN; LOCK TABLE users IN EXCLUSIVE MODE")
                    .unwrap();
                Box::new(c)
            }
        }
    }

    /// Makes this scratch's database read-only (`on`) or writable again, under a
    /// running daemon.
    ///
    /// SQLite: the database file and its write-ahead log. Root writes through file
    /// modes, so this sets the immutable attribute (`chattr +i`), which holds against
    /// root too and also stops writes on descriptors already open. The shared-memory
    /// index (`-shm`) is left alone: it is mapped, and a write to a mapping of an
    /// immutable file is a SIGBUS, not an error.
    ///
    /// PostgreSQL: `default_transaction_read_only` on the database, and every session
    /// on it ended so that the new setting applies, as a failover to a read-only
    /// standby would.
    pub fn set_db_read_only(&self, on: bool) {
        if backend() == Backend::Postgres {
            let name = self
                .pg_db
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .expect("the scratch's database exists (db_url was called)");
            pg_admin(&format!(
                "ALTER DATABASE {name} SET default_transaction_read_only = {on}"
            ));
            pg_admin(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ));
            return;
        }
        let flag = if on { "+i" } else { "-i" };
        let files: Vec<PathBuf> = ["test.db", "test.db-wal"]
            .iter()
            .map(|f| self.path.join(f))
            .filter(|p| p.exists())
            .collect();
        let out = Command::new("chattr")
            .arg(flag)
            .args(&files)
            .output()
            .expect("chattr (e2fsprogs) runs");
        assert!(
            out.status.success(),
            "chattr {flag} failed (it needs CAP_LINUX_IMMUTABLE, as root has): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes `flaskbb.toml` here: test defaults (plugins from the build, bcrypt cost
    /// 4, a socket and database in this directory) followed by `extra`. When `extra`
    /// has its own `[auth]` table, it must set `bcrypt_cost` itself (see [`auth`]).
    pub fn config(&self, extra: &str) -> PathBuf {
        let has_auth = extra.starts_with("[auth]") || extra.contains("\n[auth]");
        let text = format!(
            "[plugins]\ndirs = [{:?}, {:?}]\n{}{extra}",
            build().display().to_string(),
            root().join("target/fixtures/debug").display().to_string(),
            if has_auth {
                ""
            } else {
                "[auth]\nbcrypt_cost = 4\n"
            }
        );
        self.write("flaskbb.toml", &text)
    }

    /// Writes a file here.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path.join(name);
        fs::write(&p, text).unwrap();
        p
    }

    /// Reads a file here ("" when missing).
    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path.join(name)).unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.path);
            if let Some(db) = self.pg_db.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = std::panic::catch_unwind(|| {
                    pg_admin(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                });
            }
        }
    }
}

/// An `[auth]` table with the tests' bcrypt cost and `keys`.
pub fn auth(keys: &str) -> String {
    format!("[auth]\nbcrypt_cost = 4\n{keys}")
}

/// Runs `flaskbbd ARGS` and returns its output.
pub fn flaskbbd(args: &[&str]) -> Output {
    Command::new(flaskbbd_bin())
        .args(args)
        .output()
        .expect("flaskbbd runs")
}

/// stdout and stderr of an output, as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The trace lines `scripted` wrote to `file`, as JSON values.
pub fn trace(scratch: &Scratch, file: &str) -> Vec<serde_json::Value> {
    scratch
        .read(file)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a trace line is JSON"))
        .collect()
}

/// `(instance, hook)` of each trace line.
pub fn trace_calls(scratch: &Scratch, file: &str) -> Vec<(String, String)> {
    trace(scratch, file)
        .iter()
        .map(|v| {
            (
                v["instance"].as_str().unwrap_or("").to_owned(),
                v["hook"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}
