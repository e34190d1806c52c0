//! The host side of the proxy-wasm ABI 0.2.1: the `env` functions the guest imports.
//!
//! Semantics follow Envoy's implementation (status codes, when header maps and buffers are
//! visible, cas rules), so that a filter misbehaving here would misbehave in Envoy too.

use crate::pairs;
use crate::process::{MetricError, MetricKind, Process};
use crate::{HttpCall, LocalResponse, LogLevel, Stream};
use std::collections::BTreeMap;
use std::time::Duration;
use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi::p1::WasiP1Ctx;

/// ABI status codes (proxy-wasm spec `WasmResult`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    InvalidMemoryAccess = 6,
    CasMismatch = 8,
    InternalFailure = 10,
    Unimplemented = 12,
}

/// Why a host call did not succeed: a status for the guest, or a trap (e.g. the guest's
/// allocator trapped while we asked it for memory).
pub(crate) enum Fail {
    Status(Status),
    Trap(wasmtime::Error),
}

impl From<Status> for Fail {
    fn from(s: Status) -> Self {
        Fail::Status(s)
    }
}

type HostResult = Result<(), Fail>;

fn finish(r: HostResult) -> wasmtime::Result<u32> {
    match r {
        Ok(()) => Ok(Status::Ok as u32),
        Err(Fail::Status(s)) => Ok(s as u32),
        Err(Fail::Trap(e)) => Err(e),
    }
}

/// Per-direction stream state. Envoy only exposes headers/body to the filter while they
/// are "in flight": during the callback, or until the filter resumes a paused stream.
#[derive(Default)]
pub(crate) struct Side {
    pub headers_available: bool,
    pub body_available: bool,
    /// The filter returned Pause from a body callback: Envoy buffers further chunks.
    pub buffering: bool,
    /// The body buffer the filter currently sees.
    pub buffer: Vec<u8>,
    /// Body already passed on (the filter continued past it).
    pub forwarded: Vec<u8>,
}

impl Side {
    /// The filter let the data through: stop exposing it, move the buffer on.
    pub fn release(&mut self) {
        self.headers_available = false;
        self.body_available = false;
        self.buffering = false;
        let buffer = std::mem::take(&mut self.buffer);
        self.forwarded.extend_from_slice(&buffer);
    }

    pub fn body(&self) -> Vec<u8> {
        let mut all = self.forwarded.clone();
        all.extend_from_slice(&self.buffer);
        all
    }
}

pub(crate) struct StreamState {
    pub root: u32,
    pub stream: Stream,
    pub request: Side,
    pub response: Side,
    /// proxy_on_log is running: Envoy lets the filter read (not write) all headers then.
    pub in_log: bool,
}

impl StreamState {
    pub fn sync_bodies(&mut self) {
        self.stream.request_body = self.request.body();
        self.stream.response_body = self.response.body();
    }
}

pub(crate) struct RootState {
    pub root_id: String,
    pub tick_period: Option<Duration>,
}

pub(crate) struct PendingCall {
    pub call: HttpCall,
    /// Root context that receives proxy_on_http_call_response (Envoy dispatches calls on
    /// the root context of whoever made them).
    pub root: u32,
}

pub(crate) struct CallResponse {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
}

/// Everything a VM's host functions need, stored in the wasmtime `Store`.
pub(crate) struct HostState {
    pub wasi: WasiP1Ctx,
    pub process: Process,
    pub vm_config: Vec<u8>,
    /// VmOptions properties first, then values set by the filter (which win).
    pub properties: Vec<(Vec<String>, Vec<u8>)>,
    pub roots: BTreeMap<u32, RootState>,
    pub streams: BTreeMap<u32, StreamState>,
    pub calls: BTreeMap<u32, PendingCall>,
    /// Set only while proxy_on_http_call_response runs for a successful call.
    pub call_response: Option<CallResponse>,
    /// What proxy_get_status reports (Envoy: BrokenConnection/"reset" after a failed call).
    pub status: (u32, String),
    /// Plugin configuration, visible only during proxy_on_vm_start / proxy_on_configure.
    pub plugin_config: Option<Vec<u8>>,
    /// Context the guest is acting on (proxy_set_effective_context).
    pub effective: u32,
    /// A local response was sent during the current callback (Envoy then stops iteration).
    pub local_response_sent: bool,
    pub next_context_id: u32,
    pub next_token: u32,
    pub logs: Vec<(LogLevel, String)>,
    pub echo_logs: bool,
}

