//! `audit`: a wrapper around every hook's chain that appends one JSON line per
//! outcome to a file: when, which hook, which instance decided, the result or error,
//! how long the chain took, the call's arguments and the request context, never a
//! secret (the secret is not among the arguments a wrapper sees, and context keys such
//! as `otp` are redacted).
//!
//! The file is opened when the instance is made, so a reload (SIGHUP or
//! `org.flaskbb.Admin.Reload`) after log rotation writes to the new file.

#![forbid(unsafe_code)]

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::PathBuf,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use plugin_abi::prelude::*;
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    path: PathBuf,
    /// Context keys whose values are never written.
    #[serde(default = "default_redact")]
    redact: Vec<String>,
}

fn default_redact() -> Vec<String> {
    [
        "otp",
        "password",
        "secret",
        "token",
        "code",
        "totp",
        "pending_login",
    ]
    .map(String::from)
    .to_vec()
}

/// One configured instance.
pub struct Audit {
    path: PathBuf,
    file: Mutex<File>,
    redact: Vec<String>,
}

impl PluginInstance for Audit {
    fn new(init: &Init) -> Result<Self, String> {
        let c: Config = init.config()?;
        let path = init.resolve_path(&c.path);
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("config key path: cannot create {}: {e}", dir.display()))?;
        }
        // Private whatever the umask: the log names members and their addresses.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                format!(
                    "config key path: cannot open {} for appending: {e}",
                    path.display()
                )
            })?;
        Ok(Audit {
            path,
            file: Mutex::new(file),
            redact: c.redact.iter().map(|k| k.to_lowercase()).collect(),
        })
    }
}

/// `secs` since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339(since_epoch: std::time::Duration) -> String {
    let secs = since_epoch.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

fn describe(result: &Result<Value, HookError>) -> (Json, Json) {
    match result {
        Ok(Value::Nothing) => (json!("nothing"), Json::Null),
        Ok(Value::True) => (json!(true), Json::Null),
        Ok(Value::User(u)) => (
            json!({ "user": { "id": u.id, "username": u.username.as_str() } }),
            Json::Null,
        ),
        Ok(Value::Post(p)) => (json!({ "post": { "id": p.id.into_option() } }), Json::Null),
        Ok(Value::Topic(t)) => (json!({ "topic": { "id": t.id.into_option() } }), Json::Null),
        Err(e) => {
            let (kind, text) = match e {
                HookError::StopAuthentication { reason } => ("StopAuthentication", reason.as_str()),
                HookError::ForceLogout { reason } => ("ForceLogout", reason.as_str()),
                HookError::Rejected { reason } => ("Rejected", reason.as_str()),
                HookError::Failed { message } => ("Failed", message.as_str()),
                HookError::NotImplemented => ("NotImplemented", ""),
            };
            (Json::Null, json!({ "kind": kind, "message": text }))
        }
    }
}

impl Audit {
    fn line(&self, cx: &Ctx<'_>, call: &HookCall, outcome: &Outcome) -> String {
        let context: Map<String, Json> = cx
            .context_all()
            .into_iter()
            .map(|(k, v)| {
                let hidden = self.redact.contains(&k.to_lowercase());
                (
                    k,
                    if hidden {
                        json!("[redacted]")
                    } else {
                        json!(v)
                    },
                )
            })
            .collect();
        let (result, error) = describe(&outcome.result);
        let args: Json = serde_json::from_str(call.args_json.as_str()).unwrap_or(Json::Null);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = json!({
            "time": rfc3339(now),
            "hook": call.hook.as_str(),
            "decided_by": outcome.decided_by,
            "result": result,
            "error": error,
            "duration_us": outcome.duration.as_micros() as u64,
            "args": args,
            "context": context,
        })
        .to_string();
        line.push('\n');
        line
    }
}

impl HookWrapper for Audit {
    fn after(&self, cx: &Ctx<'_>, call: &HookCall, outcome: Outcome) -> Outcome {
        let line = self.line(cx, call, &outcome);
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // An audit trail that cannot be written must not end the forum's logins, but
        // it must be seen: the daemon's log says so.
        if let Err(e) = f.write_all(line.as_bytes()) {
            cx.warn(&format!("cannot append to {}: {e}", self.path.display()));
        }
        outcome
    }
}

export_plugin! {
    plugin: Audit,
    name: "audit",
    description: "Appends one JSON line per hook outcome (hook, deciding instance, result, duration, context) to a file",
    hooks: [HookWrapper => HookOrder::TRYFIRST],
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(
            super::rfc3339(Duration::from_millis(0)),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            super::rfc3339(Duration::from_millis(951_782_400_123)),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            super::rfc3339(Duration::from_secs(1_795_000_000)),
            "2026-11-18T11:06:40.000Z"
        );
    }
}
