//! A small proxy-wasm host for fast tests of Envoy Wasm filters.
//!
//! It loads a filter compiled for `wasm32-wasip1` (proxy-wasm Rust SDK 0.2.x, ABI
//! `proxy_abi_version_0_2_1`) with wasmtime, implements the `env` host functions the SDK
//! imports, and drives the `proxy_on_*` callbacks the way Envoy does. Nothing here talks to
//! the network: outbound calls are recorded and answered by the test.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use proxy_wasm_harness::{Action, Process, Vm, VmOptions};
//! let process = Process::new();
//! let mut vm = Vm::load("filter.wasm".as_ref(), &process, VmOptions::default())?;
//! let root = vm.configure("my_root_id", br#"{"key": "value"}"#)?;
//! let s = vm.new_http(root)?;
//! let action = vm.request_headers(s, &[(":path", "/"), (":method", "GET")], true)?;
//! assert_eq!(action, Action::Continue);
//! vm.finish(s)?;
//! # Ok(())
//! # }
//! ```
//!
//! Envoy behaviours worth knowing when writing tests:
//! - Request (response) headers are visible to the filter only during its headers callback,
//!   or until it resumes the paused stream; reading a single header outside that window is
//!   `BadArgument` in Envoy, which the Rust SDK turns into a panic. The harness does the same.
//! - After a failed call (`fail_http_call`) there is no response map: reading one response
//!   header panics the SDK, reading the whole list gives an empty list.
//! - `proxy_on_vm_start` runs once per root context, right before its `proxy_on_configure`.
//! - A trap (e.g. a panic in the filter) poisons the VM: later calls return an error.
//! - Set `HARNESS_LOG=1` to print the filter's log lines to stderr as they happen.

mod artifact;
mod host;
mod pairs;
mod process;

pub use artifact::{target_dir, wasm_artifact, wasm_module, workspace_root};
pub use process::Process;

use anyhow::{Context as _, Result, anyhow, bail};
use host::{HostState, Side, StreamState};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use wasmtime::{
    Engine, ExternType, Instance, Linker, Module, Store, Val, ValType, WasmParams, WasmResults,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// Options for one VM, as in Envoy's `vm_config`.
#[derive(Clone, Debug, Default)]
pub struct VmOptions {
    /// Served as the VmConfiguration buffer (`get_vm_configuration` in the SDK).
    pub vm_config: Vec<u8>,
    /// Answers to `proxy_get_property`: path segments (e.g. `["node", "id"]`) and the raw
    /// value bytes. Values set by the filter with `proxy_set_property` take precedence.
    pub properties: Vec<(Vec<String>, Vec<u8>)>,
}

/// Log levels of the proxy-wasm ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

impl LogLevel {
    fn from_abi(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Trace,
            1 => Self::Debug,
            2 => Self::Info,
            3 => Self::Warn,
            4 => Self::Error,
            5 => Self::Critical,
            _ => return None,
        })
    }
}

/// What a filter callback told the host to do with the stream.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Action {
    Continue,
    /// StopIteration (headers) / StopIterationAndBuffer (body), or a local response was sent.
    Pause,
}

/// A root context (one plugin configuration) inside a [`Vm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RootId(u32);

impl RootId {
    /// The proxy-wasm context id the filter sees.
    pub fn context_id(self) -> u32 {
        self.0
    }
}

/// An HTTP stream (HTTP context) inside a [`Vm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(u32);

impl StreamId {
    /// The proxy-wasm context id the filter sees.
    pub fn context_id(self) -> u32 {
        self.0
    }
}

/// What happened to one HTTP stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stream {
    /// After the filter's changes (names lower-cased, pseudo-headers are normal entries).
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    /// Request body passed on or still buffered, after the filter's changes.
    pub request_body: Vec<u8>,
    pub response_body: Vec<u8>,
    /// From `proxy_send_local_response`.
    pub local_response: Option<LocalResponse>,
    /// `proxy_continue_stream(HttpRequest)` (SDK `resume_http_request`) was called.
    pub resumed_request: bool,
    /// `proxy_continue_stream(HttpResponse)` (SDK `resume_http_response`) was called.
    pub resumed_response: bool,
    /// The filter reset the stream: `proxy_close_stream` (SDK `reset_http_request/response`).
    pub closed: bool,
    /// [`Vm::finish`] ran (proxy_on_done, proxy_on_log, proxy_on_delete).
    pub done: bool,
}