impl HostState {
    pub fn log(&mut self, level: LogLevel, message: String) {
        if self.echo_logs {
            eprintln!("[wasm {level:?}] {message}");
        }
        self.logs.push((level, message));
    }

    /// Harness diagnostics go to the same log, so they show up in error messages.
    fn note(&mut self, message: String) {
        self.log(LogLevel::Warn, format!("harness: {message}"));
    }

    pub fn root_of(&self, context: u32) -> Option<u32> {
        if self.roots.contains_key(&context) {
            Some(context)
        } else {
            self.streams.get(&context).map(|s| s.root)
        }
    }

    fn effective_stream(&mut self) -> Option<&mut StreamState> {
        let id = self.effective;
        self.streams.get_mut(&id).filter(|s| !s.stream.done)
    }

    /// A header map as the guest may read it, or None where Envoy has no map.
    fn map(&mut self, map_type: u32) -> Option<&Vec<(String, String)>> {
        match map_type {
            0 | 2 => {
                let s = self.effective_stream()?;
                let (side, map) = if map_type == 0 {
                    (&s.request, &s.stream.request_headers)
                } else {
                    (&s.response, &s.stream.response_headers)
                };
                (side.headers_available || s.in_log).then_some(map)
            }
            6 => self.call_response.as_ref().map(|r| &r.headers),
            7 => self.call_response.as_ref().map(|r| &r.trailers),
            _ => None, // trailers and gRPC metadata are not driven by the harness
        }
    }

    /// A header map as the guest may modify it: only request/response headers in flight.
    fn map_mut(&mut self, map_type: u32) -> Option<&mut Vec<(String, String)>> {
        let s = self.effective_stream()?;
        match map_type {
            0 if s.request.headers_available => Some(&mut s.stream.request_headers),
            2 if s.response.headers_available => Some(&mut s.stream.response_headers),
            _ => None,
        }
    }

    fn body_side(&mut self, buffer_type: u32) -> Option<&mut Side> {
        let s = self.effective_stream()?;
        match buffer_type {
            0 => Some(&mut s.request),
            1 => Some(&mut s.response),
            _ => None,
        }
    }
}

// ---- guest memory helpers -------------------------------------------------------------

fn memory(c: &mut Caller<'_, HostState>) -> Result<wasmtime::Memory, Fail> {
    c.get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or(Fail::Status(Status::InvalidMemoryAccess))
}

fn read(c: &mut Caller<'_, HostState>, ptr: u32, len: u32) -> Result<Vec<u8>, Fail> {
    let mem = memory(c)?;
    let start = ptr as usize;
    let end = start
        .checked_add(len as usize)
        .ok_or(Status::InvalidMemoryAccess)?;
    mem.data(&*c)
        .get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or(Fail::Status(Status::InvalidMemoryAccess))
}

fn read_string(c: &mut Caller<'_, HostState>, ptr: u32, len: u32) -> Result<String, Fail> {
    Ok(String::from_utf8_lossy(&read(c, ptr, len)?).into_owned())
}

fn write(c: &mut Caller<'_, HostState>, ptr: u32, bytes: &[u8]) -> HostResult {
    let mem = memory(c)?;
    let start = ptr as usize;
    let end = start
        .checked_add(bytes.len())
        .ok_or(Status::InvalidMemoryAccess)?;
    mem.data_mut(&mut *c)
        .get_mut(start..end)
        .ok_or(Status::InvalidMemoryAccess)?
        .copy_from_slice(bytes);
    Ok(())
}

fn write_u32(c: &mut Caller<'_, HostState>, ptr: u32, v: u32) -> HostResult {
    write(c, ptr, &v.to_le_bytes())
}

