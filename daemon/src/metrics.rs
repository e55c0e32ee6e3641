//! The daemon's metrics: what it answered and how fast, what each plugin instance's
//! hook calls did, its queues, connections, reloads and lockouts. Served in the
//! Prometheus text format (OpenMetrics) on `metrics.listen` and through
//! `org.flaskbb.Admin.GetMetrics`, and summed up for a person by
//! `org.flaskbb.Admin.GetStatus` (`flaskbbd status`).
//!
//! Labels carry only names the daemon itself defines (methods of its interfaces, error
//! names, instance names from `flaskbb.toml`, hook names): never a user, an address or
//! anything a client sent. A call to a method that does not exist counts under the
//! method `(invalid)`.
//!
//! One daemon runs per process, so the metrics are the process's (as the connection
//! counters of `server` are): [`global`].

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::hook::Hook;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::proto::RequestWindow;

/// The outcome of an `Authenticate` whose password was right and whose second step is
/// pending: answered as `AuthenticationFailed` with a token, but no failure.
pub(crate) const SECOND_STEP: &str = "second_step";

/// The method label of a call to no method of the daemon's interfaces (or of a message
/// that was no call at all).
pub(crate) const INVALID_METHOD: &str = "(invalid)";

/// Answer-time buckets of requests, in seconds: from an event answered on the
/// connection's thread to a login waiting its turn for bcrypt under load.
const REQUEST_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Time buckets of one hook call, in seconds: most take microseconds; a password check
/// or an LDAP bind takes milliseconds to seconds.
const HOOK_BUCKETS: [f64; 18] = [
    0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

fn hook_histogram() -> Histogram {
    Histogram::new(HOOK_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: Cow<'static, str>,
    outcome: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookCallLabels {
    instance: String,
    hook: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    instance: String,
    hook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: &'static str,
}

/// How a hook call ended, as `flaskbbd_hook_calls_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HookOutcome {
    /// It answered.
    Ok,
    /// The plugin does not implement the hook (the chain went on without it).
    NotImplemented,
    /// It stopped the flow as the hook allows: a refused login, a forced logout, a
    /// rejected post.
    Refused,
    /// It failed or panicked: the request failed closed.
    Failed,
}

impl HookOutcome {
    const ALL: [HookOutcome; 4] = [
        HookOutcome::Ok,
        HookOutcome::NotImplemented,
        HookOutcome::Refused,
        HookOutcome::Failed,
    ];

    fn label(self) -> &'static str {
        match self {
            HookOutcome::Ok => "ok",
            HookOutcome::NotImplemented => "not_implemented",
            HookOutcome::Refused => "refused",
            HookOutcome::Failed => "failed",
        }
    }
}

/// What the lockout did, as `flaskbbd_lockout_actions_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockoutAction {
    /// A failed login or reauthentication was counted.
    Counted,
    /// A login was held back by the growing per-account delay.
    Delayed,
    /// A login was refused because its account (or account and address) is locked.
    Refused,
    /// An operator lifted counts (`Unlock`, `flaskbbd user unlock`).
    Unlocked,
}

impl LockoutAction {
    fn label(self) -> &'static str {
        match self {
            LockoutAction::Counted => "counted",
            LockoutAction::Delayed => "delayed",
            LockoutAction::Refused => "refused",
            LockoutAction::Unlocked => "unlocked",
        }
    }
}

/// One instance's hook calls since the daemon started, for `GetStatus`.
#[derive(Debug, Default)]
pub(crate) struct InstanceTotals {
    calls: AtomicU64,
    failed: AtomicU64,
    nanos: AtomicU64,
}

impl InstanceTotals {
    /// Calls, failed calls and their mean time in milliseconds.
    pub(crate) fn read(&self) -> (u64, u64, f64) {
        let calls = self.calls.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        let nanos = self.nanos.load(Ordering::Relaxed);
        let mean_ms = if calls == 0 {
            0.0
        } else {
            nanos as f64 / calls as f64 / 1e6
        };
        (calls, failed, mean_ms)
    }
}

