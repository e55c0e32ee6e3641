//! What the daemon and a plugin host say to each other, and how.
//!
//! Two kinds of channel, both Unix socketpairs: the host's control channel (its stdin),
//! which carries [`Init`] down and [`Started`] up, then file descriptors for new lanes;
//! and lanes, one per call in flight (a socketpair per direction, see [`Lane::split`],
//! and a shared [`Page`]), each a strict conversation: the daemon sends a
//! [`Down::Call`] (or a [`Down::Chain`]: several impls of the host's instances, run in
//! order in one round trip), the host answers with any number of [`Up::Host`] (the host
//! API the plugin called; those that answer get a [`Down::Reply`]) and then one
//! [`Up::Done`] (or [`Up::ChainDone`]).
//!
//! A message is a frame: a 4-byte little-endian length, then that many bytes of
//! MessagePack, fields by name (see [`to_body`]). Neither side logs frames: a call's
//! arguments hold the password.
//!
//! Beside them: [`page`], the lane's shared page, and [`placement`], which CPU the
//! host's thread for a lane runs on (its caller's, while the daemon is quiet).

use std::{
    io::{self, Read, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    os::unix::net::UnixStream,
    path::PathBuf,
    sync::Arc,
};

use abi_stable::std_types::RString;
use plugin_abi::{
    abi,
    sdk::{HookError, Outcome, Value},
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

pub(crate) mod page;
pub(crate) mod pipe;
pub(crate) mod placement;

use crate::proto::{convert, Context, Post, Topic, User};
pub(crate) use page::Page;

/// The largest frame either side accepts (a post is at most `daemon.max_message_bytes`).
pub(crate) const MAX_FRAME: usize = 16 << 20;

/// Appends `msg` to `out` as a frame's body: MessagePack with fields by name. Not
/// JSON, because a crossing encodes and decodes a post twice each way, and JSON's
/// escaping and number parsing were a tenth of a busy daemon's and its hosts' CPU
/// per call (docs/benchmarks.md, "frames in MessagePack"); by name, so that the
/// messages' optional fields (left out when empty) decode as they were meant.
/// Both ends are the same binary (a host runs `/proc/self/exe`), so this never
/// has to be read by anything else.
fn to_body<T: Serialize>(out: &mut Vec<u8>, msg: &T) -> io::Result<()> {
    rmp_serde::encode::write_named(out, msg).map_err(io::Error::other)
}

/// Decodes a frame's body written by [`to_body`]; `InvalidData` when it is not one,
/// or has bytes after the message (a host that sends such a thing is killed: see the
/// supervisor).
fn from_body<T: DeserializeOwned>(body: &[u8]) -> io::Result<T> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    // Borrowing from the body, as `rmp_serde::from_slice` does (a reader copies each
    // string once more: 3 % of the calls at 16 clients).
    let mut de = rmp_serde::Deserializer::from_read_ref(body);
    let msg = T::deserialize(&mut de).map_err(|e| invalid(e.to_string()))?;
    // The body must end there: reading one more value must find nothing to read. (The
    // visitor takes no value, so a container's header is refused before its elements
    // are read: an element missing at the end is no clean end.)
    match serde::Deserializer::deserialize_any(&mut de, NoValue) {
        Err(rmp_serde::decode::Error::InvalidMarkerRead(e))
            if e.kind() == io::ErrorKind::UnexpectedEof =>
        {
            Ok(msg)
        }
        _ => Err(invalid("bytes after the message".into())),
    }
}

/// A visitor that takes no value at all: [`from_body`]'s check that nothing follows.
struct NoValue;

impl<'de> serde::de::Visitor<'de> for NoValue {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the end of the frame")
    }
}

/// Writes one frame (with one write, the length before the body: see [`encode`]).
pub(crate) fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    let mut frame = Vec::new();
    encode(&mut frame, msg)?;
    w.write_all(&frame)
}

/// Reads one frame; `UnexpectedEof` when the other side is gone, `InvalidData` when
/// what came is not a message.
pub(crate) fn recv<T: DeserializeOwned>(r: &mut impl Read) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is over the limit of {MAX_FRAME}"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    from_body(&body)
}

/// What a lane has read and not yet taken as frames: shared by the blocking
/// [`Lane`] and the daemon's [`AsyncLane`], which differ only in how they wait.
struct Frames {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Frames {
    fn new() -> Frames {
        Frames {
            buf: vec![0; 16 << 10],
            start: 0,
            end: 0,
        }
    }

    /// The next whole frame, decoded, when the buffer holds one (errors as
    /// [`recv`]'s); else `None`, with room made for the rest of a frame begun.
    fn next<T: DeserializeOwned>(&mut self) -> Option<io::Result<T>> {
        let avail = &self.buf[self.start..self.end];
        let head = avail.get(..4)?;
        let mut len = [0u8; 4];
        len.copy_from_slice(head);
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME {
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a frame of {len} bytes is over the limit of {MAX_FRAME}"),
            )));
        }
        if let Some(body) = avail.get(4..4 + len) {
            let msg = from_body(body);
            self.start += 4 + len;
            if self.start == self.end {
                (self.start, self.end) = (0, 0);
            }
            return Some(msg);
        }
        if 4 + len > self.buf.len() {
            // Make room for the whole frame.
            self.compact();
            self.buf.resize((4 + len).next_power_of_two(), 0);
        }
        None
    }

    fn compact(&mut self) {
        self.buf.copy_within(self.start..self.end, 0);
        (self.start, self.end) = (0, self.end - self.start);
    }

    /// Where to read more: at least one byte.
    fn room(&mut self) -> &mut [u8] {
        if self.end == self.buf.len() {
            self.compact();
        }
        &mut self.buf[self.end..]
    }

    /// Takes `n` bytes read into [`Frames::room`]; none is the end of the stream.
    fn filled(&mut self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        Ok(())
    }
}