/// Hands bytes to the guest: allocates with the guest's own allocator (it will free them
/// with its own `Vec::from_raw_parts`) and writes pointer and size. Like Envoy, empty data
/// is returned as a null pointer and size 0.
fn copy_out(c: &mut Caller<'_, HostState>, data: &[u8], ptr_ptr: u32, size_ptr: u32) -> HostResult {
    let mut ptr = 0;
    if !data.is_empty() {
        let alloc = c
            .get_export("proxy_on_memory_allocate")
            .or_else(|| c.get_export("malloc"))
            .and_then(Extern::into_func)
            .ok_or(Status::InternalFailure)?;
        let alloc = alloc.typed::<u32, u32>(&*c).map_err(Fail::Trap)?;
        let size = u32::try_from(data.len()).map_err(|_| Status::BadArgument)?;
        ptr = alloc.call(&mut *c, size).map_err(Fail::Trap)?;
        if ptr == 0 {
            return Err(Status::InternalFailure.into());
        }
        write(c, ptr, data)?;
    }
    write_u32(c, ptr_ptr, ptr)?;
    write_u32(c, size_ptr, u32::try_from(data.len()).unwrap_or(u32::MAX))
}

fn read_pairs(
    c: &mut Caller<'_, HostState>,
    ptr: u32,
    len: u32,
) -> Result<Vec<(String, String)>, Fail> {
    let raw = read(c, ptr, len)?;
    let mut pairs = pairs::deserialize(&raw).ok_or(Status::SerializationFailure)?;
    lowercase_names(&mut pairs);
    Ok(pairs)
}

pub(crate) fn lowercase_names(pairs: &mut [(String, String)]) {
    for (name, _) in pairs {
        name.make_ascii_lowercase();
    }
}

fn map_name(map_type: u32) -> &'static str {
    match map_type {
        0 => "request headers",
        1 => "request trailers",
        2 => "response headers",
        3 => "response trailers",
        4 => "gRPC initial metadata",
        5 => "gRPC trailing metadata",
        6 => "http call response headers",
        7 => "http call response trailers",
        _ => "unknown map",
    }
}

// ---- the ABI functions ----------------------------------------------------------------

fn proxy_log(c: &mut Caller<'_, HostState>, level: u32, ptr: u32, len: u32) -> HostResult {
    let level = LogLevel::from_abi(level).ok_or(Status::BadArgument)?;
    let message = read_string(c, ptr, len)?;
    c.data_mut().log(level, message);
    Ok(())
}

fn proxy_get_log_level(c: &mut Caller<'_, HostState>, ret: u32) -> HostResult {
    // Trace: the harness wants every log line the filter is willing to produce.
    write_u32(c, ret, LogLevel::Trace as u32)
}

fn proxy_get_current_time_nanoseconds(c: &mut Caller<'_, HostState>, ret: u32) -> HostResult {
    let now = c.data().process.lock().now_nanos();
    write(c, ret, &now.to_le_bytes())
}

fn proxy_set_tick_period_milliseconds(c: &mut Caller<'_, HostState>, ms: u32) -> HostResult {
    let st = c.data_mut();
    let root = st.root_of(st.effective).ok_or(Status::BadArgument)?;
    let period = (ms != 0).then(|| Duration::from_millis(u64::from(ms)));
    if let Some(r) = st.roots.get_mut(&root) {
        r.tick_period = period;
    }
    Ok(())
}

fn buffer_bytes(st: &mut HostState, buffer_type: u32) -> Result<Vec<u8>, Status> {
    match buffer_type {
        0 | 1 => Ok(st
            .body_side(buffer_type)
            .filter(|side| side.body_available)
            .map(|side| side.buffer.clone())
            .unwrap_or_default()),
        // Network data buffers exist in Envoy but are empty for HTTP filters.
        2 | 3 => Ok(Vec::new()),
        4 => st
            .call_response
            .as_ref()
            .map(|r| r.body.clone())
            .ok_or(Status::NotFound),
        6 => Ok(st.vm_config.clone()),
        7 => st.plugin_config.clone().ok_or(Status::NotFound),
        5 | 8 => Err(Status::NotFound), // gRPC receive buffer, foreign-function call data
        _ => Err(Status::BadArgument),
    }
}

fn proxy_get_buffer_bytes(
    c: &mut Caller<'_, HostState>,
    buffer_type: u32,
    start: u32,
    max_size: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    let data = buffer_bytes(c.data_mut(), buffer_type)?;
    let start = start as usize;
    if start.checked_add(max_size as usize).is_none() {
        return Err(Status::BadArgument.into());
    }
    let end = data.len().min(start + max_size as usize);
    if start >= end {
        // Envoy returns Ok without writing anything: the SDK sees no data (None).
        return Ok(());
    }
    copy_out(c, &data[start..end], ptr_ptr, size_ptr)
}