/// The metrics of one instance's impl of one hook, looked up once when its chain is
/// built, so that a call only adds to them.
#[derive(Debug, Clone)]
pub(crate) struct HookStats {
    outcomes: [Counter; 4],
    seconds: Histogram,
    totals: Arc<InstanceTotals>,
}

impl HookStats {
    /// Counts one call that took `took` and ended as `outcome`.
    pub(crate) fn record(&self, outcome: HookOutcome, took: Duration) {
        self.outcomes[outcome as usize].inc();
        self.seconds.observe(took.as_secs_f64());
        if outcome != HookOutcome::NotImplemented {
            self.totals.calls.fetch_add(1, Ordering::Relaxed);
            self.totals
                .nanos
                .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        }
        if outcome == HookOutcome::Failed {
            self.totals.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The gauges read when the metrics are: filled in by the daemon.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Load {
    /// Open connections.
    pub connections: u64,
    /// Requests being served.
    pub in_flight: u64,
    /// Requests waiting for a worker thread.
    pub queued: u64,
    /// Passwords waiting for a bcrypt lane.
    pub hashes_queued: u64,
    /// Hook calls hung past their timeout.
    pub stuck_calls: u64,
    /// The generation serving.
    pub generation: u64,
}

/// The per-second counts of the last minute (and a second), for `GetStatus`.
#[derive(Debug)]
struct Recent {
    /// Per second `s` of the daemon's life, at `s % 61`: the second it holds,
    /// requests, refused, failed.
    slots: [(u64, u64, u64, u64); 61],
}

impl Recent {
    fn add(&mut self, second: u64, refused: bool, failed: bool) {
        let slot = &mut self.slots[(second % 61) as usize];
        if slot.0 != second {
            *slot = (second, 0, 0, 0);
        }
        slot.1 += 1;
        slot.2 += u64::from(refused);
        slot.3 += u64::from(failed);
    }

    /// The 60 whole seconds before `now`.
    fn last_minute(&self, now: u64) -> RequestWindow {
        let mut w = RequestWindow {
            seconds: 60,
            ..RequestWindow::default()
        };
        for &(second, requests, refused, failed) in &self.slots {
            if second < now && second + 60 >= now {
                w.requests += requests;
                w.refused += refused;
                w.failed += failed;
            }
        }
        w
    }
}

/// Every metric of the daemon.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<MethodLabels, Histogram, fn() -> Histogram>,
    hook_calls: Family<HookCallLabels, Counter>,
    hook_seconds: Family<HookLabels, Histogram, fn() -> Histogram>,
    hook_timeouts: Family<HookLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    lockout: Family<ActionLabels, Counter>,
    load: LoadGauges,
    instances: Mutex<HashMap<String, Arc<InstanceTotals>>>,
    recent: Mutex<Recent>,
    methods: HashSet<&'static str>,
    errors: HashSet<&'static str>,
    started: Instant,
}

/// The process's metrics.
pub(crate) fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The full names (`interface.Name`) of what the daemon's interfaces declare with
/// `keyword` (`method` or `error`): a small, fixed set, kept for the process's life so
/// that labels borrow them instead of copying a name per request.
fn declared(keyword: &str) -> HashSet<&'static str> {
    let prefix = format!("{keyword} ");
    flaskbbd_protocol::INTERFACES
        .iter()
        .flat_map(|(interface, text)| {
            let prefix = prefix.clone();
            text.lines().filter_map(move |line| {
                let name = line.trim_start().strip_prefix(prefix.as_str())?;
                let name = name.split(|c: char| c == '(' || c.is_whitespace()).next()?;
                Some(format!("{interface}.{name}"))
            })
        })
        .map(|full| &*Box::leak(full.into_boxed_str()))
        .collect()
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Registers `metric` in `registry` under `name` and gives it back, to keep.
fn registered<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

/// Registers what never changes while the daemon runs: its start time and version.
fn register_constants(registry: &mut Registry) {
    let start_time = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    start_time.set(unix_now().as_secs_f64());
    registry.register(
        "start_time_seconds",
        "When the daemon started, in seconds since the Unix epoch",
        start_time,
    );
    let build = Family::<BuildLabels, Gauge>::default();
    build
        .get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
    registry.register("build_info", "The daemon's version", build);
}

/// The gauges of what the daemon is doing, set from a [`Load`] when read.
struct LoadGauges {
    connections: Gauge,
    in_flight: Gauge,
    queued: Family<QueueLabels, Gauge>,
    stuck_calls: Gauge,
    generation: Gauge,
}

impl LoadGauges {
    fn register(r: &mut Registry) -> LoadGauges {
        let connections = registered(r, "connections", "Open connections", Gauge::default());
        let in_flight = registered(
            r,
            "requests_in_flight",
            "Requests being served",
            Gauge::default(),
        );
        let queued = registered(
            r,
            "queue_depth",
            "Work waiting: requests for a worker thread (workers), passwords for a bcrypt lane (bcrypt)",
            Family::<QueueLabels, Gauge>::default(),
        );
        let stuck_calls = registered(
            r,
            "stuck_calls",
            "Hook calls hung past their timeout right now",
            Gauge::default(),
        );
        let generation = registered(
            r,
            "generation",
            "The plugin generation serving",
            Gauge::default(),
        );
        LoadGauges {
            connections,
            in_flight,
            queued,
            stuck_calls,
            generation,
        }
    }

    fn set(&self, load: &Load) {
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.connections.set(as_i64(load.connections));
        self.in_flight.set(as_i64(load.in_flight));
        self.queued
            .get_or_create(&QueueLabels { queue: "workers" })
            .set(as_i64(load.queued));
        self.queued
            .get_or_create(&QueueLabels { queue: "bcrypt" })
            .set(as_i64(load.hashes_queued));
        self.stuck_calls.set(as_i64(load.stuck_calls));
        self.generation.set(as_i64(load.generation));
    }
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("flaskbbd");
        let r = &mut registry;
        let requests = registered(
            r,
            "requests",
            "Requests answered, by method and outcome (ok, or the error's name)",
            Family::<RequestLabels, Counter>::default(),
        );
        let request_seconds = registered(
            r,
            "request_duration_seconds",
            "Time from a request's arrival to its answer",
            Family::new_with_constructor(request_histogram as fn() -> _),
        );
        let hook_calls = registered(
            r,
            "hook_calls",
            "Hook calls, by instance, hook and outcome (ok, not_implemented, refused, failed)",
            Family::<HookCallLabels, Counter>::default(),
        );
        let hook_seconds = registered(
            r,
            "hook_call_duration_seconds",
            "Time of one hook call, by instance and hook",
            Family::new_with_constructor(hook_histogram as fn() -> _),
        );
        let hook_timeouts = registered(
            r,
            "hook_timeouts",
            "Hook calls that did not answer within daemon.hook_timeout_ms",
            Family::<HookLabels, Counter>::default(),
        );
        let reloads = registered(
            r,
            "reloads",
            "Reloads (SIGHUP, Reload, SetPluginEnabled), by result",
            Family::<ResultLabels, Counter>::default(),
        );
        let lockout = registered(
            r,
            "lockout_actions",
            "What the lockout did: counted a failure, delayed or refused a login, unlocked",
            Family::<ActionLabels, Counter>::default(),
        );
        let load = LoadGauges::register(r);
        register_constants(r);
        let methods = declared("method");
        let metrics = Metrics {
            registry,
            requests,
            request_seconds,
            hook_calls,
            hook_seconds,
            hook_timeouts,
            reloads,
            lockout,
            load,
            instances: Mutex::new(HashMap::new()),
            recent: Mutex::new(Recent {
                slots: [(0, 0, 0, 0); 61],
            }),
            methods,
            errors: declared("error"),
            started: Instant::now(),
        };
        metrics.show_at_zero();
        metrics
    }

    /// Creates the series a rate is taken over at zero, so that each has a beginning:
    /// requests by every declared method, every lockout action, both reload results.
    fn show_at_zero(&self) {
        for m in &self.methods {
            let _ = self.request_seconds.get_or_create(&MethodLabels {
                method: Cow::Borrowed(*m),
            });
        }
        for action in [
            LockoutAction::Counted,
            LockoutAction::Delayed,
            LockoutAction::Refused,
            LockoutAction::Unlocked,
        ] {
            let _ = self.lockout.get_or_create(&ActionLabels {
                action: action.label(),
            });
        }
        for result in ["ok", "failed"] {
            let _ = self.reloads.get_or_create(&ResultLabels { result });
        }
    }

    /// The label a method name counts under: itself if an interface declares it.
    fn method_label(&self, name: &str) -> Cow<'static, str> {
        Cow::Borrowed(self.methods.get(name).copied().unwrap_or(INVALID_METHOD))
    }

