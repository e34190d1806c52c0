//! A tiny blocking HTTP/1.1 client for tests.
//!
//! One request per connection (`connection: close`), headers sent exactly as
//! given (duplicates and order kept), redirects never followed, and every
//! status — including 4xx/5xx — returned as a [`Response`] rather than an
//! error. Only transport problems (refused, timeout, unparsable reply) are
//! errors.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// Connect timeout for [`http_get`] / [`http_request`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Read/write timeout for [`http_get`] / [`http_request`].
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A complete HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, e.g. 200 or 401.
    pub status: u16,
    /// Headers in order, names lower-cased, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// The (de-chunked) body.
    pub body: Vec<u8>,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body parsed as JSON.
    ///
    /// # Errors
    /// When the body is not JSON (the error quotes the start of the body).
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            let text = self.text();
            let cut: String = text.chars().take(300).collect();
            format!("status {} body is not JSON: {cut:?}", self.status)
        })
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` on `127.0.0.1:port` with the given extra headers.
///
/// A `host: 127.0.0.1:<port>` header is added unless `headers` has one.
///
/// # Errors
/// Only on transport failure; HTTP error statuses are `Ok`.
pub fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Response> {
    http_request(port, "GET", path, headers, b"")
}

/// Any method, with an optional body (a `content-length` is added when the
/// body is non-empty and `headers` has none).
///
/// # Errors
/// Only on transport failure; HTTP error statuses are `Ok`.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<Response> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str(&format!("host: 127.0.0.1:{port}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() && !has("content-length") && !has("transfer-encoding") {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    if !has("connection") {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request)?;

    let mut raw = Vec::new();
    read_response(&mut stream, &mut raw, method == "HEAD")
        .with_context(|| format!("{method} 127.0.0.1:{port}{path}"))
}

/// Reads until one full response is available (or EOF) and parses it.
fn read_response(
    stream: &mut TcpStream,
    raw: &mut Vec<u8>,
    is_head: bool,
) -> anyhow::Result<Response> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(resp) = try_parse(raw, is_head, false)? {
            return Ok(resp);
        }
        let n = stream.read(&mut chunk).context("reading response")?;
        if n == 0 {
            return match try_parse(raw, is_head, true)? {
                Some(resp) => Ok(resp),
                None => bail!("connection closed after {} bytes of response", raw.len()),
            };
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}

/// `Some` once `raw` holds a complete final response. With `eof`, a body
/// without framing ends at EOF.
fn try_parse(raw: &[u8], is_head: bool, eof: bool) -> anyhow::Result<Option<Response>> {
    let mut offset = 0;
    loop {
        let mut slots = vec![httparse::EMPTY_HEADER; 1024];
        let mut parsed = httparse::Response::new(&mut slots);
        let head_len = match parsed.parse(&raw[offset..])? {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => return Ok(None),
        };
        let status = parsed.code.unwrap_or_default();
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
        let rest = &raw[offset + head_len..];
        if (100..200).contains(&status) {
            // Interim response (e.g. 100 Continue): skip it.
            offset += head_len;
            continue;
        }
        let no_body = is_head || status == 204 || status == 304;
        let chunked = crate::http1::header_tokens(&headers, "transfer-encoding")
            .last()
            .is_some_and(|t| t == "chunked");
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.trim().parse::<usize>().ok());
        let body = if no_body {
            Some(Vec::new())
        } else if chunked {
            decode_chunked(rest)?
        } else if let Some(len) = length {
            (rest.len() >= len).then(|| rest[..len].to_vec())
        } else if eof {
            Some(rest.to_vec())
        } else {
            None
        };
        return Ok(body.map(|body| Response {
            status,
            headers,
            body,
        }));
    }
}

/// Decodes a complete chunked body; `None` if more bytes are needed.
fn decode_chunked(mut data: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&data[..eol]);
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_and_length() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n3\r\nabc\r\n2;ext\r\nde\r\n0\r\n\r\n";
        let r = try_parse(raw, false, false).unwrap().unwrap();
        assert_eq!(r.body, b"abcde");
        assert_eq!(r.header_all("x-a"), vec!["1", "2"]);
        assert!(
            try_parse(&raw[..raw.len() - 6], false, false)
                .unwrap()
                .is_none()
        );

        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 401 Unauthorized\r\ncontent-length: 4\r\n\r\nnope";
        let r = try_parse(raw, false, false).unwrap().unwrap();
        assert_eq!((r.status, r.text().as_str()), (401, "nope"));

        let raw = b"HTTP/1.1 200 OK\r\n\r\nuntil-eof";
        assert!(try_parse(raw, false, false).unwrap().is_none());
        assert_eq!(
            try_parse(raw, false, true).unwrap().unwrap().body,
            b"until-eof"
        );
    }
}
