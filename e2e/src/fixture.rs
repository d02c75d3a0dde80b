//! A test's world: a temp manifests folder holding a Namespace, the GatewayClass and
//! one Gateway `gw` at a loopback address of the test's own, plus echo backends.

use crate::echo::EchoServer;
use crate::manifests::{
    docs, mk_gateway, mk_gateway_class, mk_namespace, mk_service_with_endpoints, write_atomic,
    GATEWAY_CLASS, SERVICE_PORT,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// Name of the Gateway [`Fixture::new`] writes.
pub const GATEWAY: &str = "gw";

pub struct Fixture {
    dir: TempDir,
    pub ns: String,
    pub addr: IpAddr,
    pub port: u16,
}

impl Fixture {
    /// A folder with `base.yaml` (Namespace `ns`, GatewayClass, Gateway `gw` at `addr`
    /// with listener `http` on `port`).
    pub fn new(ns: &str, addr: IpAddr, port: u16) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("sluice-e2e-")
            .tempdir()
            .expect("creating a temp folder");
        let fx = Fixture {
            dir,
            ns: ns.to_owned(),
            addr,
            port,
        };
        fx.write(
            "base.yaml",
            &docs(&[mk_namespace(ns), mk_gateway_class(GATEWAY_CLASS)]),
        );
        fx.write("gateway.yaml", &mk_gateway(ns, GATEWAY, addr, port));
        fx
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Writes `file` in the folder atomically.
    pub fn write(&self, file: &str, contents: &str) {
        write_atomic(&self.path(file), contents);
    }

    pub fn remove(&self, file: &str) {
        let p = self.path(file);
        std::fs::remove_file(&p).unwrap_or_else(|e| panic!("removing {}: {e}", p.display()));
    }

    /// The Gateway's listener `http`.
    pub fn gateway_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }

    /// The Host header a client sends to the Gateway without a hostname of its own.
    pub fn authority(&self) -> String {
        self.gateway_addr().to_string()
    }

    /// Starts an echo server (pod `<name>-0`) and writes `svc-<name>.yaml`: Service
    /// `name` (port [`SERVICE_PORT`]) with the echo server as its one endpoint.
    pub async fn backend(&self, name: &str) -> EchoServer {
        let echo = EchoServer::start(&self.ns, name, &format!("{name}-0")).await;
        self.write(
            &format!("svc-{name}.yaml"),
            &mk_service_with_endpoints(&self.ns, name, SERVICE_PORT, echo.port()),
        );
        echo
    }
}

/// `127.77.<file>.<test>`: the loopback address of one test (see the crate docs).
pub fn test_addr(file: u8, test: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 77, file, test))
}
