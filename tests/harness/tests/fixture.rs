//! Drives the fixture filter (tests/harness/fixture-filter) through the harness.
//!
//! The fixture is found at `<target>/wasm32-wasip1/release/harness_fixture_filter.wasm`,
//! where `<target>` is `$CARGO_TARGET_DIR` or `<workspace>/target`. If it is missing or older
//! than its sources, it is built with cargo first.

// Helpers outside #[test] fns are test code too: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::panic)]

use proxy_wasm_harness::{Action, LogLevel, Process, RootId, StreamId, Vm, VmOptions};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

fn fixture_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        proxy_wasm_harness::wasm_module("harness-fixture-filter", &["tests/harness/fixture-filter"])
            .unwrap()
    })
}

fn load(process: &Process) -> Vm {
    Vm::load(fixture_wasm(), process, VmOptions::default()).unwrap()
}

fn configured(process: &Process) -> (Vm, RootId) {
    let mut vm = load(process);
    let root = vm.configure("fixture", b"{}").unwrap();
    (vm, root)
}

const GET: [(&str, &str); 3] = [
    (":method", "GET"),
    (":path", "/"),
    (":authority", "example"),
];

fn request(vm: &mut Vm, root: RootId, extra: &[(&str, &str)]) -> (StreamId, Action) {
    let s = vm.new_http(root).unwrap();
    let headers: Vec<(&str, &str)> = GET.iter().chain(extra).copied().collect();
    let action = vm.request_headers(s, &headers, true).unwrap();
    (s, action)
}

#[test]
fn request_and_response_headers_are_modified() {
    let process = Process::new();
    let (mut vm, root) = configured(&process);
    let (s, action) = request(&mut vm, root, &[("X-Strip", "gone"), ("x-keep", "kept")]);
    assert_eq!(action, Action::Continue);
    let stream = vm.stream(s);
    assert_eq!(stream.request_header("x-strip"), None);
    assert_eq!(stream.request_header("X-Seen"), Some("yes"));
    assert_eq!(stream.request_header("x-keep"), Some("kept"));
    assert_eq!(stream.request_header(":path"), Some("/"));
    assert!(
        stream
            .request_headers
            .iter()
            .all(|(k, _)| *k == k.to_lowercase())
    );

    let action = vm
        .response_headers(s, &[(":status", "200"), ("Server", "envoy")], false)
        .unwrap();
    assert_eq!(action, Action::Continue);
    assert_eq!(vm.stream(s).response_header("x-fixture"), Some("1"));
    assert_eq!(vm.stream(s).response_header("server"), None);
    assert!(vm.stream(s).local_response.is_none());

    vm.finish(s).unwrap();
    assert!(vm.stream(s).done);
    assert!(
        vm.request_headers(s, &GET, true).is_err(),
        "finished streams are gone"
    );
}

#[test]
fn local_response_is_captured() {
    let process = Process::new();
    let (mut vm, root) = configured(&process);
    let (s, action) = request(&mut vm, root, &[("x-deny", "1")]);
    assert_eq!(action, Action::Pause);
    let local = vm.stream(s).local_response.clone().unwrap();
    assert_eq!(local.status, 403);
    assert_eq!(local.header("X-Denied-By"), Some("fixture"));
    assert_eq!(local.body, b"denied");
    // Envoy does not call the filter again for the request once it answered locally.
    assert_eq!(vm.request_body(s, b"late", true).unwrap(), Action::Pause);
    vm.finish(s).unwrap();
}

