//! The Debian package: built with `cargo deb` as docs/operations.md says, its contents
//! and conffiles checked, then installed with its maintainer scripts into a throw-away
//! root (`dpkg --root` with `--force-script-chrootless`: the scripts honour
//! `$DPKG_ROOT`), where the installed units pass `systemd-analyze verify`, `flaskbbd
//! check` passes on the packaged configuration, and the packaged daemon serves a
//! login as the `flaskbbd` user (chrooted, with /proc and /dev bound in a mount
//! namespace of its own). Then an upgrade that keeps an edited conffile, a removal
//! that keeps the database, and a purge that removes it. And the scripts' systemd
//! side, run chrooted as on a system booted with systemd, with stand-ins recording
//! what they ask of systemctl: enable and start the socket on install, reload (not
//! restart) on upgrade, stop on removal.
//!
//! Needs root (dpkg --root, chroot, mount), as CI has.

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flaskbbd_tests::calls::{authenticate_in, context_of};
use std::{
    collections::BTreeMap,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use flaskbbd_protocol::client::Client;
use flaskbbd_tests::{build_deb, checked, text, Scratch};
use serde_json::json;

fn run(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    checked(cmd, &what)
}

/// Fails the test unless it runs as root, saying why `what` needs it.
fn assert_root(what: &str) {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(uid, 0, "this test {what}: run it as root (CI does)");
}

/// `dpkg` on the throw-away root.
fn dpkg(root: &Path, args: &[&str]) -> Output {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        // The scripts run here, not chrooted, with DPKG_ROOT set; the root holds no
        // libc6 or systemd packages (their files are copied in below).
        .args(["--force-script-chrootless", "--force-depends"])
        .args(args))
}

/// The files of the package: path → mode.
fn contents(deb: &Path) -> BTreeMap<String, u32> {
    let out = run(Command::new("dpkg-deb").arg("--contents").arg(deb));
    text(&out)
        .0
        .lines()
        .map(|l| {
            let cols: Vec<_> = l.split_whitespace().collect();
            let mode = cols[0];
            let bits = |s: &str| s.chars().fold(0, |acc, c| (acc << 1) | u32::from(c != '-'));
            let path = cols[5].trim_start_matches('.').to_owned();
            (path, bits(&mode[1..]))
        })
        .collect()
}

/// Makes `root` a system the package can be installed on: dpkg's database, the
/// merged /usr, and what its dependencies (libc6, libssl3, systemd) would have put
/// there, copied from this machine.
fn prepare_root(root: &Path, deb_binaries: &[PathBuf]) {
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "usr/bin",
        "usr/sbin",
        "usr/lib/systemd/system",
        "usr/lib64",
        "etc",
        "proc",
        "dev",
        "run",
        "tmp",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    for (link, to) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(to, root.join(link)).unwrap();
    }
    // systemd's own units (the targets the service is ordered after) and the kill(1)
    // of its ExecReload, for systemd-analyze verify.
    run(Command::new("cp")
        .args(["-a", "/usr/lib/systemd/system/."])
        .arg(root.join("usr/lib/systemd/system")));
    run(Command::new("cp")
        .arg("-L")
        .arg(
            ["/usr/bin/kill", "/bin/kill"]
                .into_iter()
                .find(|p| Path::new(p).exists())
                .expect("kill(1) (procps) on this machine"),
        )
        .arg(root.join("usr/bin/kill")));
    // The shared libraries the packaged binaries need, where they live here.
    copy_libraries(root, deb_binaries);
}

/// Copies the shared libraries `binaries` need (as `ldd` finds them here) into the
/// same places under the merged-/usr `root`.
fn copy_libraries(root: &Path, binaries: &[PathBuf]) {
    let mut libs = std::collections::BTreeSet::new();
    for bin in binaries {
        let out = run(Command::new("ldd").arg(bin));
        for line in text(&out).0.lines() {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(p) = path.filter(|p| p.starts_with('/')) {
                libs.insert(PathBuf::from(p));
            }
        }
    }
    for lib in libs {
        let rel = lib.strip_prefix("/").unwrap();
        // /lib/... is /usr/lib/... in a merged root.
        let rel = rel.strip_prefix("usr").unwrap_or(rel);
        let dest = root.join("usr").join(rel);
        if dest.exists() {
            continue;
        }
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        run(Command::new("cp").arg("-L").arg(&lib).arg(&dest));
    }
}

