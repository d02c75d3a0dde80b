//! Schema checks for the Gateway API kinds, standing in for the OpenAPI validation a
//! real API server runs on custom resources: `spec` and `status` must deserialize into
//! the `gateway-api` crate's types (required fields present, types right). Unknown
//! fields are accepted (a real server would prune them), and no defaults are applied.

use serde::de::DeserializeOwned;
use serde_json::Value;

use gateway_api::apis::standard as std_api;

use crate::resources::{ResourceType, GATEWAY_GROUP};

fn check<T: DeserializeOwned>(obj: &Value, field: &str) -> Result<(), String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(v) => serde_json::from_value::<T>(v.clone())
            .map(|_| ())
            .map_err(|e| format!("{field}: Invalid value: {e}")),
    }
}

/// Checks `obj` against the schema of its kind; `Err` carries the message of a
/// `422 Invalid`.
pub fn validate(rt: &ResourceType, obj: &Value) -> Result<(), String> {
    if rt.group != GATEWAY_GROUP {
        return Ok(());
    }
    match rt.kind.as_str() {
        "GatewayClass" => {
            check::<std_api::gatewayclasses::GatewayClassSpec>(obj, "spec")?;
            check::<std_api::gatewayclasses::GatewayClassStatus>(obj, "status")
        }
        "Gateway" => {
            check::<std_api::gateways::GatewaySpec>(obj, "spec")?;
            check::<std_api::gateways::GatewayStatus>(obj, "status")
        }
        "HTTPRoute" => {
            check::<std_api::httproutes::HttpRouteSpec>(obj, "spec")?;
            check::<std_api::httproutes::HttpRouteStatus>(obj, "status")
        }
        "GRPCRoute" => {
            check::<std_api::grpcroutes::GrpcRouteSpec>(obj, "spec")?;
            check::<std_api::grpcroutes::GrpcRouteStatus>(obj, "status")
        }
        "ReferenceGrant" => check::<std_api::referencegrants::ReferenceGrantSpec>(obj, "spec"),
        "ListenerSet" => {
            check::<std_api::listenersets::ListenerSetSpec>(obj, "spec")?;
            check::<std_api::listenersets::ListenerSetStatus>(obj, "status")
        }
        "TLSRoute" => {
            check::<std_api::tlsroutes::TlsRouteSpec>(obj, "spec")?;
            check::<std_api::tlsroutes::TlsRouteStatus>(obj, "status")
        }
        "BackendTLSPolicy" => {
            check::<std_api::backendtlspolicies::BackendTlsPolicySpec>(obj, "spec")?;
            check::<std_api::backendtlspolicies::BackendTlsPolicyStatus>(obj, "status")
        }
        _ => Ok(()),
    }
}