#[test]
fn configuration_is_checked_and_sets_the_tick_period() {
    let process = Process::new();
    let mut vm = load(&process);
    let err = vm.configure("bad", b"{not json").unwrap_err().to_string();
    assert!(err.contains("invalid configuration"), "{err}");

    let root = vm.configure("good", br#"{"tick_ms": 250}"#).unwrap();
    assert_eq!(vm.tick_period(root), Some(Duration::from_millis(250)));
    let roots: Vec<String> = vm.roots().into_iter().map(|(_, id)| id).collect();
    assert_eq!(roots, ["bad", "good"]);
}

#[test]
fn vms_of_one_process_share_data_and_cas() {
    let process = Process::new();
    let (mut vm1, root1) = configured(&process);
    let (mut vm2, root2) = configured(&process);
    let count = |vm: &mut Vm, root, extra: &[(&str, &str)]| {
        let (s, _) = request(vm, root, extra);
        vm.stream(s).clone()
    };
    assert_eq!(
        count(&mut vm1, root1, &[]).request_header("x-count"),
        Some("1")
    );
    assert_eq!(
        count(&mut vm2, root2, &[]).request_header("x-count"),
        Some("2")
    );
    assert_eq!(
        count(&mut vm1, root1, &[]).request_header("x-count"),
        Some("3")
    );
    let (value, cas) = process.shared_data("fixture.count").unwrap();
    assert_eq!(value, b"3");

    // Another worker writes in between: the stale cas no longer matches.
    process.set_shared_data("fixture.count", b"41");
    let stale = cas.to_string();
    let stream = count(&mut vm2, root2, &[("x-cas", &stale)]);
    assert_eq!(stream.request_header("x-count"), Some("42"));
    assert_eq!(stream.request_header("x-cas-result"), Some("mismatch"));
    assert_eq!(process.shared_data("fixture.count").unwrap().0, b"42");
    assert_eq!(process.shared_data_keys(), ["fixture.count"]);
}

#[test]
fn metrics_are_process_wide() {
    let process = Process::new();
    let (mut vm1, root1) = configured(&process);
    let (mut vm2, root2) = configured(&process);
    request(&mut vm1, root1, &[]);
    request(&mut vm2, root2, &[]);
    request(&mut vm2, root2, &[("x-deny", "1")]);
    assert_eq!(process.metric("fixture.requests"), Some(3));
    assert_eq!(process.metric("fixture.ticks"), Some(0));
    assert_eq!(process.metric("nope"), None);
    assert_eq!(
        process.metrics(),
        [
            ("fixture.requests".to_string(), 3),
            ("fixture.ticks".to_string(), 0)
        ]
    );
}

#[test]
fn callout_answered_with_200_resumes_the_request() {
    let process = Process::new();
    let (mut vm, root) = configured(&process);
    let (s, action) = request(&mut vm, root, &[("x-callout", "1")]);
    assert_eq!(action, Action::Pause);
    let calls = vm.pending_http_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.upstream, "upstream");
    assert_eq!(call.header(":path"), Some("/check"));
    assert_eq!(call.header(":method"), Some("GET"));
    assert_eq!(call.body, b"ping");
    assert_eq!(call.timeout_ms, 1500);
    assert_eq!(call.from_context, s.context_id());
    assert!(!vm.stream(s).resumed_request);

    vm.respond_http_call(call.token, 200, &[("x-reply", "1")], b"allowed")
        .unwrap();
    assert!(vm.pending_http_calls().is_empty());
    let stream = vm.stream(s);
    assert!(stream.resumed_request);
    assert_eq!(stream.request_header("x-callout-body"), Some("allowed"));
    assert!(stream.local_response.is_none());
    assert!(
        vm.respond_http_call(call.token, 200, &[], b"").is_err(),
        "answered twice"
    );
    vm.finish(s).unwrap();
}

#[test]
fn callout_answered_with_an_error_status_becomes_a_local_response() {
    let process = Process::new();
    let (mut vm, root) = configured(&process);
    let (s, _) = request(&mut vm, root, &[("x-callout", "1")]);
    let token = vm.pending_http_calls()[0].token;
    vm.respond_http_call(token, 503, &[], b"busy").unwrap();
    let local = vm.stream(s).local_response.clone().unwrap();
    assert_eq!(local.status, 503);
    assert_eq!(local.header("x-callout-status"), Some("503"));
    assert_eq!(local.body, b"busy");
    assert!(!vm.stream(s).resumed_request);
}

#[test]
fn failed_callout_has_no_response() {
    let process = Process::new();
    let (mut vm, root) = configured(&process);
    let (s, _) = request(&mut vm, root, &[("x-callout", "1")]);
    let token = vm.pending_http_calls()[0].token;
    vm.fail_http_call(token).unwrap();
    let local = vm.stream(s).local_response.clone().unwrap();
    assert_eq!(local.status, 502);
    assert_eq!(local.body, b"callout failed");
    assert!(vm.fail_http_call(token).is_err(), "no longer pending");
}