impl Stream {
    /// First value of a request header, by case-insensitive name.
    pub fn request_header(&self, name: &str) -> Option<&str> {
        find_header(&self.request_headers, name)
    }

    /// First value of a response header, by case-insensitive name.
    pub fn response_header(&self, name: &str) -> Option<&str> {
        find_header(&self.response_headers, name)
    }

    /// All values of a request header, in order.
    pub fn request_header_all(&self, name: &str) -> Vec<&str> {
        self.request_headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A response the filter generated itself (`send_http_response` in the SDK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    /// Additional headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Response code details (the SDK's `send_http_response` sends none).
    pub details: String,
    /// gRPC status, when the filter sent a gRPC local response (`send_grpc_response`).
    pub grpc_status: Option<i32>,
}

impl LocalResponse {
    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// An outbound call made with `proxy_http_call` (`dispatch_http_call` in the SDK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub token: u32,
    /// The cluster name.
    pub upstream: String,
    /// Names lower-cased; includes `:method`, `:path` and `:authority`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    pub timeout_ms: u32,
    /// Context that made the call (a root or an HTTP context).
    pub from_context: u32,
}

impl HttpCall {
    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// Returned by [`Vm::stream`] for an id this VM never created.
static NO_STREAM: Stream = Stream {
    request_headers: Vec::new(),
    response_headers: Vec::new(),
    request_body: Vec::new(),
    response_body: Vec::new(),
    local_response: None,
    resumed_request: false,
    resumed_response: false,
    closed: false,
    done: false,
};

/// Guest stdout/stderr are captured in memory and turned into log lines (stdout as Info,
/// stderr as Error, like Envoy). Writing past this size traps the guest.
const OUTPUT_CAPACITY: usize = 64 << 20;

/// One Wasm VM = one Envoy worker thread. Several plugins (root contexts) may live in one VM.
pub struct Vm {
    store: Store<HostState>,
    instance: Instance,
    /// Set by the first trap: the guest's state is unknown afterwards (Envoy fails the VM).
    poisoned: Option<String>,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    stdout_seen: usize,
    stderr_seen: usize,
    /// Imports the harness does not implement ("module.name"), stubbed at load time.
    stubbed: Vec<String>,
}

/// wasmtime has its own error type; keep its whole cause chain (and wasm backtrace) as text.
fn wt<T>(r: wasmtime::Result<T>) -> Result<T> {
    r.map_err(|e| anyhow!("{e:#}"))
}

/// One engine per test process: compiled code is shared by all VMs.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(Engine::default)
}

/// Compiling a filter takes a moment; tests create many VMs from the same file, so compiled
/// modules are cached by path, size and modification time.
fn compile(path: &Path) -> Result<Module> {
    type Key = (PathBuf, u64, Option<SystemTime>);
    static CACHE: OnceLock<Mutex<HashMap<Key, Module>>> = OnceLock::new();
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read Wasm module {}", path.display()))?;
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
    let cache = CACHE.get_or_init(Default::default);
    if let Some(module) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(module.clone());
    }
    let module = wt(Module::from_file(engine(), path))
        .with_context(|| format!("cannot compile Wasm module {}", path.display()))?;
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, module.clone());
    Ok(module)
}

/// The Process clock, seen by WASI as both wall clock and monotonic clock.
struct FrozenClock(Process);

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.lock().now_nanos())
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        self.0.lock().now_nanos()
    }
}

/// Deterministic bytes for WASI random_get (splitmix64), so test runs are reproducible.
fn random_bytes(seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..8192)
        .flat_map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)).to_le_bytes()
        })
        .collect()
}

/// Defines every import the linker does not provide yet as a function that logs the call
/// and returns Unimplemented (12), so any module instantiates and fails only if it uses one.
fn stub_missing_imports(
    linker: &mut Linker<HostState>,
    store: &mut Store<HostState>,
    module: &Module,
) -> Result<Vec<String>> {
    let mut stubbed = Vec::new();
    for import in module.imports() {
        if linker.get_by_import(&mut *store, &import).is_some() {
            continue;
        }
        let ExternType::Func(ty) = import.ty() else {
            bail!(
                "module imports {}.{} which is not a function; the harness cannot provide it",
                import.module(),
                import.name()
            );
        };
        let name = format!("{}.{}", import.module(), import.name());
        stubbed.push(name.clone());
        let results: Vec<ValType> = ty.results().collect();
        wt(linker.func_new(
            import.module(),
            import.name(),
            ty.clone(),
            move |mut caller, _params, out| {
                caller.data_mut().log(
                    LogLevel::Error,
                    format!("harness: unimplemented host function {name} called, returning Unimplemented"),
                );
                for (slot, ty) in out.iter_mut().zip(&results) {
                    *slot = match ty {
                        ValType::I32 => Val::I32(host::UNIMPLEMENTED),
                        ValType::I64 => Val::I64(i64::from(host::UNIMPLEMENTED)),
                        ValType::F32 => Val::F32(0),
                        ValType::F64 => Val::F64(0),
                        other => {
                            return Err(wasmtime::Error::msg(format!(
                                "stub for {name} cannot return {other}"
                            )));
                        }
                    };
                }
                Ok(())
            },
        ))?;
    }
    Ok(stubbed)
}

