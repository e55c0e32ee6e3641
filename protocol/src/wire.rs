//! Varlink on the wire: NUL-terminated JSON messages, calls, replies and the standard
//! errors. Knows nothing of flaskbbd's methods.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Standard error names (org.varlink.service).
pub mod errors {
    /// The call names an interface this service does not provide.
    pub const INTERFACE_NOT_FOUND: &str = "org.varlink.service.InterfaceNotFound";
    /// The interface has no such method.
    pub const METHOD_NOT_FOUND: &str = "org.varlink.service.MethodNotFound";
    /// The method exists but this service does not implement it.
    pub const METHOD_NOT_IMPLEMENTED: &str = "org.varlink.service.MethodNotImplemented";
    /// A parameter (or the message itself: parameter `message`) is not valid.
    pub const INVALID_PARAMETER: &str = "org.varlink.service.InvalidParameter";
    /// The peer may not call this.
    pub const PERMISSION_DENIED: &str = "org.varlink.service.PermissionDenied";
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The message grew past the limit (in bytes) before its NUL.
    #[error("message longer than {0} bytes")]
    TooLarge(usize),
    /// The stream ended inside a message.
    #[error("connection closed in the middle of a message")]
    Truncated,
    /// Reading the socket failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The framing, apart from any I/O: takes what the reader has buffered (`available`),
/// appends the part that belongs to the message being read to `buf`, and says how many
/// bytes it used and whether the message ended (its NUL, not kept, counts as used).
fn frame(available: &[u8], buf: &mut Vec<u8>, max: usize) -> Result<(usize, bool), ReadError> {
    let (chunk, done) = match available.iter().position(|&b| b == 0) {
        Some(i) => (&available[..i], true),
        None => (available, false),
    };
    if buf.len() + chunk.len() > max {
        return Err(ReadError::TooLarge(max));
    }
    buf.extend_from_slice(chunk);
    Ok((chunk.len() + usize::from(done), done))
}

/// What an empty read means: a clean end between messages, or a message cut short.
fn end_of_stream(buf: &[u8]) -> Result<bool, ReadError> {
    if buf.is_empty() {
        Ok(false)
    } else {
        Err(ReadError::Truncated)
    }
}

/// Reads one message (without its NUL) into `buf`; `Ok(false)` at a clean end of stream.
pub async fn read_message<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<bool, ReadError> {
    buf.clear();
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return end_of_stream(buf);
        }
        let (used, done) = frame(available, buf, max)?;
        r.consume(used);
        if done {
            return Ok(true);
        }
    }
}

/// [`read_message`] for a blocking reader (the client's).
pub fn read_message_blocking<R: std::io::BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<bool, ReadError> {
    buf.clear();
    loop {
        let available = r.fill_buf()?;
        if available.is_empty() {
            return end_of_stream(buf);
        }
        let (used, done) = frame(available, buf, max)?;
        r.consume(used);
        if done {
            return Ok(true);
        }
    }
}

/// A call on the wire: `{"method": ..., "parameters": ...}` and its NUL.
pub fn encode_call(method: &str, parameters: &Value) -> Vec<u8> {
    let mut bytes = json!({ "method": method, "parameters": parameters })
        .to_string()
        .into_bytes();
    bytes.push(0);
    bytes
}

/// One decoded call. Its `Debug` leaves out the parameters, which may hold secrets.
pub struct Call {
    /// The interface, e.g. `org.flaskbb.Auth`.
    pub interface: String,
    /// The method within it, e.g. `Authenticate`.
    pub method: String,
    /// The parameters object, if the call had one.
    pub parameters: Option<Value>,
    /// The caller wants no reply.
    pub oneway: bool,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("interface", &self.interface)
            .field("method", &self.method)
            .field("parameters", &self.parameters.as_ref().map(|_| "…"))
            .field("oneway", &self.oneway)
            .finish()
    }
}

/// A reply: parameters, or an error with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Success, with the method's output parameters.
    Ok(Value),
    /// An error.
    Err {
        /// The error's full name, e.g. `org.flaskbb.Auth.AuthenticationFailed`.
        error: String,
        /// The error's parameters (an object).
        parameters: Value,
    },
}

impl Reply {
    /// A reply carrying `parameters` (an object).
    pub fn ok(parameters: impl Serialize) -> Reply {
        Reply::Ok(serde_json::to_value(parameters).unwrap_or_else(|_| json!({})))
    }

    /// An empty reply.
    pub fn empty() -> Reply {
        Reply::Ok(json!({}))
    }

    /// An error reply.
    pub fn error(error: &str, parameters: Value) -> Reply {
        Reply::Err {
            error: error.to_owned(),
            parameters,
        }
    }

    /// `org.varlink.service.InvalidParameter` for `parameter`.
    pub fn invalid(parameter: &str) -> Reply {
        Reply::error(errors::INVALID_PARAMETER, json!({ "parameter": parameter }))
    }

    /// The error's name, when this is one.
    pub fn error_name(&self) -> Option<&str> {
        match self {
            Reply::Err { error, .. } => Some(error),
            Reply::Ok(_) => None,
        }
    }

