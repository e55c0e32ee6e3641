//! The plugin kit: following docs/writing-plugins.md word for word, in a new
//! directory outside this repository, produces a plugin the daemon loads.

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use flaskbbd_tests::{build, root, text};

/// The `sh` blocks of the walkthrough section, in order.
fn walkthrough() -> String {
    let doc = std::fs::read_to_string(root().join("docs/writing-plugins.md")).unwrap();
    let start = doc
        .find("<!-- walkthrough -->")
        .expect("walkthrough start marker");
    let end = doc
        .find("<!-- /walkthrough -->")
        .expect("walkthrough end marker");
    let mut script = String::new();
    let mut inside = false;
    for line in doc[start..end].lines() {
        match (inside, line.trim_end()) {
            (false, "```sh") => inside = true,
            (true, "```") => inside = false,
            (true, l) => {
                script.push_str(l);
                script.push('\n');
            }
            _ => {}
        }
    }
    script
}

#[test]
fn following_writing_plugins_word_for_word_gives_a_plugin_that_loads() {
    build();
    let script = walkthrough();
    assert!(
        script.contains("cargo new --lib greeter")
            && script.contains("cargo test")
            && script.contains("target/release/flaskbbd\" check"),
        "{script}"
    );
    // Outside the repository: `cargo new` must not see flaskbbd's workspace.
    let dir = std::env::temp_dir().join(format!("flaskbbd-kit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // $FLASKBBD as the guide assumes it: a checkout built with `cargo build --release`.
    // The tests build the debug profile, so the checkout here is made of links: this
    // repository's files, and the daemon where a release build puts it.
    let checkout = dir.join("flaskbbd");
    std::fs::create_dir_all(checkout.join("target/release")).unwrap();
    for entry in std::fs::read_dir(root()).unwrap() {
        let name = entry.unwrap().file_name();
        if name != "target" {
            std::os::unix::fs::symlink(root().join(&name), checkout.join(&name)).unwrap();
        }
    }
    std::os::unix::fs::symlink(
        build().join("flaskbbd"),
        checkout.join("target/release/flaskbbd"),
    )
    .unwrap();
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", &script])
        .current_dir(&dir)
        .env("FLASKBBD", &checkout);
    for (k, _) in std::env::vars() {
        if k.starts_with("CARGO_") && k != "CARGO_HOME" {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "the walkthrough failed:\n{stdout}\n{stderr}"
    );
    let chain: Vec<&str> = stdout
        .split('\n')
        .skip_while(|l| *l != "flaskbb_post_authenticate")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    // After the built-in checks (tryfirst); only the lockout's clearing (trylast)
    // comes later.
    let at = |name: &str| chain.iter().position(|l| l.contains(name));
    let greeter = at("greeter").unwrap_or_else(|| panic!("no greeter: {stdout}"));
    assert!(chain[greeter].contains("libgreeter.so"), "{stdout}");
    assert!(at("block_banned") < Some(greeter), "{stdout}");
    assert_eq!(at("lockout"), Some(chain.len() - 1), "{stdout}");
    assert!(stdout.trim_end().ends_with("flaskbb.toml: OK"), "{stdout}");
    // The guide's unit tests ran and passed, TestHost making the instance from a
    // configuration.
    assert!(
        stdout.contains("test tests::greets_the_user_who_logged_in ... ok")
            && stdout.contains("test tests::a_misspelt_key_is_refused ... ok"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