impl Vm {
    /// Instantiates the module (with WASI preview1) and runs its initialiser
    /// (`_initialize`, or `_start` for command-style modules). Root contexts are created by
    /// [`Vm::configure`], which also runs `proxy_on_vm_start` for them, as Envoy does.
    pub fn load(wasm_path: &Path, process: &Process, opts: VmOptions) -> Result<Vm> {
        let module = compile(wasm_path)?;
        let abi = module
            .exports()
            .map(|e| e.name())
            .find(|n| n.starts_with("proxy_abi_version_"));
        match abi {
            Some("proxy_abi_version_0_2_1" | "proxy_abi_version_0_2_0") => {}
            Some(other) => bail!("{}: unsupported ABI {other}", wasm_path.display()),
            None => bail!(
                "{}: not a proxy-wasm module (no proxy_abi_version_* export)",
                wasm_path.display()
            ),
        }

        let stdout = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenClock(process.clone()))
            .monotonic_clock(FrozenClock(process.clone()))
            .secure_random(wasmtime_wasi::Deterministic::new(random_bytes(1)))
            .insecure_random(wasmtime_wasi::Deterministic::new(random_bytes(2)))
            .insecure_random_seed(0x5eed)
            .build_p1();
        let state = HostState {
            wasi,
            process: process.clone(),
            vm_config: opts.vm_config,
            properties: opts.properties,
            roots: BTreeMap::new(),
            streams: BTreeMap::new(),
            calls: BTreeMap::new(),
            call_response: None,
            status: (0, String::new()),
            plugin_config: None,
            effective: 0,
            local_response_sent: false,
            next_context_id: 1,
            next_token: 1,
            logs: Vec::new(),
            echo_logs: std::env::var_os("HARNESS_LOG").is_some(),
        };
        let mut store = Store::new(engine(), state);
        let mut linker = Linker::new(engine());
        wt(wasmtime_wasi::p1::add_to_linker_sync(
            &mut linker,
            |s: &mut HostState| &mut s.wasi,
        ))?;
        wt(host::add_to_linker(&mut linker))?;
        let stubbed = stub_missing_imports(&mut linker, &mut store, &module)?;
        let instance = wt(linker.instantiate(&mut store, &module))
            .with_context(|| format!("cannot instantiate {}", wasm_path.display()))?;

