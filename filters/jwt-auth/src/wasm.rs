//! proxy-wasm glue: the root context parses the config once and owns the timer and
//! JWKS fetches; each HTTP context asks [`Auth`] for a decision and applies it.

use crate::auth::{Auth, Decision};
use crate::config::Settings;
use crate::host::{HeaderPairs, RequestHeaders};
use crate::reply;
use bulkhead_filter_kit::proxy::{self, ProxyShared, bump};
use bulkhead_jwt::Rejection;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, Status};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| Box::new(Root { id, state: None }));
}}

const TICK: Duration = Duration::from_secs(1);

/// Counters exported as Envoy stats (`wasmcustom.jwt_auth.*`).
struct Metrics {
    allowed: u32,
    cache_hits: u32,
    missing: u32,
    invalid: u32,
    tenant: u32,
    unavailable: u32,
    jwks_ok: u32,
    jwks_failed: u32,
}

impl Metrics {
    fn define() -> Option<Metrics> {
        let c = |n: &str| proxy::counter("jwt_auth", n);
        Some(Metrics {
            allowed: c("allowed")?,
            cache_hits: c("cache_hits")?,
            missing: c("denied_missing")?,
            invalid: c("denied_invalid")?,
            tenant: c("denied_tenant")?,
            unavailable: c("unavailable")?,
            jwks_ok: c("jwks_fetch_ok")?,
            jwks_failed: c("jwks_fetch_failed")?,
        })
    }
}

/// Per-worker state shared between the root and HTTP contexts (same thread, so Rc).
struct State {
    auth: Auth,
    metrics: Option<Metrics>,
    /// Parked requests: (context id, provider, parked at ms).
    parked: Vec<(u32, usize, u64)>,
    /// Outstanding fetches: (callout token, provider).
    fetches: Vec<(u32, usize)>,
}

type Shared = Rc<RefCell<State>>;

struct Root {
    id: u32,
    state: Option<Shared>,
}

// The two ABI calls the SDK only offers with `String`s (which panic on a header that is
// not UTF-8, and allocate per header); declared exactly as the SDK declares them.
unsafe extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
    fn proxy_remove_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
    ) -> Status;
}

/// Request headers of the effective context.
struct ProxyHeaders;

impl RequestHeaders for ProxyHeaders {
    fn pairs(&self) -> Option<HeaderPairs> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: on `Ok` the host has allocated `size` bytes at `data` through the SDK's
        // `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes, so capacity
        // == length) and handed them over; the SDK's own `get_map` takes them back the same
        // way. Any other status hands out nothing.
        let buf = unsafe {
            match proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) {
                Status::Ok if data.is_null() => Vec::new(),
                Status::Ok => Vec::from_raw_parts(data, size, size),
                _ => return None,
            }
        };
        HeaderPairs::parse(buf)
    }
    fn remove(&mut self, name: &[u8]) {
        // SAFETY: the host only reads `name.len()` bytes at `name.as_ptr()`.
        let _ = unsafe {
            proxy_remove_header_map_value(MapType::HttpRequestHeaders, name.as_ptr(), name.len())
        };
    }
    fn set(&mut self, name: &str, value: &str) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
    }
}

fn now_ms() -> u64 {
    proxy::now_since_epoch().as_millis() as u64
}

fn send_rejection(state: &State, r: &Rejection) {
    if let Some(m) = &state.metrics {
        bump(match r {
            Rejection::Missing(_) => m.missing,
            Rejection::Invalid(_) | Rejection::UnknownKey { .. } => m.invalid,
            Rejection::Tenant(_) => m.tenant,
            Rejection::NoKeys { .. } => m.unavailable,
        });
    }
    proxy::send(&reply::rejection(r, &state.auth.settings.realm));
}

fn count_allow(state: &State, cached: bool) {
    if let Some(m) = &state.metrics {
        bump(m.allowed);
        if cached {
            bump(m.cache_hits);
        }
    }
}

/// Dispatches a JWKS fetch for `provider` from the calling context.
fn dispatch_fetch(ctx: &dyn Context, state: &mut State, provider: usize) -> bool {
    let now = now_ms();
    let Some(rk) = state.auth.remote_mut(provider) else {
        return false;
    };
    let cfg = rk.config().clone();
    let authority = cfg.authority.clone().unwrap_or_else(|| cfg.cluster.clone());
    let headers = vec![
        (":method", "GET"),
        (":path", cfg.path.as_str()),
        (":authority", authority.as_str()),
        ("accept", "application/json"),
    ];
    match ctx.dispatch_http_call(
        &cfg.cluster,
        headers,
        None,
        vec![],
        Duration::from_millis(cfg.timeout_ms),
    ) {
        Ok(token) => {
            state.fetches.push((token, provider));
            true
        }
        Err(e) => {
            rk.on_dispatch_failed(now);
            log_warn(&format!(
                "jwt-auth: JWKS fetch for provider {provider} not dispatched: {e:?}"
            ));
            false
        }
    }
}

fn log_warn(msg: &str) {
    let _ = hostcalls::log(LogLevel::Warn, msg);
}

