//! proxy-wasm glue. The root context parses the configuration, ticks every second
//! (follow the shared registry; fetch it when this worker holds the lease) and receives
//! the fetch's answer. Each HTTP context routes: it sets the five routing headers
//! (replacing whatever the client sent) or sends the local reply.

use crate::config::Settings;
use crate::reply;
use crate::route::{self, Refusal};
use crate::sync::{Outcome, Response, Sync};
use bulkhead_filter_kit::proxy::{self, ProxyShared, bump, send};
use bulkhead_registry::shared::Poll;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root { state: None }));
}}

const TICK: Duration = Duration::from_secs(1);
/// A request that finds no registry (and no fetch under way) re-arms the root's timer
/// with this period, so the fetch goes out now rather than at the next whole tick. The
/// fetch itself must be dispatched by the root context: a callout belongs to the
/// context that made it, and the request's context ends with its 503.
const KICK: Duration = Duration::from_millis(1);

/// Counters exported as Envoy stats (`wasmcustom.tenant_router.*`).
struct Metrics {
    routed: u32,
    refused_missing: u32,
    refused_unknown: u32,
    refused_suspended: u32,
    refused_residency: u32,
    refused_wrong_region: u32,
    unavailable: u32,
    fetch_ok: u32,
    fetch_not_modified: u32,
    fetch_failed: u32,
    invalid: u32,
}

impl Metrics {
    fn define() -> Option<Metrics> {
        let c = |n: &str| proxy::counter("tenant_router", n);
        Some(Metrics {
            routed: c("routed")?,
            refused_missing: c("refused_missing_tenant")?,
            refused_unknown: c("refused_unknown")?,
            refused_suspended: c("refused_suspended")?,
            refused_residency: c("refused_residency")?,
            refused_wrong_region: c("refused_wrong_region")?,
            unavailable: c("unavailable")?,
            fetch_ok: c("registry_fetch_ok")?,
            fetch_not_modified: c("registry_fetch_not_modified")?,
            fetch_failed: c("registry_fetch_failed")?,
            invalid: c("registry_invalid")?,
        })
    }
}

/// Per-worker state shared by the root and its HTTP contexts (same thread, so Rc).
struct State {
    settings: Settings,
    sync: Sync,
    metrics: Option<Metrics>,
    /// The token of this worker's fetch still unanswered.
    fetch_token: Option<u32>,
    /// The timer was re-armed with [`KICK`]; the next tick restores [`TICK`].
    kicked: bool,
}

impl State {
    fn count(&self, pick: impl Fn(&Metrics) -> u32) {
        if let Some(m) = &self.metrics {
            bump(pick(m));
        }
    }

    /// Logs (and counts) what following the shared copy found.
    fn note_poll(&self, poll: &Poll) {
        match poll {
            Poll::Unchanged => {}
            Poll::Updated => {
                if let Some(r) = self.sync.registry() {
                    let doc = r.document();
                    log(
                        LogLevel::Info,
                        &format!(
                            "tenant-router: registry {} in force (revision {}, {} tenants)",
                            self.sync.etag().unwrap_or("-"),
                            doc.revision,
                            doc.tenants.len()
                        ),
                    );
                    if let Some(edge) = &self.settings.edge_region
                        && r.region(edge).is_none()
                    {
                        log(
                            LogLevel::Warn,
                            &format!(
                                "tenant-router: edge_region `{edge}` is not in the registry: \
                                 residency-locked tenants are refused here"
                            ),
                        );
                    }
                }
            }
            Poll::Invalid(e) => {
                self.count(|m| m.invalid);
                log(
                    LogLevel::Warn,
                    &format!(
                        "tenant-router: published registry refused, keeping the last good copy: {e}"
                    ),
                );
            }
        }
    }
}

type Shared = Rc<RefCell<State>>;

fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

fn now_ms() -> u64 {
    u64::try_from(proxy::now_since_epoch().as_millis()).unwrap_or(u64::MAX)
}

