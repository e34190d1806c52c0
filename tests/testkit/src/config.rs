//! Envoy (v3 API) configuration building blocks, as YAML strings.
//!
//! Each function returns one self-contained YAML mapping (a cluster, an HTTP
//! filter, a listener) so tests can compose them; [`bootstrap`] assembles the
//! final document for [`crate::envoy::Envoy::start`]. Listener and admin
//! addresses use `127.0.0.1:0`, so parallel tests never collide: ask the
//! running Envoy for the bound port ([`crate::envoy::Envoy::listener_port`]).
//!
//! Fragments are plain YAML text, so hand-written YAML (block or flow
//! style) can be mixed in freely; [`to_yaml`] turns a `serde_json::json!`
//! value into such a fragment.
//!
//! ```
//! use bulkhead_testkit::config::*;
//!
//! let yaml = bootstrap(
//!     &[listener("main", &[], "echo")],
//!     &[echo_cluster("echo", 8080)],
//! );
//! assert!(yaml.contains("envoy.filters.http.router"));
//! ```

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// The `http_filters` entry for the terminal router filter (added
/// automatically by [`listener`]).
pub fn router_filter() -> String {
    to_yaml(&json!({
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
        }
    }))
}

/// A `STATIC` cluster `name` with one HTTP/1.1 endpoint at `127.0.0.1:port`.
pub fn static_cluster(name: &str, port: u16) -> String {
    to_yaml(&json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{
                "lb_endpoints": [{
                    "endpoint": {
                        "address": {
                            "socket_address": { "address": "127.0.0.1", "port_value": port }
                        }
                    }
                }]
            }]
        }
    }))
}

/// The cluster for an [`crate::servers::EchoUpstream`] on `port`.
pub fn echo_cluster(name: &str, port: u16) -> String {
    static_cluster(name, port)
}

/// The cluster for a [`crate::servers::JwksServer`] on `port` (plain HTTP).
pub fn jwks_cluster(name: &str, port: u16) -> String {
    static_cluster(name, port)
}

/// An `envoy.filters.http.wasm` HTTP filter entry named `name`.
///
/// `plugin_config_json` is passed to the plugin verbatim as a
/// `google.protobuf.StringValue` (what `proxy_on_configure` reads).
/// Uses the V8 runtime, loads `wasm_path` from disk, and is fail-closed
/// (`fail_open: false`).
pub fn wasm_filter(
    name: &str,
    root_id: &str,
    wasm_path: &Path,
    plugin_config_json: &str,
    vm_id: &str,
) -> String {
    to_yaml(&json!({
        "name": name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": root_id,
                "vm_config": {
                    "vm_id": vm_id,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm_path.to_string_lossy() } }
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin_config_json
                },
                "fail_open": false
            }
        }
    }))
}

/// Where native `jwt_authn` gets its keys.
#[derive(Debug, Clone, PartialEq)]
pub enum JwksSource {
    /// `local_jwks.inline_string`: the JWKS document itself.
    Inline(Value),
    /// `remote_jwks` fetched over plain HTTP from `cluster` (see
    /// [`jwks_cluster`]) at `http://jwks.test/<path…>`.
    Remote {
        /// Cluster name to fetch through.
        cluster: String,
        /// How long Envoy caches the fetched JWKS (`cache_duration`).
        cache_duration: Duration,
    },
}

impl JwksSource {
    /// A remote source through `cluster`, cached for 5 minutes.
    pub fn remote(cluster: &str) -> JwksSource {
        JwksSource::Remote {
            cluster: cluster.to_string(),
            cache_duration: Duration::from_secs(300),
        }
    }
}

/// Name of the provider configured by [`native_jwt_authn`].
pub const NATIVE_PROVIDER: &str = "testkit_provider";

/// An `envoy.filters.http.jwt_authn` HTTP filter entry: one provider
/// ([`NATIVE_PROVIDER`]) with `issuer`, `audiences`, `forward: true`
/// (the `Authorization` header reaches the upstream), claim `org_id` copied
/// to header `x-org-id`, `clock_skew_seconds: 60`, and a rule requiring it
/// for every path (prefix `/`).
pub fn native_jwt_authn(issuer: &str, audiences: &[&str], jwks: &JwksSource) -> String {
    let mut provider = json!({
        "issuer": issuer,
        "audiences": audiences,
        "forward": true,
        "clock_skew_seconds": 60,
        "claim_to_headers": [{ "header_name": "x-org-id", "claim_name": "org_id" }]
    });
    provider[match jwks {
        JwksSource::Inline(_) => "local_jwks",
        JwksSource::Remote { .. } => "remote_jwks",
    }] = match jwks {
        JwksSource::Inline(doc) => json!({ "inline_string": doc.to_string() }),
        JwksSource::Remote {
            cluster,
            cache_duration,
        } => json!({
            "http_uri": {
                "uri": "http://jwks.test/.well-known/jwks.json",
                "cluster": cluster,
                "timeout": "5s"
            },
            "cache_duration": duration(*cache_duration)
        }),
    };
    to_yaml(&json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": { NATIVE_PROVIDER: provider },
            "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": NATIVE_PROVIDER } }]
        }
    }))
}

/// A listener `name` on `127.0.0.1:0` with an HTTP connection manager
/// whose filter chain is `http_filters` followed by the router, routing
/// everything (any host, prefix `/`) to `route_cluster`.
///
/// The HCM's `stat_prefix` is `name`, so its stats read
/// `http.<name>.…`.
pub fn listener(name: &str, http_filters: &[String], route_cluster: &str) -> String {
    listener_with_route(
        name,
        http_filters,
        json!({ "route": { "cluster": route_cluster } }),
    )
}

