//! A throw-away OpenLDAP `slapd` on loopback for the LDAP plugin's tests: its own
//! configuration and database in a scratch directory, a free port, killed on drop.
//! Installs Debian's slapd when it is missing (CI's `.ci/run` does so too).

use std::{
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::Scratch;

/// The directory's people: `uid=lena` (password `LdapPass1`, mail lena@example.org),
/// `uid=nomail` (password `NoMail123`), and the search account `cn=reader`
/// (password `readerpw`).
pub const SUFFIX: &str = "dc=example,dc=org";

/// A running slapd.
pub struct Slapd {
    child: Option<Child>,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// Its `ldap://127.0.0.1:PORT` URL.
    pub url: String,
}

fn ensure_installed() {
    // Tests run in parallel and dpkg holds a lock: one apt-get at a time.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if Path::new("/usr/sbin/slapd").exists() && Path::new("/usr/sbin/slapadd").exists() {
        return;
    }
    let ok = Command::new("sh")
        .args(["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils >/dev/null"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "slapd is not installed and `apt-get install slapd` failed: install Debian's slapd package"
    );
}

const DATA: &str = "dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: uid=lena,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: lena
cn: Lena Lindqvist
sn: Lindqvist
mail: lena@example.org
userPassword: LdapPass1

dn: uid=nomail,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: nomail
cn: No Mail
sn: Mail
userPassword: NoMail123

dn: cn=reader,dc=example,dc=org
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: readerpw
";

/// Makes a throw-away CA and a server certificate for 127.0.0.1 signed by it, in
/// `dir`; returns (CA certificate, server certificate, server key).
fn make_certificates(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=flaskbbd test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    // slapd may drop privileges; the key must stay readable to it.
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

impl Slapd {
    /// Configures, fills and starts a directory under `scratch/ldap`.
    pub fn start(scratch: &Scratch) -> Slapd {
        Self::start_with(scratch, false)
    }

    /// As [`Slapd::start`], with StartTLS offered under a throw-away CA; the CA's
    /// certificate is `scratch/ldap/ca.pem`.
    pub fn start_tls(scratch: &Scratch) -> Slapd {
        Self::start_with(scratch, true)
    }

    fn start_with(scratch: &Scratch, tls: bool) -> Slapd {
        ensure_installed();
        let dir = scratch.path.join("ldap");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             pidfile {d}/slapd.pid\n\
             argsfile {d}/slapd.args\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             database mdb\n\
             maxsize 10485760\n\
             suffix \"{SUFFIX}\"\n\
             rootdn \"cn=admin,{SUFFIX}\"\n\
             rootpw adminpw\n\
             directory {d}/data\n\
             access to attrs=userPassword by anonymous auth by self write by * none\n\
             access to * by * read\n",
            d = dir.display()
        );
        let conf = if tls {
            let (ca, cert, key) = make_certificates(&dir);
            format!(
                "TLSCACertificateFile {}\nTLSCertificateFile {}\nTLSCertificateKeyFile {}\n{conf}",
                ca.display(),
                cert.display(),
                key.display()
            )
        } else {
            conf
        };
        std::fs::write(dir.join("slapd.conf"), conf).unwrap();
        std::fs::write(dir.join("data.ldif"), DATA).unwrap();
        let out = Command::new("/usr/sbin/slapadd")
            .args([
                "-f",
                dir.join("slapd.conf").to_str().unwrap(),
                "-l",
                dir.join("data.ldif").to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "slapadd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("ldap://127.0.0.1:{port}");
        let child = Command::new("/usr/sbin/slapd")
            .args([
                "-f",
                dir.join("slapd.conf").to_str().unwrap(),
                "-h",
                &format!("{url}/"),
                "-d",
                "0",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("slapd.log")).unwrap())
            .spawn()
            .expect("slapd starts");
        let mut s = Slapd {
            child: Some(child),
            port,
            url,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(Ok(Some(status))) = s.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "slapd exited with {status}: {}",
                    std::fs::read_to_string(dir.join("slapd.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "slapd did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// Stops the directory (it stays down).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
