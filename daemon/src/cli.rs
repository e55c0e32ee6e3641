//! The `flaskbbd` command line: the daemon (`serve`) and the operator's commands.
//!
//! `check`, `migrate`, `user …` and `store …` work on the configuration and the store
//! directly, with or without a running daemon; `plugins`, `hooks` and `auth` ask the
//! running daemon over its socket. `main.rs` only parses and calls [`main`].

use std::{
    collections::HashMap,
    io::{IsTerminal, Read},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use crate::{
    config::Config,
    generation::{render_chains, Generation},
    loader::Loader,
    lockout,
    password::Verifier,
    proto::{self, Context},
    store::{self, NewUser, Store},
};
use anyhow::{anyhow, bail, Context as _};
use clap::{Parser, Subcommand};
use flaskbbd_protocol::{
    client::{CallError, Client},
    methods::{AdminCall, Request as _},
};

/// FlaskBB's plugin hooks and authentication pipeline as a native daemon.
#[derive(Parser)]
#[command(name = "flaskbbd", version)]
pub struct Cli {
    /// The configuration file [default: ./flaskbb.toml, else the package's
    /// /etc/flaskbbd/flaskbb.toml].
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground, logging to stderr.
    Serve,
    /// Validate the configuration, load every plugin, print each chain in call order,
    /// and connect to the database.
    ///
    /// The database is tried as the daemon would use it, creating and changing
    /// nothing: PostgreSQL is connected to and queried; an SQLite file is opened when
    /// it exists, else its directory must be writable. The line says how many
    /// migrations are left to run. Database files other users can read are warned of.
    Check {
        /// Do not connect to the database (e.g. on a machine that cannot reach it).
        #[arg(long)]
        no_database: bool,
    },
    /// Create the database if missing and run pending migrations.
    Migrate,
    /// Manage users in the store.
    #[command(subcommand)]
    User(UserCommand),
    /// Read or write a plugin instance's key-value store (e.g. TOTP enrolment).
    #[command(subcommand)]
    Store(StoreCommand),
    /// List the running daemon's plugin instances.
    Plugins,
    /// Print the running daemon's chains in call order.
    Hooks,
    /// One screen of what the running daemon is doing: generation, uptime, plugins
    /// with their state and call times, requests over the last minute, queues.
    Status,
    /// Print the running daemon's metrics in the Prometheus text format.
    Metrics,
    /// Authenticate through the running daemon; reads the secret without echo (or from
    /// stdin when it is not a terminal).
    Auth {
        /// Username or email.
        identifier: String,
        /// Request context entries, KEY=VALUE (e.g. otp=123456).
        #[arg(long = "context", value_name = "KEY=VALUE")]
        context: Vec<String>,
    },
    /// Serve one isolated plugin instance for the daemon, which starts this itself
    /// (isolation = "process"); not run by hand.
    #[command(hide = true)]
    PluginHost {
        /// The instance's name (shown by ps; the daemon sends everything else).
        #[arg(long)]
        instance: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user (in FlaskBB's Member group); reads the password without echo.
    Add {
        username: String,
        #[arg(long)]
        email: String,
        /// Create the account already activated.
        #[arg(long)]
        activated: bool,
    },
    /// Set a user's password; reads it without echo.
    Passwd { identifier: String },
    /// Activate a user (or deactivate with --off).
    Activate {
        identifier: String,
        #[arg(long)]
        off: bool,
    },
    /// Ban a user (or lift the ban with --off).
    Ban {
        identifier: String,
        #[arg(long)]
        off: bool,
    },
    /// List users, with what the lockout holds against each.
    List,
    /// Lift an account's lockout: every count against it, or one address's.
    Unlock {
        /// A username, an email address, or a name no account has (such names are
        /// counted too).
        identifier: String,
        /// Only the count of this address (an IPv6 address stands for its /64).
        #[arg(long)]
        address: Option<String>,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Print the value of KEY in INSTANCE's store.
    Get { instance: String, key: String },
    /// Set KEY in INSTANCE's store to VALUE (read from stdin when omitted).
    Set {
        instance: String,
        key: String,
        value: Option<String>,
    },
    /// Delete KEY from INSTANCE's store.
    Delete { instance: String, key: String },
}

/// Runs a parsed command line; the process's exit code. Errors are printed here.
pub fn main(cli: Cli) -> ExitCode {
    // Whatever this process creates (the database and its siblings, directories, a
    // plugin's files) is its user's alone, also when started from a shell with umask
    // 022; the socket's mode is set from the configuration.
    crate::files::restrict_umask();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flaskbbd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The most webauthn-rs may log (see [`init_logging`]).
const WEBAUTHN_LOG: [&str; 2] = ["webauthn_rs_core=warn", "webauthn_rs=warn"];

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        // webauthn-rs logs ceremony state (challenges) and authenticator data at debug
        // and trace: never those, whatever filter is asked for.
        .add_directive(WEBAUTHN_LOG[0].parse().unwrap_or_default())
        .add_directive(WEBAUTHN_LOG[1].parse().unwrap_or_default());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    // journald stamps every line itself.
    let _ = if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(store::open(
        &config.database.url,
        config.database.schema,
        &config.base_dir,
        config.database.connect_timeout(),
    )?)
}

/// The configuration the package installs, used when none is named and there is no
/// `flaskbb.toml` in the working directory.
const PACKAGE_CONFIG: &str = "/etc/flaskbbd/flaskbb.toml";

/// The configuration file a command uses: `--config`, else `flaskbb.toml` here, else
/// the package's (so that `flaskbbd status` works as is on a packaged install).
fn config_path(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        let here = PathBuf::from("flaskbb.toml");
        if !here.exists() && Path::new(PACKAGE_CONFIG).exists() {
            PathBuf::from(PACKAGE_CONFIG)
        } else {
            here
        }
    })
}

/// `flaskbbd check`: the configuration, the chains it builds, and (unless
/// `no_database`) the database.
fn check(file: &Path, no_database: bool) -> anyhow::Result<ExitCode> {
    let config = Arc::new(load(file)?);
    let db = &config.database;
    for warning in store::loose_files(&db.url, db.schema, &config.base_dir) {
        eprintln!("warning: {warning}");
    }
    let verifier = Arc::new(Verifier::new(config.auth.bcrypt_cost)?);
    let generation = Generation::build(
        1,
        config.clone(),
        &Loader::default(),
        verifier,
        &HashMap::new(),
    )?;
    print!("{}", render_chains(&generation.describe()));
    if no_database {
        println!("database: not tried (--no-database)");
    } else {
        let found = store::db::probe(&db.url, db.schema, &config.base_dir, db.connect_timeout())?;
        println!("database: {found}");
    }
    println!("{}: OK", config.path.display());
    Ok(ExitCode::SUCCESS)
}

/// `flaskbbd plugins`: one line per instance, and one for its plugin host.
fn print_plugins(plugins: Vec<proto::PluginInfo>) {
    for p in plugins {
        println!(
            "{:<24} {:<8} {:<10} {}{}",
            p.name,
            if p.enabled { "enabled" } else { "disabled" },
            p.version.as_deref().unwrap_or("-"),
            p.origin,
            p.abi_version
                .map(|v| format!(" (plugin-abi {v})"))
                .unwrap_or_default()
        );
        if let Some(h) = p.host {
            let mut line = format!("    process: {}", h.state);
            if let Some(pid) = h.pid {
                line.push_str(&format!(", pid {pid}"));
            }
            line.push_str(&format!(
                ", {} restart(s), landlock {}",
                h.restarts, h.landlock
            ));
            if !h.shared_with.is_empty() {
                line.push_str(&format!("; shared with {}", h.shared_with.join(", ")));
            }
            if let Some(exit) = h.last_exit {
                line.push_str(&format!("; last exit: {exit}"));
            }
            println!("{line}");
        } else if p.isolation.as_deref() == Some("none") && p.enabled {
            println!("    in the daemon's process (isolation = \"none\")");
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = config_path(cli.config);
    match cli.command {
        Command::PluginHost { .. } => {
            init_logging("warn");
            Ok(crate::isolation::host::main())
        }
        Command::Serve => {
            let config = load(&file)?;
            init_logging(&config.log.filter);
            crate::runtime::serve(&file)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { no_database } => {
            init_logging("warn");
            check(&file, no_database)
        }
        Command::Migrate => {
            init_logging("warn");
            let config = load(&file)?;
            open_store(&config)?;
            println!(
                "{}: database is up to date",
                crate::store::db::redact_url(&config.database.url)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::User(cmd) => {
            init_logging("warn");
            user(&load(&file)?, cmd)
        }
        Command::Store(cmd) => {
            init_logging("warn");
            kv(&load(&file)?, cmd)
        }
        Command::Plugins => {
            let plugins = admin(&file, &AdminCall::ListPlugins, Client::list_plugins)?;
            print_plugins(plugins);
            Ok(ExitCode::SUCCESS)
        }
        Command::Hooks => {
            let hooks = admin(&file, &AdminCall::ListHooks, Client::list_hooks)?;
            print!("{}", render_chains(&hooks));
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            let status = admin(&file, &AdminCall::GetStatus, Client::get_status)?;
            print!("{}", render_status(&status));
            Ok(ExitCode::SUCCESS)
        }
        Command::Metrics => {
            let text = admin(&file, &AdminCall::GetMetrics, Client::get_metrics)?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Auth {
            identifier,
            context,
        } => auth(&file, &identifier, &context),
    }
}

/// A duration in whole seconds for a person: `3d 4h 5m`, `4h 5m 6s`, `5m 6s`, `6s`.
fn render_uptime(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    let (d, h, m, s) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

/// `flaskbbd status`'s screen.
fn render_status(st: &proto::Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let w = &st.last_minute;
    let _ = writeln!(
        out,
        "flaskbbd {}, generation {}, up {}",
        st.version,
        st.generation,
        render_uptime(st.uptime_seconds)
    );
    let _ = writeln!(
        out,
        "last {}s: {} requests ({:.1}/s), {} refused, {} failed",
        w.seconds,
        w.requests,
        w.requests as f64 / w.seconds.max(1) as f64,
        w.refused,
        w.failed
    );
    let _ = writeln!(
        out,
        "now: {} connection(s), {} request(s) in flight, {} waiting for a worker, {} password(s) waiting for bcrypt, {} stuck call(s)",
        st.connections, st.in_flight, st.queued, st.hashes_queued, st.stuck_calls
    );
    let _ = writeln!(out);
    let width = st
        .plugins
        .iter()
        .map(|p| p.plugin.name.chars().count())
        .max()
        .unwrap_or(0)
        .max("INSTANCE".len());
    let _ = writeln!(
        out,
        "{:<width$} {:<10} {:>8} {:>10} {:>8} {:>10}",
        "INSTANCE", "STATE", "PID", "CALLS", "FAILED", "MEAN"
    );
    for p in &st.plugins {
        // An isolated instance's state is its host's.
        let (state, pid) = match (&p.plugin.host, p.plugin.enabled) {
            (_, false) => ("disabled", None),
            (Some(h), true) => (h.state.as_str(), h.pid),
            (None, true) => ("enabled", None),
        };
        let pid = pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let mean = if p.calls == 0 {
            "-".to_owned()
        } else if p.mean_ms < 1.0 {
            format!("{:.0} µs", p.mean_ms * 1000.0)
        } else {
            format!("{:.1} ms", p.mean_ms)
        };
        let _ = writeln!(
            out,
            "{:<width$} {:<10} {:>8} {:>10} {:>8} {:>10}",
            p.plugin.name, state, pid, p.calls, p.failed, mean
        );
    }
    out
}

/// Reads a secret: without echo from a terminal, else one line of stdin.
fn read_secret(prompt: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        Ok(rpassword::prompt_password(prompt)?)
    } else {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the secret from stdin")?;
        Ok(s.strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&s)
            .to_owned())
    }
}

fn find(store: &dyn Store, identifier: &str) -> anyhow::Result<store::UserRecord> {
    store.find_user(identifier)?.ok_or_else(|| {
        anyhow!("no user {identifier:?} (by username or email); see `flaskbbd user list`")
    })
}

/// `flaskbbd user add`: asks for the password, hashes it for the store's schema.
fn add_user(
    config: &Config,
    store: &dyn Store,
    username: String,
    email: String,
    activated: bool,
) -> anyhow::Result<()> {
    let verifier = || Verifier::new(config.auth.bcrypt_cost);
    let password = read_secret(&format!("Password for {username}: "))?;
    let hash = verifier()?.hash_for(config.database.schema, &password)?;
    let r = store
        .create_user(&NewUser {
            username: username.clone(),
            email,
            password_hash: Some(hash),
            activated,
            primary_group_id: store::MEMBER_GROUP,
        })
        .map_err(|e| match e {
            store::StoreError::UserExists => {
                anyhow!("a user with username {username:?} or that email already exists")
            }
            other => anyhow!(other),
        })?;
    println!("created user {} (id {})", r.user.username, r.user.id);
    Ok(())
}

/// `flaskbbd user list`: every user with its failure count and lock.
fn list_users(config: &Config, store: &dyn Store) -> anyhow::Result<()> {
    let policy = lockout::Policy::new(&config.auth.lockout);
    let now = chrono::Utc::now();
    println!(
        "{:>6}  {:<24} {:<32} {:<9} {:>8}  {:<24} groups",
        "id", "username", "email", "activated", "failures", "lock"
    );
    for r in store.list_users()? {
        let u = r.user;
        let lock = lockout::lock_state(&policy, store, u.id, now)?;
        println!(
            "{:>6}  {:<24} {:<32} {:<9} {:>8}  {:<24} {}",
            u.id,
            u.username,
            u.email,
            if u.activated { "yes" } else { "no" },
            u.login_attempts,
            describe_lock(&lock),
            u.groups.join(", ")
        );
    }
    Ok(())
}

fn user(config: &Config, cmd: UserCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(config)?;
    let verifier = || Verifier::new(config.auth.bcrypt_cost);
    match cmd {
        UserCommand::Add {
            username,
            email,
            activated,
        } => add_user(config, &*store, username, email, activated)?,
        UserCommand::Passwd { identifier } => {
            let r = find(&*store, &identifier)?;
            let password = read_secret(&format!("New password for {}: ", r.user.username))?;
            store.set_password(
                r.user.id,
                &verifier()?.hash_for(config.database.schema, &password)?,
            )?;
            println!("password of {} changed", r.user.username);
        }
        UserCommand::Activate { identifier, off } => {
            let r = find(&*store, &identifier)?;
            store.set_activated(r.user.id, !off)?;
            println!(
                "{} {}",
                r.user.username,
                if off { "deactivated" } else { "activated" }
            );
        }
        UserCommand::Ban { identifier, off } => {
            let r = find(&*store, &identifier)?;
            store.set_banned(r.user.id, !off)?;
            println!(
                "{} {}",
                r.user.username,
                if off { "unbanned" } else { "banned" }
            );
        }
        UserCommand::List => list_users(config, &*store)?,
        UserCommand::Unlock {
            identifier,
            address,
        } => {
            let cleared =
                lockout::unlock(&*store, &identifier, address.as_deref(), chrono::Utc::now())?;
            let whose = match &address {
                Some(a) => format!("{identifier} from {}", lockout::Policy::address(Some(a))),
                None => identifier.clone(),
            };
            println!("unlocked {whose}: {cleared} failure count(s) cleared");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One account's lock state in a few words, for `user list`.
fn describe_lock(lock: &proto::LockState) -> String {
    let locked_from = lock.addresses.iter().filter(|a| a.locked).count();
    if let Some(until) = &lock.locked_until {
        format!("locked until {until}")
    } else if locked_from > 0 {
        format!("locked for {locked_from} address(es)")
    } else if lock.delay_ms > 0 {
        format!("delayed {} ms", lock.delay_ms)
    } else {
        "-".into()
    }
}

fn kv(config: &Config, cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    let known = config.known_instance_names();
    let instance = match &cmd {
        StoreCommand::Get { instance, .. }
        | StoreCommand::Set { instance, .. }
        | StoreCommand::Delete { instance, .. } => instance,
    };
    if !known.contains(instance) {
        bail!(
            "no instance {instance:?} in {}; instances are {}",
            config.path.display(),
            known.join(", ")
        );
    }
    let store = open_store(config)?;
    match cmd {
        StoreCommand::Get { instance, key } => match store.kv_get(&instance, &key)? {
            Some(v) => println!("{v}"),
            None => {
                eprintln!("{instance}: no key {key:?}");
                return Ok(ExitCode::FAILURE);
            }
        },
        StoreCommand::Set {
            instance,
            key,
            value,
        } => {
            let value = match value {
                Some(v) => v,
                None => read_secret(&format!("Value of {key}: "))?,
            };
            let totp = config
                .plugin
                .iter()
                .any(|p| p.name.get_ref() == &instance && p.is_totp());
            if totp && key.starts_with("secret:") {
                // A bad secret would fail every login of the member as InternalError.
                if let Err(e) = flaskbbd_otp::decode_secret(&value) {
                    bail!(
                        "{instance}: {key}: the secret is {e}; give the base32 secret an authenticator app shows (letters A-Z and digits 2-7, at least 16 of them), or let the member enrol from the forum"
                    );
                }
            }
            store.commit(&[store::Op::KvSet {
                plugin: instance.clone(),
                key: key.clone(),
                value: Some(value),
            }])?;
            println!("{instance}: {key} set");
        }
        StoreCommand::Delete { instance, key } => {
            store.commit(&[store::Op::KvSet {
                plugin: instance.clone(),
                key: key.clone(),
                value: None,
            }])?;
            println!("{instance}: {key} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn connect(config_path: &Path) -> anyhow::Result<Client> {
    let config = load(config_path)?;
    let socket = &config.daemon.socket;
    Client::connect(socket).with_context(|| {
        format!(
            "cannot reach the daemon at {} (is `flaskbbd serve` running with this configuration?)",
            socket.display()
        )
    })
}

/// Calls an `org.flaskbb.Admin` method of the running daemon.
fn admin<T>(
    config_path: &Path,
    method: &AdminCall,
    call: impl FnOnce(&mut Client) -> Result<T, CallError>,
) -> anyhow::Result<T> {
    let method = method.full_name();
    let mut client = connect(config_path)?;
    call(&mut client).map_err(|e| match e.short_name() {
        Some("PermissionDenied") => {
            anyhow!("{method}: permission denied: your uid is not in daemon.admin_uids")
        }
        _ => anyhow!("{method}: {e}"),
    })
}

fn auth(config_path: &Path, identifier: &str, context: &[String]) -> anyhow::Result<ExitCode> {
    let mut ctx = Context::new();
    for kv in context {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--context {kv:?}: write KEY=VALUE")
        };
        ctx.insert(k.to_owned(), v.to_owned());
    }
    let mut client = connect(config_path)?;
    let secret = read_secret(&format!("Password for {identifier}: "))?;
    match client.authenticate(identifier, &secret, &ctx) {
        Ok(user) => {
            println!(
                "authenticated: {} (id {}, groups: {})",
                user.username,
                user.id,
                user.groups.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ CallError::Varlink { .. }) => {
            let why = e.text("reason").or(e.text("message")).unwrap_or("");
            eprintln!("{}: {why}", e.short_name().unwrap_or(""));
            // A plugin asked for more context (a second factor's code): say how to send it.
            for key in e.ask() {
                eprintln!("(the daemon asks for {key:?}: add --context {key}=VALUE)");
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_reads_as_a_person_says_it() {
        assert_eq!(render_uptime(0.4), "0s");
        assert_eq!(render_uptime(59.9), "59s");
        assert_eq!(render_uptime(61.0), "1m 1s");
        assert_eq!(render_uptime(3_600.0 * 5.0 + 62.0), "5h 1m 2s");
        assert_eq!(
            render_uptime(86_400.0 * 2.0 + 3_600.0 * 4.0 + 780.0),
            "2d 4h 13m"
        );
        assert_eq!(render_uptime(-1.0), "0s");
    }

    #[test]
    fn status_lines_up_instances_of_every_kind() {
        let plugin =
            |name: &str, enabled: bool, host: Option<proto::PluginHost>| proto::PluginInfo {
                name: name.into(),
                origin: "builtin".into(),
                library: None,
                version: None,
                description: None,
                abi_version: None,
                enabled,
                hooks: vec![],
                isolation: None,
                host,
            };
        let host = |state: &str, pid| proto::PluginHost {
            state: state.into(),
            pid,
            restarts: 0,
            last_exit: None,
            landlock: "enforced".into(),
            round_trips: 0,
            pipelined: 0,
            shared_with: vec![],
        };
        let st = proto::Status {
            version: "0.1.0".into(),
            generation: 3,
            uptime_seconds: 90.0,
            connections: 2,
            in_flight: 1,
            queued: 0,
            hashes_queued: 4,
            stuck_calls: 0,
            last_minute: proto::RequestWindow {
                seconds: 60,
                requests: 120,
                refused: 3,
                failed: 1,
            },
            plugins: vec![
                proto::PluginStatus {
                    plugin: plugin("lockout", true, None),
                    calls: 10,
                    failed: 0,
                    mean_ms: 0.021,
                },
                proto::PluginStatus {
                    plugin: plugin("audit", true, Some(host("running", Some(4121)))),
                    calls: 7,
                    failed: 1,
                    mean_ms: 2.5,
                },
                proto::PluginStatus {
                    plugin: plugin("ldap", true, Some(host("backed-off", None))),
                    calls: 0,
                    failed: 0,
                    mean_ms: 0.0,
                },
                proto::PluginStatus {
                    plugin: plugin("clear_failed_logins_on_reauth", false, None),
                    calls: 0,
                    failed: 0,
                    mean_ms: 0.0,
                },
            ],
        };
        let text = render_status(&st);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines[0], "flaskbbd 0.1.0, generation 3, up 1m 30s");
        assert_eq!(
            lines[1],
            "last 60s: 120 requests (2.0/s), 3 refused, 1 failed"
        );
        assert!(
            lines[2].contains("4 password(s) waiting for bcrypt"),
            "{}",
            lines[2]
        );
        let row = |name: &str| {
            lines
                .iter()
                .find(|l| l.starts_with(&format!("{name} ")))
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .unwrap_or_else(|| panic!("no row for {name}:\n{text}"))
        };
        assert_eq!(
            row("lockout"),
            ["lockout", "enabled", "-", "10", "0", "21", "µs"]
        );
        assert_eq!(
            row("audit"),
            ["audit", "running", "4121", "7", "1", "2.5", "ms"]
        );
        assert_eq!(row("ldap"), ["ldap", "backed-off", "-", "0", "0", "-"]);
        assert_eq!(
            row("clear_failed_logins_on_reauth"),
            [
                "clear_failed_logins_on_reauth",
                "disabled",
                "-",
                "0",
                "0",
                "-"
            ]
        );
        // Columns line up whatever the names' lengths.
        let state_at = |l: &str| {
            l.find(|c: char| c.is_whitespace())
                .map(|i| i + l[i..].len() - l[i..].trim_start().len())
        };
        let at: Vec<_> = lines[4..].iter().map(|l| state_at(l)).collect();
        assert!(at.windows(2).all(|w| w[0] == w[1]), "{text}");
    }
}
