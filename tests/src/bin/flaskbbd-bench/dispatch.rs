//! Hook dispatch: one hook through chains of 1, 10 and 100 plugin impls loaded through
//! the ABI, against the same chain of plain Rust closures: the cost the ABI adds.

use std::{hint::black_box, time::Instant};

use flaskbbd::{chain::Input, proto::Context, request::Request};
use flaskbbd_tests::{fixture_release, generation, Scratch};

use crate::stats::arg;

type Closure = Box<dyn Fn(&str) -> Result<(), String>>;

/// `flaskbbd-bench dispatch [--calls N]`.
pub fn dispatch(args: &[String]) {
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
                "[[plugin]]\nname = \"noop{i}\"\nlibrary = \"noop\"\n"
            ));
        }
        let path = s.write("flaskbb.toml", &cfg);
        let (g, store) = generation(&path);
        let req = Request::new(store, Context::new());
        let plugins = || {
            let t = Instant::now();
            for _ in 0..calls {
                let out = g.call(
                    &req,
                    Input::UserRegistered {
                        username: black_box("bench"),
                    },
                );
                assert!(out.result.is_ok());
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