/// A listener like [`listener`] whose route answers itself (`direct_response` 200 "ok"),
/// so load tests measure Envoy and the filters, not an upstream.
pub fn direct_listener(name: &str, http_filters: &[String]) -> String {
    listener_with_route(
        name,
        http_filters,
        json!({ "direct_response": { "status": 200, "body": { "inline_string": "ok" } } }),
    )
}

/// A listener like [`listener`] that routes to the cluster named by the request header
/// `header` (Envoy's `cluster_header`), as the edge routes on `x-data-plane`.
pub fn header_routed_listener(name: &str, http_filters: &[String], header: &str) -> String {
    listener_with_route(
        name,
        http_filters,
        json!({ "route": { "cluster_header": header } }),
    )
}

/// The listener builder all three use: `action` is the route's action (`route` or
/// `direct_response`), merged next to the catch-all match.
fn listener_with_route(name: &str, http_filters: &[String], action: Value) -> String {
    let mut route = json!({ "match": { "prefix": "/" } });
    if let (Some(r), Some(a)) = (route.as_object_mut(), action.as_object()) {
        r.extend(a.clone());
    }
    let mut filters = String::new();
    for f in http_filters.iter().cloned().chain([router_filter()]) {
        filters.push_str(&list_item(&f, 6));
    }
    let hcm = to_yaml(&json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "codec_type": "AUTO",
            "route_config": {
                "name": format!("{name}_routes"),
                "virtual_hosts": [{
                    "name": "all",
                    "domains": ["*"],
                    "routes": [route]
                }]
            }
        }
    }));
    let mut out = to_yaml(&json!({
        "name": name,
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } }
    }));
    out.push_str("filter_chains:\n- filters:\n");
    let mut hcm_item = list_item(&hcm, 2);
    // Append `http_filters` inside the HCM's typed_config (indent 4 + 2).
    hcm_item.push_str("      http_filters:\n");
    hcm_item.push_str(&filters);
    out.push_str(&hcm_item);
    out
}

/// The complete bootstrap: admin on `127.0.0.1:0` plus the given static
/// listeners and clusters.
pub fn bootstrap(listeners: &[String], clusters: &[String]) -> String {
    let mut out = String::from(
        "admin:\n  address:\n    socket_address: { address: 127.0.0.1, port_value: 0 }\n\
         static_resources:\n",
    );
    for (key, items) in [("listeners", listeners), ("clusters", clusters)] {
        if items.is_empty() {
            let _ = writeln!(out, "  {key}: []");
            continue;
        }
        let _ = writeln!(out, "  {key}:");
        for item in items {
            out.push_str(&list_item(item, 2));
        }
    }
    out
}

/// Renders `item` (a YAML mapping at column 0, block or flow style) as a
/// block-sequence entry indented by `indent` spaces.
pub fn list_item(item: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for (i, line) in item.trim_end().lines().enumerate() {
        if i == 0 {
            let _ = writeln!(out, "{pad}- {line}");
        } else if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "{pad}  {line}");
        }
    }
    out
}

/// A protobuf `Duration` in its JSON/YAML form, e.g. `"1.5s"`.
pub fn duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}.{:09}s", d.as_secs(), d.subsec_nanos())
    }
}

/// Renders a JSON value as block-style YAML (mapping at column 0).
///
/// Strings are always double-quoted with JSON escapes (valid YAML), so no
/// value is ever re-typed by the YAML parser (`"0"`, `"true"`, `"@type"`).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    write_block(&mut out, value, 0);
    out
}

fn write_block(out: &mut String, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let _ = write!(out, "{pad}{}:", key(k));
                write_child(out, v, indent);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for v in items {
                let _ = write!(out, "{pad}-");
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        // First member on the dash line, the rest aligned under it.
                        let mut nested = String::new();
                        write_block(&mut nested, v, indent + 2);
                        out.push(' ');
                        out.push_str(nested.trim_start());
                    }
                    _ => write_child(out, v, indent),
                }
            }
        }
        scalar => {
            let _ = writeln!(out, "{pad}{}", flow(scalar));
        }
    }
}

/// Writes the value after `key:` / `-`: scalars inline, collections on
/// following lines.
fn write_child(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_block(out, v, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_block(out, v, indent + 2);
        }
        _ => {
            let _ = writeln!(out, " {}", flow(v));
        }
    }
}

fn flow(v: &Value) -> String {
    // JSON is valid YAML flow syntax (strings quoted, `{}`/`[]` empty).
    v.to_string()
}

fn key(k: &str) -> String {
    let plain = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if plain {
        k.to_string()
    } else {
        Value::String(k.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_rendering() {
        // Keys in sorted order, so the test holds with or without
        // serde_json's `preserve_order` feature.
        let v = json!({
            "@type": "t", "a": 1, "empty": {}, "list": [{"x": "1", "y": [true, null]}, "s"],
            "nested": {"k": "line\n\"q\""}, "none": []
        });
        let y = to_yaml(&v);
        let expected = "\
\"@type\": \"t\"
a: 1
empty: {}
list:
  - x: \"1\"
    y:
      - true
      - null
  - \"s\"
nested:
  k: \"line\\n\\\"q\\\"\"
none: []
";
        assert_eq!(y, expected);
    }

    #[test]
    fn list_item_indents() {
        assert_eq!(
            list_item("a: 1\nb:\n  c: 2\n", 2),
            "  - a: 1\n    b:\n      c: 2\n"
        );
        assert_eq!(duration(Duration::from_millis(1500)), "1.500000000s");
        assert_eq!(duration(Duration::from_secs(3)), "3s");
    }
}
