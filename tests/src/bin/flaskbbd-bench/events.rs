//! Events: PostSaveBefore round trips through five plugin instances (word filters)
//! with 1, 16 and 256 concurrent clients.

use flaskbbd_tests::Scratch;
use serde_json::json;

use crate::stats::{arg, closed_loop, ms, percentile, release_daemon};

/// The five instances: word filters, each masking its own words.
pub fn five_filters() -> String {
    (0..5)
        .map(|i| {
            format!(
                "[[plugin]]\nname = \"filter{i}\"\nlibrary = \"wordfilter\"\nconfig = {{ words = [\"spam{i}\", \"scam{i}\", \"junk{i}\"], action = \"mask\" }}\n"
            )
        })
        .collect()
}

/// The post every call saves: a forum-sized paragraph with one word per filter.
pub const CONTENT: &str = "Thanks for the reply! I tried spam0 and scam1 settings as the \
    documentation says, but junk2 still shows up when I save. Is spam3 expected, or \
    should I open a ticket? Here is my config, minus the junk4 parts.";

/// `flaskbbd-bench events [--seconds N]`.
pub fn events(args: &[String]) {
    let seconds = arg(args, "--seconds", 5) as f64;
    let s = Scratch::new("bench-events");
    let (d, _) = release_daemon(
        &s,
        &format!(
            "[database]\nurl = \"sqlite:///bench.db\"\n[log]\nfilter = \"warn\"\n{}",
            five_filters()
        ),
    );
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!("PostSaveBefore through 5 plugin instances (wordfilter), {seconds} s per row, {cores} cores, release build:");
    println!(
        "{:>8} {:>12} {:>10} {:>10}",
        "clients", "round trips/s", "p50 ms", "p99 ms"
    );
    for clients in [1usize, 16, 256] {
        let (times, wall) = closed_loop(&d, clients, seconds, &|c| {
            let r = c
                .call(
                    "org.flaskbb.Events.PostSaveBefore",
                    json!({ "post": { "content": CONTENT, "user_id": 2 } }),
                )
                .expect("PostSaveBefore");
            assert!(r["post"]["content"].as_str().unwrap().contains("*****"));
        });
        let rate = times.len() as f64 / wall.as_secs_f64();
        println!(
            "{clients:>8} {rate:>12.0} {:>10.3} {:>10.3}",
            ms(percentile(times.clone(), 0.5)),
            ms(percentile(times, 0.99))
        );
    }
}
