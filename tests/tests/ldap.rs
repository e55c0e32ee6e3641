//! The LDAP plugin against a real OpenLDAP slapd.

use flaskbbd_tests::calls::reauthenticate;
use flaskbbd_tests::{
    daemon::{err, TestDaemon},
    slapd::Slapd,
    Scratch,
};
use serde_json::json;

fn failed(reason: &str) -> (String, serde_json::Value) {
    (
        "org.flaskbb.Auth.AuthenticationFailed".into(),
        json!({ "reason": reason }),
    )
}

const WRONG: &str = "Wrong username or password.";

#[test]
fn login_by_dn_template_provisions_the_user_and_counts_failures() {
    let s = Scratch::new("ldap-template");
    let ldap = Slapd::start(&s);
    let d = TestDaemon::start(
        &s,
        &format!(
            "[[plugin]]\nname = \"ldap\"\nlibrary = \"ldap\"\nconfig = {{ url = \"{}\", bind_dn = \"uid={{username}},ou=people,dc=example,dc=org\" }}\nsandbox = {{ network = true }}\n",
            ldap.url
        ),
    );
    let user = d.auth("lena", "LdapPass1").unwrap()["user"].clone();
    assert_eq!(
        (user["username"].clone(), user["email"].clone()),
        (json!("lena"), json!("lena@example.org"))
    );
    assert_eq!(
        (user["activated"].clone(), user["groups"].clone()),
        (json!(true), json!(["Member"]))
    );
    let id = user["id"].clone();
    // The second login finds the provisioned user.
    assert_eq!(d.auth("lena", "LdapPass1").unwrap()["user"]["id"], id);
    // Wrong password: the plugin gives no user, the local provider has no password
    // for lena, so FlaskBB's message; and the local counter counts it.
    assert_eq!(err(d.auth("lena", "nope")), failed(WRONG));
    assert_eq!(d.user("lena")["login_attempts"], 1);
    assert_eq!(err(d.auth("nobody", "whatever")), failed(WRONG));
    // An empty password must not pass as an anonymous bind.
    assert_eq!(err(d.auth("lena", "")), failed(WRONG));
    // No mail attribute: a placeholder address.
    assert_eq!(
        d.auth("nomail", "NoMail123").unwrap()["user"]["email"],
        "nomail@ldap.invalid"
    );
    // Reauthentication binds again.
    let reauth = |pw: &str| d.send(&reauthenticate(id.as_i64().unwrap(), pw));
    assert!(reauth("LdapPass1").is_ok());
    assert_eq!(err(reauth("nope")), failed("Wrong password."));
}

#[test]
fn login_by_search_then_bind_finds_users_by_mail_and_escapes_filters() {
    let s = Scratch::new("ldap-search");
    let ldap = Slapd::start(&s);
    let d = TestDaemon::start(
        &s,
        &format!(
            "[[plugin]]\nname = \"ldap\"\nlibrary = \"ldap\"\n[plugin.config]\nurl = \"{}\"\nsearch = {{ base = \"ou=people,dc=example,dc=org\", bind_dn = \"cn=reader,dc=example,dc=org\", bind_password = \"readerpw\" }}\n[plugin.sandbox]\nnetwork = true\n",
            ldap.url
        ),
    );
    assert_eq!(
        d.auth("lena@example.org", "LdapPass1").unwrap()["user"]["username"],
        "lena"
    );
    // A filter injection finds nothing instead of everyone.
    assert_eq!(err(d.auth("*", "LdapPass1")), failed(WRONG));
    assert_eq!(err(d.auth("lena)(uid=*", "LdapPass1")), failed(WRONG));
}

#[test]
fn a_directory_that_is_down_is_an_internal_error_not_a_wrong_password() {
    let s = Scratch::new("ldap-down");
    let mut ldap = Slapd::start(&s);
    let d = TestDaemon::start(
        &s,
        &format!(
            "[[plugin]]\nname = \"ldap\"\nlibrary = \"ldap\"\nconfig = {{ url = \"{}\", bind_dn = \"uid={{username}},ou=people,dc=example,dc=org\", connect_timeout_ms = 1000 }}\nsandbox = {{ network = true }}\n",
            ldap.url
        ),
    );
    assert!(d.auth("lena", "LdapPass1").is_ok());
    ldap.stop();
    let (name, params) = err(d.auth("lena", "LdapPass1"));
    assert_eq!(name, "org.flaskbb.Auth.InternalError");
    let m = params["message"].as_str().unwrap();
    assert!(
        m.starts_with(&format!(
            "instance \"ldap\" failed in flaskbb_authenticate: LDAP directory {}",
            ldap.url
        )),
        "{m}"
    );
    assert_eq!(
        d.user("lena")["login_attempts"],
        0,
        "an outage is not a failed login"
    );
}

#[test]
fn bad_ldap_configuration_is_refused_at_load() {
    let s = Scratch::new("ldap-config");
    let cfg = s.config(
        "[[plugin]]\nname = \"ldap\"\nlibrary = \"ldap\"\nconfig = { url = \"ldap://x\" }\n",
    );
    let out = flaskbbd_tests::flaskbbd(&["check", "-c", cfg.to_str().unwrap()]);
    assert!(
        flaskbbd_tests::text(&out).1.contains(
            "config: set exactly one of bind_dn (a DN template) and search (search, then bind)"
        ),
        "{:?}",
        flaskbbd_tests::text(&out)
    );
}

#[test]
fn starttls_verifies_the_directory_against_ca_file() {
    let s = Scratch::new("ldap-tls");
    let ldap = Slapd::start_tls(&s);
    let ca = s.path.join("ldap/ca.pem").display().to_string();
    let d = TestDaemon::start(
        &s,
        &format!(
            "[[plugin]]\nname = \"trusting\"\nlibrary = \"ldap\"\nconfig = {{ url = \"{}\", starttls = true, ca_file = {ca:?}, bind_dn = \"uid={{username}},ou=people,dc=example,dc=org\" }}\nsandbox = {{ network = true, read = [{ca:?}] }}\n",
            ldap.url,
        ),
    );
    assert_eq!(
        d.auth("lena", "LdapPass1").unwrap()["user"]["username"],
        "lena"
    );
    assert_eq!(err(d.auth("lena", "nope")), failed(WRONG));
    drop(d);
    // Without the CA the directory's certificate is not trusted: a failure, not a login.
    let s2 = Scratch::new("ldap-tls-untrusted");
    let d = TestDaemon::start(
        &s2,
        &format!(
            "[[plugin]]\nname = \"strict\"\nlibrary = \"ldap\"\nconfig = {{ url = \"{}\", starttls = true, bind_dn = \"uid={{username}},ou=people,dc=example,dc=org\" }}\nsandbox = {{ network = true }}\n",
            ldap.url
        ),
    );
    let (name, params) = err(d.auth("lena", "LdapPass1"));
    assert_eq!(name, "org.flaskbb.Auth.InternalError");
    assert!(
        params["message"]
            .as_str()
            .unwrap()
            .contains("LDAP directory"),
        "{params}"
    );
}
