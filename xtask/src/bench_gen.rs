//! Manifest generation for the benches: a Gateway with one plain HTTP listener and
//! one HTTPS listener per TLS host, N HTTPRoutes (one host each, one file each), TLS
//! Secrets with self-signed EC P-256 certificates, a backend Service + EndpointSlice;
//! or N `networking.k8s.io/v1` Ingresses with `ingressClassName: sluice`.

use anyhow::Result;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509NameBuilder, X509};
use std::fmt::Write as _;
use std::path::Path;

/// Which routes are served over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// None: every route on the plain listener.
    None,
    /// Odd route indices on their own HTTPS listener (the issue's "half of them").
    Half,
    /// Every route on its own HTTPS listener.
    All,
}

impl Tls {
    pub fn is_tls(self, i: usize) -> bool {
        match self {
            Tls::None => false,
            Tls::Half => i % 2 == 1,
            Tls::All => true,
        }
    }
}

/// Where things listen and how many routes there are.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Gateway address (`spec.addresses`), also the Ingress listener address is not
    /// configurable here.
    pub addr: String,
    pub http_port: u16,
    pub https_port: u16,
    /// Backend (the fixed-200 nginx).
    pub backend_port: u16,
    pub routes: usize,
    pub tls: Tls,
}

/// Host of route `i`.
pub fn host(i: usize) -> String {
    format!("r{i}.bench.test")
}

/// Host of the `k`th route added by the reload bench.
pub fn new_host(k: usize) -> String {
    format!("new{k}.bench.test")
}

/// File of route `i` inside the folder.
pub fn route_file(dir: &Path, i: usize) -> std::path::PathBuf {
    dir.join("routes").join(format!("route-{i:05}.yaml"))
}

const NS: &str = "bench";

/// Writes the whole folder: gateway.yaml, backend.yaml and routes/route-NNNNN.yaml.
pub fn write_folder(dir: &Path, l: &Layout) -> Result<()> {
    std::fs::create_dir_all(dir.join("routes"))?;
    std::fs::write(dir.join("backend.yaml"), backend_yaml(l.backend_port))?;
    std::fs::write(dir.join("gateway.yaml"), gateway_yaml(l))?;
    let key = EcKey::generate(EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?.as_ref())?;
    let key = PKey::from_ec_key(key)?;
    let key_pem = String::from_utf8(key.private_key_to_pem_pkcs8()?)?;
    for i in 0..l.routes {
        let mut text = route_yaml(
            &format!("r{i}"),
            &host(i),
            l.tls.is_tls(i).then(|| format!("tls-{i}")),
        );
        if l.tls.is_tls(i) {
            let cert = self_signed(&host(i), &key)?;
            text.push_str("---\n");
            text.push_str(&secret_yaml(&format!("cert-{i}"), &cert, &key_pem));
        }
        std::fs::write(route_file(dir, i), text)?;
    }
    Ok(())
}

/// A self-signed certificate for `host` (EC P-256: RSA key generation for 10,000
/// hosts would take minutes; one key is shared by all hosts of a run).
fn self_signed(host: &str, key: &PKey<openssl::pkey::Private>) -> Result<String> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, host)?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(64, MsbOption::MAYBE_ZERO, false)?;
    b.set_serial_number(serial.to_asn1_integer()?.as_ref())?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(key)?;
    b.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    b.set_not_after(Asn1Time::days_from_now(30)?.as_ref())?;
    let san = SubjectAlternativeName::new()
        .dns(host)
        .build(&b.x509v3_context(None, None))?;
    b.append_extension(san)?;
    b.sign(key, MessageDigest::sha256())?;
    Ok(String::from_utf8(b.build().to_pem()?)?)
}

fn indent(pem: &str, by: &str) -> String {
    pem.lines().map(|l| format!("{by}{l}\n")).collect()
}

fn secret_yaml(name: &str, cert: &str, key: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {NS}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(cert, "    "),
        indent(key, "    ")
    )
}

pub fn backend_yaml(port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: {NS}
---
apiVersion: v1
kind: Service
metadata:
  name: backend
  namespace: {NS}
spec:
  ports:
    - name: http
      port: 80
      targetPort: {port}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: backend-1
  namespace: {NS}
  labels:
    kubernetes.io/service-name: backend
addressType: IPv4
ports:
  - name: http
    port: {port}
endpoints:
  - addresses: ["127.0.0.1"]
    conditions:
      ready: true
"#
    )
}

/// The GatewayClass and Gateway: listener `http` (no hostname) and one HTTPS listener
/// `tls-<i>` per TLS route, each with its own certificate. (Gateway API's CRD caps a
/// Gateway at 64 listeners; folder mode does not, and this is the shape ingress-nginx
/// renders for TLS Ingresses: one server block with its own certificate per host.)
pub fn gateway_yaml(l: &Layout) -> String {
    let mut s = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: sluice
spec:
  controllerName: sluice.dev/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: bench
  namespace: {NS}
spec:
  gatewayClassName: sluice
  addresses:
    - type: IPAddress
      value: {addr}
  listeners:
    - name: http
      protocol: HTTP
      port: {port}
      allowedRoutes:
        namespaces:
          from: Same
"#,
        addr = l.addr,
        port = l.http_port
    );
    for i in (0..l.routes).filter(|i| l.tls.is_tls(*i)) {
        let _ = write!(
            s,
            "    - name: tls-{i}\n      protocol: HTTPS\n      port: {}\n      hostname: {}\n      tls:\n        mode: Terminate\n        certificateRefs:\n          - name: cert-{i}\n",
            l.https_port,
            host(i)
        );
    }
    s
}

/// One HTTPRoute: `host` → backend, attached to listener `section` (default `http`).
pub fn route_yaml(name: &str, host: &str, section: Option<String>) -> String {
    let section = section.unwrap_or_else(|| "http".to_string());
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {name}
  namespace: {NS}
spec:
  parentRefs:
    - name: bench
      sectionName: {section}
  hostnames:
    - {host}
  rules:
    - matches:
        - path:
            type: PathPrefix
            value: /
      backendRefs:
        - name: backend
          port: 80
"#
    )
}

/// `n` Ingresses (one host each, one file each) with `ingressClassName: sluice`, plus
/// the IngressClass and the backend.
pub fn write_ingress_folder(dir: &Path, n: usize, backend_port: u16) -> Result<()> {
    std::fs::create_dir_all(dir.join("routes"))?;
    std::fs::write(dir.join("backend.yaml"), backend_yaml(backend_port))?;
    std::fs::write(
        dir.join("ingressclass.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: sluice\nspec:\n  controller: sluice.dev/ingress-controller\n",
    )?;
    for i in 0..n {
        let text = format!(
            r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: r{i}
  namespace: {NS}
spec:
  ingressClassName: sluice
  rules:
    - host: {host}
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: backend
                port:
                  number: 80
"#,
            host = host(i)
        );
        std::fs::write(route_file(dir, i), text)?;
    }
    Ok(())
}
