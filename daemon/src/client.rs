//! A small blocking Varlink client for flaskbbd's socket, used by the CLI (`auth`,
//! `plugins`, `hooks`) and by the tests.

use std::{
    io::{self, BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde_json::{json, Value};

/// A call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The service answered with a Varlink error.
    #[error("{error} {parameters}")]
    Varlink { error: String, parameters: Value },
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the service sent something that is not a Varlink reply: {0}")]
    Protocol(String),
}

impl CallError {
    /// The error's name, when the service answered one.
    pub fn name(&self) -> Option<&str> {
        match self {
            CallError::Varlink { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// One connection.
pub struct Client {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Client {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Calls `method` (`interface.Method`) with `parameters` and returns the reply's parameters.
    pub fn call(&mut self, method: &str, parameters: Value) -> Result<Value, CallError> {
        let msg = json!({ "method": method, "parameters": parameters });
        self.send_raw(&serde_json::to_vec(&msg).map_err(|e| CallError::Protocol(e.to_string()))?)?;
        let reply = self
            .receive()?
            .ok_or_else(|| CallError::Protocol("the connection closed".into()))?;
        match reply.get("error").and_then(Value::as_str) {
            Some(error) => Err(CallError::Varlink {
                error: error.to_owned(),
                parameters: reply.get("parameters").cloned().unwrap_or(json!({})),
            }),
            None => Ok(reply.get("parameters").cloned().unwrap_or(json!({}))),
        }
    }

    /// Sends `bytes` followed by a NUL.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.write_all(&[0])
    }

    /// Reads one reply; `None` when the service closed the connection.
    pub fn receive(&mut self) -> Result<Option<Value>, CallError> {
        let mut buf = Vec::new();
        let n = self.reader.read_until(0, &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() != Some(&0) {
            return Err(CallError::Protocol(
                "the reply ended without its NUL".into(),
            ));
        }
        buf.pop();
        serde_json::from_slice(&buf)
            .map(Some)
            .map_err(|e| CallError::Protocol(e.to_string()))
    }

    /// The underlying stream (for tests that misbehave on purpose).
    pub fn stream(&self) -> &UnixStream {
        &self.writer
    }
}