fn proxy_get_buffer_status(
    c: &mut Caller<'_, HostState>,
    buffer_type: u32,
    len_ptr: u32,
    flags_ptr: u32,
) -> HostResult {
    let data = buffer_bytes(c.data_mut(), buffer_type)?;
    write_u32(c, len_ptr, u32::try_from(data.len()).unwrap_or(u32::MAX))?;
    write_u32(c, flags_ptr, 0)
}

fn proxy_set_buffer_bytes(
    c: &mut Caller<'_, HostState>,
    buffer_type: u32,
    start: u32,
    size: u32,
    ptr: u32,
    len: u32,
) -> HostResult {
    let data = read(c, ptr, len)?;
    let st = c.data_mut();
    let Some(side) = st.body_side(buffer_type).filter(|s| s.body_available) else {
        st.note(format!(
            "proxy_set_buffer_bytes: buffer {buffer_type} is not writable now"
        ));
        return Err(Status::BadArgument.into());
    };
    // Envoy supports exactly two edits: replace a prefix (start 0) or append (start >= len).
    let (start, size) = (start as usize, size as usize);
    if start == 0 {
        let drained = size.min(side.buffer.len());
        side.buffer.splice(..drained, data);
    } else if start >= side.buffer.len() {
        side.buffer.extend_from_slice(&data);
    } else {
        return Err(Status::BadArgument.into());
    }
    if let Some(s) = st.effective_stream() {
        s.sync_bodies();
    }
    Ok(())
}

fn proxy_get_header_map_pairs(
    c: &mut Caller<'_, HostState>,
    map_type: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    if map_type > 7 {
        return Err(Status::BadArgument.into());
    }
    // Envoy answers Ok with an empty map when the map does not exist.
    let pairs = c.data_mut().map(map_type).cloned().unwrap_or_default();
    let bytes = if pairs.is_empty() {
        Vec::new()
    } else {
        pairs::serialize(&pairs)
    };
    copy_out(c, &bytes, ptr_ptr, size_ptr)
}

fn proxy_set_header_map_pairs(
    c: &mut Caller<'_, HostState>,
    map_type: u32,
    ptr: u32,
    len: u32,
) -> HostResult {
    let pairs = read_pairs(c, ptr, len)?;
    let st = c.data_mut();
    match st.map_mut(map_type) {
        Some(map) => {
            *map = pairs;
            Ok(())
        }
        None => {
            st.note(format!(
                "proxy_set_header_map_pairs: {} not writable now (Envoy: BadArgument)",
                map_name(map_type)
            ));
            Err(Status::BadArgument.into())
        }
    }
}

fn proxy_get_header_map_value(
    c: &mut Caller<'_, HostState>,
    map_type: u32,
    key_ptr: u32,
    key_len: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    let key = read_string(c, key_ptr, key_len)?.to_ascii_lowercase();
    let st = c.data_mut();
    let value = match st.map(map_type) {
        Some(map) => map.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()),
        None => {
            st.note(format!(
                "proxy_get_header_map_value({key}): {} not available in this callback (Envoy: BadArgument)",
                map_name(map_type)
            ));
            return Err(Status::BadArgument.into());
        }
    };
    let value = value.ok_or(Status::NotFound)?;
    copy_out(c, value.as_bytes(), ptr_ptr, size_ptr)
}

/// Shared body of add/replace/remove: run `edit` on a writable map or report BadArgument.
fn edit_map(
    c: &mut Caller<'_, HostState>,
    what: &str,
    map_type: u32,
    key: &str,
    edit: impl FnOnce(&mut Vec<(String, String)>),
) -> HostResult {
    let st = c.data_mut();
    match st.map_mut(map_type) {
        Some(map) => {
            edit(map);
            Ok(())
        }
        None => {
            st.note(format!(
                "{what}({key}): {} not writable in this callback (Envoy: BadArgument)",
                map_name(map_type)
            ));
            Err(Status::BadArgument.into())
        }
    }
}