        let mut vm = Vm {
            store,
            instance,
            poisoned: None,
            stdout,
            stderr,
            stdout_seen: 0,
            stderr_seen: 0,
            stubbed,
        };
        for init in ["_initialize", "_start"] {
            if vm.instance.get_func(&mut vm.store, init).is_some() {
                vm.call::<(), ()>(init, 0, ())?;
                break;
            }
        }
        Ok(vm)
    }

    /// Calls a guest export with the effective context reset to `context`. A missing
    /// export gives `Ok(None)`; a trap poisons the VM and returns the trap with the logs
    /// the filter wrote during this call (a Rust panic message arrives as a Critical log).
    fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &str,
        context: u32,
        params: P,
    ) -> Result<Option<R>> {
        if let Some(reason) = &self.poisoned {
            bail!("the VM is unusable after an earlier trap: {reason}");
        }
        let Some(func) = self.instance.get_func(&mut self.store, name) else {
            return Ok(None);
        };
        let func = wt(func.typed::<P, R>(&self.store))
            .with_context(|| format!("export {name} has an unexpected signature"))?;
        let st = self.store.data_mut();
        st.effective = context;
        st.local_response_sent = false;
        let log_mark = st.logs.len();
        let result = func.call(&mut self.store, params);
        self.collect_output();
        match result {
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                let logs = self
                    .store
                    .data()
                    .logs
                    .get(log_mark..)
                    .unwrap_or_default()
                    .iter()
                    .filter(|(level, _)| *level >= LogLevel::Warn)
                    .map(|(level, msg)| format!("\n  [{level:?}] {msg}"))
                    .collect::<String>();
                let message =
                    format!("{name}(context {context}) trapped: {e:#}\nfilter logs:{logs}");
                self.poisoned = Some(format!("{name}(context {context}) trapped"));
                Err(anyhow!(message))
            }
        }
    }

    /// Turns new guest stdout/stderr bytes into log lines.
    fn collect_output(&mut self) {
        for (pipe, seen, level) in [
            (&self.stdout, &mut self.stdout_seen, LogLevel::Info),
            (&self.stderr, &mut self.stderr_seen, LogLevel::Error),
        ] {
            let contents = pipe.contents();
            if contents.len() > *seen {
                let text = String::from_utf8_lossy(&contents[*seen..]).into_owned();
                *seen = contents.len();
                for line in text.lines().filter(|l| !l.is_empty()) {
                    self.store.data_mut().log(level, line.to_string());
                }
            }
        }
    }

    fn next_context_id(&mut self) -> u32 {
        let st = self.store.data_mut();
        let id = st.next_context_id;
        st.next_context_id += 1;
        id
    }

    fn logs_since(&self, mark: usize) -> String {
        self.store
            .data()
            .logs
            .get(mark..)
            .unwrap_or_default()
            .iter()
            .map(|(level, msg)| format!("\n  [{level:?}] {msg}"))
            .collect()
    }

    /// Creates a root context for `root_id` (proxy_on_context_create, proxy_on_vm_start) and
    /// calls proxy_on_configure with `plugin_config`. Configuring an existing `root_id` again
    /// re-runs only proxy_on_configure on the same root context, as an Envoy config update.
    /// Err if the filter refuses (returns false), with the logs it wrote in the error text.
    pub fn configure(&mut self, root_id: &str, plugin_config: &[u8]) -> Result<RootId> {
        let mark = self.store.data().logs.len();
        let existing = self
            .store
            .data()
            .roots
            .iter()
            .find(|(_, r)| r.root_id == root_id)
            .map(|(id, _)| *id);
        self.store.data_mut().plugin_config = Some(plugin_config.to_vec());
        let result = self.configure_inner(existing, root_id, plugin_config);
        self.store.data_mut().plugin_config = None;
        match result {
            Ok(Some(id)) => Ok(RootId(id)),
            Ok(None) => bail!(
                "filter rejected its configuration for root id {root_id:?} \
                 (proxy_on_vm_start or proxy_on_configure returned false); filter logs:{}",
                self.logs_since(mark)
            ),
            Err(e) => Err(e),
        }
    }

    fn configure_inner(
        &mut self,
        existing: Option<u32>,
        root_id: &str,
        config: &[u8],
    ) -> Result<Option<u32>> {
        let id = match existing {
            Some(id) => id,
            None => {
                let id = self.next_context_id();
                self.store.data_mut().roots.insert(
                    id,
                    host::RootState {
                        root_id: root_id.to_string(),
                        tick_period: None,
                    },
                );
                self.call::<(u32, u32), ()>("proxy_on_context_create", id, (id, 0))?;
                let vm_config_len = len_u32(self.store.data().vm_config.len())?;
                let started = self
                    .call::<(u32, u32), u32>("proxy_on_vm_start", id, (id, vm_config_len))?
                    .unwrap_or(1);
                if started == 0 {
                    return Ok(None);
                }
                id
            }
        };
        let ok = self
            .call::<(u32, u32), u32>("proxy_on_configure", id, (id, len_u32(config.len())?))?
            .unwrap_or(1);
        Ok((ok != 0).then_some(id))
    }

    /// Root contexts created so far, with their root ids.
    pub fn roots(&self) -> Vec<(RootId, String)> {
        self.store
            .data()
            .roots
            .iter()
            .map(|(id, r)| (RootId(*id), r.root_id.clone()))
            .collect()
    }

    /// Set by proxy_set_tick_period_milliseconds; None if never set or set to 0.
    pub fn tick_period(&self, root: RootId) -> Option<Duration> {
        self.store
            .data()
            .roots
            .get(&root.0)
            .and_then(|r| r.tick_period)
    }

    /// Calls proxy_on_tick for a root context. (The clock is not moved: use
    /// [`Process::advance`] if the filter should see time pass.)
    pub fn tick(&mut self, root: RootId) -> Result<()> {
        self.check_root(root)?;
        self.call::<u32, ()>("proxy_on_tick", root.0, root.0)?;
        Ok(())
    }

    fn check_root(&self, root: RootId) -> Result<()> {
        if self.store.data().roots.contains_key(&root.0) {
            Ok(())
        } else {
            bail!("unknown root context {}", root.0)
        }
    }

    /// Creates an HTTP context: proxy_on_context_create(stream, root).
    pub fn new_http(&mut self, root: RootId) -> Result<StreamId> {
        self.check_root(root)?;
        let id = self.next_context_id();
        self.store.data_mut().streams.insert(
            id,
            StreamState {
                root: root.0,
                stream: Stream::default(),
                request: Side::default(),
                response: Side::default(),
                in_log: false,
            },
        );
        self.call::<(u32, u32), ()>("proxy_on_context_create", id, (id, root.0))?;
        Ok(StreamId(id))
    }

    fn live_stream(&mut self, s: StreamId) -> Result<&mut StreamState> {
        match self.store.data_mut().streams.get_mut(&s.0) {
            Some(st) if st.stream.done => bail!("stream {} is finished", s.0),
            Some(st) => Ok(st),
            None => bail!("unknown stream {}", s.0),
        }
    }

    /// Drives one headers or body callback and applies Envoy's bookkeeping afterwards.
    fn drive(
        &mut self,
        s: StreamId,
        export: &str,
        request: bool,
        size: usize,
        eos: bool,
    ) -> Result<Action> {
        let raw = self
            .call::<(u32, u32, u32), u32>(export, s.0, (s.0, len_u32(size)?, u32::from(eos)))?
            .unwrap_or(0);
        let local = self.store.data().local_response_sent;
        let stream = self.live_stream(s)?;
        let side = if request {
            &mut stream.request
        } else {
            &mut stream.response
        };
        // Envoy overrides the filter's answer with "stop" after a local response.
        let action = if raw == 0 && !local {
            Action::Continue
        } else {
            Action::Pause
        };
        if action == Action::Continue {
            side.release();
        } else if export.ends_with("_body") {
            side.buffering = true;
        }
        stream.sync_bodies();
        Ok(action)
    }

    /// Envoy stops decoding once a local reply was sent: the filter is not called again for
    /// the request, and the harness answers Pause.
    fn answered(&mut self, s: StreamId) -> Result<bool> {
        Ok(self.live_stream(s)?.stream.local_response.is_some())
    }

    /// Delivers request headers: proxy_on_request_headers.
    pub fn request_headers(
        &mut self,
        s: StreamId,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action> {
        if self.answered(s)? {
            return Ok(Action::Pause);
        }
        let stream = self.live_stream(s)?;
        stream.stream.request_headers = owned_headers(headers);
        stream.request.headers_available = true;
        self.drive(
            s,
            "proxy_on_request_headers",
            true,
            headers.len(),
            end_of_stream,
        )
    }

    /// Delivers a request body chunk: proxy_on_request_body. If the filter paused on an
    /// earlier chunk, Envoy buffers and the filter sees all chunks so far.
    pub fn request_body(
        &mut self,
        s: StreamId,
        body: &[u8],
        end_of_stream: bool,
    ) -> Result<Action> {
        if self.answered(s)? {
            return Ok(Action::Pause);
        }
        let size = Self::add_body(&mut self.live_stream(s)?.request, body);
        self.drive(s, "proxy_on_request_body", true, size, end_of_stream)
    }

    /// Delivers response headers: proxy_on_response_headers.
    pub fn response_headers(
        &mut self,
        s: StreamId,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action> {
        let stream = self.live_stream(s)?;
        stream.stream.response_headers = owned_headers(headers);
        stream.response.headers_available = true;
        self.drive(
            s,
            "proxy_on_response_headers",
            false,
            headers.len(),
            end_of_stream,
        )
    }

    /// Delivers a response body chunk: proxy_on_response_body (buffering as for requests).
    pub fn response_body(
        &mut self,
        s: StreamId,
        body: &[u8],
        end_of_stream: bool,
    ) -> Result<Action> {
        let size = Self::add_body(&mut self.live_stream(s)?.response, body);
        self.drive(s, "proxy_on_response_body", false, size, end_of_stream)
    }

    fn add_body(side: &mut Side, body: &[u8]) -> usize {
        if !side.buffering {
            side.buffer.clear();
        }
        side.buffer.extend_from_slice(body);
        side.body_available = true;
        side.buffer.len()
    }

    /// Ends the stream: proxy_on_done, proxy_on_log (headers readable), proxy_on_delete.
    pub fn finish(&mut self, s: StreamId) -> Result<()> {
        self.live_stream(s)?;
        self.call::<u32, u32>("proxy_on_done", s.0, s.0)?;
        self.live_stream(s)?.in_log = true;
        let logged = self.call::<u32, ()>("proxy_on_log", s.0, s.0);
        self.live_stream(s)?.in_log = false;
        logged?;
        self.call::<u32, ()>("proxy_on_delete", s.0, s.0)?;
        let stream = self.live_stream(s)?;
        stream.request.release();
        stream.response.release();
        stream.sync_bodies();
        stream.stream.done = true;
        Ok(())
    }

    /// What happened to a stream so far. An id from another VM gives an empty stream.
    pub fn stream(&self, s: StreamId) -> &Stream {
        self.try_stream(s).unwrap_or(&NO_STREAM)
    }

    pub fn try_stream(&self, s: StreamId) -> Option<&Stream> {
        self.store.data().streams.get(&s.0).map(|st| &st.stream)
    }

    /// Outbound HTTP calls not answered yet, oldest first.
    pub fn pending_http_calls(&self) -> Vec<HttpCall> {
        self.store
            .data()
            .calls
            .values()
            .map(|p| p.call.clone())
            .collect()
    }

    /// Answers a call: proxy_on_http_call_response on the root context of the caller, with
    /// `:status` plus `headers` as the response headers and `body` as the body.
    pub fn respond_http_call(
        &mut self,
        token: u32,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<()> {
        let mut all = owned_headers(headers);
        if !all.iter().any(|(k, _)| k == ":status") {
            all.insert(0, (":status".to_string(), status.to_string()));
        }
        let pending = self.take_call(token)?;
        let (num_headers, body_size) = (len_u32(all.len())?, len_u32(body.len())?);
        let st = self.store.data_mut();
        st.call_response = Some(host::CallResponse {
            headers: all,
            body: body.to_vec(),
            trailers: Vec::new(),
        });
        st.status = (0, String::new());
        let result = self.call::<(u32, u32, u32, u32, u32), ()>(
            "proxy_on_http_call_response",
            pending.root,
            (pending.root, token, num_headers, body_size, 0),
        );
        self.store.data_mut().call_response = None;
        result.map(drop)
    }

    /// Fails a call like Envoy on reset or timeout: proxy_on_http_call_response with no
    /// headers, body or trailers; proxy_get_status reports BrokenConnection "reset".
    pub fn fail_http_call(&mut self, token: u32) -> Result<()> {
        let pending = self.take_call(token)?;
        let st = self.store.data_mut();
        st.call_response = None;
        st.status = (11, "reset".to_string());
        let result = self.call::<(u32, u32, u32, u32, u32), ()>(
            "proxy_on_http_call_response",
            pending.root,
            (pending.root, token, 0, 0, 0),
        );
        self.store.data_mut().status.1.clear();
        result.map(drop)
    }

    fn take_call(&mut self, token: u32) -> Result<host::PendingCall> {
        self.store
            .data_mut()
            .calls
            .remove(&token)
            .ok_or_else(|| anyhow!("no pending http call with token {token}"))
    }

    /// Every log line so far: the filter's proxy_log calls, its stdout (Info) and stderr
    /// (Error), and harness diagnostics (Warn/Error, prefixed `harness:`).
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.store.data().logs.clone()
    }

    /// Like [`Vm::logs`], and clears them.
    pub fn take_logs(&mut self) -> Vec<(LogLevel, String)> {
        std::mem::take(&mut self.store.data_mut().logs)
    }

    /// Imports of the module that the harness does not implement, as "module.name". They
    /// are defined as functions that log the call and return Unimplemented (12).
    pub fn stubbed_imports(&self) -> &[String] {
        &self.stubbed
    }

    /// The process this VM belongs to.
    pub fn process(&self) -> &Process {
        &self.store.data().process
    }
}

fn owned_headers(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut owned: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    host::lowercase_names(&mut owned);
    owned
}

fn len_u32(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| anyhow!("size {n} does not fit the 32-bit ABI"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn vm_and_process_can_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<super::Vm>();
        assert_send::<super::Process>();
    }
}
