//! `bulkhead serve --tls-cert --tls-key --client-ca`: mTLS with the certificates
//! `scripts/dev-tls.sh` makes for `make run`.
//!
//! - Envoy's client certificate (`envoy-client.pem`, mesh CA) gets answers over HTTPS, and
//!   the host's certificate verifies against the mesh CA for its names.
//! - Refused at the handshake, never reaching HTTP (and logged): no client certificate; a
//!   client certificate from another CA (made here with openssl); the edge's own certificate
//!   (the dev CA, serverAuth only); plain HTTP.
//! - Start-up refuses a partial flag set, unreadable or non-PEM files and a key that is not
//!   the certificate's, naming the flag and the file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{bulkhead, initialised};
use rustls::pki_types::ServerName;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs `scripts/dev-tls.sh` into `dir`.
fn dev_tls(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/dev-tls.sh");
    let out = Command::new("bash").arg(script).arg(dir).output().unwrap();
    assert!(
        out.status.success(),
        "dev-tls.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA of its own and a clientAuth certificate from it, as an attacker could make:
/// `(other-client.pem, other-client-key.pem)`.
fn foreign_client_cert(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::write(
        dir.join("ext.cnf"),
        "[ca]\nbasicConstraints = critical, CA:true\nkeyUsage = critical, keyCertSign\n\
         [leaf]\nbasicConstraints = critical, CA:false\nkeyUsage = critical, digitalSignature\n\
         extendedKeyUsage = clientAuth\nsubjectAltName = DNS:edge.bulkhead.localhost\n",
    )
    .unwrap();
    let ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
    openssl(
        &[&["genpkey"][..], &ec, &["-out", "other-ca-key.pem"]].concat(),
        dir,
    );
    openssl(
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            "other-ca-key.pem",
            "-subj",
            "/CN=Other CA",
            "-days",
            "30",
            "-config",
            "ext.cnf",
            "-extensions",
            "ca",
            "-out",
            "other-ca.pem",
        ],
        dir,
    );
    openssl(
        &[&["genpkey"][..], &ec, &["-out", "other-client-key.pem"]].concat(),
        dir,
    );
    openssl(
        &[
            "req",
            "-new",
            "-key",
            "other-client-key.pem",
            "-subj",
            "/CN=edge.bulkhead.localhost",
            "-out",
            "other-client.csr",
        ],
        dir,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "other-client.csr",
            "-CA",
            "other-ca.pem",
            "-CAkey",
            "other-ca-key.pem",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "leaf",
            "-out",
            "other-client.pem",
        ],
        dir,
    );
    (
        dir.join("other-client.pem"),
        dir.join("other-client-key.pem"),
    )
}