/// Handles a fetch answer delivered to any context (`own_id`), then settles parked
/// requests, and gives the effective context back to `own_id`.
fn on_fetch_answer(state: &Shared, own_id: u32, token: u32, body_size: usize, num_headers: usize) {
    let mut st = state.borrow_mut();
    let Some(pos) = st.fetches.iter().position(|(t, _)| *t == token) else {
        return;
    };
    let (_, provider) = st.fetches.swap_remove(pos);
    // Only read headers that exist: the SDK's hostcalls panic on a failed callout's map.
    // Read as bytes: its `String` variant panics on a value that is not UTF-8.
    let header = |name: &str| {
        if num_headers == 0 {
            return None;
        }
        hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok())
    };
    let status = header(":status").and_then(|s| s.parse::<u16>().ok());
    let cache_control = header("cache-control");
    let body = hostcalls::get_buffer(
        proxy_wasm::types::BufferType::HttpCallResponseBody,
        0,
        body_size,
    )
    .ok()
    .flatten()
    .unwrap_or_default();
    let now = now_ms();
    let result = st
        .auth
        .remote_mut(provider)
        .map(|rk| rk.on_response(now, status, cache_control.as_deref(), &body, &ProxyShared));
    let ok = matches!(result, Some(Ok(_)));
    if let Some(m) = &st.metrics {
        bump(if ok { m.jwks_ok } else { m.jwks_failed });
    }
    if let Some(Err(e)) = result {
        log_warn(&format!(
            "jwt-auth: provider {provider}: {e}; keeping the last good keys"
        ));
    }
    drop(st);
    settle_parked(state, Some(provider), now);
    let _ = hostcalls::set_effective_context(own_id);
}

/// Re-decides parked requests (of `provider`, or all stale ones) and resumes or answers them.
fn settle_parked(state: &Shared, provider: Option<usize>, now: u64) {
    let mut st = state.borrow_mut();
    let (ready, keep): (Vec<_>, Vec<_>) = st
        .parked
        .drain(..)
        .partition(|(_, p, since)| provider == Some(*p) || now.saturating_sub(*since) > 5_000);
    st.parked = keep;
    for (ctx, _, _) in ready {
        if hostcalls::set_effective_context(ctx).is_err() {
            continue; // the stream is gone
        }
        match st
            .auth
            .on_request(&mut ProxyHeaders, now, &ProxyShared, false)
        {
            Decision::Allow { cached, .. } => {
                count_allow(&st, cached);
                let _ = hostcalls::resume_http_request();
            }
            Decision::Deny(r) => send_rejection(&st, &r),
            Decision::Park { provider, .. } => send_rejection(&st, &Rejection::NoKeys { provider }),
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(s) = &self.state {
            on_fetch_answer(s, self.id, token, body_size, num_headers);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Settings::parse(&bytes) {
            Ok(settings) => {
                let scope = hostcalls::get_property(vec!["plugin_name"])
                    .ok()
                    .flatten()
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_else(|| "jwt".into());
                self.state = Some(Rc::new(RefCell::new(State {
                    auth: Auth::new(settings, &scope),
                    metrics: Metrics::define(),
                    parked: Vec::new(),
                    fetches: Vec::new(),
                })));
                self.set_tick_period(TICK);
                true
            }
            Err(e) => {
                let _ = hostcalls::log(LogLevel::Critical, &format!("jwt-auth: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let now = now_ms();
        {
            let mut st = state.borrow_mut();
            let providers: Vec<usize> = st.auth.remote_providers().collect();
            for p in providers {
                let claimed = st
                    .auth
                    .remote_mut(p)
                    .is_some_and(|rk| rk.on_tick(now, &ProxyShared));
                if claimed {
                    dispatch_fetch(self, &mut st, p);
                }
            }
        }
        // Keys may have been adopted from another worker; parked requests re-decide.
        let providers: Vec<usize> = state.borrow().parked.iter().map(|(_, p, _)| *p).collect();
        for p in providers {
            let ready = state
                .borrow_mut()
                .auth
                .remote_mut(p)
                .is_some_and(|rk| !rk.in_flight() && rk.keys().is_some());
            if ready {
                settle_parked(&state, Some(p), now);
            }
        }
        settle_parked(&state, None, now);
        let _ = hostcalls::set_effective_context(self.id);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            id: context_id,
            state: self.state.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    id: u32,
    state: Option<Shared>,
}

impl Context for Stream {
    fn on_done(&mut self) -> bool {
        // A parked request whose client went away must not be resumed later.
        if let Some(s) = &self.state {
            s.borrow_mut().parked.retain(|(id, _, _)| *id != self.id);
        }
        true
    }

    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(s) = &self.state {
            on_fetch_answer(s, self.id, token, body_size, num_headers);
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let Some(state) = self.state.clone() else {
            // No valid configuration: fail closed.
            let _ =
                hostcalls::send_http_response(503, vec![], Some(b"{\"error\":\"not_configured\"}"));
            return Action::Pause;
        };
        let now = now_ms();
        let mut st = state.borrow_mut();
        match st
            .auth
            .on_request(&mut ProxyHeaders, now, &ProxyShared, true)
        {
            Decision::Allow { cached, .. } => {
                count_allow(&st, cached);
                Action::Continue
            }
            Decision::Deny(r) => {
                send_rejection(&st, &r);
                Action::Pause
            }
            Decision::Park { provider, fetch } => {
                if fetch && !dispatch_fetch(self, &mut st, provider) {
                    send_rejection(&st, &Rejection::NoKeys { provider });
                    return Action::Pause;
                }
                st.parked.push((self.id, provider, now));
                Action::Pause
            }
        }
    }
}