fn proxy_add_header_map_value(
    c: &mut Caller<'_, HostState>,
    map_type: u32,
    key_ptr: u32,
    key_len: u32,
    value_ptr: u32,
    value_len: u32,
) -> HostResult {
    let key = read_string(c, key_ptr, key_len)?.to_ascii_lowercase();
    let value = read_string(c, value_ptr, value_len)?;
    edit_map(
        c,
        "proxy_add_header_map_value",
        map_type,
        &key.clone(),
        |map| {
            map.push((key, value));
        },
    )
}

fn proxy_replace_header_map_value(
    c: &mut Caller<'_, HostState>,
    map_type: u32,
    key_ptr: u32,
    key_len: u32,
    value_ptr: u32,
    value_len: u32,
) -> HostResult {
    let key = read_string(c, key_ptr, key_len)?.to_ascii_lowercase();
    let value = read_string(c, value_ptr, value_len)?;
    edit_map(
        c,
        "proxy_replace_header_map_value",
        map_type,
        &key.clone(),
        |map| {
            // Keep the first entry's position, drop duplicates, append if absent.
            match map.iter().position(|(k, _)| *k == key) {
                Some(first) => {
                    map[first].1 = value;
                    let mut index = 0;
                    map.retain(|(k, _)| {
                        index += 1;
                        index - 1 == first || *k != key
                    });
                }
                None => map.push((key, value)),
            }
        },
    )
}

fn proxy_remove_header_map_value(
    c: &mut Caller<'_, HostState>,
    map_type: u32,
    key_ptr: u32,
    key_len: u32,
) -> HostResult {
    let key = read_string(c, key_ptr, key_len)?.to_ascii_lowercase();
    edit_map(
        c,
        "proxy_remove_header_map_value",
        map_type,
        &key.clone(),
        |map| {
            map.retain(|(k, _)| *k != key);
        },
    )
}

fn proxy_get_header_map_size(c: &mut Caller<'_, HostState>, map_type: u32, ret: u32) -> HostResult {
    let size = c
        .data_mut()
        .map_mut(map_type)
        .map(|m| m.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>())
        .ok_or(Status::BadArgument)?;
    write_u32(c, ret, u32::try_from(size).unwrap_or(u32::MAX))
}

