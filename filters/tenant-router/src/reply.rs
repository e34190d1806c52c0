//! The local replies: a status and a small JSON body `{"error":…,"reason":…}`.

use crate::route::Refusal;
use serde_json::json;

pub use bulkhead_filter_kit::Reply;

const JSON: (&str, &str) = ("content-type", "application/json");

fn reply(status: u32, extra: &[(&str, &str)], body: serde_json::Value) -> Reply {
    let mut headers = vec![(JSON.0.to_string(), JSON.1.to_string())];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// The reply to a refused request. Internal topology (data plane and cluster names)
/// stays out of the body; the log line has it.
pub fn refused(r: &Refusal, tenant_header: &str) -> Reply {
    let code = r.code();
    match r {
        Refusal::Unavailable => reply(
            503,
            &[("retry-after", "1")],
            json!({"error": code, "reason": "the tenant registry has not been loaded yet"}),
        ),
        Refusal::MissingTenant => reply(
            403,
            &[],
            json!({"error": code,
                   "reason": format!("no {tenant_header} header: the request carries no verified tenant")}),
        ),
        Refusal::UnknownTenant => reply(
            403,
            &[],
            json!({"error": code, "reason": "the tenant is not registered"}),
        ),
        Refusal::Suspended { reason } => reply(
            403,
            &[],
            json!({"error": code, "reason": reason.as_deref().unwrap_or("suspended")}),
        ),
        Refusal::ResidencyViolation { zone, .. } => reply(
            403,
            &[],
            json!({"error": code,
                   "reason": format!("the tenant's data must stay in residency zone `{zone}` \
                                      but its data plane is outside it; refused until the registry is corrected")}),
        ),
        Refusal::WrongRegion {
            zone,
            region,
            edge_url,
            edge_region,
            edge_zone,
        } => {
            let here = match edge_zone {
                Some(z) => format!("this edge is in region `{edge_region}` (zone `{z}`)"),
                None => format!("this edge's region `{edge_region}` is not in the registry"),
            };
            let go = match edge_url {
                Some(url) => format!("send requests to {url} (region `{region}`)"),
                None => format!("send requests to an edge in region `{region}`"),
            };
            reply(
                403,
                &[],
                json!({"error": code,
                       "reason": format!("the tenant's data must stay in residency zone `{zone}`; {here}: {go}"),
                       "region": region,
                       "edge_url": edge_url}),
            )
        }
    }
}

/// 503 before a valid configuration exists (Envoy fails the plugin closed first; this
/// is the belt to those braces).
pub fn not_configured() -> Reply {
    reply(
        503,
        &[],
        json!({"error": "not_configured", "reason": "the tenant-router has no valid configuration"}),
    )
}
