//! `bulkhead top`: a terminal view of a host's `/metrics`, refreshed every `--interval`:
//! per tenant requests/s, p95 latency (from the histogram buckets' increases), requests
//! in flight, 429s/s, guest CPU seconds/s and the tenant's share of all tenants' guest
//! time ("UA 60%": who is using the pool), and batch rows/s.
//!
//! `--once` prints a single frame after two scrapes one interval apart, without clearing
//! the screen. An https URL uses `--ca` (and `--cert`/`--key` when the host wants a
//! client certificate, as `serve --client-ca` does).

pub mod frame;
pub mod parse;

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct TopArgs {
    /// The host's metrics endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8081/metrics")]
    pub url: String,
    /// Seconds between frames.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Print one frame (two scrapes, one interval apart) and exit.
    #[arg(long)]
    pub once: bool,
    /// https: the CA certificate (PEM) the host's certificate must chain to.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// https: a client certificate chain (PEM), for a host that requires one.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

struct Target {
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn new(args: &TopArgs) -> Result<Target> {
        let (https, rest) = if let Some(r) = args.url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = args.url.strip_prefix("http://") {
            (false, r)
        } else {
            bail!("--url must start with http:// or https://");
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/metrics" } else { path };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().context("--url: bad port")?),
            None => (authority, if https { 443 } else { 80 }),
        };
        let tls = if https {
            Some((client_config(args)?, host.to_string().try_into()?))
        } else {
            None
        };
        Ok(Target {
            tls,
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    fn scrape(&self) -> Result<String> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .with_context(|| format!("connecting to {}:{}", self.host, self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let req = format!(
            "GET {} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
            self.path, self.host
        );
        let mut raw = Vec::new();
        match &self.tls {
            None => {
                let mut s = stream;
                s.write_all(req.as_bytes())?;
                s.read_to_end(&mut raw)?;
            }
            Some((config, name)) => {
                let conn = rustls::ClientConnection::new(Arc::clone(config), name.clone())?;
                let mut s = rustls::StreamOwned::new(conn, stream);
                s.write_all(req.as_bytes())?;
                match s.read_to_end(&mut raw) {
                    Ok(_) => {}
                    // A peer that closes without close_notify after a complete answer.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        body(&raw)
    }
}

fn client_config(args: &TopArgs) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = args.ca.as_ref().context("an https --url needs --ca")?;
    for c in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(c?)?;
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("reading {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("reading {}", key.display()))?;
            b.with_client_auth_cert(chain, key)?
        }
        _ => b.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The body of a complete HTTP/1.1 response (Content-Length, chunked, or to EOF).
fn body(raw: &[u8]) -> Result<String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        bail!("the metrics endpoint answered {status}");
    }
    let mut data = &raw[end + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return Ok(String::from_utf8_lossy(data).into_owned());
    }
    let mut out = Vec::new();
    loop {
        let nl = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunk")?;
        let size_text = String::from_utf8_lossy(&data[..nl]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("bad chunk size")?;
        data = &data[nl + 2..];
        if size == 0 {
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        out.extend_from_slice(data.get(..size).context("truncated chunk")?);
        data = data.get(size + 2..).context("truncated chunk")?;
    }
}

pub fn run(args: &TopArgs) -> Result<()> {
    let target = Target::new(args)?;
    let interval = Duration::from_secs_f64(args.interval.max(0.1));
    let mut prev = parse::parse(&target.scrape()?);
    let mut at = Instant::now();
    loop {
        std::thread::sleep(interval.saturating_sub(at.elapsed()));
        let cur = parse::parse(&target.scrape()?);
        let now = Instant::now();
        let seconds = (now - at).as_secs_f64();
        let text = frame::render(&args.url, seconds, &frame::rows(&prev, &cur, seconds));
        let mut out = std::io::stdout().lock();
        if args.once {
            out.write_all(text.as_bytes())?;
            return Ok(());
        }
        // Clear the screen, cursor home, then the frame.
        out.write_all(b"\x1b[2J\x1b[H")?;
        out.write_all(text.as_bytes())?;
        out.flush()?;
        (prev, at) = (cur, now);
    }
}