fn property_path(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    raw.split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn property(st: &mut HostState, path: &[String]) -> Option<Vec<u8>> {
    if let Some((_, v)) = st
        .properties
        .iter()
        .rev()
        .find(|(p, _)| p.as_slice() == path)
    {
        return Some(v.clone());
    }
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    match parts.as_slice() {
        // Envoy built-ins that need no configuration.
        ["plugin_root_id"] | ["plugin_name"] => {
            let root = st.root_of(st.effective)?;
            st.roots.get(&root).map(|r| r.root_id.clone().into_bytes())
        }
        ["request", field] => {
            let header = match *field {
                "path" => ":path",
                "method" => ":method",
                "host" => ":authority",
                "scheme" => ":scheme",
                "id" => "x-request-id",
                _ => return None,
            };
            let s = st.effective_stream()?;
            s.stream
                .request_header(header)
                .map(|v| v.as_bytes().to_vec())
        }
        _ => None,
    }
}

fn proxy_get_property(
    c: &mut Caller<'_, HostState>,
    path_ptr: u32,
    path_len: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    let path = property_path(&read(c, path_ptr, path_len)?);
    let value = property(c.data_mut(), &path).ok_or(Status::NotFound)?;
    copy_out(c, &value, ptr_ptr, size_ptr)
}

fn proxy_set_property(
    c: &mut Caller<'_, HostState>,
    path_ptr: u32,
    path_len: u32,
    value_ptr: u32,
    value_len: u32,
) -> HostResult {
    let path = property_path(&read(c, path_ptr, path_len)?);
    let value = read(c, value_ptr, value_len)?;
    c.data_mut().properties.push((path, value));
    Ok(())
}

fn proxy_get_shared_data(
    c: &mut Caller<'_, HostState>,
    key_ptr: u32,
    key_len: u32,
    ptr_ptr: u32,
    size_ptr: u32,
    cas_ptr: u32,
) -> HostResult {
    let key = read_string(c, key_ptr, key_len)?;
    let (value, cas) = c
        .data()
        .process
        .lock()
        .get_shared(&key)
        .ok_or(Status::NotFound)?;
    copy_out(c, &value, ptr_ptr, size_ptr)?;
    write_u32(c, cas_ptr, cas)
}

fn proxy_set_shared_data(
    c: &mut Caller<'_, HostState>,
    key_ptr: u32,
    key_len: u32,
    value_ptr: u32,
    value_len: u32,
    cas: u32,
) -> HostResult {
    let key = read_string(c, key_ptr, key_len)?;
    let value = read(c, value_ptr, value_len)?;
    if c.data().process.lock().set_shared(&key, &value, cas) {
        Ok(())
    } else {
        Err(Status::CasMismatch.into())
    }
}

fn proxy_continue_stream(c: &mut Caller<'_, HostState>, stream_type: u32) -> HostResult {
    if stream_type > 1 {
        // Downstream/Upstream are network-filter streams; Envoy's HTTP context refuses them.
        return Err(Status::BadArgument.into());
    }
    let st = c.data_mut();
    let Some(s) = st.effective_stream() else {
        // Envoy: no stream callbacks on a root context, so nothing happens.
        st.note("proxy_continue_stream on a context without a stream: ignored".into());
        return Ok(());
    };
    if stream_type == 0 {
        s.stream.resumed_request = true;
        s.request.release();
    } else {
        s.stream.resumed_response = true;
        s.response.release();
    }
    s.sync_bodies();
    Ok(())
}

fn proxy_close_stream(c: &mut Caller<'_, HostState>, stream_type: u32) -> HostResult {
    if stream_type > 3 {
        return Err(Status::BadArgument.into());
    }
    if stream_type <= 1
        && let Some(s) = c.data_mut().effective_stream()
    {
        s.stream.closed = true;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn proxy_send_local_response(
    c: &mut Caller<'_, HostState>,
    status: u32,
    details_ptr: u32,
    details_len: u32,
    body_ptr: u32,
    body_len: u32,
    headers_ptr: u32,
    headers_len: u32,
    grpc_status: i32,
) -> HostResult {
    let details = read_string(c, details_ptr, details_len)?;
    let body = read(c, body_ptr, body_len)?;
    let headers = read_pairs(c, headers_ptr, headers_len)?;
    let st = c.data_mut();
    let Some(s) = st.effective_stream() else {
        st.note(format!(
            "proxy_send_local_response({status}) outside an HTTP stream: ignored"
        ));
        return Ok(());
    };
    let response = LocalResponse {
        status: u16::try_from(status).unwrap_or(u16::MAX),
        headers,
        body,
        details,
        grpc_status: (grpc_status >= 0).then_some(grpc_status),
    };
    let previous = s.stream.local_response.replace(response);
    st.local_response_sent = true;
    if let Some(previous) = previous {
        st.note(format!(
            "second local response replaces status {}",
            previous.status
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn proxy_http_call(
    c: &mut Caller<'_, HostState>,
    upstream_ptr: u32,
    upstream_len: u32,
    headers_ptr: u32,
    headers_len: u32,
    body_ptr: u32,
    body_len: u32,
    trailers_ptr: u32,
    trailers_len: u32,
    timeout_ms: u32,
    token_ptr: u32,
) -> HostResult {
    let upstream = read_string(c, upstream_ptr, upstream_len)?;
    let headers = read_pairs(c, headers_ptr, headers_len)?;
    let body = read(c, body_ptr, body_len)?;
    let trailers = read_pairs(c, trailers_ptr, trailers_len)?;
    // Check the token memory before recording anything, as Envoy does.
    write_u32(c, token_ptr, 0)?;
    let st = c.data_mut();
    let missing: Vec<&str> = [":method", ":path", ":authority"]
        .into_iter()
        .filter(|h| !headers.iter().any(|(k, _)| k == h))
        .collect();
    if !missing.is_empty() {
        st.note(format!(
            "proxy_http_call to {upstream}: missing {missing:?} (Envoy: BadArgument)"
        ));
        return Err(Status::BadArgument.into());
    }
    let root = st.root_of(st.effective).ok_or(Status::BadArgument)?;
    let token = st.next_token;
    st.next_token = st.next_token.checked_add(1).unwrap_or(1);
    let call = HttpCall {
        token,
        upstream,
        headers,
        body,
        trailers,
        timeout_ms,
        from_context: st.effective,
    };
    st.calls.insert(token, PendingCall { call, root });
    write_u32(c, token_ptr, token)
}

fn proxy_get_status(
    c: &mut Caller<'_, HostState>,
    code_ptr: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    let (code, message) = c.data().status.clone();
    write_u32(c, code_ptr, code)?;
    copy_out(c, message.as_bytes(), ptr_ptr, size_ptr)
}

fn proxy_set_effective_context(c: &mut Caller<'_, HostState>, context: u32) -> HostResult {
    let st = c.data_mut();
    let live =
        st.roots.contains_key(&context) || st.streams.get(&context).is_some_and(|s| !s.stream.done);
    if !live {
        return Err(Status::BadArgument.into());
    }
    st.effective = context;
    Ok(())
}

fn proxy_call_foreign_function(
    c: &mut Caller<'_, HostState>,
    name_ptr: u32,
    name_len: u32,
) -> HostResult {
    let name = read_string(c, name_ptr, name_len)?;
    // No foreign functions are registered: Envoy answers NotFound for unknown names.
    c.data_mut()
        .note(format!("foreign function {name:?} is not provided"));
    Err(Status::NotFound.into())
}

fn proxy_define_metric(
    c: &mut Caller<'_, HostState>,
    kind: u32,
    name_ptr: u32,
    name_len: u32,
    ret: u32,
) -> HostResult {
    let kind = MetricKind::from_abi(kind).ok_or(Status::BadArgument)?;
    let name = read_string(c, name_ptr, name_len)?;
    let id = c.data().process.lock().define_metric(kind, &name);
    write_u32(c, ret, id)
}

fn metric_status(e: MetricError) -> Fail {
    match e {
        MetricError::NotFound => Status::NotFound.into(),
        MetricError::BadArgument => Status::BadArgument.into(),
    }
}

fn proxy_get_metric(c: &mut Caller<'_, HostState>, id: u32, ret: u32) -> HostResult {
    let value = c
        .data()
        .process
        .lock()
        .get_metric(id)
        .map_err(metric_status)?;
    write(c, ret, &value.to_le_bytes())
}

/// Registers every `env` function this host implements. Anything else the module imports
/// is stubbed by the caller (see `lib.rs`).
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    type C<'a> = Caller<'a, HostState>;
    const ENV: &str = "env";
    linker.func_wrap(ENV, "proxy_log", |mut c: C<'_>, l: u32, p: u32, n: u32| {
        finish(proxy_log(&mut c, l, p, n))
    })?;
    linker.func_wrap(ENV, "proxy_get_log_level", |mut c: C<'_>, r: u32| {
        finish(proxy_get_log_level(&mut c, r))
    })?;
    linker.func_wrap(
        ENV,
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, r: u32| finish(proxy_get_current_time_nanoseconds(&mut c, r)),
    )?;
    linker.func_wrap(
        ENV,
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, ms: u32| finish(proxy_set_tick_period_milliseconds(&mut c, ms)),
    )?;
    linker.func_wrap(
        ENV,
        "proxy_get_buffer_bytes",
        |mut c: C<'_>, t: u32, s: u32, m: u32, pp: u32, sp: u32| {
            finish(proxy_get_buffer_bytes(&mut c, t, s, m, pp, sp))
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_get_buffer_status",
        |mut c: C<'_>, t: u32, l: u32, f: u32| finish(proxy_get_buffer_status(&mut c, t, l, f)),
    )?;
    linker.func_wrap(
        ENV,
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, t: u32, s: u32, z: u32, p: u32, n: u32| {
            finish(proxy_set_buffer_bytes(&mut c, t, s, z, p, n))
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, t: u32, pp: u32, sp: u32| {
            finish(proxy_get_header_map_pairs(&mut c, t, pp, sp))
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, t: u32, p: u32, n: u32| finish(proxy_set_header_map_pairs(&mut c, t, p, n)),
    )?;
    linker.func_wrap(
        ENV,
        "proxy_get_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, kn: u32, pp: u32, sp: u32| {
            finish(proxy_get_header_map_value(&mut c, t, kp, kn, pp, sp))
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_add_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, kn: u32, vp: u32, vn: u32| {
            finish(proxy_add_header_map_value(&mut c, t, kp, kn, vp, vn))
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_replace_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, kn: u32, vp: u32, vn: u32| {
            finish(proxy_replace_header_map_value(&mut c, t, kp, kn, vp, vn))
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_remove_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, kn: u32| {
            finish(proxy_remove_header_map_value(&mut c, t, kp, kn))
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_get_header_map_size",
        |mut c: C<'_>, t: u32, r: u32| finish(proxy_get_header_map_size(&mut c, t, r)),
    )?;
    linker.func_wrap(
        ENV,
        "proxy_get_property",
        |mut c: C<'_>, p: u32, n: u32, pp: u32, sp: u32| {
            finish(proxy_get_property(&mut c, p, n, pp, sp))
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_set_property",
        |mut c: C<'_>, p: u32, n: u32, vp: u32, vn: u32| {
            finish(proxy_set_property(&mut c, p, n, vp, vn))
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_get_shared_data",
        |mut c: C<'_>, kp: u32, kn: u32, pp: u32, sp: u32, cp: u32| {
            finish(proxy_get_shared_data(&mut c, kp, kn, pp, sp, cp))
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_set_shared_data",
        |mut c: C<'_>, kp: u32, kn: u32, vp: u32, vn: u32, cas: u32| {
            finish(proxy_set_shared_data(&mut c, kp, kn, vp, vn, cas))
        },
    )?;
    linker.func_wrap(ENV, "proxy_continue_stream", |mut c: C<'_>, t: u32| {
        finish(proxy_continue_stream(&mut c, t))
    })?;
    linker.func_wrap(ENV, "proxy_close_stream", |mut c: C<'_>, t: u32| {
        finish(proxy_close_stream(&mut c, t))
    })?;
    linker.func_wrap(
        ENV,
        "proxy_send_local_response",
        |mut c: C<'_>, s: u32, dp: u32, dn: u32, bp: u32, bn: u32, hp: u32, hn: u32, g: i32| {
            finish(proxy_send_local_response(
                &mut c, s, dp, dn, bp, bn, hp, hn, g,
            ))
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_http_call",
        |mut c: C<'_>,
         up: u32,
         un: u32,
         hp: u32,
         hn: u32,
         bp: u32,
         bn: u32,
         tp: u32,
         tn: u32,
         timeout: u32,
         token: u32| {
            finish(proxy_http_call(
                &mut c, up, un, hp, hn, bp, bn, tp, tn, timeout, token,
            ))
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_get_status",
        |mut c: C<'_>, cp: u32, pp: u32, sp: u32| finish(proxy_get_status(&mut c, cp, pp, sp)),
    )?;
    linker.func_wrap(
        ENV,
        "proxy_set_effective_context",
        |mut c: C<'_>, id: u32| finish(proxy_set_effective_context(&mut c, id)),
    )?;
    linker.func_wrap(ENV, "proxy_done", |_: C<'_>| -> wasmtime::Result<u32> {
        Ok(Status::Ok as u32)
    })?;
    linker.func_wrap(
        ENV,
        "proxy_call_foreign_function",
        |mut c: C<'_>, np: u32, nn: u32, _ap: u32, _an: u32, _rp: u32, _rn: u32| {
            finish(proxy_call_foreign_function(&mut c, np, nn))
        },
    )?;
    linker.func_wrap(
        ENV,
        "proxy_define_metric",
        |mut c: C<'_>, k: u32, np: u32, nn: u32, r: u32| {
            finish(proxy_define_metric(&mut c, k, np, nn, r))
        },
    )?;
    linker.func_wrap(ENV, "proxy_get_metric", |mut c: C<'_>, id: u32, r: u32| {
        finish(proxy_get_metric(&mut c, id, r))
    })?;
    linker.func_wrap(ENV, "proxy_record_metric", |c: C<'_>, id: u32, v: u64| {
        finish(
            c.data()
                .process
                .lock()
                .record_metric(id, v)
                .map_err(metric_status),
        )
    })?;
    linker.func_wrap(
        ENV,
        "proxy_increment_metric",
        |c: C<'_>, id: u32, off: i64| {
            finish(
                c.data()
                    .process
                    .lock()
                    .increment_metric(id, off)
                    .map_err(metric_status),
            )
        },
    )?;
    Ok(())
}

/// Status returned by stubs for imports the harness does not implement.
pub(crate) const UNIMPLEMENTED: i32 = Status::Unimplemented as i32;
