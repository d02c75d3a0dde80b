//! Facade over the pinned Kubernetes and Gateway API types, so version pins live here.
pub use gateway_api::apis::experimental::gatewayclasses::GatewayClass;
pub use gateway_api::apis::experimental::gateways::Gateway;
pub use gateway_api::apis::experimental::httproutes::HttpRoute;
pub use gateway_api::apis::experimental::referencegrants::ReferenceGrant;
pub use gateway_api::apis::standard::backendtlspolicies::BackendTlsPolicy;
pub use gateway_api::apis::standard::tlsroutes::TlsRoute;
pub use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
pub use k8s_openapi::api::discovery::v1::EndpointSlice;
pub use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// Label EndpointSlices carry to name their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label the API server puts on every Namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
