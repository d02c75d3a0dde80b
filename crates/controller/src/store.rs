//! The Store: every object the controller knows, per kind, in deterministic order.
//!
//! Objects enter as JSON values (from a source), get the API server's defaults from the
//! [`crate::pipeline::Pipeline`], and are converted into typed objects here.
use crate::k8s::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Namespace and name of an object; the namespace is empty for cluster-scoped kinds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ObjectKey {
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// A key.
    pub fn new(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// The kinds the Store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// core/v1 Namespace.
    Namespace,
    /// core/v1 Service.
    Service,
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice,
    /// core/v1 Secret.
    Secret,
    /// core/v1 ConfigMap.
    ConfigMap,
    /// gateway.networking.k8s.io GatewayClass.
    GatewayClass,
    /// gateway.networking.k8s.io Gateway.
    Gateway,
    /// gateway.networking.k8s.io HTTPRoute.
    HttpRoute,
    /// gateway.networking.k8s.io TLSRoute (v1).
    TlsRoute,
    /// gateway.networking.k8s.io ReferenceGrant.
    ReferenceGrant,
    /// gateway.networking.k8s.io BackendTLSPolicy.
    BackendTlsPolicy,
    /// networking.k8s.io/v1 Ingress.
    Ingress,
    /// networking.k8s.io/v1 IngressClass.
    IngressClass,
}

impl Kind {
    /// Identifies a kind from `apiVersion` and `kind`; `None` for kinds the Store does
    /// not hold.
    pub fn identify(api_version: &str, kind: &str) -> Option<Kind> {
        let group = match api_version.rsplit_once('/') {
            Some((group, _version)) => group,
            None => "",
        };
        let k = match (group, kind) {
            ("", "Namespace") => Kind::Namespace,
            ("", "Service") => Kind::Service,
            ("", "Secret") => Kind::Secret,
            ("", "ConfigMap") => Kind::ConfigMap,
            ("discovery.k8s.io", "EndpointSlice") => Kind::EndpointSlice,
            (GATEWAY_GROUP, "GatewayClass") => Kind::GatewayClass,
            (GATEWAY_GROUP, "Gateway") => Kind::Gateway,
            (GATEWAY_GROUP, "HTTPRoute") => Kind::HttpRoute,
            (GATEWAY_GROUP, "TLSRoute") => Kind::TlsRoute,
            (GATEWAY_GROUP, "ReferenceGrant") => Kind::ReferenceGrant,
            (GATEWAY_GROUP, "BackendTLSPolicy") => Kind::BackendTlsPolicy,
            ("networking.k8s.io", "Ingress") => Kind::Ingress,
            ("networking.k8s.io", "IngressClass") => Kind::IngressClass,
            _ => return None,
        };
        Some(k)
    }

    /// The kind as written in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::GatewayClass => "GatewayClass",
            Kind::Gateway => "Gateway",
            Kind::HttpRoute => "HTTPRoute",
            Kind::TlsRoute => "TLSRoute",
            Kind::ReferenceGrant => "ReferenceGrant",
            Kind::BackendTlsPolicy => "BackendTLSPolicy",
            Kind::Ingress => "Ingress",
            Kind::IngressClass => "IngressClass",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Kind::Namespace | Kind::GatewayClass | Kind::IngressClass
        )
    }

    /// The `apiVersion` the typed struct deserializes (Gateway API objects written as
    /// `v1beta1` are read with the `v1` struct: the versions share a schema).
    fn typed_api_version(self) -> Option<&'static str> {
        match self {
            Kind::GatewayClass
            | Kind::Gateway
            | Kind::HttpRoute
            | Kind::TlsRoute
            | Kind::ReferenceGrant
            | Kind::BackendTlsPolicy => Some("gateway.networking.k8s.io/v1"),
            _ => None,
        }
    }
}

/// A typed object.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum Object {
    Namespace(Namespace),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Secret(Secret),
    ConfigMap(ConfigMap),
    GatewayClass(GatewayClass),
    Gateway(Gateway),
    HttpRoute(HttpRoute),
    TlsRoute(TlsRoute),
    ReferenceGrant(ReferenceGrant),
    BackendTlsPolicy(BackendTlsPolicy),
    Ingress(Ingress),
    IngressClass(IngressClass),
}

impl Object {
    /// Converts a JSON object of a known kind into its typed form; the error is the
    /// deserializer's message.
    pub fn from_value(kind: Kind, mut value: Value) -> Result<Object, String> {
        if let (Some(v), Some(obj)) = (kind.typed_api_version(), value.as_object_mut()) {
            obj.insert("apiVersion".to_string(), Value::String(v.to_string()));
        }
        fn de<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
            serde_json::from_value(v).map_err(|e| e.to_string())
        }
        Ok(match kind {
            Kind::Namespace => Object::Namespace(de(value)?),
            Kind::Service => Object::Service(de(value)?),
            Kind::EndpointSlice => Object::EndpointSlice(de(value)?),
            Kind::Secret => Object::Secret(de(value)?),
            Kind::ConfigMap => Object::ConfigMap(de(value)?),
            Kind::GatewayClass => Object::GatewayClass(de(value)?),
            Kind::Gateway => Object::Gateway(de(value)?),
            Kind::HttpRoute => Object::HttpRoute(de(value)?),
            Kind::TlsRoute => Object::TlsRoute(de(value)?),
            Kind::ReferenceGrant => Object::ReferenceGrant(de(value)?),
            Kind::BackendTlsPolicy => Object::BackendTlsPolicy(de(value)?),
            Kind::Ingress => Object::Ingress(de(value)?),
            Kind::IngressClass => Object::IngressClass(de(value)?),
        })
    }
}

