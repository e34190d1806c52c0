//! A tiny proxy-wasm filter whose only job is to exercise `proxy-wasm-harness`.
//!
//! It is not a real filter: every behaviour is triggered by a request header so that the
//! harness tests can reach each host call on purpose.
//!
//! Plugin configuration (JSON, optional): `{"tick_ms": 1000, "upstream": "upstream"}`.
//! Invalid JSON makes `on_configure` return false.
//!
//! Request headers it reacts to:
//! - always: removes `x-strip`, adds `x-seen: yes`, sets `x-now` to the host clock in
//!   nanoseconds, increments counter `fixture.requests`, CAS-increments shared data
//!   `fixture.count` and echoes the new value in `x-count`;
//! - `x-cas: N`: tries to store `fixture.count` with cas N, answers in `x-cas-result`;
//! - `x-prop: a.b.c`: reads property path `a`,`b`,`c` into `x-prop-value` (or `missing`);
//! - `x-deny`: local 403 with header `x-denied-by: fixture` and body `denied`;
//! - `x-callout`: calls cluster `upstream`, pauses, and resumes on a 200 (adding
//!   `x-callout-body`) or answers locally with the callout status (502 if it failed);
//! - `x-wait-tick`: pauses until the next tick, where the root context resumes it through
//!   `proxy_set_effective_context` and adds `x-resumed-by: tick`;
//! - `x-panic`: panics (the harness must turn the trap into an error);
//! - `x-reset`: resets the stream (`proxy_close_stream`);
//! - `x-grpc`: makes a gRPC call, which the harness does not implement (the SDK panics);
//! - `x-late-read`: reads that request header again in the response phase, where Envoy
//!   no longer exposes request headers (the SDK panics on the BadArgument).
//!
//! `on_log` logs `log: path=<:path>` (Envoy lets the filter read headers while logging).
//!
//! A request body equal to `deny` is answered with a local 400 once the body is complete.
//! On every tick the root context increments gauge `fixture.ticks` and calls `upstream`;
//! the answer is stored in shared data `fixture.tick_response` as `<status>:<body>`.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};
use std::cell::RefCell;
use std::time::{Duration, UNIX_EPOCH};

const COUNT_KEY: &str = "fixture.count";

thread_local! {
    /// Streams paused by `x-wait-tick`, resumed by the root context on the next tick.
    static WAITING: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(FixtureRoot { context_id, upstream: "upstream".into(), requests: 0, ticks: 0 })
    });
}}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

fn callout_headers<'a>(path: &'a str, upstream: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (":method", "GET"),
        (":path", path),
        (":authority", upstream),
    ]
}

fn status_of(headers: &[(String, String)]) -> Option<u16> {
    headers
        .iter()
        .find(|(name, _)| name == ":status")
        .and_then(|(_, value)| value.parse().ok())
}

struct FixtureRoot {
    context_id: u32,
    upstream: String,
    requests: u32,
    ticks: u32,
}

impl Context for FixtureRoot {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, body_size: usize, _: usize) {
        // Use the pair list, not get_http_call_response_header: after a failed call Envoy
        // has no response map and answers a single-header lookup with BadArgument.
        let status = status_of(&self.get_http_call_response_headers())
            .map_or_else(|| "none".to_string(), |s| s.to_string());
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let value = format!("{status}:{}", String::from_utf8_lossy(&body));
        let _ = self.set_shared_data("fixture.tick_response", Some(value.as_bytes()), None);
    }
}

