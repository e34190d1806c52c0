//! proxy-wasm glue: the root context parses the configuration (again on every update)
//! and builds the per-worker [`Limiter`] — at once for inline plans, and again whenever
//! the shared registry copy changes in registry mode (polled on a 1 s tick). Each HTTP
//! context asks it for a decision, answers locally or lets the request through, and
//! adds the RateLimit headers to the upstream's response.

use crate::config::{Configured, RegistryMode, Settings};
use crate::host::{Host, SetError};
use crate::limiter::{Decision, Limiter, Refusal};
use crate::reply;
use bulkhead_filter_kit::SharedData as _;
use bulkhead_filter_kit::proxy::{self, ProxyShared, bump, send};
use bulkhead_registry::shared::{Follower, Poll};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root { state: RefCell::new(None), follow: None }));
}}

const TICK: Duration = Duration::from_secs(1);

/// The proxy as [`Host`]: `get_current_time`, shared data with CAS.
#[derive(Clone, Copy)]
struct ProxyHost;

impl Host for ProxyHost {
    fn now_nanos(&self) -> u64 {
        u64::try_from(proxy::now_since_epoch().as_nanos()).unwrap_or(u64::MAX)
    }
    fn get_shared(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        ProxyShared.get(key)
    }
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        ProxyShared.set(key, value, cas)
    }
}

/// Counters exported as Envoy stats (`wasmcustom.rate_limit.*`).
struct Metrics {
    allowed: u32,
    limited: u32,
    refused: u32,
    refused_missing: u32,
    refused_unknown: u32,
    unavailable: u32,
    cas_retries: u32,
}

impl Metrics {
    fn define() -> Option<Metrics> {
        let c = |n: &str| proxy::counter("rate_limit", n);
        Some(Metrics {
            allowed: c("allowed")?,
            limited: c("limited")?,
            refused: c("refused")?,
            refused_missing: c("refused_missing_tenant")?,
            refused_unknown: c("refused_unknown_tenant")?,
            unavailable: c("unavailable")?,
            cas_retries: c("cas_retries")?,
        })
    }
}

/// Per-worker state shared by the root and its HTTP contexts (same thread, so Rc). A
/// configuration update builds a new one; streams already running keep theirs.
struct State {
    limiter: Limiter<ProxyHost>,
    metrics: Option<Metrics>,
}

/// Registry mode: this VM's copy of the shared registry.
struct Follow {
    mode: RegistryMode,
    follower: Follower,
}

struct Root {
    /// Interior mutability: `create_http_context` (which takes `&self`) adopts a
    /// registry that arrived since the last tick rather than refuse the request.
    state: RefCell<Option<Rc<State>>>,
    follow: Option<RefCell<Follow>>,
}

fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

fn install(settings: Settings) -> Rc<State> {
    let limiter = Limiter::new(settings, ProxyHost);
    let created = limiter.register_tenants();
    log(
        LogLevel::Debug,
        &format!(
            "rate-limit: {} plans, {} tenants ({created} new shared-data keys)",
            limiter.settings.plans.len(),
            limiter.settings.tenants.len()
        ),
    );
    Rc::new(State {
        limiter,
        metrics: Metrics::define(),
    })
}

impl Root {
    /// Adopts a newly published registry, if any.
    fn follow_registry(&self) {
        let Some(follow) = &self.follow else { return };
        let Ok(mut f) = follow.try_borrow_mut() else {
            return;
        };
        match f.follower.poll(&ProxyShared) {
            Poll::Unchanged => {}
            Poll::Updated => {
                let Some(registry) = f.follower.registry().cloned() else {
                    return;
                };
                match f.mode.settings(&registry) {
                    Ok(settings) => *self.state.borrow_mut() = Some(install(settings)),
                    Err(e) => log(LogLevel::Error, &format!("rate-limit: refused {e}")),
                }
            }
            Poll::Invalid(e) => log(
                LogLevel::Error,
                &format!("rate-limit: keeping the last good registry; the new one is invalid: {e}"),
            ),
        }
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Configured::parse(&bytes) {
            Ok(Configured::Inline(settings)) => {
                self.follow = None;
                *self.state.borrow_mut() = Some(install(settings));
                true
            }
            Ok(Configured::Registry(mode)) => {
                // Until the registry arrives every request gets 503 (fail closed).
                *self.state.borrow_mut() = None;
                self.follow = Some(RefCell::new(Follow {
                    follower: Follower::new(&mode.registry_scope),
                    mode,
                }));
                self.follow_registry();
                self.set_tick_period(TICK);
                true
            }
            Err(e) => {
                log(LogLevel::Critical, &format!("rate-limit: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.follow_registry();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.state.borrow().is_none() {
            self.follow_registry();
        }
        Some(Box::new(Stream {
            state: self.state.borrow().clone(),
            response_headers: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    state: Option<Rc<State>>,
    /// Computed with the decision, added to the upstream's response headers.
    response_headers: Option<[(&'static str, String); 2]>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let Some(state) = self.state.clone() else {
            // Registry mode before any registry arrived: fail closed.
            return send(&reply::registry_unavailable());
        };
        let limiter = &state.limiter;
        let tenant = self.get_http_request_header(&limiter.settings.tenant_header);
        let decision = limiter.check(tenant.as_deref());
        let m = state.metrics.as_ref();
        if let Some(m) = m {
            let retries = limiter.last_cas_retries();
            if retries > 0 {
                let _ = hostcalls::increment_metric(m.cas_retries, i64::from(retries));
            }
        }
        match decision {
            Decision::Allow(usage) => {
                if let Some(m) = m {
                    bump(m.allowed);
                }
                if limiter.settings.emit_ratelimit_headers {
                    self.response_headers = limiter
                        .plan(&usage)
                        .map(|p| reply::allowed_headers(p, &usage));
                }
                Action::Continue
            }
            Decision::Limit {
                usage,
                retry_after_seconds,
            } => {
                if let Some(m) = m {
                    bump(m.limited);
                }
                match limiter.plan(&usage) {
                    Some(plan) => send(&reply::limited(
                        tenant.as_deref().unwrap_or_default(),
                        plan,
                        &usage,
                        retry_after_seconds,
                    )),
                    None => send(&reply::unavailable()),
                }
            }
            Decision::Refuse(r) => {
                if let Some(m) = m {
                    bump(m.refused);
                    bump(match r {
                        Refusal::MissingTenant => m.refused_missing,
                        Refusal::UnknownTenant => m.refused_unknown,
                    });
                }
                send(&reply::refused(r, &limiter.settings.tenant_header))
            }
            Decision::Unavailable => {
                if let Some(m) = m {
                    bump(m.unavailable);
                }
                send(&reply::unavailable())
            }
        }
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if let Some(headers) = self.response_headers.take() {
            for (name, value) in headers {
                self.add_http_response_header(name, &value);
            }
        }
        Action::Continue
    }
}