#[test]
fn tick_calls_out_from_the_root_context() {
    let process = Process::new();
    let mut vm = load(&process);
    let root = vm.configure("fixture", br#"{"tick_ms": 500}"#).unwrap();
    assert_eq!(vm.tick_period(root), Some(Duration::from_millis(500)));

    vm.tick(root).unwrap();
    assert_eq!(process.metric("fixture.ticks"), Some(1));
    let calls = vm.pending_http_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].from_context, root.context_id());
    assert_eq!(calls[0].header(":path"), Some("/tick"));
    vm.respond_http_call(calls[0].token, 200, &[], b"pong")
        .unwrap();
    assert_eq!(
        process.shared_data("fixture.tick_response").unwrap().0,
        b"200:pong"
    );

    vm.tick(root).unwrap();
    let token = vm.pending_http_calls()[0].token;
    vm.fail_http_call(token).unwrap();
    assert_eq!(
        process.shared_data("fixture.tick_response").unwrap().0,
        b"none:"
    );
    assert_eq!(process.metric("fixture.ticks"), Some(2));
}

#[test]
fn root_context_resumes_a_stream_through_the_effective_context() {
    let process = Process::new();
    let (mut vm, root) = configured(&process);
    let (s, action) = request(&mut vm, root, &[("x-wait-tick", "1")]);
    assert_eq!(action, Action::Pause);
    assert!(!vm.stream(s).resumed_request);
    vm.tick(root).unwrap();
    let stream = vm.stream(s);
    assert!(stream.resumed_request);
    assert_eq!(stream.request_header("x-resumed-by"), Some("tick"));
}