/// Encodes `msg` as one frame into `out` (cleared first).
fn encode<T: Serialize>(out: &mut Vec<u8>, msg: &T) -> io::Result<()> {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    to_body(out, msg)?;
    let len = out.len() - 4;
    let len = u32::try_from(len)
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME)
        .ok_or_else(|| io::Error::other(format!("a message of {len} bytes is too large")))?;
    out[..4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// One end of a lane: a frame is written with one system call, and read through a
/// buffer so that it usually takes one too. A reader sleeps in `read` until its frame
/// comes: it never spins, because a spinning thread competes for a core with the very
/// process it waits for, and one that yields while it spins gives its core away for a
/// whole time slice when every core is busy (docs/benchmarks.md, `isolation`).
pub(crate) struct Lane {
    /// Where frames are read.
    stream: UnixStream,
    /// Where frames are written, when not `stream` (see [`Lane::split`]).
    tx: Option<UnixStream>,
    frames: Frames,
    out: Vec<u8>,
    page: Option<Arc<Page>>,
}

impl Lane {
    /// Wraps one end of a lane's socketpair.
    pub(crate) fn new(stream: UnixStream) -> Lane {
        Lane {
            stream,
            tx: None,
            frames: Frames::new(),
            out: Vec::with_capacity(4 << 10),
            page: None,
        }
    }

    /// A lane that reads from `rx` and writes to `tx`, two sockets (one socketpair per
    /// direction), with its shared [`Page`]. Why two: a thread asleep in `read` on a
    /// Unix stream socket is woken whenever the peer consumes what was written on that
    /// same socket (the kernel's "room to write" wake-up goes to every sleeper on the
    /// socket, the reader too), so with one socket each round trip woke each side once
    /// for nothing: a sleep and a wake-up more per crossing on both sides, CPU that
    /// the clients and other requests on a busy machine did not get. With a socket per
    /// direction nobody sleeps where that wake-up lands.
    pub(crate) fn split(rx: UnixStream, tx: UnixStream, page: Option<Page>) -> Lane {
        Lane {
            tx: Some(tx),
            page: page.map(Arc::new),
            ..Lane::new(rx)
        }
    }

    /// The lane's shared page, if it has one.
    pub(crate) fn page(&self) -> Option<&Arc<Page>> {
        self.page.as_ref()
    }

    /// Writes one frame.
    pub(crate) fn send<T: Serialize>(&mut self, msg: &T) -> io::Result<()> {
        encode(&mut self.out, msg)?;
        self.tx
            .as_ref()
            .unwrap_or(&self.stream)
            .write_all(&self.out)
    }

    /// Reads one frame, sleeping until it comes; errors as [`recv`]'s.
    pub(crate) fn recv<T: DeserializeOwned>(&mut self) -> io::Result<T> {
        loop {
            if let Some(msg) = self.frames.next() {
                return msg;
            }
            let n = loop {
                match (&self.stream).read(self.frames.room()) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    r => break r?,
                }
            };
            self.frames.filled(n)?;
        }
    }
}

/// The daemon's end of a lane as an async task uses it: the same frames as [`Lane`]'s,
/// but a task that waits for its host's answer holds no thread meanwhile (its
/// sockets are non-blocking and registered with the runtime), so the async threads
/// serve other connections, and a chain that crosses to a host needs neither a pool
/// thread nor a hand-off to one (docs/isolation.md, "What a crossing costs").
///
/// Both sockets are registered, the one written to as well, so the kernel's "room to
/// write" wake-up when the host reads a frame reaches the runtime's poller and may
/// wake an idle async thread for nothing (the sleeps per call at one client fell from
/// about 1.4 to 1.0 without it). Writing to an unregistered socket was measured and
/// not kept: on the benchmark's VM the lone client's calls got slower in every run,
/// the early wake-up apparently keeping the daemon's core from going deeper idle
/// before the host's answer (docs/benchmarks.md, `isolation`).
pub(crate) struct AsyncLane {
    rx: tokio::net::UnixStream,
    tx: tokio::net::UnixStream,
    frames: Frames,
    out: Vec<u8>,
    page: Option<Arc<Page>>,
    /// Where the host's thread for this lane may run.
    placement: placement::Placement,
}

impl AsyncLane {
    /// Makes `lane`'s sockets non-blocking and registers them with the runtime; must be
    /// called on it. What `lane` had buffered is kept.
    pub(crate) fn of(lane: Lane) -> io::Result<AsyncLane> {
        let Lane {
            stream,
            tx,
            frames,
            out,
            page,
        } = lane;
        let tx = match tx {
            Some(tx) => tx,
            None => stream.try_clone()?,
        };
        stream.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        Ok(AsyncLane {
            rx: tokio::net::UnixStream::from_std(stream)?,
            tx: tokio::net::UnixStream::from_std(tx)?,
            frames,
            out,
            page,
            placement: Default::default(),
        })
    }

    /// The lane's shared page, if it has one.
    pub(crate) fn page(&self) -> Option<&Arc<Page>> {
        self.page.as_ref()
    }

    /// Before a call to host `pid`: its thread for this lane runs on this thread's CPU
    /// when `near`, on its own CPUs otherwise ([`placement`]).
    pub(crate) fn place(&mut self, pid: u32, near: bool) {
        self.placement.place(pid, self.page.as_deref(), near);
    }

