//! `ldap`: authenticates (`flaskbb_authenticate`) and reauthenticates
//! (`flaskbb_reauth_attempt`) against an LDAP directory, by binding as the user:
//! either a DN built from a template (`bind_dn = "uid={username},ou=people,…"`), or
//! a search (as a service account, or anonymously) for the user's entry, then a bind
//! as that entry. On a user's first successful login it provisions the local user, so
//! post-authentication checks and failure counters work as for local users.
//!
//! Wrong credentials answer "no user" (the next provider tries, and in the end the
//! user sees "Wrong username or password."); a directory that cannot be reached, or
//! answers with anything else, is a failure: the request fails closed with an
//! internal error, never a "wrong password".

#![forbid(unsafe_code)]

use std::{sync::Arc, time::Duration};

use ldap3::{dn_escape, ldap_escape, LdapConn, LdapConnSettings, LdapError, Scope, SearchEntry};
use plugin_abi::prelude::*;
use serde::Deserialize;

/// LDAP's invalidCredentials result code.
const INVALID_CREDENTIALS: u32 = 49;

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Search {
    base: String,
    /// `{identifier}` is replaced by the escaped identifier.
    #[serde(default = "default_filter")]
    filter: String,
    /// The account to search as; anonymous when absent.
    bind_dn: Option<String>,
    bind_password: Option<String>,
}

fn default_filter() -> String {
    "(|(uid={identifier})(mail={identifier}))".into()
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    /// `ldap://host:port` or `ldaps://host:port`.
    url: String,
    /// Bind DN template; `{username}` is replaced by the escaped identifier.
    bind_dn: Option<String>,
    /// Search for the entry, then bind as it (instead of `bind_dn`).
    search: Option<Search>,
    #[serde(default = "default_uid")]
    username_attribute: String,
    #[serde(default = "default_mail")]
    email_attribute: String,
    #[serde(default)]
    starttls: bool,
    #[serde(default = "yes")]
    tls_verify: bool,
    /// PEM file of the CAs to trust (instead of the system's).
    ca_file: Option<std::path::PathBuf>,
    #[serde(default = "default_connect_timeout")]
    connect_timeout_ms: u64,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    /// Create the local user on a first successful login.
    #[serde(default = "yes")]
    provision: bool,
}

fn default_uid() -> String {
    "uid".into()
}
fn default_mail() -> String {
    "mail".into()
}
fn yes() -> bool {
    true
}
fn default_connect_timeout() -> u64 {
    3000
}
fn default_timeout() -> u64 {
    5000
}