#[test]
fn guest_sees_the_frozen_clock() {
    let process = Process::new();
    let (mut vm, root) = configured(&process);
    let (s, _) = request(&mut vm, root, &[]);
    assert_eq!(
        vm.stream(s).request_header("x-now"),
        Some("1767225600000000000"),
        "default is 2026-01-01T00:00:00Z"
    );
    process.set_time(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    process.advance(Duration::from_millis(1500));
    assert_eq!(
        process.now(),
        UNIX_EPOCH + Duration::from_millis(1_700_000_001_500)
    );
    let (s, _) = request(&mut vm, root, &[]);
    assert_eq!(
        vm.stream(s).request_header("x-now"),
        Some("1700000001500000000")
    );
}

#[test]
fn request_body_is_buffered_while_paused() {
    let process = Process::new();
    let (mut vm, root) = configured(&process);
    let s = vm.new_http(root).unwrap();
    assert_eq!(
        vm.request_headers(s, &GET, false).unwrap(),
        Action::Continue
    );
    assert_eq!(vm.request_body(s, b"hello ", false).unwrap(), Action::Pause);
    assert_eq!(
        vm.request_body(s, b"world", true).unwrap(),
        Action::Continue
    );
    assert_eq!(vm.stream(s).request_body, b"hello world");
    assert!(
        vm.logs()
            .iter()
            .any(|(_, m)| m == "request body of 11 bytes")
    );

    let s = vm.new_http(root).unwrap();
    vm.request_headers(s, &GET, false).unwrap();
    vm.request_body(s, b"de", false).unwrap();
    assert_eq!(vm.request_body(s, b"ny", true).unwrap(), Action::Pause);
    let local = vm.stream(s).local_response.clone().unwrap();
    assert_eq!(
        (local.status, local.body.as_slice()),
        (400, &b"bad body"[..])
    );
}

#[test]
fn properties_and_vm_config() {
    let process = Process::new();
    let opts = VmOptions {
        vm_config: b"vm-cfg".to_vec(),
        properties: vec![(vec!["node".into(), "id".into()], b"node-1".to_vec())],
    };
    let mut vm = Vm::load(fixture_wasm(), &process, opts).unwrap();
    let root = vm.configure("fixture", b"").unwrap();
    assert!(
        vm.logs()
            .iter()
            .any(|(l, m)| *l == LogLevel::Info && m == "vm start: vm-cfg"),
        "{:?}",
        vm.logs()
    );
    let prop = |vm: &mut Vm, path: &str| {
        let (s, _) = request(vm, root, &[("x-prop", path)]);
        vm.stream(s)
            .request_header("x-prop-value")
            .map(str::to_string)
    };
    assert_eq!(prop(&mut vm, "node.id").as_deref(), Some("node-1"));
    assert_eq!(prop(&mut vm, "plugin_root_id").as_deref(), Some("fixture"));
    assert_eq!(prop(&mut vm, "request.path").as_deref(), Some("/"));
    assert_eq!(prop(&mut vm, "node.nope").as_deref(), Some("missing"));
}

#[test]
fn a_panic_in_the_filter_is_an_error_and_poisons_the_vm() {
    let process = Process::new();
    let (mut vm, root) = configured(&process);
    let s = vm.new_http(root).unwrap();
    let headers: Vec<(&str, &str)> = GET.iter().copied().chain([("x-panic", "1")]).collect();
    let err = format!("{:#}", vm.request_headers(s, &headers, true).unwrap_err());
    assert!(err.contains("fixture panic requested"), "{err}");
    assert!(err.contains("proxy_on_request_headers"), "{err}");
    let again = vm.new_http(root).unwrap_err().to_string();
    assert!(again.contains("earlier trap"), "{again}");
}

#[test]
fn logs_can_be_taken() {
    let process = Process::new();
    let (mut vm, _) = configured(&process);
    let logs = vm.take_logs();
    assert!(
        logs.iter().any(|(_, m)| m.starts_with("configured root")),
        "{logs:?}"
    );
    assert!(vm.logs().is_empty());
}

#[test]
fn response_body_and_logging_phase() {
    let process = Process::new();
    let (mut vm, root) = configured(&process);
    let (s, _) = request(&mut vm, root, &[]);
    vm.response_headers(s, &[(":status", "200")], false)
        .unwrap();
    assert_eq!(
        vm.response_body(s, b"abc", false).unwrap(),
        Action::Continue
    );
    assert_eq!(vm.response_body(s, b"def", true).unwrap(), Action::Continue);
    assert_eq!(vm.stream(s).response_body, b"abcdef");
    vm.take_logs();
    vm.finish(s).unwrap();
    // Envoy exposes the request headers to proxy_on_log again.
    let logs = vm.take_logs();
    assert!(
        logs.iter().any(|(_, m)| m == "log: path=Some(\"/\")"),
        "{logs:?}"
    );
}

#[test]
fn reset_by_the_filter_closes_the_stream() {
    let process = Process::new();
    let (mut vm, root) = configured(&process);
    let (s, action) = request(&mut vm, root, &[("x-reset", "1")]);
    assert_eq!(action, Action::Pause);
    assert!(vm.stream(s).closed);
    assert!(!vm.stream(s).done);
}

#[test]
fn unimplemented_host_functions_are_stubbed_and_reported() {
    let process = Process::new();
    let (mut vm, root) = configured(&process);
    let s = vm.new_http(root).unwrap();
    let headers: Vec<(&str, &str)> = GET.iter().copied().chain([("x-grpc", "1")]).collect();
    // The SDK panics on the unexpected Unimplemented status; the log says why.
    let err = format!("{:#}", vm.request_headers(s, &headers, true).unwrap_err());
    assert!(
        err.contains("unimplemented host function env.proxy_grpc_call"),
        "{err}"
    );
}

#[test]
fn request_headers_are_gone_in_the_response_phase_as_in_envoy() {
    let process = Process::new();
    let (mut vm, root) = configured(&process);
    let (s, action) = request(&mut vm, root, &[("x-late-read", "1")]);
    assert_eq!(action, Action::Continue);
    let err = format!(
        "{:#}",
        vm.response_headers(s, &[(":status", "200")], true)
            .unwrap_err()
    );
    assert!(err.contains("request headers not available"), "{err}");
}

#[test]
fn stubbed_imports_are_listed() {
    let vm = load(&Process::new());
    let stubbed = vm.stubbed_imports();
    for name in ["env.proxy_grpc_call", "env.proxy_register_shared_queue"] {
        assert!(stubbed.iter().any(|s| s == name), "{stubbed:?}");
    }
    assert!(
        stubbed
            .iter()
            .all(|s| s.starts_with("env.proxy_grpc_") || s.contains("shared_queue")),
        "{stubbed:?}"
    );
}
