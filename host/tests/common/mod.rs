//! Helpers for the host's integration tests: run the `bulkhead` binary, talk HTTP/1.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const DEV: &str = include_str!("../../registry.dev.json");

/// `bulkhead --registry PATH …`, isolated from the caller's environment.
pub fn bulkhead(registry: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bulkhead"));
    c.env_remove("BULKHEAD_REGISTRY")
        .env_remove("BULKHEAD_STATE_DIR")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .arg("--registry")
        .arg(registry);
    c
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(registry: &Path, args: &[&str]) -> Run {
    let out: Output = bulkhead(registry).args(args).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs and asserts success.
pub fn ok(registry: &Path, args: &[&str]) -> String {
    let r = run(registry, args);
    assert_eq!(
        r.code, 0,
        "bulkhead {args:?} failed:\n{}{}",
        r.stdout, r.stderr
    );
    r.stdout
}

/// A temp dir with the dev registry written by `bulkhead registry init`.
pub fn initialised() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.json");
    ok(&path, &["registry", "init"]);
    (dir, path)
}

/// [`initialised`], plus the registry's models trained on the committed slice of the data
/// set (`bulkhead model seed`) in `<dir>/data-plane`.
pub fn seeded() -> (tempfile::TempDir, PathBuf) {
    let wasm = bulkhead::models::plugin::eta_forecaster_wasm().unwrap();
    let flights = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/flights.csv");
    let (dir, reg) = initialised();
    let state = dir.path().to_str().unwrap();
    ok(
        &reg,
        &[
            "--state-dir",
            state,
            "model",
            "seed",
            "--flights",
            flights.to_str().unwrap(),
            "--plugin",
            wasm.to_str().unwrap(),
        ],
    );
    (dir, reg)
}

pub fn doc(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A running `bulkhead control` (or another server), killed on drop.
pub struct Control {
    child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
}

/// `bulkhead serve` on the `dp_pool_us` plane (127.0.0.1, any port) with `extra` flags,
/// once `/readyz` answers 200 (within 60 s).
pub fn serve_ready(registry: &Path, state: &str, extra: &[&str]) -> Control {
    let mut cmd = bulkhead(registry);
    cmd.args([
        "--state-dir",
        state,
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--plane-name",
        "dp_pool_us",
    ]);
    cmd.args(extra);
    let srv = Control::spawn(cmd);
    let t0 = Instant::now();
    while srv.get("/readyz", &[]).status != 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "never ready: {:?}",
            srv.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    srv
}

impl Control {
    pub fn start(registry: &Path) -> Control {
        let mut cmd = bulkhead(registry);
        cmd.args(["control", "--listen", "127.0.0.1:0"]);
        Control::spawn(cmd)
    }

    /// Spawns a server command that logs `listening on http://ADDR` on stderr.
    pub fn spawn(mut cmd: Command) -> Control {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on http://") {
                    let rest = &line[i + "listening on http://".len()..];
                    let addr = rest
                        .split([',', ' '])
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!("the server did not start: {:?}", log.lock().unwrap());
            }
        };
        Control { child, addr, log }
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        http(self.addr, "GET", path, headers)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), bodies by
/// Content-Length.
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: control\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("content-length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let body = raw[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let resp = Resp {
        status,
        headers,
        body,
    };
    if method != "HEAD"
        && resp.status != 304
        && let Some(len) = resp.header("content-length")
    {
        assert_eq!(
            resp.body.len(),
            len.parse::<usize>().unwrap(),
            "truncated body"
        );
    }
    resp
}

/// Polls `f` every 20 ms until it returns Some or `within` passes.
pub fn wait_for<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