    /// Writes one frame.
    pub(crate) async fn send<T: Serialize>(&mut self, msg: &T) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        encode(&mut self.out, msg)?;
        self.tx.write_all(&self.out).await
    }

    /// Reads one frame, the task waiting (not its thread) until it comes; errors as
    /// [`recv`]'s.
    pub(crate) async fn recv<T: DeserializeOwned>(&mut self) -> io::Result<T> {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(msg) = self.frames.next() {
                return msg;
            }
            let n = loop {
                match self.rx.read(self.frames.room()).await {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    r => break r?,
                }
            };
            self.frames.filled(n)?;
        }
    }
}

/// What a host is to load and how it is confined: the control channel's first frame.
/// One host serves every isolated instance of one library with one sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Init {
    /// The file to map (the daemon's content-addressed copy).
    pub mapped: PathBuf,
    /// The file as configured, for messages.
    pub library: PathBuf,
    /// The instances to make, each with its own configuration and state; calls name
    /// them by their place in this list.
    pub instances: Vec<InitInstance>,
    /// The directory of `flaskbb.toml`.
    pub base_dir: PathBuf,
    /// How the host is confined.
    pub sandbox: Sandbox,
}

/// One instance a host makes (its `Debug` leaves the configuration out: it may hold
/// secrets, such as a directory's bind password).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct InitInstance {
    /// The instance's name.
    pub name: String,
    /// Its `config` table as JSON.
    pub config_json: String,
}

impl std::fmt::Debug for InitInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitInstance")
            .field("name", &self.name)
            .field(
                "config_json",
                &format_args!("({} bytes, not shown)", self.config_json.len()),
            )
            .finish()
    }
}

/// The confinement of one host, resolved from the instance's `sandbox` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub(crate) struct Sandbox {
    /// May open network sockets.
    pub network: bool,
    /// Paths it may read.
    pub read: Vec<PathBuf>,
    /// Paths it may read and write.
    pub write: Vec<PathBuf>,
    /// Its address-space data limit, in bytes.
    pub memory_bytes: u64,
}

/// The host's answer to [`Init`]: any number of [`Started::Making`], then `Ready` or
/// `Failed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Started {
    /// The host is about to make the instance at this place in [`Init::instances`]
    /// (its `new` runs now): when the host dies before its next word, that instance's
    /// `new` is what it died in.
    Making {
        /// The instance's place in [`Init::instances`].
        instance: u32,
    },
    /// The library loaded, passed the loader's checks, and the instance was made.
    Ready {
        /// The library's manifest.
        manifest: Manifest,
        /// The `plugin-abi` version it was built against.
        abi_version: String,
        /// How far the filesystem could be narrowed on this kernel.
        landlock: String,
    },
    /// Loading, confining or making an instance failed: the message says why.
    Failed {
        /// One line, naming the file (as the loader's errors do).
        message: String,
        /// The instance (its place in [`Init::instances`]) whose making failed, when
        /// one did.
        instance: Option<u32>,
    },
}

/// A library's manifest as it crosses (`plugin_abi::abi::Manifest` is FFI-only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// The plugin's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// What it does.
    pub description: String,
    /// The hooks it implements, with their default order.
    pub hooks: Vec<HookDecl>,
}

/// One hook of a [`Manifest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HookDecl {
    /// FlaskBB's hook name.
    pub hook: String,
    /// `plugin_abi::abi::Tier`'s number.
    pub tier: u8,
    /// Priority within the tier.
    pub priority: i32,
    /// Instances it runs before.
    pub before: Vec<String>,
    /// Instances it runs after.
    pub after: Vec<String>,
    /// Whether it wraps the chain.
    pub wrapper: bool,
}

impl Manifest {
    /// The manifest of a loaded library.
    pub(crate) fn of(m: &abi::Manifest) -> Manifest {
        let list =
            |v: &abi_stable::std_types::RVec<RString>| v.iter().map(|s| s.to_string()).collect();
        Manifest {
            name: m.name.to_string(),
            version: m.version.to_string(),
            description: m.description.to_string(),
            hooks: m
                .hooks
                .iter()
                .map(|d| HookDecl {
                    hook: d.hook.to_string(),
                    tier: d.tier.0,
                    priority: d.priority,
                    before: list(&d.before),
                    after: list(&d.after),
                    wrapper: d.wrapper,
                })
                .collect(),
        }
    }
}

/// Daemon to host, on a lane.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Down {
    /// Call the instance's impl of `hook` with `args` (in the hook table's order).
    Call {
        /// The instance: its place in [`Init::instances`].
        of: u32,
        /// FlaskBB's hook name.
        hook: String,
        /// The arguments.
        args: Vec<Arg>,
        /// The request's context (the plugin reads it without a round trip).
        context: Context,
    },
    /// A wrapper's part before the chain of `hook`.
    WrapBefore {
        /// The instance.
        of: u32,
        /// FlaskBB's hook name.
        hook: String,
        /// The call's arguments as wrappers see them (never the secret).
        args_json: String,
        /// The request's context.
        context: Context,
    },
    /// A wrapper's part after the chain of `hook`.
    WrapAfter {
        /// The instance.
        of: u32,
        /// FlaskBB's hook name.
        hook: String,
        /// The call's arguments as wrappers see them.
        args_json: String,
        /// The request's context.
        context: Context,
        /// What the chain produced.
        outcome: WireOutcome,
    },
    /// Consecutive impls of one chain, all of this host's instances: run them in
    /// order as the daemon's chain loop does (each gets the draft the one before
    /// returned; a firstresult answer or an error ends the run) and answer once.
    Chain {
        /// The instances, in call order.
        of: Vec<u32>,
        /// FlaskBB's hook name.
        hook: String,
        /// The arguments, the draft as the chain holds it now.
        args: Vec<Arg>,
        /// Which argument is the draft that each impl's answer replaces, if any.
        draft: Option<u32>,
        /// Whether the first answer ends the chain.
        firstresult: bool,
        /// The request's context.
        context: Context,
    },
    /// The answer to the host's last [`Up::Host`] call that answers.
    Reply(Result<HostValue, WireError>),
}