/// A command run chrooted into `root`, with this machine's /proc and /dev bound in a
/// mount namespace that ends with it (a plugin host is started through
/// /proc/self/exe, and std opens /dev/null). `user` runs it as that uid:gid.
fn in_root(root: &Path, user: Option<(u32, u32)>, args: &[&str]) -> Command {
    let r = root.display();
    let userspec = user
        .map(|(u, g)| format!("--userspec={u}:{g}"))
        .unwrap_or_default();
    let script = format!(
        "mount --bind /proc {r}/proc && mount --bind /dev {r}/dev && exec chroot {userspec} {r} \"$@\""
    );
    // No fork: unshare, sh and chroot each exec the next, so the child is the
    // program itself (a signal to it reaches the daemon).
    let mut c = Command::new("unshare");
    c.args(["--mount", "sh", "-c", &script, "sh"]).args(args);
    c
}

fn id_in(root: &Path, file: &str, name: &str) -> u32 {
    std::fs::read_to_string(root.join("etc").join(file))
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<_> = l.split(':').collect();
            (f[0] == name).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {name} in {file}"))
}

#[test]
fn the_debian_package_installs_serves_upgrades_and_purges() {
    assert_root("installs the package into a throw-away root with dpkg --root, chroot and mount");
    let deb = build_deb();

    // What is in it.
    let files = contents(&deb);
    let mut expected = vec![
        ("/usr/bin/flaskbbd", 0o755),
        ("/usr/lib/systemd/system/flaskbbd.service", 0o644),
        ("/usr/lib/systemd/system/flaskbbd.socket", 0o644),
        ("/usr/lib/sysusers.d/flaskbbd.conf", 0o644),
        ("/etc/flaskbbd/flaskbb.toml", 0o640),
        ("/usr/share/doc/flaskbbd/copyright", 0o644),
        ("/usr/share/doc/flaskbbd/operations.md", 0o644),
    ];
    let plugins = [
        "audit",
        "hello",
        "ldap",
        "ratelimit",
        "scripted",
        "totp",
        "wordfilter",
    ];
    let plugin_paths: Vec<_> = plugins
        .iter()
        .map(|p| format!("/usr/lib/flaskbbd/plugins/lib{p}.so"))
        .collect();
    expected.extend(plugin_paths.iter().map(|p| (p.as_str(), 0o644)));
    for (path, mode) in expected {
        assert_eq!(
            files.get(path),
            Some(&mode),
            "{path} in the package: {files:#?}"
        );
    }
    for path in files.keys() {
        assert!(
            path.starts_with("/usr/") || path.starts_with("/etc/") || path == "/",
            "{path}: a package installs under /usr and /etc only"
        );
    }
    let info = |part: &str| {
        text(&run(Command::new("dpkg-deb")
            .arg("--info")
            .arg(&deb)
            .arg(part)))
        .0
    };
    assert_eq!(info("conffiles").trim(), "/etc/flaskbbd/flaskbb.toml");
    let control = info("control");
    for field in ["Package: flaskbbd", "Section: net", "Depends: "] {
        assert!(control.contains(field), "{field} in:\n{control}");
    }
    assert!(control.contains("systemd (>= 247)"), "{control}");
    for script in ["postinst", "prerm", "postrm"] {
        let t = info(script);
        assert!(t.starts_with("#!/bin/sh"), "{script}:\n{t}");
    }
    // The packaged configuration points at the packaged plugins and the state
    // directory the units give the daemon.
    let toml_in_deb = Scratch::new("pkg-extract");
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&toml_in_deb.path));
    let config =
        std::fs::read_to_string(toml_in_deb.path.join("etc/flaskbbd/flaskbb.toml")).unwrap();
    assert!(
        config.contains("dirs = [\"/usr/lib/flaskbbd/plugins\"]"),
        "{config}"
    );
    assert!(
        config.contains("sqlite:////var/lib/flaskbbd/flaskbb.db"),
        "{config}"
    );

    // Installed into a throw-away root, maintainer scripts and all.
    let s = Scratch::new("pkg-root");
    let root = s.path.join("root");
    let mut binaries = vec![toml_in_deb.path.join("usr/bin/flaskbbd")];
    binaries.extend(plugins.iter().map(|p| {
        toml_in_deb
            .path
            .join(format!("usr/lib/flaskbbd/plugins/lib{p}.so"))
    }));
    prepare_root(&root, &binaries);
    let deb_arg = deb.to_str().unwrap();
    dpkg(&root, &["--install", deb_arg]);
    let (uid, gid) = (
        id_in(&root, "passwd", "flaskbbd"),
        id_in(&root, "group", "flaskbbd"),
    );
    assert!(uid > 0 && gid > 0);
    let state = std::fs::metadata(root.join("var/lib/flaskbbd")).unwrap();
    assert_eq!(
        (
            state.uid(),
            state.gid(),
            state.permissions().mode() & 0o7777
        ),
        (uid, gid, 0o700)
    );
    let conf = std::fs::metadata(root.join("etc/flaskbbd/flaskbb.toml")).unwrap();
    assert_eq!(
        (conf.uid(), conf.gid(), conf.permissions().mode() & 0o7777),
        (0, gid, 0o640)
    );

    // The installed units.
    let out = Command::new("systemd-analyze")
        .arg(format!("--root={}", root.display()))
        .args(["verify", "flaskbbd.service", "flaskbbd.socket"])
        .output()
        .expect("systemd-analyze runs (.ci/run installs it)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `flaskbbd check` on the packaged configuration, as an operator runs it (root).
    let out = run(&mut in_root(
        &root,
        None,
        &[
            "/usr/bin/flaskbbd",
            "check",
            "--config",
            "/etc/flaskbbd/flaskbb.toml",
        ],
    ));
    let (stdout, _) = text(&out);
    assert!(
        stdout.ends_with("/etc/flaskbbd/flaskbb.toml: OK\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("/usr/lib/flaskbbd/plugins/libwordfilter.so"),
        "{stdout}"
    );
    // What check made for the audit plugin belongs to the daemon, not to root.
    let audit = std::fs::metadata(root.join("var/lib/flaskbbd/audit.jsonl")).unwrap();
    assert_eq!((audit.uid(), audit.gid()), (uid, gid));

    // The packaged daemon, as the flaskbbd user, serves a login.
    std::fs::create_dir_all(root.join("run/flaskbbd")).unwrap();
    std::os::unix::fs::chown(root.join("run/flaskbbd"), Some(uid), Some(gid)).unwrap();
    let log = s.path.join("daemon.log");
    let mut daemon = in_root(
        &root,
        Some((uid, gid)),
        &[
            "/usr/bin/flaskbbd",
            "serve",
            "--config",
            "/etc/flaskbbd/flaskbb.toml",
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    let socket = root.join("run/flaskbbd/flaskbbd.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client = loop {
        if let Ok(Some(status)) = daemon.try_wait() {
            panic!(
                "the packaged daemon exited with {status}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if let Ok(mut c) = Client::connect(&socket) {
            if c.get_info().is_ok() {
                break c;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the packaged daemon did not answer:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    client
        .create_user("pia", "pia@example.org", "Secret123", true)
        .expect("CreateUser as root (admin_uids = [0])");
    let user = client
        .send(&authenticate_in(
            "pia",
            "Secret123",
            context_of(json!({ "remote_addr": "192.0.2.1" })),
        ))
        .expect("a login through the packaged daemon and plugins");
    assert_eq!(user["user"]["username"], "pia");
    let status = client.get_status().unwrap();
    assert!(
        status
            .plugins
            .iter()
            .any(|p| p.plugin.name == "audit" && p.calls > 0),
        "{status:?}"
    );
    drop(client);
    // SAFETY: signals our own child, which has not been waited for yet.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let ended = daemon.wait().unwrap();
    assert!(ended.success(), "the daemon stopped with {ended}");
    let db = root.join("var/lib/flaskbbd/flaskbb.db");
    let db_meta = std::fs::metadata(&db).expect("the daemon made its database");
    assert_eq!(db_meta.uid(), uid, "{ended}");
    let audit_lines = std::fs::read_to_string(root.join("var/lib/flaskbbd/audit.jsonl")).unwrap();
    assert!(
        audit_lines.contains("flaskbb_authenticate"),
        "{audit_lines}"
    );

    // An upgrade (the same package again) keeps the operator's edit of the conffile.
    let conffile = root.join("etc/flaskbbd/flaskbb.toml");
    let edited = std::fs::read_to_string(&conffile).unwrap() + "\n# edited by the operator\n";
    std::fs::write(&conffile, &edited).unwrap();
    dpkg(&root, &["--install", deb_arg]);
    assert_eq!(std::fs::read_to_string(&conffile).unwrap(), edited);
    assert!(db.exists());

    // Removal keeps the database and the configuration; purge removes both.
    dpkg(&root, &["--remove", "flaskbbd"]);
    assert!(!root.join("usr/bin/flaskbbd").exists());
    assert!(!root.join("usr/lib/flaskbbd/plugins/libaudit.so").exists());
    assert!(db.exists(), "removal keeps the database");
    assert!(conffile.exists(), "removal keeps the configuration");
    dpkg(&root, &["--purge", "flaskbbd"]);
    assert!(
        !root.join("var/lib/flaskbbd").exists(),
        "purge removes the state"
    );
    assert!(
        !root.join("etc/flaskbbd").exists(),
        "purge removes the configuration"
    );
}

/// A stand-in for a systemd tool in the chroot: records its command line in /calls,
/// and answers `systemctl is-active` as /active says (present: active).
const STUB: &str = r#"#!/bin/sh
echo "${0##*/} $*" >> /calls
case "$*" in
*is-active*) [ -e /active ] ;;
*) exit 0 ;;
esac
"#;

/// The lines recorded in /calls since the last look, and clears them.
fn calls(root: &Path) -> Vec<String> {
    let path = root.join("calls");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    text.lines().map(str::to_owned).collect()
}

/// Runs one of the package's maintainer scripts chrooted into `root` as dpkg runs it
/// on a system booted with systemd: no DPKG_ROOT, /run/systemd/system present (on a
/// tmpfs of a private mount namespace).
fn script(root: &Path, name: &str, args: &[&str]) {
    let r = root.display();
    let sh = format!(
        "mount -t tmpfs tmpfs {r}/run && mkdir -p {r}/run/systemd/system && mount --bind /proc {r}/proc && exec chroot {r} /bin/sh \"$@\""
    );
    run(Command::new("unshare")
        .args(["--mount", "sh", "-c", &sh, "sh"])
        .arg(format!("/control/{name}"))
        .args(args)
        .env_remove("DPKG_ROOT")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"));
}

#[test]
fn under_systemd_the_scripts_enable_and_start_the_socket_reload_on_upgrade_and_stop_on_removal() {
    assert_root("runs the package's maintainer scripts chrooted in a mount namespace");
    let deb = build_deb();
    let s = Scratch::new("pkg-scripts");
    let root = s.path.join("root");
    prepare_root(&root, &[]);
    // The package's files and scripts, as dpkg would have unpacked them.
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(root.join("control")));
    // What the scripts run: a shell and coreutils from this machine, the real
    // systemd-sysusers, and stand-ins for systemctl and init-system-helpers.
    let tools = [
        "sh",
        "dash",
        "awk",
        "install",
        "chown",
        "chgrp",
        "chmod",
        "rm",
        "rmdir",
        "mkdir",
        "systemd-sysusers",
    ];
    let mut found = Vec::new();
    for t in tools {
        let out =
            run(Command::new("sh").args(["-c", &format!("readlink -f \"$(command -v {t})\"")]));
        let real = PathBuf::from(text(&out).0.trim());
        run(Command::new("cp")
            .arg("-L")
            .arg(&real)
            .arg(root.join("usr/bin").join(t)));
        found.push(real);
    }
    copy_libraries(&root, &found);
    for stub in ["systemctl", "deb-systemd-helper", "deb-systemd-invoke"] {
        let p = root.join("usr/bin").join(stub);
        std::fs::write(&p, STUB).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // A fresh install: the user, the state directory, the socket enabled and started;
    // the daemon is not started (the socket starts it, or `systemctl start`).
    script(&root, "postinst", &["configure"]);
    assert_eq!(
        calls(&root),
        [
            "deb-systemd-helper enable flaskbbd.socket flaskbbd.service",
            "systemctl --system daemon-reload",
            "deb-systemd-invoke start flaskbbd.socket",
        ]
    );
    let uid = id_in(&root, "passwd", "flaskbbd");
    assert_eq!(
        std::fs::metadata(root.join("var/lib/flaskbbd"))
            .unwrap()
            .uid(),
        uid
    );

    // An upgrade while the daemon runs: nothing stopped, the daemon reloaded, never
    // restarted.
    std::fs::write(root.join("active"), "").unwrap();
    script(&root, "prerm", &["upgrade", "0.1.0-1"]);
    assert_eq!(
        calls(&root),
        Vec::<String>::new(),
        "prerm upgrade stops nothing"
    );
    script(&root, "postinst", &["configure", "0.1.0-1"]);
    assert_eq!(
        calls(&root),
        [
            "deb-systemd-helper update-state flaskbbd.socket flaskbbd.service",
            "systemctl --system daemon-reload",
            "systemctl is-active --quiet flaskbbd.service",
            "systemctl reload flaskbbd.service",
        ]
    );
    // An upgrade while it is stopped: nothing started behind the operator's back.
    std::fs::remove_file(root.join("active")).unwrap();
    script(&root, "postinst", &["configure", "0.1.0-1"]);
    let c = calls(&root);
    assert!(
        !c.iter()
            .any(|l| l.contains("reload flaskbbd") || l.contains("start")),
        "{c:?}"
    );

    // Removal stops the daemon and its socket; purge forgets them and the state.
    script(&root, "prerm", &["remove"]);
    assert_eq!(
        calls(&root),
        ["deb-systemd-invoke stop flaskbbd.service flaskbbd.socket"]
    );
    script(&root, "postrm", &["remove"]);
    assert_eq!(calls(&root), ["systemctl --system daemon-reload"]);
    assert!(
        root.join("var/lib/flaskbbd").exists(),
        "removal keeps the state"
    );
    script(&root, "postrm", &["purge"]);
    assert_eq!(
        calls(&root),
        [
            "deb-systemd-helper purge flaskbbd.socket flaskbbd.service",
            "systemctl --system daemon-reload",
        ]
    );
    assert!(
        !root.join("var/lib/flaskbbd").exists(),
        "purge removes the state"
    );
}
