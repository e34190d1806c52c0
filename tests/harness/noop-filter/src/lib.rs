//! The floor of the edge benchmark (`scripts/bench-edge.sh`): what a proxy-wasm filter in
//! Envoy's V8 costs per request before it does any work of its own.
//!
//! The plugin configuration picks the per-request work:
//! - empty or `empty`: nothing; the SDK's default `on_http_request_headers` returns
//!   `Continue` without a single host call;
//! - `touch`: reads the `authorization` request header and sets `x-floor` (the least any
//!   auth filter does);
//! - `map`: `touch`, plus one read of the whole request header map (what a filter that
//!   strips headers by prefix has to add).
//!
//! Anything else fails `on_configure`, so a typo cannot silently measure the wrong thing.

#[cfg(target_arch = "wasm32")]
mod filter {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, LogLevel};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| Box::new(Root { mode: Mode::Empty }));
    }}

    #[derive(Clone, Copy)]
    enum Mode {
        Empty,
        Touch,
        Map,
    }

    struct Root {
        mode: Mode,
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _size: usize) -> bool {
            let config = self.get_plugin_configuration().unwrap_or_default();
            self.mode = match config.trim_ascii() {
                b"" | b"empty" => Mode::Empty,
                b"touch" => Mode::Touch,
                b"map" => Mode::Map,
                _ => return false,
            };
            true
        }

        fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
            Some(match self.mode {
                Mode::Empty => Box::new(Empty),
                Mode::Touch => Box::new(Touch { map: false }),
                Mode::Map => Box::new(Touch { map: true }),
            })
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    /// Every callback is the SDK's default.
    struct Empty;

    impl Context for Empty {}
    impl HttpContext for Empty {}

    struct Touch {
        map: bool,
    }

    impl Context for Touch {}

    impl HttpContext for Touch {
        fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
            if self.map {
                let all = self.get_http_request_headers();
                std::hint::black_box(all);
            }
            let seen = self.get_http_request_header("authorization").is_some();
            self.set_http_request_header("x-floor", Some(if seen { "1" } else { "0" }));
            Action::Continue
        }
    }
}