/// Host to daemon, on a lane.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Up {
    /// The plugin called the host API.
    Host {
        /// Which impl of a [`Down::Chain`] called (its place in `of`); 0 in a single
        /// call.
        step: u32,
        /// The call.
        call: HostCall,
    },
    /// The call is over: its answer, or the error it returned.
    Done(Result<Answer, WireError>),
    /// A [`Down::Chain`] is over.
    ChainDone(ChainAnswer),
}

/// What a [`Down::Chain`] did: one [`Step`] per impl that ran, and the chain's value.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ChainAnswer {
    /// The impls that ran, in order; fewer than were sent when one ended the chain.
    pub steps: Vec<Step>,
    /// The last answer that was a value for the chain (a draft, a user, `true`).
    pub value: Option<Answer>,
}

/// One impl's part in a [`Down::Chain`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Step {
    /// Whether it answered a value for the chain, or its error.
    pub result: Result<bool, WireError>,
    /// How long it ran in the host, in nanoseconds.
    pub ns: u64,
}

impl Answer {
    /// Whether the answer is a value for the chain (as the daemon's chain counts it:
    /// a user, `true`, a draft), not "nothing".
    pub(crate) fn is_value(&self) -> bool {
        match self {
            Answer::Nothing | Answer::Outcome(_) => false,
            Answer::User(u) => u.is_some(),
            Answer::True(t) => *t,
            Answer::Post(_) | Answer::Topic(_) => true,
        }
    }
}

/// A host API call that crosses: `instance_name`, `config_json` and the context are
/// answered in the host.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum HostCall {
    /// `Host::log` (no reply).
    Log {
        /// `LogLevel`'s number.
        level: u8,
        /// The message.
        message: String,
    },
    /// `Host::find_user`.
    FindUser {
        /// Username or email.
        identifier: String,
    },
    /// `Host::find_user_by_id`.
    FindUserById {
        /// The id.
        id: i64,
    },
    /// `Host::store_get`.
    StoreGet {
        /// The key.
        key: String,
    },
    /// `Host::store_set`.
    StoreSet {
        /// The key.
        key: String,
        /// The value, or `None` to delete.
        value: Option<String>,
    },
    /// `Host::store_swap`.
    StoreSwap {
        /// The key.
        key: String,
        /// The value the store must still hold, or `None`: no value.
        expected: Option<String>,
        /// The new value, or `None` to delete.
        value: Option<String>,
    },
    /// `Host::provision_user`.
    ProvisionUser {
        /// The username.
        username: String,
        /// The email address.
        email: String,
    },
    /// `Host::delay_answer` (no reply).
    DelayAnswer {
        /// Milliseconds.
        ms: u64,
    },
    /// `Host::ask_for` (no reply).
    AskFor {
        /// The context key.
        key: String,
    },
    /// `Host::penalty_get`.
    PenaltyGet {
        /// The key.
        key: String,
    },
    /// `Host::penalty_add`.
    PenaltyAdd {
        /// The key.
        key: String,
        /// The window, in milliseconds.
        window_ms: u64,
    },
    /// `Host::penalty_clear`.
    PenaltyClear {
        /// The key.
        key: String,
    },
}

impl HostCall {
    /// Whether the daemon answers this call with a [`Down::Reply`].
    pub(crate) fn answers(&self) -> bool {
        !matches!(
            self,
            HostCall::Log { .. } | HostCall::DelayAnswer { .. } | HostCall::AskFor { .. }
        )
    }
}

/// What a host API call answers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum HostValue {
    /// A user lookup's answer.
    User(Option<WireUser>),
    /// A provisioned user.
    Provisioned(WireUser),
    /// A key-value read's answer.
    Text(Option<String>),
    /// A penalty count.
    Count(u32),
    /// A yes or no (whether a swap happened).
    Flag(bool),
    /// Done, nothing to say.
    Unit,
}

/// A user as it crosses: the wire user and whether they are banned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireUser(pub User, pub bool);

impl WireUser {
    /// From the ABI's user.
    pub fn of(u: &abi::User) -> WireUser {
        WireUser(convert::user_from_abi(u), u.banned)
    }

    /// The ABI's user.
    pub fn to_abi(&self) -> abi::User {
        convert::user_to_abi(&self.0, self.1)
    }
}

/// One argument of a hook call, by the hook table's argument kinds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Arg {
    /// `Str` and `Secret`.
    Str(String),
    /// `User`.
    User(WireUser),
    /// `Post` and `DraftPost`.
    Post(Post),
    /// `Topic` and `DraftTopic`.
    Topic(Topic),
    /// `Bool`.
    Bool(bool),
}

/// An impl's answer, by the hook table's `returns`, or a wrapper's.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Answer {
    /// `Nothing`, and a wrapper's "before" part.
    Nothing,
    /// `User`.
    User(Option<WireUser>),
    /// `True`.
    True(bool),
    /// `Post`.
    Post(Post),
    /// `Topic`.
    Topic(Topic),
    /// A wrapper's "after" part.
    Outcome(WireOutcome),
}

/// [`HookError`] as it crosses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireError {
    /// `StopAuthentication`.
    Stop(String),
    /// `ForceLogout`.
    ForceLogout(String),
    /// `Rejected`.
    Rejected(String),
    /// `Failed`.
    Failed(String),
    /// `NotImplemented`.
    NotImplemented,
}

