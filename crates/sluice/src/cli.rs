//! Command line.

use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Sluice: a Kubernetes gateway for Gateway API resources and ingress-nginx Ingresses.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: controller and proxy in one process.
    Run(RunArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Serve the manifests found below this folder (`*.yaml`, `*.yml`, `*.json`) and
    /// keep watching it. Without it, Sluice uses the Kubernetes API.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,

    /// Address of the admin server (/status, /readyz, /healthz, /config, /metrics).
    #[arg(long, default_value = "127.0.0.1:9901", value_name = "HOST:PORT")]
    pub admin_addr: SocketAddr,

    /// GatewayClasses whose `spec.controllerName` equals this are Sluice's.
    #[arg(long, default_value = "sluice.dev/gateway-controller")]
    pub controller_name: String,

    /// Folder mode: Gateways without an IPAddress in `spec.addresses` get the next
    /// free address of this range.
    #[arg(long, default_value = "127.0.1.0/24", value_name = "CIDR")]
    pub gateway_address_pool: ipnet::IpNet,

    /// Cluster mode: watch the namespaced kinds in this namespace only (repeatable;
    /// default: every namespace).
    #[arg(long = "watch-namespace", value_name = "NAMESPACE")]
    pub watch_namespaces: Vec<String>,

    /// Cluster mode: namespace of the leader-election Lease (`sluice-leader`);
    /// default: `POD_NAMESPACE`, else `sluice-system`.
    #[arg(long, value_name = "NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Cluster mode: the address every Gateway without an IP in `spec.addresses`
    /// binds (shared by all of them; listeners on one port are merged by hostname),
    /// e.g. `0.0.0.0` in a pod. Without it, each Gateway gets an address of
    /// `--gateway-address-pool` as in folder mode.
    #[arg(long, value_name = "IP")]
    pub gateway_bind_address: Option<std::net::IpAddr>,

    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter (tracing `EnvFilter` syntax); `SLUICE_LOG` overrides it.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

impl RunArgs {
    pub fn settings(&self) -> anyhow::Result<sluice_controller::Settings> {
        if self.controller_name.trim().is_empty() {
            anyhow::bail!("--controller-name must not be empty");
        }
        Ok(sluice_controller::Settings {
            controller_name: self.controller_name.clone(),
            gateway_address_pool: self.gateway_address_pool,
        })
    }
}
