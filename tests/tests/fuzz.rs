//! The libFuzzer target on the message decoder and request parsing (`fuzz/`), run for
//! a fixed number of executions from the committed corpus and every regression input.
//!
//! Longer by hand: `FLASKBBD_FUZZ_SECONDS=3600 FLASKBBD_FUZZ_SEED=0 cargo test -p
//! flaskbbd-tests --test fuzz -- --nocapture` (seed 0 is a random seed), or
//! `cargo +nightly fuzz run decode` with cargo-fuzz and AddressSanitizer; see
//! `fuzz/README.md`.

// Test code: a failure here should stop the test loudly, and panic! is how its
// helpers say so (the workspace denies panic! in the daemon and plugins).
#![allow(clippy::panic)]

use std::{fs, process::Command};

use flaskbbd_tests::{build_fuzz_target, root, Scratch};

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: give a whole number")),
        Err(_) => default,
    }
}

#[test]
fn the_decoder_and_request_parsing_survive_a_million_fuzzed_inputs() {
    let bin = build_fuzz_target("decode");
    let s = Scratch::new("fuzz");
    // libFuzzer adds what it finds to its first corpus directory: a scratch copy.
    let corpus = s.path.join("corpus");
    fs::create_dir_all(&corpus).unwrap();
    let mut seeds = 0;
    for dir in ["fuzz/corpus/decode", "fuzz/regressions"] {
        for entry in fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                fs::copy(&path, corpus.join(path.file_name().unwrap())).unwrap();
                seeds += 1;
            }
        }
    }
    assert!(
        seeds >= 10,
        "the committed corpus is missing ({seeds} files)"
    );
    let runs = env_u64("FLASKBBD_FUZZ_RUNS", 1_000_000);
    let seconds = env_u64("FLASKBBD_FUZZ_SECONDS", 0);
    let seed = env_u64("FLASKBBD_FUZZ_SEED", 1);
    let artifacts = s.path.join("artifacts");
    fs::create_dir_all(&artifacts).unwrap();
    let mut cmd = Command::new(&bin);
    cmd.arg(&corpus)
        .arg(format!(
            "-dict={}",
            root().join("fuzz/decode.dict").display()
        ))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(format!("-seed={seed}"))
        .arg("-max_len=8192")
        .arg("-print_final_stats=1");
    if seconds > 0 {
        cmd.arg(format!("-max_total_time={seconds}"));
    } else {
        cmd.arg(format!("-runs={runs}"));
    }
    let out = cmd.output().expect("the fuzz target runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stats: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("stat::") || l.starts_with("Done "))
        .collect();
    println!("{}", stats.join("\n"));
    if !out.status.success() {
        let found: Vec<String> = fs::read_dir(&artifacts)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                format!(
                    "{}: {:?}",
                    p.display(),
                    String::from_utf8_lossy(&fs::read(&p).unwrap())
                )
            })
            .collect();
        panic!(
            "the fuzzer found a failing input; copy it into fuzz/regressions/ (the protocol \
             crate's corpus test replays it), then fix the cause.\n{}\n\nlast output:\n{}",
            found.join("\n"),
            stderr
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(
        stderr.contains("Done ") || seconds > 0,
        "libFuzzer did not report its runs:\n{stderr}"
    );
}