impl From<HookError> for WireError {
    fn from(e: HookError) -> WireError {
        match e {
            HookError::StopAuthentication { reason } => WireError::Stop(reason),
            HookError::ForceLogout { reason } => WireError::ForceLogout(reason),
            HookError::Rejected { reason } => WireError::Rejected(reason),
            HookError::Failed { message } => WireError::Failed(message),
            HookError::NotImplemented => WireError::NotImplemented,
        }
    }
}

impl From<WireError> for HookError {
    fn from(e: WireError) -> HookError {
        match e {
            WireError::Stop(reason) => HookError::StopAuthentication { reason },
            WireError::ForceLogout(reason) => HookError::ForceLogout { reason },
            WireError::Rejected(reason) => HookError::Rejected { reason },
            WireError::Failed(message) => HookError::Failed { message },
            WireError::NotImplemented => HookError::NotImplemented,
        }
    }
}

/// [`Value`] as it crosses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireValue {
    /// `Nothing`.
    Nothing,
    /// `User`.
    User(WireUser),
    /// `True`.
    True,
    /// `Post`.
    Post(Post),
    /// `Topic`.
    Topic(Topic),
}

impl From<Value> for WireValue {
    fn from(v: Value) -> WireValue {
        match v {
            Value::Nothing => WireValue::Nothing,
            Value::User(u) => WireValue::User(WireUser::of(&u)),
            Value::True => WireValue::True,
            Value::Post(p) => WireValue::Post(convert::post_from_abi(&p)),
            Value::Topic(t) => WireValue::Topic(convert::topic_from_abi(&t)),
        }
    }
}

impl From<WireValue> for Value {
    fn from(v: WireValue) -> Value {
        match v {
            WireValue::Nothing => Value::Nothing,
            WireValue::User(u) => Value::User(u.to_abi()),
            WireValue::True => Value::True,
            WireValue::Post(p) => Value::Post(convert::post_to_abi(&p)),
            WireValue::Topic(t) => Value::Topic(convert::topic_to_abi(&t)),
        }
    }
}

/// [`Outcome`] as it crosses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireOutcome {
    /// The chain's value, or the error that ended it.
    pub result: Result<WireValue, WireError>,
    /// Who decided it.
    pub decided_by: Option<String>,
    /// How long the chain took, in microseconds.
    pub duration_us: u64,
}

impl From<Outcome> for WireOutcome {
    fn from(o: Outcome) -> WireOutcome {
        WireOutcome {
            result: o.result.map(WireValue::from).map_err(WireError::from),
            decided_by: o.decided_by,
            duration_us: u64::try_from(o.duration.as_micros()).unwrap_or(u64::MAX),
        }
    }
}

impl From<WireOutcome> for Outcome {
    fn from(o: WireOutcome) -> Outcome {
        Outcome {
            result: o.result.map(Value::from).map_err(HookError::from),
            decided_by: o.decided_by,
            duration: std::time::Duration::from_micros(o.duration_us),
        }
    }
}

/// The most file descriptors one [`send_fds`] message carries.
pub(crate) const MAX_FDS: usize = 3;

/// The room a control message with [`MAX_FDS`] file descriptors takes.
fn fd_space() -> usize {
    // SAFETY: CMSG_SPACE only computes a size.
    unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// A message header for one byte of data (`iov`) and room for one descriptor
/// (`control`, [`fd_space`] bytes). The pointers it holds must outlive its use.
fn one_fd_header(iov: &mut libc::iovec, control: &mut [u8]) -> libc::msghdr {
    // SAFETY: msghdr is plain data; all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() as _;
    msg
}

/// Sends up to [`MAX_FDS`] descriptors over `channel` in one message (SCM_RIGHTS) with
/// one byte of data: a lane's sockets and its [`Page`] arrive together or not at all.
pub(crate) fn send_fds(channel: &UnixStream, fds: &[RawFd]) -> io::Result<()> {
    if fds.is_empty() || fds.len() > MAX_FDS {
        return Err(io::Error::other(format!(
            "{} file descriptors in one message (1 to {MAX_FDS})",
            fds.len()
        )));
    }
    let mut byte = [1u8];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = vec![0u8; fd_space()];
    let mut msg = one_fd_header(&mut iov, &mut control);
    let data_len = std::mem::size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(data_len) } as _;
    // SAFETY: msg_control points at room for one header holding MAX_FDS fds (and
    // msg_controllen is no larger), so CMSG_FIRSTHDR is non-null and CMSG_DATA has
    // room for `fds`.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(data_len) as _;
        let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
        for (i, fd) in fds.iter().enumerate() {
            std::ptr::write_unaligned(data.add(i), *fd);
        }
    }
    loop {
        // SAFETY: `msg` and everything it points at live across the call.
        let n = unsafe { libc::sendmsg(channel.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives the descriptors of one message sent by [`send_fds`] (close-on-exec, in
/// the order they were sent); `UnexpectedEof` when the other side closed the channel.
pub(crate) fn recv_fds(channel: &UnixStream) -> io::Result<Vec<OwnedFd>> {
    let mut byte = [0u8];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = vec![0u8; fd_space()];
    let mut msg = one_fd_header(&mut iov, &mut control);
    let n = loop {
        // SAFETY: `msg` and everything it points at live across the call.
        let n = unsafe { libc::recvmsg(channel.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    // SAFETY: recvmsg filled `msg`; CMSG_FIRSTHDR checks msg_controllen, and a header
    // of the expected level and type holds as many fds as its length says (the kernel
    // wrote them, at most MAX_FDS by the room we gave it).
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        let header = libc::CMSG_LEN(0) as usize;
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
            || ((*cmsg).cmsg_len as usize) < header + std::mem::size_of::<RawFd>()
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a control message without a file descriptor",
            ));
        }
        let n = ((*cmsg).cmsg_len as usize - header) / std::mem::size_of::<RawFd>();
        let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
        Ok((0..n.min(MAX_FDS))
            .map(|i| OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))))
            .collect())
    }
}