/// One configured instance.
pub struct Ldap {
    config: Config,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl PluginInstance for Ldap {
    fn new(init: &Init) -> Result<Self, String> {
        let config: Config = init.config()?;
        match (&config.bind_dn, &config.search) {
            (Some(t), None) if t.contains("{username}") => {}
            (Some(_), None) => {
                return Err("config key bind_dn: the template needs {username}".into())
            }
            (None, Some(s)) if s.filter.contains("{identifier}") => {}
            (None, Some(_)) => {
                return Err("config key search.filter: the filter needs {identifier}".into())
            }
            _ => return Err(
                "config: set exactly one of bind_dn (a DN template) and search (search, then bind)"
                    .into(),
            ),
        }
        if !(config.url.starts_with("ldap://") || config.url.starts_with("ldaps://")) {
            return Err(format!(
                "config key url: {:?} must start with ldap:// or ldaps://",
                config.url
            ));
        }
        let tls = match &config.ca_file {
            Some(f) => Some(Arc::new(tls_config(&init.resolve_path(f))?)),
            None => None,
        };
        Ok(Ldap { config, tls })
    }
}

fn tls_config(ca_file: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    let pem = std::fs::read(ca_file)
        .map_err(|e| format!("config key ca_file: cannot read {}: {e}", ca_file.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .map_err(|e| format!("config key ca_file: {} is not PEM: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(&certs);
    if added == 0 {
        return Err(format!(
            "config key ca_file: no certificate in {}",
            ca_file.display()
        ));
    }
    Ok(rustls::ClientConfig::builder()
        .with_safe_defaults()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// What a bind attempt found out.
enum Bound {
    /// The directory accepted the credentials; the user's entry.
    Yes {
        username: String,
        email: Option<String>,
    },
    /// Wrong credentials, or no such entry.
    No,
}

fn unreachable(url: &str, e: LdapError) -> HookError {
    HookError::failed(format!("LDAP directory {url}: {e}"))
}

impl Ldap {
    fn connect(&self) -> HookResult<LdapConn> {
        let c = &self.config;
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(Duration::from_millis(c.connect_timeout_ms))
            .set_starttls(c.starttls)
            .set_no_tls_verify(!c.tls_verify);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        LdapConn::with_settings(settings, &c.url).map_err(|e| unreachable(&c.url, e))
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms)
    }

    /// Binds as the user `identifier` with `secret`.
    fn bind(&self, identifier: &str, secret: &str) -> HookResult<Bound> {
        // An empty password would be an anonymous bind, which "succeeds".
        if secret.is_empty() || identifier.is_empty() {
            return Ok(Bound::No);
        }
        let c = &self.config;
        let url = &c.url;
        let mut conn = self.connect()?;
        let dn = match (&c.bind_dn, &c.search) {
            (Some(template), _) => template.replace("{username}", &dn_escape(identifier)),
            (None, Some(s)) => {
                if let (Some(dn), Some(pw)) = (&s.bind_dn, &s.bind_password) {
                    conn.with_timeout(self.timeout())
                        .simple_bind(dn, pw)
                        .and_then(|r| r.success())
                        .map_err(|e| {
                            HookError::failed(format!(
                                "LDAP directory {url}: the search account cannot bind: {e}"
                            ))
                        })?;
                }
                let filter = s.filter.replace("{identifier}", &ldap_escape(identifier));
                let (entries, _) = conn
                    .with_timeout(self.timeout())
                    .search(&s.base, Scope::Subtree, &filter, vec!["1.1"])
                    .and_then(|r| r.success())
                    .map_err(|e| unreachable(url, e))?;
                let n = entries.len();
                let mut entries = entries.into_iter();
                match (entries.next(), entries.next()) {
                    (None, _) => return Ok(Bound::No),
                    (Some(entry), None) => SearchEntry::construct(entry).dn,
                    (Some(_), Some(_)) => {
                        return Err(HookError::failed(format!(
                            "LDAP directory {url}: {n} entries match {filter:?} under {}; make search.filter unique",
                            s.base
                        )))
                    }
                }
            }
            (None, None) => unreachable!("checked when the instance was made"),
        };
        match conn.with_timeout(self.timeout()).simple_bind(&dn, secret) {
            Ok(r) if r.rc == INVALID_CREDENTIALS => return Ok(Bound::No),
            Ok(r) => {
                r.success().map_err(|e| unreachable(url, e))?;
            }
            Err(e) => return Err(unreachable(url, e)),
        }
        let attrs = vec![c.username_attribute.as_str(), c.email_attribute.as_str()];
        let (entries, _) = conn
            .with_timeout(self.timeout())
            .search(&dn, Scope::Base, "(objectClass=*)", attrs)
            .and_then(|r| r.success())
            .map_err(|e| unreachable(url, e))?;
        let _ = conn.unbind();
        let entry = entries.into_iter().next().map(SearchEntry::construct);
        let first = |a: &str| {
            entry
                .as_ref()
                .and_then(|e| e.attrs.get(a))
                .and_then(|v| v.first())
                .cloned()
        };
        Ok(Bound::Yes {
            username: first(&c.username_attribute).unwrap_or_else(|| identifier.to_owned()),
            email: first(&c.email_attribute),
        })
    }
}

impl AuthenticationProvider for Ldap {
    fn authenticate(
        &self,
        cx: &Ctx<'_>,
        identifier: &str,
        secret: &str,
    ) -> HookResult<Option<User>> {
        let Bound::Yes { username, email } = self.bind(identifier, secret)? else {
            return Ok(None);
        };
        if let Some(user) = cx.find_user(&username)? {
            return Ok(Some(user));
        }
        if !self.config.provision {
            cx.warn(&format!(
                "{username} bound to the directory but has no local user, and provision = false"
            ));
            return Ok(None);
        }
        let email = email.unwrap_or_else(|| format!("{username}@ldap.invalid"));
        cx.provision_user(&username, &email).map(Some)
    }
}

impl ReauthenticateProvider for Ldap {
    fn reauthenticate(&self, _cx: &Ctx<'_>, user: &User, secret: &str) -> HookResult<bool> {
        Ok(matches!(
            self.bind(user.username.as_str(), secret)?,
            Bound::Yes { .. }
        ))
    }
}

export_plugin! {
    plugin: Ldap,
    name: "ldap",
    description: "Authenticates and reauthenticates against an LDAP directory; provisions local users",
    hooks: [AuthenticationProvider, ReauthenticateProvider],
}