/// Every object the controller knows, per kind, keyed by namespace/name (namespace
/// empty for cluster-scoped kinds). `BTreeMap`s, so iteration is deterministic.
#[derive(Debug, Clone, Default)]
pub struct Store {
    /// Namespaces, keyed with an empty namespace.
    pub namespaces: BTreeMap<ObjectKey, Arc<Namespace>>,
    /// Services.
    pub services: BTreeMap<ObjectKey, Arc<Service>>,
    /// EndpointSlices.
    pub endpoint_slices: BTreeMap<ObjectKey, Arc<EndpointSlice>>,
    /// Secrets.
    pub secrets: BTreeMap<ObjectKey, Arc<Secret>>,
    /// ConfigMaps (kept for later use).
    pub config_maps: BTreeMap<ObjectKey, Arc<ConfigMap>>,
    /// GatewayClasses, keyed with an empty namespace.
    pub gateway_classes: BTreeMap<ObjectKey, Arc<GatewayClass>>,
    /// Gateways.
    pub gateways: BTreeMap<ObjectKey, Arc<Gateway>>,
    /// HTTPRoutes.
    pub http_routes: BTreeMap<ObjectKey, Arc<HttpRoute>>,
    /// TLSRoutes.
    pub tls_routes: BTreeMap<ObjectKey, Arc<TlsRoute>>,
    /// ReferenceGrants.
    pub reference_grants: BTreeMap<ObjectKey, Arc<ReferenceGrant>>,
    /// BackendTLSPolicies.
    pub backend_tls_policies: BTreeMap<ObjectKey, Arc<BackendTlsPolicy>>,
    /// Ingresses (kept for a later issue).
    pub ingresses: BTreeMap<ObjectKey, Arc<Ingress>>,
    /// IngressClasses (kept for a later issue).
    pub ingress_classes: BTreeMap<ObjectKey, Arc<IngressClass>>,
    /// Address of each Gateway, assigned by the pipeline (state, not translation): the
    /// first IP address of `spec.addresses`, else one of the pool.
    pub gateway_addresses: BTreeMap<ObjectKey, IpAddr>,
}

fn key_of(meta: &ObjectMeta) -> ObjectKey {
    ObjectKey {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
    }
}

impl Store {
    /// Adds (or replaces) an object.
    pub fn insert(&mut self, object: Object) {
        match object {
            Object::Namespace(o) => {
                let mut key = key_of(&o.metadata);
                key.namespace.clear();
                self.namespaces.insert(key, Arc::new(o));
            }
            Object::Service(o) => {
                self.services.insert(key_of(&o.metadata), Arc::new(o));
            }
            Object::EndpointSlice(o) => {
                self.endpoint_slices
                    .insert(key_of(&o.metadata), Arc::new(o));
            }
            Object::Secret(o) => {
                self.secrets.insert(key_of(&o.metadata), Arc::new(o));
            }
            Object::ConfigMap(o) => {
                self.config_maps.insert(key_of(&o.metadata), Arc::new(o));
            }
            Object::GatewayClass(o) => {
                let mut key = key_of(&o.metadata);
                key.namespace.clear();
                self.gateway_classes.insert(key, Arc::new(o));
            }
            Object::Gateway(o) => {
                self.gateways.insert(key_of(&o.metadata), Arc::new(o));
            }
            Object::HttpRoute(o) => {
                self.http_routes.insert(key_of(&o.metadata), Arc::new(o));
            }
            Object::TlsRoute(o) => {
                self.tls_routes.insert(key_of(&o.metadata), Arc::new(o));
            }
            Object::ReferenceGrant(o) => {
                self.reference_grants
                    .insert(key_of(&o.metadata), Arc::new(o));
            }
            Object::BackendTlsPolicy(o) => {
                self.backend_tls_policies
                    .insert(key_of(&o.metadata), Arc::new(o));
            }
            Object::Ingress(o) => {
                self.ingresses.insert(key_of(&o.metadata), Arc::new(o));
            }
            Object::IngressClass(o) => {
                let mut key = key_of(&o.metadata);
                key.namespace.clear();
                self.ingress_classes.insert(key, Arc::new(o));
            }
        }
    }

    /// Labels of a namespace. A namespace that objects use but nobody defined counts as
    /// existing, with only the `kubernetes.io/metadata.name` label.
    pub fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        let mut labels = self
            .namespaces
            .get(&ObjectKey::new("", namespace))
            .and_then(|ns| ns.metadata.labels.clone())
            .unwrap_or_default();
        labels.insert(NAMESPACE_NAME_LABEL.to_string(), namespace.to_string());
        labels
    }
}