/// The daemon's kind table: what it does with a hook argument of each base kind (a
/// view's `args` hands each argument on as `name: mode Base`, `flaskbbd-hooks`), by
/// role. The generators in `chain`, `events`, `instance` and `isolation::host` handle
/// the modes (a draft is the chain's value, a secret is never shown) and ask this
/// table for the rest, so a new base kind is one block here.
///
/// | role | what |
/// |---|---|
/// | `ty` | its type in the daemon (what a lent argument borrows) |
/// | `to_wire, a` | `a` (a reference to it) as it crosses to a plugin host |
/// | `from_wire, a` | an `Arg` from the daemon, in the plugin host: `Some` owned value, or `None` for another kind |
/// | `to_vtable, a` | that owned value as the plugin's vtable takes it |
/// | `json, a` | `a` (a reference to it) as a wrapper sees it in the call's JSON |
/// | `from_proto, a` | the value a client sent (`org.flaskbb.Events`) as the chain takes it |
/// | `from_value, v` | a draft from a chain's `&Value`: `Some(&T)`, or `None` for another kind |
/// | `value` | the `Value` variant of a draft |
macro_rules! base_kind {
    // Text.
    (ty, Str) => { str };
    (to_wire, Str, $a:expr) => {
        $crate::ipc::Arg::Str(<str as ToOwned>::to_owned($a))
    };
    (from_wire, Str, $a:expr) => {
        match $a {
            $crate::ipc::Arg::Str(s) => Some(s),
            _ => None,
        }
    };
    (to_vtable, Str, $a:expr) => { abi_stable::std_types::RStr::from($a.as_str()) };
    (json, Str, $a:expr) => { serde_json::json!($a) };
    (from_proto, Str, $a:expr) => { $a };

    // A user.
    (ty, User) => { plugin_abi::abi::User };
    (to_wire, User, $a:expr) => {
        $crate::ipc::Arg::User($crate::ipc::WireUser::of($a))
    };
    (from_wire, User, $a:expr) => {
        match $a {
            $crate::ipc::Arg::User(u) => Some(u.to_abi()),
            _ => None,
        }
    };
    (to_vtable, User, $a:expr) => { &$a };
    (json, User, $a:expr) => {
        serde_json::json!({ "id": $a.id, "username": $a.username.as_str() })
    };

    // A post.
    (ty, Post) => { plugin_abi::abi::Post };
    (to_wire, Post, $a:expr) => {
        $crate::ipc::Arg::Post($crate::proto::convert::post_from_abi($a))
    };
    (from_wire, Post, $a:expr) => {
        match $a {
            $crate::ipc::Arg::Post(p) => Some($crate::proto::convert::post_to_abi(&p)),
            _ => None,
        }
    };
    (to_vtable, Post, $a:expr) => { &$a };
    (json, Post, $a:expr) => {
        serde_json::json!({ "id": $a.id.into_option(), "topic_id": $a.topic_id.into_option() })
    };
    (from_proto, Post, $a:expr) => { $crate::proto::convert::post_to_abi(&$a) };
    (from_value, Post, $v:expr) => {
        match $v {
            plugin_abi::sdk::Value::Post(p) => Some(p),
            _ => None,
        }
    };
    (value, Post) => { plugin_abi::sdk::Value::Post };

    // A topic.
    (ty, Topic) => { plugin_abi::abi::Topic };
    (to_wire, Topic, $a:expr) => {
        $crate::ipc::Arg::Topic($crate::proto::convert::topic_from_abi($a))
    };
    (from_wire, Topic, $a:expr) => {
        match $a {
            $crate::ipc::Arg::Topic(t) => Some($crate::proto::convert::topic_to_abi(&t)),
            _ => None,
        }
    };
    (to_vtable, Topic, $a:expr) => { &$a };
    (json, Topic, $a:expr) => {
        serde_json::json!({ "id": $a.id.into_option(), "title": $a.title.as_str() })
    };
    (from_proto, Topic, $a:expr) => { $crate::proto::convert::topic_to_abi(&$a) };
    (from_value, Topic, $v:expr) => {
        match $v {
            plugin_abi::sdk::Value::Topic(t) => Some(t),
            _ => None,
        }
    };
    (value, Topic) => { plugin_abi::sdk::Value::Topic };

    // A flag.
    (ty, Bool) => { bool };
    (to_wire, Bool, $a:expr) => { $crate::ipc::Arg::Bool(*$a) };
    (from_wire, Bool, $a:expr) => {
        match $a {
            $crate::ipc::Arg::Bool(b) => Some(b),
            _ => None,
        }
    };
    (to_vtable, Bool, $a:expr) => { $a };
    (json, Bool, $a:expr) => { serde_json::json!($a) };
    (from_proto, Bool, $a:expr) => { $a };
}

