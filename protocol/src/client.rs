//! A blocking Varlink client for flaskbbd's socket: the CLI, the tests and the
//! benchmarks all talk to the daemon through it. Calls are typed where flaskbbd's
//! interfaces are (the methods below decode replies into [`crate::types`]); [`Client::call`]
//! sends any method, for Varlink's own and for tests of bad input.

use std::{
    io::{self, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::{
    methods::{EventCall, ADMIN, AUTH, EVENTS},
    types::{Context, HookChain, LockState, PluginInfo, Post, Status, Topic, User},
    wire::{self, ReadError, Reply},
};

/// The longest reply the client reads, in bytes.
const MAX_REPLY: usize = 64 * 1024 * 1024;

/// A call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The service answered with a Varlink error (`parameters` is an object).
    #[error("{error} {parameters}")]
    Varlink {
        /// The error's full name, e.g. `org.flaskbb.Auth.AuthenticationFailed`.
        error: String,
        /// The error's parameters.
        parameters: Value,
    },
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The service sent something that is not a Varlink reply, or not the reply the
    /// method has.
    #[error("the service sent something that is not the expected Varlink reply: {0}")]
    Protocol(String),
}

impl CallError {
    /// The error's full name, when the service answered one.
    pub fn name(&self) -> Option<&str> {
        match self {
            CallError::Varlink { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The error's name without its interface (`AuthenticationFailed`).
    pub fn short_name(&self) -> Option<&str> {
        self.name().map(|n| n.rsplit('.').next().unwrap_or(n))
    }

    /// The error's parameter `key` as text (`reason`, `message`, `plugin`).
    pub fn text(&self, key: &str) -> Option<&str> {
        match self {
            CallError::Varlink { parameters, .. } => parameters.get(key)?.as_str(),
            _ => None,
        }
    }

    /// For `AuthenticationFailed`: the context keys a plugin asked for (`otp`).
    pub fn ask(&self) -> Vec<&str> {
        match self {
            CallError::Varlink { parameters, .. } => parameters
                .get("ask")
                .and_then(Value::as_array)
                .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// One connection to the daemon.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to the socket at `path`; a call waits up to two minutes for its reply
    /// (see [`Client::set_timeout`]).
    pub fn connect(path: &Path) -> io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Client {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            buf: Vec::new(),
        })
    }

    /// How long a call waits for its reply (`None`: for ever).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.writer.set_read_timeout(timeout)
    }

    /// Calls `method` (`interface.Method`) with `parameters` and returns the reply's
    /// parameters.
    pub fn call(&mut self, method: &str, parameters: Value) -> Result<Value, CallError> {
        self.writer
            .write_all(&wire::encode_call(method, &parameters))?;
        match self.receive()? {
            Some(Reply::Ok(parameters)) => Ok(parameters),
            Some(Reply::Err { error, parameters }) => Err(CallError::Varlink { error, parameters }),
            None => Err(CallError::Protocol(
                "the connection closed before the reply".into(),
            )),
        }
    }

    /// Calls `method` and decodes the reply's parameter `field` as `T`.
    fn call_for<T: DeserializeOwned>(
        &mut self,
        method: &str,
        parameters: Value,
        field: &str,
    ) -> Result<T, CallError> {
        let mut reply = self.call(method, parameters)?;
        let value = reply.get_mut(field).map(Value::take).unwrap_or(Value::Null);
        serde_json::from_value(value)
            .map_err(|e| CallError::Protocol(format!("{method}: the reply's {field}: {e}")))
    }

    /// Sends `bytes` followed by a NUL, as they are (for tests that misbehave).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.write_all(&[0])
    }

    /// Reads one reply; `None` when the service closed the connection between replies.
    pub fn receive(&mut self) -> Result<Option<Reply>, CallError> {
        match wire::read_message_blocking(&mut self.reader, &mut self.buf, MAX_REPLY) {
            Ok(false) => Ok(None),
            Ok(true) => Reply::decode(&self.buf)
                .map(Some)
                .map_err(CallError::Protocol),
            Err(ReadError::Io(e)) => Err(CallError::Io(e)),
            Err(e) => Err(CallError::Protocol(e.to_string())),
        }
    }

    /// The underlying stream (for tests that misbehave on purpose).
    pub fn stream(&self) -> &UnixStream {
        &self.writer
    }

    /// `org.flaskbb.Auth.Authenticate`: the user the chain accepted.
    pub fn authenticate(
        &mut self,
        identifier: &str,
        secret: &str,
        context: &Context,
    ) -> Result<User, CallError> {
        self.call_for(
            &format!("{AUTH}.Authenticate"),
            json!({ "identifier": identifier, "secret": secret, "context": context }),
            "user",
        )
    }

    /// `org.flaskbb.Auth.Reauthenticate`.
    pub fn reauthenticate(
        &mut self,
        user_id: i64,
        secret: &str,
        context: &Context,
    ) -> Result<(), CallError> {
        self.call(
            &format!("{AUTH}.Reauthenticate"),
            json!({ "user_id": user_id, "secret": secret, "context": context }),
        )
        .map(drop)
    }

    /// An `org.flaskbb.Events` call; the reply's parameters (a draft's answer, or
    /// nothing).
    pub fn fire(&mut self, event: &EventCall) -> Result<Value, CallError> {
        self.call(&format!("{EVENTS}.{}", event.method()), event.parameters())
    }

    /// `org.flaskbb.Events.PostSaveBefore`: the post as the chain left it.
    pub fn post_save_before(&mut self, post: Post) -> Result<Post, CallError> {
        let event = EventCall::PostSaveBefore { post };
        self.call_for(
            &format!("{EVENTS}.{}", event.method()),
            event.parameters(),
            "post",
        )
    }

    /// `org.flaskbb.Events.TopicSaveBefore`: the topic as the chain left it.
    pub fn topic_save_before(&mut self, topic: Topic) -> Result<Topic, CallError> {
        let event = EventCall::TopicSaveBefore { topic };
        self.call_for(
            &format!("{EVENTS}.{}", event.method()),
            event.parameters(),
            "topic",
        )
    }

    /// `org.flaskbb.Admin.CreateUser`.
    pub fn create_user(
        &mut self,
        username: &str,
        email: &str,
        password: &str,
        activated: bool,
    ) -> Result<User, CallError> {
        self.call_for(
            &format!("{ADMIN}.CreateUser"),
            json!({ "username": username, "email": email, "password": password, "activated": activated }),
            "user",
        )
    }

    /// `org.flaskbb.Admin.GetUser`, by username or email.
    pub fn get_user(&mut self, identifier: &str) -> Result<User, CallError> {
        self.call_for(
            &format!("{ADMIN}.GetUser"),
            json!({ "identifier": identifier }),
            "user",
        )
    }

    /// `org.flaskbb.Admin.GetUser`'s lock state of the account.
    pub fn get_lock(&mut self, identifier: &str) -> Result<LockState, CallError> {
        self.call_for(
            &format!("{ADMIN}.GetUser"),
            json!({ "identifier": identifier }),
            "lock",
        )
    }

    /// `org.flaskbb.Admin.Unlock`: how many live counts it removed.
    pub fn unlock(&mut self, identifier: &str, address: Option<&str>) -> Result<u64, CallError> {
        self.call_for(
            &format!("{ADMIN}.Unlock"),
            json!({ "identifier": identifier, "address": address }),
            "cleared",
        )
    }

    /// `org.flaskbb.Admin.ListPlugins`.
    pub fn list_plugins(&mut self) -> Result<Vec<PluginInfo>, CallError> {
        self.call_for(&format!("{ADMIN}.ListPlugins"), json!({}), "plugins")
    }

    /// `org.flaskbb.Admin.ListHooks`: every chain in call order.
    pub fn list_hooks(&mut self) -> Result<Vec<HookChain>, CallError> {
        self.call_for(&format!("{ADMIN}.ListHooks"), json!({}), "hooks")
    }

    /// `org.flaskbb.Admin.GetMetrics`: the Prometheus text.
    pub fn get_metrics(&mut self) -> Result<String, CallError> {
        self.call_for(&format!("{ADMIN}.GetMetrics"), json!({}), "text")
    }

    /// `org.flaskbb.Admin.GetStatus`.
    pub fn get_status(&mut self) -> Result<Status, CallError> {
        self.call_for(&format!("{ADMIN}.GetStatus"), json!({}), "status")
    }

    /// `org.flaskbb.Admin.SetPluginEnabled`.
    pub fn set_plugin_enabled(&mut self, name: &str, enabled: bool) -> Result<(), CallError> {
        self.call(
            &format!("{ADMIN}.SetPluginEnabled"),
            json!({ "name": name, "enabled": enabled }),
        )
        .map(drop)
    }

    /// `org.flaskbb.Admin.Reload`.
    pub fn reload(&mut self) -> Result<(), CallError> {
        self.call(&format!("{ADMIN}.Reload"), json!({})).map(drop)
    }
}
