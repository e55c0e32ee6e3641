//! A blocking Varlink client for flaskbbd's socket: the CLI, the tests and the
//! benchmarks all talk to the daemon through it. Calls are typed where flaskbbd's
//! interfaces are (the methods below decode replies into [`crate::types`]; any other
//! typed call goes through [`Client::request`] with its reply type from
//! [`crate::replies`]); [`Client::call`] sends any method by name, for tests of bad
//! input.

use std::{
    io::{self, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    methods::{AdminCall, AuthCall, EventCall, Request, ServiceCall},
    replies::{
        GetInfoReply, GetInterfaceDescriptionReply, GetMetricsReply, GetStatusReply, GetUserReply,
        ListHooksReply, ListPluginsReply, UnlockReply, UserReply,
    },
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

    /// Sends a typed call and returns the reply's parameters as they came (for tests
    /// that look at a reply's every field).
    pub fn send(&mut self, call: &(impl Request + ?Sized)) -> Result<Value, CallError> {
        self.call(call.full_name(), call.parameters())
    }

    /// Writes a typed call without reading its reply (read it with
    /// [`Client::receive`]): for calls sent one after another before any answer, and
    /// for tests of a client that leaves before the answer.
    pub fn send_only(&mut self, call: &(impl Request + ?Sized)) -> io::Result<()> {
        self.writer
            .write_all(&wire::encode_call(call.full_name(), &call.parameters()))
    }

    /// Sends a typed call and decodes its reply as `R`.
    pub fn request<R: DeserializeOwned>(
        &mut self,
        call: &(impl Request + ?Sized),
    ) -> Result<R, CallError> {
        let reply = self.send(call)?;
        serde_json::from_value(reply)
            .map_err(|e| CallError::Protocol(format!("{}: the reply: {e}", call.full_name())))
    }

    /// `org.varlink.service.GetInfo`.
    pub fn get_info(&mut self) -> Result<GetInfoReply, CallError> {
        self.request(&ServiceCall::GetInfo)
    }

    /// `org.varlink.service.GetInterfaceDescription`: the interface's Varlink text.
    pub fn get_interface_description(&mut self, interface: &str) -> Result<String, CallError> {
        let call = ServiceCall::GetInterfaceDescription {
            interface: interface.into(),
        };
        self.request::<GetInterfaceDescriptionReply>(&call)
            .map(|r| r.description)
    }

    /// `org.flaskbb.Auth.Authenticate`: the user the chain accepted.
    pub fn authenticate(
        &mut self,
        identifier: &str,
        secret: &str,
        context: &Context,
    ) -> Result<User, CallError> {
        let call = AuthCall::Authenticate {
            identifier: identifier.into(),
            secret: secret.into(),
            context: context.clone(),
        };
        self.request::<UserReply>(&call).map(|r| r.user)
    }

    /// `org.flaskbb.Auth.Reauthenticate`.
    pub fn reauthenticate(
        &mut self,
        user_id: i64,
        secret: &str,
        context: &Context,
    ) -> Result<(), CallError> {
        let call = AuthCall::Reauthenticate {
            user_id,
            secret: secret.into(),
            context: context.clone(),
        };
        self.send(&call).map(drop)
    }

    /// An `org.flaskbb.Events` call; the reply's parameters (a draft's answer, or
    /// nothing).
    pub fn fire(&mut self, event: &EventCall) -> Result<Value, CallError> {
        self.send(event)
    }

    /// `org.flaskbb.Events.PostSaveBefore`: the post as the chain left it.
    pub fn post_save_before(&mut self, post: Post) -> Result<Post, CallError> {
        #[derive(serde::Deserialize)]
        struct Saved {
            post: Post,
        }
        self.request::<Saved>(&EventCall::PostSaveBefore { post })
            .map(|r| r.post)
    }

    /// `org.flaskbb.Events.TopicSaveBefore`: the topic as the chain left it.
    pub fn topic_save_before(&mut self, topic: Topic) -> Result<Topic, CallError> {
        #[derive(serde::Deserialize)]
        struct Saved {
            topic: Topic,
        }
        self.request::<Saved>(&EventCall::TopicSaveBefore { topic })
            .map(|r| r.topic)
    }

    /// `org.flaskbb.Admin.CreateUser`.
    pub fn create_user(
        &mut self,
        username: &str,
        email: &str,
        password: &str,
        activated: bool,
    ) -> Result<User, CallError> {
        let call = AdminCall::CreateUser {
            username: username.into(),
            email: email.into(),
            password: password.into(),
            activated,
        };
        self.request::<UserReply>(&call).map(|r| r.user)
    }

    /// `org.flaskbb.Admin.GetUser`, by username or email: the user and its lock state.
    pub fn get_user_and_lock(&mut self, identifier: &str) -> Result<GetUserReply, CallError> {
        self.request(&AdminCall::GetUser {
            identifier: identifier.into(),
        })
    }

    /// `org.flaskbb.Admin.GetUser`, by username or email.
    pub fn get_user(&mut self, identifier: &str) -> Result<User, CallError> {
        self.get_user_and_lock(identifier).map(|r| r.user)
    }

    /// `org.flaskbb.Admin.GetUser`'s lock state of the account.
    pub fn get_lock(&mut self, identifier: &str) -> Result<LockState, CallError> {
        self.get_user_and_lock(identifier).map(|r| r.lock)
    }

    /// `org.flaskbb.Admin.Unlock`: how many live counts it removed.
    pub fn unlock(&mut self, identifier: &str, address: Option<&str>) -> Result<u64, CallError> {
        let call = AdminCall::Unlock {
            identifier: identifier.into(),
            address: address.map(Into::into),
        };
        self.request::<UnlockReply>(&call).map(|r| r.cleared)
    }

    /// `org.flaskbb.Admin.ListPlugins`.
    pub fn list_plugins(&mut self) -> Result<Vec<PluginInfo>, CallError> {
        self.request::<ListPluginsReply>(&AdminCall::ListPlugins)
            .map(|r| r.plugins)
    }

    /// `org.flaskbb.Admin.ListHooks`: every chain in call order.
    pub fn list_hooks(&mut self) -> Result<Vec<HookChain>, CallError> {
        self.request::<ListHooksReply>(&AdminCall::ListHooks)
            .map(|r| r.hooks)
    }

    /// `org.flaskbb.Admin.GetMetrics`: the Prometheus text.
    pub fn get_metrics(&mut self) -> Result<String, CallError> {
        self.request::<GetMetricsReply>(&AdminCall::GetMetrics)
            .map(|r| r.text)
    }

    /// `org.flaskbb.Admin.GetStatus`.
    pub fn get_status(&mut self) -> Result<Status, CallError> {
        self.request::<GetStatusReply>(&AdminCall::GetStatus)
            .map(|r| r.status)
    }

    /// `org.flaskbb.Admin.SetPluginEnabled`.
    pub fn set_plugin_enabled(&mut self, name: &str, enabled: bool) -> Result<(), CallError> {
        let call = AdminCall::SetPluginEnabled {
            name: name.into(),
            enabled,
        };
        self.send(&call).map(drop)
    }

    /// `org.flaskbb.Admin.Reload`.
    pub fn reload(&mut self) -> Result<(), CallError> {
        self.send(&AdminCall::Reload).map(drop)
    }
}
