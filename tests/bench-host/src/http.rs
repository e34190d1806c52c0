//! The data plane as a separate process (`bulkhead serve` on 127.0.0.1) and a minimal
//! keep-alive HTTP/1.1 client: one connection, one request at a time, the whole request
//! in one write, so the latency measured is the server's plus loopback, not a client
//! library's.

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `bulkhead serve`; killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// `bulkhead serve` on `addr` with `extra` flags, its stderr to `log`.
    #[allow(clippy::too_many_arguments)]
    pub fn start_with(
        bulkhead: &Path,
        state_dir: &Path,
        registry: &Path,
        data_dir: &Path,
        addr: SocketAddr,
        cache_entries: usize,
        log: &Path,
        extra: &[String],
    ) -> Result<Server> {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            bail!("{addr} is already in use (set BENCH_HOST_PORT to move the bench's port)");
        }
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(bulkhead)
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--registry")
            .arg(registry)
            .arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--cache-entries")
            .arg(cache_entries.to_string())
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .with_context(|| format!("starting {}", bulkhead.display()))?;
        let mut server = Server { child, addr };
        server.wait_ready(Duration::from_secs(60), log)?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&mut self, within: Duration, log: &Path) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                bail!("bulkhead serve exited ({status}) during start-up:\n{tail}");
            }
            if let Ok(mut c) = Client::connect(self.addr)
                && let Ok((200, _)) = c.get("/readyz")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "bulkhead serve not ready within {within:?} (log: {})",
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Client {
            stream,
            buf: Vec::with_capacity(64 << 10),
        })
    }

    /// `POST /v1/eta` for `tenant` with its bearer token.
    pub fn eta_request(tenant: &str, token: &str, body: &[u8]) -> Vec<u8> {
        let mut req = format!(
            "POST /v1/eta HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\n\
             x-org-id: {tenant}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        req
    }

    pub fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>)> {
        let req = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
        self.send(req.as_bytes())
    }

    /// Sends one request and reads its response (status, body).
    pub fn send(&mut self, req: &[u8]) -> Result<(u16, Vec<u8>)> {
        self.stream.write_all(req)?;
        self.buf.clear();
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill()?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("response head")?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status in the response")?;
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
        };
        if let Some(len) = header("content-length") {
            let len: usize = len.parse().context("content-length")?;
            while self.buf.len() < head_end + len {
                self.fill()?;
            }
            return Ok((status, self.buf[head_end..head_end + len].to_vec()));
        }
        if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            return Ok((status, self.chunked(head_end)?));
        }
        bail!("a response with neither content-length nor chunked encoding")
    }

    fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 16 << 10];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn chunked(&mut self, mut at: usize) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf[at..], b"\r\n") {
                    break at + i;
                }
                self.fill()?;
            };
            let size_text = std::str::from_utf8(&self.buf[at..line_end])?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .context("chunk size")?;
            at = line_end + 2;
            while self.buf.len() < at + size + 2 {
                self.fill()?;
            }
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&self.buf[at..at + size]);
            at += size + 2;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sum of every sample of `name` (any labels) in a Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                return None;
            }
            l.rsplit(' ').next()?.parse::<f64>().ok()
        })
        .sum()
}