impl RootContext for FixtureRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        let vm_config = self.get_vm_configuration().unwrap_or_default();
        log(
            LogLevel::Info,
            &format!("vm start: {}", String::from_utf8_lossy(&vm_config)),
        );
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let config: serde_json::Value = if raw.is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            match serde_json::from_slice(&raw) {
                Ok(value) => value,
                Err(err) => {
                    log(LogLevel::Error, &format!("invalid configuration: {err}"));
                    return false;
                }
            }
        };
        let tick_ms = config
            .get("tick_ms")
            .and_then(|v| v.as_u64())
            .unwrap_or(1000);
        if let Some(upstream) = config.get("upstream").and_then(|v| v.as_str()) {
            self.upstream = upstream.to_string();
        }
        self.requests = match hostcalls::define_metric(MetricType::Counter, "fixture.requests") {
            Ok(id) => id,
            Err(_) => return false,
        };
        self.ticks = match hostcalls::define_metric(MetricType::Gauge, "fixture.ticks") {
            Ok(id) => id,
            Err(_) => return false,
        };
        self.set_tick_period(Duration::from_millis(tick_ms));
        log(
            LogLevel::Info,
            &format!("configured root {} tick={tick_ms}ms", self.context_id),
        );
        true
    }

    fn on_tick(&mut self) {
        let _ = hostcalls::increment_metric(self.ticks, 1);
        // Resume the streams that wait for a tick, acting on them as the effective context.
        for stream in WAITING.with(|w| std::mem::take(&mut *w.borrow_mut())) {
            if hostcalls::set_effective_context(stream).is_ok() {
                let _ = hostcalls::add_map_value(
                    proxy_wasm::types::MapType::HttpRequestHeaders,
                    "x-resumed-by",
                    "tick",
                );
                let _ = hostcalls::resume_http_request();
            }
        }
        let _ = hostcalls::set_effective_context(self.context_id);
        let headers = callout_headers("/tick", &self.upstream);
        if let Err(status) = self.dispatch_http_call(
            &self.upstream,
            headers,
            None,
            vec![],
            Duration::from_secs(5),
        ) {
            log(LogLevel::Error, &format!("tick callout failed: {status:?}"));
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FixtureHttp {
            context_id,
            upstream: self.upstream.clone(),
            requests: self.requests,
            late_read: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct FixtureHttp {
    context_id: u32,
    upstream: String,
    requests: u32,
    late_read: bool,
}

impl FixtureHttp {
    /// Classic optimistic update: read value+cas, write with that cas, retry on mismatch.
    fn bump_count(&self) -> u64 {
        loop {
            let (value, cas) = self.get_shared_data(COUNT_KEY);
            let current: u64 = value
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let next = current + 1;
            match self.set_shared_data(COUNT_KEY, Some(next.to_string().as_bytes()), cas) {
                Ok(()) => return next,
                Err(Status::CasMismatch) => continue,
                Err(_) => return current,
            }
        }
    }
}

impl Context for FixtureHttp {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, body_size: usize, _: usize) {
        let headers = self.get_http_call_response_headers();
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        match status_of(&headers) {
            Some(200) => {
                self.set_http_request_header(
                    "x-callout-body",
                    Some(&String::from_utf8_lossy(&body)),
                );
                self.resume_http_request();
            }
            Some(status) => {
                self.send_http_response(
                    u32::from(status),
                    vec![("x-callout-status", &status.to_string())],
                    Some(&body),
                );
            }
            None => {
                self.send_http_response(502, vec![], Some(b"callout failed"));
            }
        }
    }
}

impl HttpContext for FixtureHttp {
    #[allow(clippy::panic)]
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.get_http_request_header("x-panic").is_some() {
            panic!("fixture panic requested");
        }
        self.remove_http_request_header("x-strip");
        self.add_http_request_header("x-seen", "yes");
        let now = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        self.set_http_request_header("x-now", Some(&now.to_string()));
        let _ = hostcalls::increment_metric(self.requests, 1);
        let count = self.bump_count();
        self.set_http_request_header("x-count", Some(&count.to_string()));

        if let Some(cas) = self.get_http_request_header("x-cas") {
            let cas: u32 = cas.parse().unwrap_or(0);
            let result = match self.set_shared_data(COUNT_KEY, Some(b"cas-write"), Some(cas)) {
                Ok(()) => "ok",
                Err(Status::CasMismatch) => "mismatch",
                Err(_) => "error",
            };
            self.set_http_request_header("x-cas-result", Some(result));
        }

        if let Some(path) = self.get_http_request_header("x-prop") {
            let value = self.get_property(path.split('.').collect()).map_or_else(
                || "missing".to_string(),
                |v| String::from_utf8_lossy(&v).into(),
            );
            self.set_http_request_header("x-prop-value", Some(&value));
        }

        if self.get_http_request_header("x-deny").is_some() {
            self.send_http_response(403, vec![("x-denied-by", "fixture")], Some(b"denied"));
            return Action::Pause;
        }

        if self.get_http_request_header("x-callout").is_some() {
            let headers = callout_headers("/check", &self.upstream);
            return match self.dispatch_http_call(
                &self.upstream,
                headers,
                Some(b"ping"),
                vec![],
                Duration::from_millis(1500),
            ) {
                Ok(_) => Action::Pause,
                Err(status) => {
                    log(LogLevel::Error, &format!("callout failed: {status:?}"));
                    self.send_http_response(500, vec![], None);
                    Action::Pause
                }
            };
        }

        if self.get_http_request_header("x-reset").is_some() {
            self.reset_http_request();
            return Action::Pause;
        }

        if self.get_http_request_header("x-grpc").is_some() {
            let result = self.dispatch_grpc_call(
                &self.upstream,
                "fixture.Service",
                "Check",
                vec![],
                None,
                Duration::from_secs(1),
            );
            log(LogLevel::Info, &format!("grpc call: {result:?}"));
        }
        self.late_read = self.get_http_request_header("x-late-read").is_some();

        if self.get_http_request_header("x-wait-tick").is_some() {
            WAITING.with(|w| w.borrow_mut().push(self.context_id));
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            // Pause so that the host buffers the whole body for us.
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        log(
            LogLevel::Debug,
            &format!("request body of {} bytes", body.len()),
        );
        if body == b"deny" {
            self.send_http_response(400, vec![], Some(b"bad body"));
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.late_read {
            let late = self.get_http_request_header("x-late-read");
            log(LogLevel::Info, &format!("late read: {late:?}"));
        }
        self.set_http_response_header("x-fixture", Some("1"));
        self.remove_http_response_header("server");
        Action::Continue
    }

    fn on_log(&mut self) {
        let path = self.get_http_request_header(":path");
        log(LogLevel::Info, &format!("log: path={path:?}"));
    }
}