    /// Decodes a reply (without its NUL), as a client reads it.
    pub fn decode(buf: &[u8]) -> Result<Reply, String> {
        let value: Value =
            serde_json::from_slice(buf).map_err(|e| format!("the reply is not JSON: {e}"))?;
        let Value::Object(mut obj) = value else {
            return Err("the reply is not a JSON object".into());
        };
        let parameters = match obj.remove("parameters") {
            None | Some(Value::Null) => json!({}),
            Some(p @ Value::Object(_)) => p,
            Some(_) => return Err("the reply's parameters are not an object".into()),
        };
        match obj.remove("error") {
            None | Some(Value::Null) => Ok(Reply::Ok(parameters)),
            Some(Value::String(error)) => Ok(Reply::Err { error, parameters }),
            Some(_) => Err("the reply's error is not a string".into()),
        }
    }

    /// The reply as the JSON object on the wire.
    pub fn message(&self) -> Value {
        match self {
            Reply::Ok(p) => json!({ "parameters": p }),
            Reply::Err { error, parameters } => json!({ "error": error, "parameters": parameters }),
        }
    }

    /// Encodes the reply for the wire, with its NUL.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the reply, encoded for the wire with its NUL, to `out` (replies to
    /// pipelined calls gather in one buffer and go out in one write).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        /// The wire object, borrowing the reply's parts (no copy of its parameters).
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<&'a str>,
            parameters: &'a Value,
        }
        let wire = match self {
            Reply::Ok(parameters) => Wire {
                error: None,
                parameters,
            },
            Reply::Err { error, parameters } => Wire {
                error: Some(error),
                parameters,
            },
        };
        let start = out.len();
        if serde_json::to_writer(&mut *out, &wire).is_err() {
            // Only a map with non-string keys fails, which a Value cannot hold.
            out.truncate(start);
            out.extend_from_slice(b"{}");
        }
        out.push(0);
    }
}

/// Why a message is not a call; the connection is closed after the reply when `fatal`.
#[derive(Debug)]
pub struct BadMessage {
    /// The error to answer.
    pub reply: Reply,
    /// The stream cannot be trusted any further: close it after the reply.
    pub fatal: bool,
}

fn bad(parameter: &str, reason: &str, fatal: bool) -> BadMessage {
    BadMessage {
        reply: Reply::error(
            errors::INVALID_PARAMETER,
            json!({ "parameter": parameter, "reason": reason }),
        ),
        fatal,
    }
}

/// Decodes a message. Invalid UTF-8 or JSON means the peer does not speak Varlink: the
/// reply says so and the connection closes. A well-formed message with a bad field
/// gets an error and the connection goes on.
pub fn decode(buf: &[u8]) -> Result<Call, BadMessage> {
    let text = std::str::from_utf8(buf)
        .map_err(|_| bad("message", "the message is not valid UTF-8", true))?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        bad(
            "message",
            &format!("the message is not valid JSON: {e}"),
            true,
        )
    })?;
    let Value::Object(mut obj) = value else {
        return Err(bad("message", "a message must be a JSON object", true));
    };
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        _ => {
            return Err(bad(
                "method",
                "a call needs \"method\": \"interface.Method\"",
                false,
            ))
        }
    };
    let Some((interface, name)) = method.rsplit_once('.') else {
        return Err(bad("method", "a method name is interface.Method", false));
    };
    let flag = |obj: &mut Map<String, Value>, key: &str| -> Result<bool, BadMessage> {
        match obj.remove(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(_) => Err(bad(key, "must be a boolean", false)),
        }
    };
    let oneway = flag(&mut obj, "oneway")?;
    flag(&mut obj, "more")?;
    if flag(&mut obj, "upgrade")? {
        return Err(bad(
            "upgrade",
            "this service does not upgrade connections",
            false,
        ));
    }
    let parameters = match obj.remove("parameters") {
        None | Some(Value::Null) => None,
        Some(p @ Value::Object(_)) => Some(p),
        Some(_) => return Err(bad("parameters", "must be an object", false)),
    };
    Ok(Call {
        interface: interface.to_owned(),
        method: name.to_owned(),
        parameters,
        oneway,
    })
}

/// A call's parameters, taken one by one so a problem names its parameter.
pub struct Params {
    map: Map<String, Value>,
}

impl Params {
    /// Takes `parameters`; any key not in `known` is an invalid parameter.
    pub fn new(parameters: Option<Value>, known: &[&str]) -> Result<Params, Reply> {
        let map = match parameters {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(Reply::invalid(k));
        }
        Ok(Params { map })
    }

    /// A required parameter.
    pub fn req<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, Reply> {
        match self.map.remove(name) {
            Some(v) if !v.is_null() => serde_json::from_value(v).map_err(|_| Reply::invalid(name)),
            _ => Err(Reply::invalid(name)),
        }
    }

    /// An optional parameter (absent or null is `None`).
    pub fn opt<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<T>, Reply> {
        match self.map.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|_| Reply::invalid(name)),
        }
    }
}
