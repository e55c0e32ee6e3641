//! Events: `PostSaveBefore` round trips through five plugin instances (word filters)
//! with 1, 16 and 256 concurrent clients, against a bare Varlink echo server on the
//! same kind of socket, with the same client and the same message, in one run: the
//! daemon's cost above what the socket itself costs.

use std::{
    io::ErrorKind,
    path::Path,
    process::{Child, Command},
    time::{Duration, Instant},
};

use flaskbbd_protocol::client::Client;
use flaskbbd_tests::{calls::post_save_before, Scratch};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};

use crate::stats::{arg, percentile, release_daemon, run_clients};

/// The five instances: word filters, each masking its own words, running where
/// `isolation` says ("none": in the daemon's process; "process": in a plugin host,
/// one for the five).
pub(crate) fn five_filters(isolation: &str) -> String {
    (0..5)
        .map(|i| {
            format!(
                "[[plugin]]\nname = \"filter{i}\"\nlibrary = \"wordfilter\"\nisolation = \"{isolation}\"\nconfig = {{ words = [\"spam{i}\", \"scam{i}\", \"junk{i}\"], action = \"mask\" }}\n"
            )
        })
        .collect()
}

/// The post every call saves: a forum-sized paragraph with one word per filter.
pub(crate) const CONTENT: &str = "Thanks for the reply! I tried spam0 and scam1 settings as the \
    documentation says, but junk2 still shows up when I save. Is spam3 expected, or \
    should I open a ticket? Here is my config, minus the junk4 parts.";

/// The call both servers answer: `PostSaveBefore` of [`CONTENT`] by user 2.
fn the_call() -> flaskbbd_protocol::methods::EventCall {
    post_save_before(json!({ "content": CONTENT, "user_id": 2 }))
}

/// One row: round trips/s, p50 and p99.
pub(crate) struct Row {
    /// Round trips per second, all clients together.
    pub rate: f64,
    /// The median round trip.
    pub p50: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// Round trips made, all clients together.
    pub calls: usize,
}

/// `clients` connections to `socket`, each sending the post in a closed loop for
/// `seconds` and checking each answer with `check`.
pub(crate) fn measure(
    socket: &Path,
    clients: usize,
    seconds: f64,
    check: fn(&serde_json::Value),
) -> Row {
    let mut tally = Tally::default();
    tally.sample(socket, clients, seconds, check);
    tally.row()
}

/// Round trips gathered over one or more spells of [`measure`]'s loop against one
/// server: the spells of several servers can be interleaved, so that a slow drift in
/// what the machine's neighbours take affects each server alike.
#[derive(Default)]
pub(crate) struct Tally {
    times: Vec<Duration>,
    wall: Duration,
}

impl Tally {
    /// One more spell of `seconds`, as [`measure`] makes it.
    pub(crate) fn sample(
        &mut self,
        socket: &Path,
        clients: usize,
        seconds: f64,
        check: fn(&serde_json::Value),
    ) {
        let (times, wall) = run_clients(
            clients,
            seconds,
            &|| Client::connect(socket).expect("connect"),
            &|c| {
                let r = c.send(&the_call()).expect("PostSaveBefore");
                check(&r);
            },
        );
        self.times.extend(times);
        self.wall += wall;
    }

    /// Every spell's round trips together: calls/s over their time, percentiles of all.
    pub(crate) fn row(&self) -> Row {
        Row {
            calls: self.times.len(),
            rate: self.times.len() as f64 / self.wall.as_secs_f64(),
            p50: percentile(self.times.clone(), 0.5),
            p99: percentile(self.times.clone(), 0.99),
        }
    }
}

/// `flaskbbd-bench events [--seconds N]`.
pub(crate) fn events(args: &[String]) {
    let seconds = arg(args, "--seconds", 5) as f64;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let s = Scratch::new("bench-events");
    let mut echo = EchoServer::start(&s.path.join("echo.sock"));
    let (d, _) = release_daemon(
        &s,
        &format!(
            "[database]\nurl = \"sqlite:///bench.db\"\n[log]\nfilter = \"warn\"\n{}",
            five_filters("none")
        ),
    );
    println!(
        "PostSaveBefore through 5 wordfilter instances in the daemon's process, against a \
         Varlink echo server answering the same message; {seconds} s per row, {cores} cores, release build:"
    );
    println!(
        "{:>7} | {:>9} {:>9} {:>6} | {:>8} {:>8} {:>6} | {:>8} {:>8}",
        "clients", "rt/s", "echo", "ratio", "p50 µs", "echo", "ratio", "p99 µs", "echo"
    );
    for clients in [1usize, 16, 256] {
        // Alternate the two, so that neither gets the quieter half of the run.
        let ours = measure(&d.socket, clients, seconds, |r| {
            assert!(r["post"]["content"]
                .as_str()
                .unwrap()
                .contains(r"\*\*\*\*\*"));
        });
        let theirs = measure(&echo.socket, clients, seconds, |r| {
            assert_eq!(r["post"]["content"].as_str(), Some(CONTENT));
        });
        println!(
            "{clients:>7} | {:>9.0} {:>9.0} {:>6.2} | {:>8.1} {:>8.1} {:>6.2} | {:>8.1} {:>8.1}",
            ours.rate,
            theirs.rate,
            ours.rate / theirs.rate,
            micros(ours.p50),
            micros(theirs.p50),
            micros(ours.p50) / micros(theirs.p50),
            micros(ours.p99),
            micros(theirs.p99),
        );
    }
    println!("(round trips/s: flaskbbd, the echo server, flaskbbd ÷ echo; p50: the same, flaskbbd ÷ echo)");
    echo.stop();
}

/// Microseconds, for printing.
pub(crate) fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A bare Varlink echo server in a process of its own: the socket's own cost.
pub(crate) struct EchoServer {
    child: Child,
    /// Where it listens.
    pub socket: std::path::PathBuf,
}

impl EchoServer {
    /// Starts it on `socket` and waits until it listens.
    pub(crate) fn start(socket: &Path) -> EchoServer {
        let child = Command::new(std::env::current_exe().expect("this binary"))
            .arg("echo-server")
            .arg(socket)
            .spawn()
            .expect("the echo server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "the echo server did not listen on {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        EchoServer {
            child,
            socket: socket.to_owned(),
        }
    }

    /// Ends it.
    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `flaskbbd-bench echo-server SOCKET` (not for people): a Varlink server that answers
/// every message with the message itself (a call's `parameters` read back as a
/// reply's), built as a server on this runtime is built at its cheapest: tokio with a
/// worker per core, a task per connection, buffered reads, and replies to pipelined
/// calls flushed together.
pub(crate) fn echo_server(args: &[String]) {
    let socket = args.first().expect("echo-server SOCKET").clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let _ = std::fs::remove_file(&socket);
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind the echo socket");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let (rd, wr) = stream.into_split();
                let (mut rd, mut wr) = (BufReader::new(rd), BufWriter::new(wr));
                let mut msg = Vec::new();
                loop {
                    msg.clear();
                    match rd.read_until(0, &mut msg).await {
                        Ok(_) if msg.last() == Some(&0) => {}
                        Ok(_) => return,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(_) => return,
                    }
                    if wr.write_all(&msg).await.is_err() {
                        return;
                    }
                    if !rd.buffer().contains(&0) && wr.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}
