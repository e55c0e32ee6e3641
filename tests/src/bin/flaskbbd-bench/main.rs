//! flaskbbd's benchmarks: figures measured in one run, reported as ratios, never
//! asserted (these machines are shared and noisy). See docs/benchmarks.md, which
//! holds the last run's figures.
//!
//! `cargo run --release -p flaskbbd-tests --bin flaskbbd-bench -- <benchmark> [options]`

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod dispatch;
mod events;
mod flaskbb;
mod isolation;
mod memory;
mod stats;

const USAGE: &str = "usage: flaskbbd-bench <benchmark> [options]
  dispatch  [--calls N]        hook dispatch: plugin chains of 1/10/100 vs closures
  bcrypt    [--seconds N] [--cost C]  engines and lanes vs libxcrypt; Authenticate at 4 clients/core (default and 4 lanes) and alone, cost 10 and 12
  timing    [--cost N] [--rounds N]   wrong password vs unknown user vs locked account, quiet and under load
  events    [--seconds N]      PostSaveBefore through 5 plugins vs an echo server, 1/16/256 clients
  isolation [--calls N] [--seconds N] [--baseline DAEMON] [--filters-only]   an isolated impl call vs in-process; 5 filters each way, quiet and with every core busy
  flaskbb   [--rounds N]       the same flows through FlaskBB's own pipeline
  bridge    [--rounds N]       a FlaskBB login and topic post, plain vs through the bridge
  memory    [--starts N] [--connections N]   start-up time and RSS
  all                          every benchmark with its defaults";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]);
    match args.first().map(String::as_str) {
        Some("dispatch") => dispatch::dispatch(rest),
        Some("bcrypt") => auth::bcrypt_bench(rest),
        Some("timing") => auth::timing(rest),
        Some("events") => events::events(rest),
        Some("isolation") => isolation::isolation(rest),
        // The socket-floor measurement's other process (not for people).
        Some("echo-peer") => isolation::echo_peer(),
        // The contended runs' busy loop (not for people).
        Some("hog") => isolation::hog(),
        // The events benchmark's yardstick (not for people).
        Some("echo-server") => events::echo_server(rest),
        Some("flaskbb") => flaskbb::against_flaskbb(rest),
        Some("bridge") => flaskbb::bridge(rest),
        Some("memory") => memory::memory(rest),
        Some("all") => {
            dispatch::dispatch(&[]);
            println!();
            auth::bcrypt_bench(&[]);
            println!();
            auth::timing(&[]);
            println!();
            events::events(&[]);
            println!();
            isolation::isolation(&[]);
            println!();
            flaskbb::against_flaskbb(&[]);
            println!();
            flaskbb::bridge(&[]);
            println!();
            memory::memory(&[]);
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}
