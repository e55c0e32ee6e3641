//! Hook dispatch: one hook through chains of 1, 10 and 100 plugin impls loaded through
//! the ABI in the daemon's process, against the same chain of plain Rust closures: the
//! cost the ABI adds (what isolation adds is `isolation.rs`).

use std::{hint::black_box, time::Instant};

use flaskbbd::embed::{Chains, Context, EventCall};
use flaskbbd_tests::{fixture_release, Scratch};

use crate::stats::arg;

type Closure = Box<dyn Fn(&str) -> Result<(), String>>;

/// `flaskbbd-bench dispatch [--calls N]`.
pub(crate) fn dispatch(args: &[String]) {
    let calls = arg(args, "--calls", 200_000) as usize;
    let noop = fixture_release("bench");
    println!("flaskbb_event_user_registered through a chain of N no-op impls, {calls} calls per batch, median of 9 interleaved batches:");
    println!(
        "{:>5} {:>16} {:>16} {:>8} {:>18}",
        "N", "plugins ns/call", "closures ns/call", "ratio", "ABI ns per impl"
    );
    for n in [1usize, 10, 100] {
        let s = Scratch::new(&format!("bench-dispatch-{n}"));
        let mut cfg = format!(
            "[plugins]\ndirs = [{:?}]\n[database]\nurl = \"sqlite:///bench.db\"\n",
            noop.display().to_string()
        );
        for i in 0..n {
            cfg.push_str(&format!(
                "[[plugin]]\nname = \"noop{i}\"\nlibrary = \"noop\"\nisolation = \"none\"\n"
            ));
        }
        let path = s.write("flaskbb.toml", &cfg);
        let chains = Chains::load(&path).expect("the configuration builds");
        let req = chains.request(Context::new());
        let plugins = || {
            // The calls are made before the clock starts: only the chain is timed.
            let events: Vec<EventCall> = (0..calls)
                .map(|_| EventCall::UserRegistered {
                    username: "bench".into(),
                })
                .collect();
            let t = Instant::now();
            for event in events {
                let out = chains.fire(&req, black_box(event));
                assert!(out.is_ok());
            }
            t.elapsed()
        };
        let closures: Vec<Closure> = (0..n)
            .map(|i| -> Closure {
                // As cheap as the plugin: look at the argument, succeed.
                Box::new(move |u: &str| {
                    if black_box(u).len() == usize::MAX - i {
                        Err(String::new())
                    } else {
                        Ok(())
                    }
                })
            })
            .collect();
        let closures = black_box(closures);
        let plain = || {
            let t = Instant::now();
            for _ in 0..calls {
                let mut r = Ok(());
                for c in &closures {
                    if let Err(e) = c(black_box("bench")) {
                        r = Err(e);
                        break;
                    }
                }
                assert!(black_box(r).is_ok());
            }
            t.elapsed()
        };
        plugins();
        plain();
        let (mut p, mut c) = (Vec::new(), Vec::new());
        for _ in 0..9 {
            p.push(plugins());
            c.push(plain());
        }
        p.sort();
        c.sort();
        let pn = p[4].as_nanos() as f64 / calls as f64;
        let cn = c[4].as_nanos() as f64 / calls as f64;
        println!(
            "{n:>5} {pn:>16.1} {cn:>16.1} {:>8.1} {:>18.1}",
            pn / cn,
            (pn - cn) / n as f64
        );
    }
}