pub(crate) use base_kind;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hosts_init_shows_no_instance_configuration_in_debug() {
        let instance = InitInstance {
            name: "ldap".into(),
            config_json: r#"{"bind_password":"s3cret"}"#.into(),
        };
        let shown = format!("{instance:?} {instance:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("ldap"), "{shown}");
    }

    #[test]
    fn frames_round_trip_and_a_short_or_oversized_frame_is_an_error() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        send(
            &mut a,
            &Down::Call {
                of: 0,
                hook: "flaskbb_authenticate".into(),
                args: vec![Arg::Str("ann".into()), Arg::Str("pw".into())],
                context: Context::new(),
            },
        )
        .unwrap();
        match recv::<Down>(&mut b).unwrap() {
            Down::Call { hook, args, .. } => {
                assert_eq!(hook, "flaskbb_authenticate");
                assert_eq!(args.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        a.write_all(&(MAX_FRAME as u32 + 1).to_le_bytes()).unwrap();
        let e = recv::<Down>(&mut b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        drop(a);
        let e = recv::<Down>(&mut b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// `msg` through a frame's body and back, as Debug (every message type has it).
    fn round_trip<T: Serialize + DeserializeOwned + std::fmt::Debug>(msg: &T) {
        let mut body = Vec::new();
        to_body(&mut body, msg).unwrap();
        let back: T = from_body(&body).unwrap();
        assert_eq!(format!("{back:?}"), format!("{msg:?}"));
    }

    #[test]
    fn every_kind_of_message_crosses_as_it_was_sent() {
        let user = crate::proto::User {
            id: 7,
            username: "ann".into(),
            email: "ann@example.org".into(),
            activated: true,
            login_attempts: 2,
            last_failed_login: Some("2026-12-08T01:00:00Z".into()),
            date_joined: "2026-01-01T00:00:00Z".into(),
            primary_group_id: None,
            groups: vec!["Member".into(), "Ünïcode \"quoted\"".into()],
        };
        let post = Post {
            id: Some(3),
            topic_id: Some(-4),
            user_id: None,
            username: Some(String::new()),
            content: "\\*\\*\\* and a NUL \0 and é".into(),
            date_created: None,
        };
        let topic = Topic {
            title: "t".into(),
            content: Some(String::new()),
            ..Default::default()
        };
        let context: Context = [("remote_addr".to_string(), "192.0.2.1".to_string())].into();
        round_trip(&Down::Chain {
            of: vec![0, 4, u32::MAX],
            hook: "flaskbb_event_post_save_before".into(),
            args: vec![
                Arg::Post(post.clone()),
                Arg::Topic(topic.clone()),
                Arg::User(WireUser(user.clone(), true)),
                Arg::Str(String::new()),
                Arg::Bool(false),
            ],
            draft: Some(0),
            firstresult: true,
            context: context.clone(),
        });
        round_trip(&Down::WrapAfter {
            of: 1,
            hook: "h".into(),
            args_json: "{\"a\":1}".into(),
            context,
            outcome: WireOutcome {
                result: Err(WireError::Rejected("no".into())),
                decided_by: Some("x".into()),
                duration_us: u64::MAX,
            },
        });
        round_trip(&Down::Reply(Ok(HostValue::User(None))));
        round_trip(&Down::Reply(Ok(HostValue::Text(Some(String::new())))));
        round_trip(&Down::Reply(Ok(HostValue::Provisioned(WireUser(
            user.clone(),
            false,
        )))));
        round_trip(&Down::Reply(Err(WireError::Failed("down".into()))));
        round_trip(&Up::Host {
            step: 2,
            call: HostCall::StoreSwap {
                key: "k".into(),
                expected: None,
                value: Some("v".into()),
            },
        });
        round_trip(&Up::Done(Ok(Answer::User(None))));
        round_trip(&Up::Done(Ok(Answer::User(Some(WireUser(user, false))))));
        round_trip(&Up::ChainDone(ChainAnswer {
            steps: vec![
                Step {
                    result: Ok(true),
                    ns: 0,
                },
                Step {
                    result: Err(WireError::Stop("stop".into())),
                    ns: u64::MAX,
                },
            ],
            value: Some(Answer::Post(post)),
        }));
        round_trip(&Up::ChainDone(ChainAnswer {
            steps: vec![],
            value: Some(Answer::Topic(topic)),
        }));
        round_trip(&Started::Making { instance: 3 });
        let init = Init {
            mapped: "/var/lib/flaskbbd/libs/abc.so".into(),
            library: "plugins/libx.so".into(),
            instances: vec![InitInstance {
                name: "x".into(),
                config_json: "{\"words\":[\"a\"]}".into(),
            }],
            base_dir: "/etc/flaskbbd".into(),
            sandbox: Sandbox {
                network: true,
                read: vec!["/proc".into()],
                write: vec![],
                memory_bytes: 1 << 30,
            },
        };
        let mut body = Vec::new();
        to_body(&mut body, &init).unwrap();
        let back: Init = from_body(&body).unwrap();
        assert_eq!(format!("{back:?}"), format!("{init:?}"));
        assert_eq!(back.instances[0].config_json, init.instances[0].config_json);
    }

    #[test]
    fn a_body_with_bytes_after_its_message_is_refused() {
        let mut body = Vec::new();
        to_body(&mut body, &Up::Done(Ok(Answer::True(true)))).unwrap();
        body.push(0xc0);
        let e = from_body::<Up>(&body).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("bytes after the message"), "{e}");
        // Bytes after it that are no value either, or a container's header alone.
        for after in [0xc1, 0x91, 0x81, 0xdc] {
            *body.last_mut().unwrap() = after;
            assert!(from_body::<Up>(&body).is_err(), "{after:#x}");
        }
        // And what is no message at all (0xc1: never used), or a message cut short.
        assert!(from_body::<Up>(&[0xc1]).is_err());
        assert!(from_body::<Up>(&body[..body.len() / 2]).is_err());
    }

    #[test]
    fn a_lane_reads_frames_however_the_bytes_arrive() {
        let (mut raw, theirs) = UnixStream::pair().unwrap();
        let mut lane = Lane::new(theirs);
        let frame = |msg: &Up| {
            let mut body = Vec::new();
            to_body(&mut body, msg).unwrap();
            let mut f = (body.len() as u32).to_le_bytes().to_vec();
            f.extend(body);
            f
        };
        // Two frames in one write, then one a byte at a time, then one larger than
        // the lane's buffer.
        let mut two = frame(&Up::Done(Ok(Answer::True(true))));
        two.extend(frame(&Up::Done(Ok(Answer::Nothing))));
        raw.write_all(&two).unwrap();
        assert!(matches!(
            lane.recv::<Up>().unwrap(),
            Up::Done(Ok(Answer::True(true)))
        ));
        assert!(matches!(
            lane.recv::<Up>().unwrap(),
            Up::Done(Ok(Answer::Nothing))
        ));
        let slow = frame(&Up::Done(Err(WireError::Stop("no".into()))));
        let writer = std::thread::spawn(move || {
            for b in slow {
                raw.write_all(&[b]).unwrap();
            }
            let big = "x".repeat(100_000);
            let mut body = Vec::new();
            to_body(
                &mut body,
                &Up::Done(Ok(Answer::Post(Post {
                    content: big,
                    ..Default::default()
                }))),
            )
            .unwrap();
            raw.write_all(&(body.len() as u32).to_le_bytes()).unwrap();
            raw.write_all(&body).unwrap();
            raw
        });
        assert!(
            matches!(lane.recv::<Up>().unwrap(), Up::Done(Err(WireError::Stop(r))) if r == "no")
        );
        match lane.recv::<Up>().unwrap() {
            Up::Done(Ok(Answer::Post(p))) => assert_eq!(p.content.len(), 100_000),
            other => panic!("{other:?}"),
        }
        let mut raw = writer.join().unwrap();
        raw.write_all(b"\x05\x00\x00\x00{oops").unwrap();
        assert_eq!(
            lane.recv::<Up>().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        drop(raw);
        assert_eq!(
            lane.recv::<Up>().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn a_split_lane_reads_one_socket_and_writes_the_other() {
        let (down_ours, down_theirs) = UnixStream::pair().unwrap();
        let (up_theirs, up_ours) = UnixStream::pair().unwrap();
        let mut daemon = Lane::split(up_ours, down_ours, None);
        let mut host = Lane::split(down_theirs, up_theirs, None);
        daemon.send(&Up::Done(Ok(Answer::True(true)))).unwrap();
        assert!(matches!(
            host.recv::<Up>().unwrap(),
            Up::Done(Ok(Answer::True(true)))
        ));
        host.send(&Up::Done(Ok(Answer::Nothing))).unwrap();
        assert!(matches!(
            daemon.recv::<Up>().unwrap(),
            Up::Done(Ok(Answer::Nothing))
        ));
        // The host gone (both its sockets closed): the daemon's read ends.
        drop(host);
        assert_eq!(
            daemon.recv::<Up>().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_async_lane_writes_a_frame_larger_than_the_socket_holds_and_goes_on() {
        let (down_ours, down_theirs) = UnixStream::pair().unwrap();
        let (up_theirs, up_ours) = UnixStream::pair().unwrap();
        let mut daemon = AsyncLane::of(Lane::split(up_ours, down_ours, None)).unwrap();
        let mut host = Lane::split(down_theirs, up_theirs, None);
        // 4 MiB: many times a socket's buffer, so the write waits for room while the
        // host, which starts reading only later, drains it.
        let big = "x".repeat(4 << 20);
        let host = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            for want in [4 << 20, 3] {
                match host.recv::<Up>().unwrap() {
                    Up::Done(Ok(Answer::Post(p))) => assert_eq!(p.content.len(), want),
                    other => panic!("{other:?}"),
                }
                host.send(&Up::Done(Ok(Answer::True(true)))).unwrap();
            }
        });
        let post = |content: String| {
            Up::Done(Ok(Answer::Post(Post {
                content,
                ..Post::default()
            })))
        };
        daemon.send(&post(big)).await.unwrap();
        assert!(matches!(
            daemon.recv::<Up>().await.unwrap(),
            Up::Done(Ok(Answer::True(true)))
        ));
        // The lane goes on as before.
        daemon.send(&post("abc".into())).await.unwrap();
        assert!(matches!(
            daemon.recv::<Up>().await.unwrap(),
            Up::Done(Ok(Answer::True(true)))
        ));
        host.join().unwrap();
        assert_eq!(
            daemon.recv::<Up>().await.unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn a_file_descriptor_crosses_and_still_works() {
        let (ctl_a, ctl_b) = UnixStream::pair().unwrap();
        let (mut lane_daemon, lane_host) = UnixStream::pair().unwrap();
        let (ours, page_fd) = super::page::Page::create().unwrap();
        send_fds(&ctl_a, &[lane_host.as_raw_fd(), page_fd.as_raw_fd()]).unwrap();
        drop(lane_host);
        let mut fds = recv_fds(&ctl_b).unwrap();
        assert_eq!(fds.len(), 2);
        let page = super::page::Page::map(&fds.pop().unwrap()).unwrap();
        page.set_step(2);
        assert_eq!(ours.step(), 2);
        let mut received = UnixStream::from(fds.pop().unwrap());
        send(&mut lane_daemon, &Up::Done(Ok(Answer::True(true)))).unwrap();
        assert!(matches!(
            recv::<Up>(&mut received).unwrap(),
            Up::Done(Ok(Answer::True(true)))
        ));
        drop(ctl_a);
        assert_eq!(
            recv_fds(&ctl_b).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