    /// The label an outcome counts under: `ok` or a declared error's name (the daemon
    /// answers no other).
    fn outcome_label(&self, outcome: &str) -> Cow<'static, str> {
        match outcome {
            "ok" => Cow::Borrowed("ok"),
            SECOND_STEP => Cow::Borrowed(SECOND_STEP),
            _ => match self.errors.get(outcome) {
                Some(name) => Cow::Borrowed(name),
                None => Cow::Owned(outcome.to_owned()),
            },
        }
    }

    /// Counts a request that arrived at `arrived` and is answered now with `outcome`
    /// (`ok` or the error's name); returns how long it took. Reads the clock once.
    pub(crate) fn request(&self, method: &str, outcome: &str, arrived: Instant) -> Duration {
        let now = Instant::now();
        let took = now.saturating_duration_since(arrived);
        let method = self.method_label(method);
        let failed = outcome.ends_with(".InternalError");
        let refused = outcome != "ok" && !failed;
        self.requests
            .get_or_create(&RequestLabels {
                method: method.clone(),
                outcome: self.outcome_label(outcome),
            })
            .inc();
        self.request_seconds
            .get_or_create(&MethodLabels { method })
            .observe(took.as_secs_f64());
        let second = now.saturating_duration_since(self.started).as_secs();
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(second, refused, failed);
        took
    }

    /// The metrics of `instance`'s impl of `hook`, for its chain entry.
    pub(crate) fn hook_stats(&self, instance: &str, hook: Hook) -> HookStats {
        let outcomes = HookOutcome::ALL.map(|o| {
            self.hook_calls
                .get_or_create(&HookCallLabels {
                    instance: instance.to_owned(),
                    hook: hook.name(),
                    outcome: o.label(),
                })
                .clone()
        });
        let seconds = self
            .hook_seconds
            .get_or_create(&HookLabels {
                instance: instance.to_owned(),
                hook: hook.name(),
            })
            .clone();
        HookStats {
            outcomes,
            seconds,
            totals: self.totals(instance),
        }
    }

    /// The call totals of `instance`.
    pub(crate) fn totals(&self, instance: &str) -> Arc<InstanceTotals> {
        self.instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(instance.to_owned())
            .or_default()
            .clone()
    }

    /// Counts a hook call of `instance` that timed out. The call itself counts as
    /// failed when it ends (at once for an isolated instance, whose host is killed;
    /// when it returns for one in the daemon's process).
    pub(crate) fn hook_timeout(&self, instance: &str, hook: Hook) {
        self.hook_timeouts
            .get_or_create(&HookLabels {
                instance: instance.to_owned(),
                hook: hook.name(),
            })
            .inc();
    }

    /// Counts a reload and whether it took effect.
    pub(crate) fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Counts what the lockout did.
    pub(crate) fn lockout(&self, action: LockoutAction) {
        self.lockout
            .get_or_create(&ActionLabels {
                action: action.label(),
            })
            .inc();
    }

    /// The requests of the last full minute.
    pub(crate) fn last_minute(&self) -> RequestWindow {
        let now = self.started.elapsed().as_secs();
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_minute(now)
    }

    /// How long the daemon has been running.
    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Every metric in the Prometheus text format (OpenMetrics 1.0), with the gauges
    /// set from `load`.
    pub(crate) fn text(&self, load: Load) -> String {
        self.load.set(&load);
        let mut text = String::new();
        // Writing into a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// The content type of [`Metrics::text`].
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` on `listener` until the process ends: a minimal HTTP/1.1
/// server (one request per connection) for Prometheus to scrape. `text` gives the
/// current metrics.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    text: impl Fn() -> String + Send + Sync + 'static,
) {
    let text = Arc::new(text);
    // A scraper or two, not a crowd: a few connections at a time.
    let limit = Arc::new(tokio::sync::Semaphore::new(8));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("metrics.listen: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let text = text.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = answer_scrape(stream, &*text).await {
                tracing::debug!(%peer, "metrics request: {e}");
            }
        });
    }
}

/// The longest request head a scrape may send.
const MAX_HEAD: usize = 8 * 1024;

/// How long a scraper has to send its request.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads one request head and answers it.
async fn answer_scrape(
    mut stream: tokio::net::TcpStream,
    text: &(dyn Fn() -> String + Send + Sync),
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(HEAD_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() > MAX_HEAD {
                return Ok(false);
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(false);
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<bool, std::io::Error>(true)
    })
    .await;
    let complete = match read {
        Ok(r) => r?,
        Err(_) => false,
    };
    let (status, content_type, body) = if !complete {
        (
            "400 Bad Request",
            "text/plain",
            "incomplete request\n".to_owned(),
        )
    } else {
        let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let mut parts = line.split(' ');
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let path = target.split('?').next().unwrap_or("");
        match (method, path) {
            ("GET" | "HEAD", "/metrics") => ("200 OK", CONTENT_TYPE, text()),
            ("GET" | "HEAD", _) => (
                "404 Not Found",
                "text/plain",
                "flaskbbd serves its metrics at /metrics\n".to_owned(),
            ),
            _ => (
                "405 Method Not Allowed",
                "text/plain",
                "only GET /metrics\n".to_owned(),
            ),
        }
    };
    let head_only = head.starts_with(b"HEAD ");
    let mut reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        reply.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&reply).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_names_are_every_interfaces_methods_and_errors() {
        let e = declared("error");
        for name in [
            "org.flaskbb.Auth.AuthenticationFailed",
            "org.flaskbb.Events.InternalError",
            "org.varlink.service.MethodNotFound",
        ] {
            assert!(e.contains(name), "{name} missing from {e:?}");
        }
        let m = declared("method");
        for name in [
            "org.flaskbb.Auth.Authenticate",
            "org.flaskbb.Events.PostSaveBefore",
            "org.flaskbb.Admin.GetMetrics",
            "org.varlink.service.GetInfo",
        ] {
            assert!(m.contains(name), "{name} missing from {m:?}");
        }
        assert!(!m.contains("org.flaskbb.Auth.Nope"));
    }

    #[test]
    fn the_last_minute_counts_whole_seconds_before_now_only() {
        let mut r = Recent {
            slots: [(0, 0, 0, 0); 61],
        };
        r.add(1_000, false, false);
        r.add(1_030, true, false);
        r.add(1_059, false, true);
        r.add(1_060, false, false); // the current second: not whole yet
        let w = r.last_minute(1_060);
        assert_eq!((w.requests, w.refused, w.failed), (3, 1, 1));
        // A minute on, only what came since counts.
        let w = r.last_minute(1_090);
        assert_eq!((w.requests, w.refused, w.failed), (3, 1, 1));
        let w = r.last_minute(1_120);
        assert_eq!((w.requests, w.refused, w.failed), (1, 0, 0));
        // The slot of second 1000 is reused 61 seconds on, and starts over.
        r.add(1_061, false, false);
        let w = r.last_minute(1_060);
        assert_eq!((w.requests, w.refused, w.failed), (2, 1, 1));
    }
}