struct Root {
    state: Option<Shared>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(state) = &self.state else {
            return;
        };
        let mut st = state.borrow_mut();
        if st.fetch_token != Some(token) {
            return; // a fetch of an earlier configuration
        }
        st.fetch_token = None;
        // No headers = the call failed (reset, timeout): there is no response map to
        // read, and the SDK panics on a failed read.
        let header = |name: &str| {
            hostcalls::get_map_value(MapType::HttpCallResponseHeaders, name)
                .ok()
                .flatten()
        };
        let (status, etag) = if num_headers == 0 {
            (None, None)
        } else {
            (
                header(":status").and_then(|s| s.parse::<u16>().ok()),
                header("etag"),
            )
        };
        let body = if body_size == 0 {
            Vec::new()
        } else {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let response = status.map(|status| Response {
            status,
            etag: etag.as_deref(),
            body: &body,
        });
        let outcome = st.sync.on_response(response, &ProxyShared);
        let cluster = st.settings.registry.cluster.clone();
        match outcome {
            Outcome::Updated { changed, .. } => {
                st.count(|m| m.fetch_ok);
                if changed {
                    st.note_poll(&Poll::Updated);
                }
            }
            Outcome::NotModified => st.count(|m| m.fetch_not_modified),
            Outcome::Failed(why) => {
                st.count(|m| m.fetch_failed);
                log(
                    LogLevel::Warn,
                    &format!(
                        "tenant-router: registry fetch from {cluster} failed: {why}; keeping the last good copy"
                    ),
                );
            }
            Outcome::Invalid(e) => {
                st.count(|m| m.invalid);
                log(
                    LogLevel::Warn,
                    &format!(
                        "tenant-router: registry from {cluster} refused, keeping the last good copy: {e}"
                    ),
                );
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Settings::parse(&bytes) {
            Ok(settings) => {
                let mut sync = Sync::new(
                    &settings.scope,
                    settings.registry.refresh_seconds,
                    settings.registry.timeout_ms,
                );
                let poll = sync.follow(&ProxyShared);
                let state = State {
                    settings,
                    sync,
                    metrics: Metrics::define(),
                    fetch_token: None,
                    kicked: false,
                };
                state.note_poll(&poll);
                self.state = Some(Rc::new(RefCell::new(state)));
                self.set_tick_period(TICK);
                true
            }
            Err(e) => {
                log(LogLevel::Critical, &format!("tenant-router: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let mut st = state.borrow_mut();
        if st.kicked {
            st.kicked = false;
            self.set_tick_period(TICK);
        }
        let (poll, fetch) = st.sync.on_tick(now_ms(), &ProxyShared);
        st.note_poll(&poll);
        let Some(fetch) = fetch else {
            return;
        };
        let src = st.settings.registry.clone();
        let headers = fetch.headers(&src.path, &src.authority);
        match self.dispatch_http_call(
            &src.cluster,
            headers,
            None,
            vec![],
            Duration::from_millis(src.timeout_ms),
        ) {
            Ok(token) => st.fetch_token = Some(token),
            Err(e) => {
                st.sync.on_dispatch_failed();
                st.count(|m| m.fetch_failed);
                log(
                    LogLevel::Warn,
                    &format!(
                        "tenant-router: registry fetch from {} not dispatched: {e:?}",
                        src.cluster
                    ),
                );
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            state: self.state.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    state: Option<Shared>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return send(&reply::not_configured());
        };
        let mut st = state.borrow_mut();
        let tenant = self.get_http_request_header(&st.settings.tenant_header);
        if st.sync.registry().is_none() {
            let poll = st.sync.follow(&ProxyShared);
            st.note_poll(&poll);
            if st.sync.registry().is_none()
                && !st.kicked
                && st.sync.fetch_due(now_ms(), &ProxyShared)
            {
                st.kicked = true;
                let _ = hostcalls::set_tick_period(KICK);
            }
        }
        let decision = route::decide(
            st.sync.registry().map(|r| &**r),
            st.settings.edge_region.as_deref(),
            tenant.as_deref(),
        );
        match decision {
            Ok(route) => {
                for (name, value) in &route.headers {
                    self.set_http_request_header(name, Some(value));
                }
                st.count(|m| m.routed);
                Action::Continue
            }
            Err(refusal) => {
                st.count(|m| match &refusal {
                    Refusal::Unavailable => m.unavailable,
                    Refusal::MissingTenant => m.refused_missing,
                    Refusal::UnknownTenant => m.refused_unknown,
                    Refusal::Suspended { .. } => m.refused_suspended,
                    Refusal::ResidencyViolation { .. } => m.refused_residency,
                    Refusal::WrongRegion { .. } => m.refused_wrong_region,
                });
                if let Refusal::ResidencyViolation {
                    zone,
                    data_plane,
                    data_plane_region,
                } = &refusal
                {
                    log(
                        LogLevel::Error,
                        &format!(
                            "tenant-router: tenant {} is locked to zone `{zone}` but assigned data plane \
                             `{data_plane}` in region `{data_plane_region}`: refused",
                            tenant.as_deref().unwrap_or_default()
                        ),
                    );
                }
                send(&reply::refused(&refusal, &st.settings.tenant_header))
            }
        }
    }
}
