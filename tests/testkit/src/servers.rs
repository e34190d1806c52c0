//! Fake HTTP servers for tests: an echoing upstream and a controllable JWKS
//! endpoint.
//!
//! Both bind `127.0.0.1:0` and run on a background Tokio runtime owned by
//! the returned handle, so plain (sync) `#[test]` functions can use them.
//! They stop when the handle is dropped.
//!
//! ```
//! use bulkhead_testkit::{http_get, servers::EchoUpstream};
//!
//! let echo = EchoUpstream::start();
//! let resp = http_get(echo.port(), "/hello?x=1", &[("x-test", "1")]).unwrap();
//! let seen = resp.json().unwrap();
//! assert_eq!(seen["path"], "/hello?x=1");
//! assert!(seen["headers"].as_array().unwrap().contains(&serde_json::json!(["x-test", "1"])));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};

use crate::http1::{Handler, Reply, Request, Server};

#[allow(clippy::panic)] // a testkit that cannot bind loopback cannot do anything useful
fn start_or_panic(name: &str, handler: Handler) -> Server {
    match Server::start(name, handler) {
        Ok(s) => s,
        Err(e) => panic!("bulkhead-testkit: starting {name} server: {e:#}"),
    }
}

/// A request as the echo upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoedRequest {
    /// Request method, e.g. `GET`.
    pub method: String,
    /// Raw request target: path plus query string.
    pub path: String,
    /// Headers in arrival order, names lower-cased, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// The request body (chunked bodies are de-chunked).
    pub body: Vec<u8>,
}

impl EchoedRequest {
    /// Values of every header named `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of header `name`, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Parses the JSON the echo upstream answers with back into a request
    /// (e.g. from a response proxied through Envoy).
    ///
    /// # Errors
    /// When `v` is not shaped like the echo JSON.
    pub fn from_json(v: &Value) -> anyhow::Result<EchoedRequest> {
        let text = |key: &str| -> anyhow::Result<String> {
            v.get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| anyhow::anyhow!("echo JSON lacks string {key:?}: {v}"))
        };
        let headers = v
            .get("headers")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow::anyhow!("echo JSON lacks headers: {v}"))?
            .iter()
            .map(|pair| match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(n), Value::String(val)]) => Ok((n.clone(), val.clone())),
                _ => Err(anyhow::anyhow!("bad header pair {pair}")),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(EchoedRequest {
            method: text("method")?,
            path: text("path")?,
            headers,
            body: text("body").unwrap_or_default().into_bytes(),
        })
    }

    /// The JSON the echo upstream answers with.
    pub fn to_json(&self) -> Value {
        json!({
            "method": self.method,
            "path": self.path,
            "headers": self.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
            "body": String::from_utf8_lossy(&self.body),
        })
    }
}

/// An upstream that answers every request with `200` and
/// `{"method":..,"path":..,"headers":[[name,value],...],"body":".."}`
/// (`content-type: application/json`), describing exactly what it received.
///
/// It also records every request, so a test can assert that something did
/// *not* reach the upstream.
pub struct EchoUpstream {
    server: Server,
    seen: Arc<Mutex<Vec<EchoedRequest>>>,
}

impl EchoUpstream {
    /// Starts the server on `127.0.0.1:0`.
    ///
    /// # Panics
    /// If a loopback port cannot be bound.
    pub fn start() -> EchoUpstream {
        Self::start_named(None)
    }

    /// Like [`EchoUpstream::start`]; the reply also says `"upstream": name`, so a test
    /// sees which cluster answered.
    pub fn named(name: &str) -> EchoUpstream {
        Self::start_named(Some(name.to_string()))
    }

    fn start_named(name: Option<String>) -> EchoUpstream {
        let seen: Arc<Mutex<Vec<EchoedRequest>>> = Arc::default();
        let log = seen.clone();
        let handler: Handler = Arc::new(move |req: Request| {
            let echoed = EchoedRequest {
                method: req.method,
                path: req.target,
                headers: req.headers,
                body: req.body,
            };
            let mut json = echoed.to_json();
            if let (Some(n), Some(o)) = (&name, json.as_object_mut()) {
                o.insert("upstream".into(), Value::String(n.clone()));
            }
            let body = json.to_string();
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(echoed);
            Box::pin(async move { Reply::new(200, "application/json", body) })
        });
        EchoUpstream {
            server: start_or_panic("echo", handler),
            seen,
        }
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// How many requests have arrived so far.
    pub fn request_count(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<EchoedRequest> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<EchoedRequest> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last()
            .cloned()
    }
}

#[derive(Default)]
struct JwksState {
    body: String,
    down: bool,
    cache_control: Option<String>,
    delay: Duration,
}

/// A JWKS endpoint answering `GET` on any path with the current document.
///
/// Every request that arrives (down or not) increments
/// [`JwksServer::fetch_count`]. Other methods get `405` and are not counted.
pub struct JwksServer {
    server: Server,
    state: Arc<Mutex<JwksState>>,
    fetches: Arc<AtomicU64>,
}

impl JwksServer {
    /// Starts serving `jwks` (usually from [`crate::keys::jwks`]).
    ///
    /// # Panics
    /// If a loopback port cannot be bound.
    pub fn start(jwks: Value) -> JwksServer {
        let state = Arc::new(Mutex::new(JwksState {
            body: jwks.to_string(),
            ..JwksState::default()
        }));
        let fetches = Arc::new(AtomicU64::new(0));
        let (st, count) = (state.clone(), fetches.clone());
        let handler: Handler = Arc::new(move |req: Request| {
            let (st, count) = (st.clone(), count.clone());
            Box::pin(async move {
                if req.method != "GET" && req.method != "HEAD" {
                    return Reply::new(405, "text/plain", "method not allowed");
                }
                count.fetch_add(1, Ordering::SeqCst);
                let (body, down, cache_control, delay) = {
                    let s = st.lock().unwrap_or_else(PoisonError::into_inner);
                    (s.body.clone(), s.down, s.cache_control.clone(), s.delay)
                };
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let mut reply = if down {
                    Reply::new(503, "text/plain", "jwks server is down (test)")
                } else {
                    Reply::new(200, "application/json", body)
                };
                if let Some(cc) = cache_control {
                    reply.headers.push(("cache-control".into(), cc));
                }
                reply
            })
        });
        JwksServer {
            server: start_or_panic("jwks", handler),
            state,
            fetches,
        }
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Replaces the served document.
    pub fn set_jwks(&self, jwks: Value) {
        self.set_raw_body(jwks.to_string());
    }

    /// Serves `body` verbatim (e.g. malformed JSON) with a JSON content type.
    pub fn set_raw_body(&self, body: impl Into<String>) {
        self.lock().body = body.into();
    }

    /// While `down`, every request gets `503`.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Sends `Cache-Control: <value>` with every response (`None`: no header).
    pub fn set_cache_control(&self, value: Option<String>) {
        self.lock().cache_control = value;
    }

    /// Waits `delay` before answering (to provoke fetch timeouts).
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Requests received so far (all GET/HEAD, including those answered 503).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JwksState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
