//! A deliberately tiny HTTP/1.1 server core used by [`crate::servers`].
//!
//! Hand-rolled on `httparse` so the echo server can report request headers
//! exactly as received (order, duplicates, raw values), which typical
//! frameworks normalise away. Supports keep-alive, `Content-Length` and
//! chunked request bodies — enough for Envoy as a client.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// Largest request head (request line + headers) accepted, in bytes.
const MAX_HEAD: usize = 1 << 20;
/// Largest number of request headers accepted.
const MAX_HEADERS: usize = 1024;
/// Largest request body accepted, in bytes.
const MAX_BODY: usize = 16 << 20;

/// A parsed request as it arrived on the wire.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    /// The raw request target (path and query).
    pub target: String,
    /// Header names lower-cased, values as received, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a handler answers.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }
}

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;
pub(crate) type Handler = Arc<dyn Fn(Request) -> BoxFuture + Send + Sync>;

/// A server on 127.0.0.1:<ephemeral> running on its own single-worker
/// runtime. Dropping it stops the runtime (without blocking, so it may be
/// dropped inside async code too).
pub(crate) struct Server {
    runtime: Option<Runtime>,
    port: u16,
}

impl Server {
    pub fn start(name: &str, handler: Handler) -> anyhow::Result<Server> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("testkit-{name}"))
            .enable_all()
            .build()
            .context("building server runtime")?;
        let std_listener = StdListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .context("binding 127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let port = std_listener.local_addr()?.port();
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        runtime.spawn(accept_loop(listener, handler));
        Ok(Server {
            runtime: Some(runtime),
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn accept_loop(listener: TcpListener, handler: Handler) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let handler = handler.clone();
                tokio::spawn(async move {
                    // Connection errors (resets, garbage) just end the connection.
                    let _ = serve_connection(stream, handler).await;
                });
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

async fn serve_connection(stream: TcpStream, handler: Handler) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut conn = BufReader::new(stream);
    loop {
        let Some(head) = read_head(&mut conn).await? else {
            return Ok(());
        };
        let (req, keep_alive) = match parse_request(&head) {
            Ok(parsed) => parsed,
            Err(e) => {
                let reply = Reply::new(400, "text/plain", format!("bad request: {e:#}"));
                write_reply(conn.get_mut(), &reply, false, false).await?;
                return Ok(());
            }
        };
        let req = read_body(&mut conn, req).await?;
        let is_head = req.method == "HEAD";
        let reply = handler(req).await;
        write_reply(conn.get_mut(), &reply, keep_alive, is_head).await?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// Reads up to and including the blank line ending a request head.
/// `None` on a clean EOF before any byte.
async fn read_head(conn: &mut BufReader<TcpStream>) -> anyhow::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = conn.read_until(b'\n', &mut head).await?;
        if n == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            bail!("connection closed mid-head");
        }
        if head.len() > MAX_HEAD {
            bail!("request head too large");
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            if before == 0 {
                // Tolerate stray CRLF between requests (RFC 9112 §2.2).
                head.clear();
                continue;
            }
            return Ok(Some(head));
        }
    }
}

/// Parses a request head; returns the request (empty body) and whether the
/// connection may be kept alive afterwards.
fn parse_request(head: &[u8]) -> anyhow::Result<(Request, bool)> {
    let mut slots = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(head)? {
        httparse::Status::Complete(_) => {}
        httparse::Status::Partial => bail!("incomplete request head"),
    }
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let connection = header_tokens(&headers, "connection");
    let keep_alive = if parsed.version == Some(0) {
        connection.iter().any(|t| t == "keep-alive")
    } else {
        !connection.iter().any(|t| t == "close")
    };
    let req = Request {
        method: parsed.method.unwrap_or_default().to_string(),
        target: parsed.path.unwrap_or_default().to_string(),
        headers,
        body: Vec::new(),
    };
    Ok((req, keep_alive))
}

/// Lower-cased comma-separated tokens of every `name` header.
pub(crate) fn header_tokens(headers: &[(String, String)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

async fn read_body(conn: &mut BufReader<TcpStream>, mut req: Request) -> anyhow::Result<Request> {
    if header_tokens(&req.headers, "transfer-encoding")
        .last()
        .is_some_and(|t| t == "chunked")
    {
        loop {
            let mut line = Vec::new();
            conn.read_until(b'\n', &mut line).await?;
            let text = String::from_utf8_lossy(&line);
            let size_text = text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .with_context(|| format!("bad chunk size {size_text:?}"))?;
            if size == 0 {
                // Trailers, up to the blank line.
                loop {
                    line.clear();
                    if conn.read_until(b'\n', &mut line).await? == 0
                        || line == b"\r\n"
                        || line == b"\n"
                    {
                        return Ok(req);
                    }
                }
            }
            if req.body.len() + size > MAX_BODY {
                bail!("request body too large");
            }
            let start = req.body.len();
            req.body.resize(start + size, 0);
            conn.read_exact(&mut req.body[start..]).await?;
            let mut crlf = Vec::new();
            conn.read_until(b'\n', &mut crlf).await?;
        }
    }
    let length = req
        .headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.trim().parse::<usize>())
        .transpose()
        .context("bad content-length")?
        .unwrap_or(0);
    if length > MAX_BODY {
        bail!("request body too large");
    }
    req.body.resize(length, 0);
    conn.read_exact(&mut req.body).await?;
    Ok(req)
}

async fn write_reply(
    stream: &mut TcpStream,
    reply: &Reply,
    keep_alive: bool,
    is_head: bool,
) -> anyhow::Result<()> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("content-length: {}\r\n", reply.body.len()));
    if !keep_alive {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !is_head {
        bytes.extend_from_slice(&reply.body);
    }
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    Ok(())
}

/// Reason phrase for the few statuses our servers produce.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