/// A running `bulkhead serve` with the TLS flags, killed on drop.
struct Host {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Host {
    fn start(registry: &Path, state: &Path, tls: &Path) -> Host {
        let mut child = bulkhead(registry)
            .arg("--state-dir")
            .arg(state)
            .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(tls.join("host.pem"))
            .arg("--tls-key")
            .arg(tls.join("host-key.pem"))
            .arg("--client-ca")
            .arg(tls.join("mesh-ca.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on https://") {
                    let rest = &line[i + "listening on https://".len()..];
                    let _ = tx.send(rest.split([',', ' ']).next().unwrap_or("").to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("serve did not start: {:?}", log.lock().unwrap());
        };
        Host {
            child,
            addr: addr.parse().unwrap(),
            log,
        }
    }

    fn log_has(&self, what: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self.log.lock().unwrap().iter().any(|l| l.contains(what)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TLS client trusting `ca`, presenting `(cert, key)` if given.
fn client(ca: &Path, identity: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    bulkhead_testkit::tls::client_config(ca, identity).unwrap()
}

/// `GET path` over TLS to `addr` as `server_name`: everything received, and the error that
/// ended the exchange (None for a clean close).
fn https_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
    path: &str,
) -> (String, Option<std::io::Error>) {
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: {server_name}\r\nconnection: close\r\n\r\n");
    if let Err(e) = tls.write_all(request.as_bytes()) {
        return (String::new(), Some(e));
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (String::from_utf8_lossy(&got).into_owned(), Some(e)),
        }
    }
}

/// The handshake was refused: an error, and not one byte of HTTP.
fn assert_refused(what: &str, (got, err): (String, Option<std::io::Error>)) -> std::io::Error {
    assert!(got.is_empty(), "{what}: the host answered: {got}");
    err.unwrap_or_else(|| panic!("{what}: the connection closed cleanly, no TLS error"))
}

#[test]
fn serve_with_tls_requires_a_client_certificate_from_the_client_ca() {
    let (dir, reg) = initialised();
    let state = dir.path();
    let tls = state.join("tls");
    dev_tls(&tls);
    let host = Host::start(&reg, state, &tls);
    let mesh_ca = tls.join("mesh-ca.pem");
    let envoy = (
        tls.join("envoy-client.pem"),
        tls.join("envoy-client-key.pem"),
    );
    let envoy = client(&mesh_ca, Some((&envoy.0, &envoy.1)));

    // Envoy's certificate: answered, for each name the host's certificate carries.
    for name in ["host.bulkhead.localhost", "localhost"] {
        let (got, err) = https_get(host.addr, Arc::clone(&envoy), name, "/healthz");
        assert!(err.is_none(), "{name}: {err:?} after {got:?}");
        assert!(got.starts_with("HTTP/1.1 200 "), "{name}: {got}");
        assert!(got.ends_with("\r\n\r\nok"), "{name}: {got}");
    }
    let (got, _) = https_get(host.addr, Arc::clone(&envoy), "localhost", "/metrics");
    assert!(got.starts_with("HTTP/1.1 200 "), "{got}");
    // A name the certificate does not carry fails on the client's side (the edge checks it).
    let (got, err) = https_get(
        host.addr,
        Arc::clone(&envoy),
        "bulkhead.localhost",
        "/healthz",
    );
    assert!(got.is_empty() && err.is_some(), "{got}");

    // No client certificate.
    let err = assert_refused(
        "no client certificate",
        https_get(host.addr, client(&mesh_ca, None), "localhost", "/healthz"),
    );
    assert!(
        err.to_string().contains("CertificateRequired"),
        "no client certificate: {err}"
    );
    assert!(
        host.log_has("TLS handshake refused"),
        "{:?}",
        host.log.lock().unwrap()
    );

    // A client certificate from a CA of its own, with Envoy's name on it.
    let (cert, key) = foreign_client_cert(state);
    let err = assert_refused(
        "a certificate from another CA",
        https_get(
            host.addr,
            client(&mesh_ca, Some((&cert, &key))),
            "localhost",
            "/healthz",
        ),
    );
    assert!(
        err.to_string().contains("UnknownCA") || err.to_string().contains("BadCertificate"),
        "another CA: {err}"
    );
    // The edge's certificate (the dev CA, the one curl users trust; serverAuth only).
    assert_refused(
        "the edge's server certificate",
        https_get(
            host.addr,
            client(
                &mesh_ca,
                Some((&tls.join("server.pem"), &tls.join("server-key.pem"))),
            ),
            "localhost",
            "/healthz",
        ),
    );

    // Plain HTTP to the TLS port: no HTTP answer.
    let mut tcp = TcpStream::connect(host.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = tcp.read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("ok"),
        "plain HTTP was answered: {}",
        String::from_utf8_lossy(&got)
    );
    assert!(!got.starts_with(b"HTTP/1.1 200"));

    // And the host still serves Envoy after all that.
    let (got, err) = https_get(host.addr, envoy, "localhost", "/healthz");
    assert!(
        err.is_none() && got.starts_with("HTTP/1.1 200 "),
        "{got} {err:?}"
    );
}

/// `bulkhead serve` with `args` (after the usual ones) must exit non-zero, printing all of
/// `needles`.
fn refuses_to_start(reg: &Path, state: &Path, args: &[&std::ffi::OsString], needles: &[&str]) {
    let out = bulkhead(reg)
        .arg("--state-dir")
        .arg(state)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} started: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: {n:?} not in {stderr}");
    }
}

#[test]
fn serve_refuses_to_start_with_a_partial_or_broken_tls_setup() {
    let (dir, reg) = initialised();
    let state = dir.path();
    let tls = state.join("tls");
    dev_tls(&tls);
    let f = |name: &str| tls.join(name).into_os_string();
    let (cert, key, ca) = (f("host.pem"), f("host-key.pem"), f("mesh-ca.pem"));
    let flag = |s: &'static str| std::ffi::OsString::from(s);
    let (c, k, a) = (flag("--tls-cert"), flag("--tls-key"), flag("--client-ca"));
    let missing = f("no-such.pem");
    let garbage = state.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let garbage = garbage.into_os_string();
    let s = |p: &std::ffi::OsString| p.to_str().unwrap().to_string();

    // A partial set names what is missing.
    refuses_to_start(&reg, state, &[&c, &cert], &["--tls-key", "--client-ca"]);
    refuses_to_start(
        &reg,
        state,
        &[&c, &cert, &k, &key],
        &["missing --client-ca"],
    );
    refuses_to_start(&reg, state, &[&a, &ca], &["--tls-cert, --tls-key"]);
    // Unreadable or not PEM: the flag and the file.
    refuses_to_start(
        &reg,
        state,
        &[&c, &missing, &k, &key, &a, &ca],
        &["--tls-cert", &s(&missing)],
    );
    refuses_to_start(
        &reg,
        state,
        &[&c, &cert, &k, &garbage, &a, &ca],
        &["--tls-key", &s(&garbage)],
    );
    refuses_to_start(
        &reg,
        state,
        &[&c, &cert, &k, &key, &a, &garbage],
        &["--client-ca", &s(&garbage)],
    );
    // Envoy's key with the host's certificate.
    let wrong_key = f("envoy-client-key.pem");
    refuses_to_start(
        &reg,
        state,
        &[&c, &cert, &k, &wrong_key, &a, &ca],
        &["--tls-cert", &s(&cert), &s(&wrong_key)],
    );
}
