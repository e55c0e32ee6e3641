//! What the rest of the daemon needs of passkeys without their ceremonies: the
//! relying party's configuration (`[webauthn]`, checked at start), the context mark a
//! verified passkey's request carries, and where passkeys are kept in the store (so
//! that an admin's reset can remove them). The ceremonies are [`crate::passkey`]'s.
//! It imports nothing of the daemon but the store's seam, so that configuration,
//! requests and the account interface can use it without an import circle.

use serde::Deserialize;
use webauthn_rs::prelude::{Url, Webauthn, WebauthnBuilder};

use crate::store::Store;

/// The key-value store's instance name for passkeys and ceremonies.
pub(crate) const KV: &str = "flaskbbd.passkeys";

/// The context key a passkey sign-in's request carries (value [`PASSKEY`]): set by
/// the daemon only, removed from every context a client sends.
pub(crate) const AUTHENTICATED_BY: &str = "authenticated_by";

/// [`AUTHENTICATED_BY`]'s value for a verified passkey.
pub(crate) const PASSKEY: &str = "passkey";

/// `[webauthn]`: the relying party. Without the table passkeys are off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebauthnConfig {
    /// The relying party id: the forum's host name, or a registrable suffix of it.
    pub rp_id: String,
    /// The origins the forum's pages are served from (`https://host[:port]`, or
    /// `http://localhost[:port]` for development).
    pub origins: Vec<String>,
    /// The name browsers show for the relying party ("Cat Forum").
    pub rp_name: String,
}

impl WebauthnConfig {
    /// Checks the table; on a problem, the key (under `webauthn.`) and what is wrong.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.rp_name.trim().is_empty() {
            return Err((
                "rp_name",
                "must name the forum, as browsers show it (\"Cat Forum\")".into(),
            ));
        }
        let rp_id = &self.rp_id;
        let valid_id = !rp_id.is_empty()
            && rp_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !rp_id.starts_with('.')
            && !rp_id.ends_with('.')
            && (rp_id.contains('.') || rp_id == "localhost");
        if !valid_id {
            return Err((
                "rp_id",
                format!(
                    "{rp_id:?} is not a host name: use the forum's host (\"forum.example.org\"), or a registrable domain it is under (\"example.org\"; never a bare top-level domain or another public suffix such as co.uk), in lower case, an international name in its xn-- form"
                ),
            ));
        }
        if self.origins.is_empty() {
            return Err((
                "origins",
                "list the forum's origin, such as [\"https://forum.example.org\"]".into(),
            ));
        }
        for origin in &self.origins {
            let url = Url::parse(origin).map_err(|e| {
                (
                    "origins",
                    format!("{origin:?} is not a URL ({e}): use \"https://forum.example.org\""),
                )
            })?;
            if !url.username().is_empty() || url.password().is_some() {
                return Err((
                    "origins",
                    format!("{origin:?}: an origin has no user name or password in it"),
                ));
            }
            let host = url.host_str().unwrap_or_default().to_owned();
            let secure = url.scheme() == "https" && !host.is_empty();
            let local = url.scheme() == "http" && host == "localhost";
            if !(secure || local) {
                return Err((
                    "origins",
                    format!(
                        "{origin:?}: an origin must be https (http only for http://localhost, in development)"
                    ),
                ));
            }
            if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
                return Err((
                    "origins",
                    format!(
                        "{origin:?}: an origin is a scheme, host and port only, without a path"
                    ),
                ));
            }
            if host != *rp_id && !host.ends_with(&format!(".{rp_id}")) {
                return Err((
                    "rp_id",
                    format!(
                        "{rp_id:?} is neither the host of the origin {origin:?} nor a domain it is under"
                    ),
                ));
            }
        }
        self.build().map(drop).map_err(|e| ("origins", e))
    }

    /// The `webauthn-rs` relying party of this table.
    pub(crate) fn build(&self) -> Result<Webauthn, String> {
        let urls = self
            .origins
            .iter()
            .map(|o| Url::parse(o).map_err(|e| format!("{o:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let Some((first, rest)) = urls.split_first() else {
            return Err("no origin is configured".into());
        };
        let mut builder = WebauthnBuilder::new(&self.rp_id, first)
            .map_err(|e| format!("webauthn-rs refused the relying party: {e}"))?
            .rp_name(&self.rp_name);
        for url in rest {
            builder = builder.append_allowed_origin(url);
        }
        builder
            .build()
            .map_err(|e| format!("webauthn-rs refused the relying party: {e}"))
    }
}

/// Base64url without padding, as WebAuthn writes credential ids.
pub(crate) fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// The store key of member `user_id`'s passkey `id` (base64url).
pub(crate) fn cred_key(user_id: i64, id: &str) -> String {
    format!("cred:{user_id}:{id}")
}

fn store_error(e: crate::store::StoreError) -> String {
    format!("the passkey store: {e}")
}

/// Forgets every passkey of `user_id` (an admin's reset of the member's second
/// factors); how many went.
pub(crate) fn forget_all(store: &dyn Store, user_id: i64) -> Result<usize, String> {
    let mut gone = 0;
    for (key, value) in store
        .kv_prefixed(KV, &format!("cred:{user_id}:"))
        .map_err(store_error)?
    {
        let Some(value) = value else { continue };
        if store
            .kv_swap(KV, &key, Some(&value), None)
            .map_err(store_error)?
        {
            gone += 1;
        }
        if let Some(id) = key.rsplit(':').next() {
            store
                .kv_swap(KV, &format!("owner:{id}"), Some(&user_id.to_string()), None)
                .map_err(store_error)?;
        }
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    //! The `[webauthn]` checks and the credential id encoding.

    use super::*;

    fn table(rp_id: &str, origins: &[&str]) -> WebauthnConfig {
        WebauthnConfig {
            rp_id: rp_id.into(),
            origins: origins.iter().map(|o| o.to_string()).collect(),
            rp_name: "Cat Forum".into(),
        }
    }

    fn key_of(t: WebauthnConfig) -> Option<&'static str> {
        t.validate().err().map(|(key, _)| key)
    }

    #[test]
    fn origins_must_be_https_or_localhost_under_the_rp_id() {
        assert_eq!(key_of(table("localhost", &["http://localhost:8080"])), None);
        assert_eq!(
            key_of(table("example.org", &["https://forum.example.org"])),
            None
        );
        assert_eq!(
            key_of(table(
                "forum.example.org",
                &["https://forum.example.org:8443"]
            )),
            None
        );
        assert_eq!(
            key_of(table("example.org", &["http://forum.example.org"])),
            Some("origins")
        );
        assert_eq!(
            key_of(table("example.org", &["https://forum.example.org/forum"])),
            Some("origins")
        );
        assert_eq!(key_of(table("example.org", &[])), Some("origins"));
        assert_eq!(
            key_of(table("example.org", &["https://myexample.org"])),
            Some("rp_id")
        );
        assert_eq!(
            key_of(table("org", &["https://forum.example.org"])),
            Some("rp_id")
        );
        assert_eq!(
            key_of(table("Example.org", &["https://example.org"])),
            Some("rp_id")
        );
        let mut nameless = table("example.org", &["https://example.org"]);
        nameless.rp_name = " ".into();
        assert_eq!(key_of(nameless), Some("rp_name"));
    }

    #[test]
    fn credential_ids_are_base64url_without_padding() {
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg");
        assert_eq!(b64(b"fo"), "Zm8");
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(&[0xfb, 0xff, 0xfe]), "-__-");
    }
}
