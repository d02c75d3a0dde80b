//! Controller settings (plain data, from the CLI).
use ipnet::IpNet;

/// What the controller needs to know that is not in the objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// GatewayClasses whose `spec.controllerName` equals this are ours.
    /// Default `sluice.dev/gateway-controller`.
    pub controller_name: String,
    /// Folder mode: pool Gateways get an address from when their `spec.addresses` holds
    /// no IP address. The network address is skipped. Default `127.0.1.0/24`.
    pub gateway_address_pool: IpNet,
}

/// The default `controllerName`.
pub const DEFAULT_CONTROLLER_NAME: &str = "sluice.dev/gateway-controller";

impl Default for Settings {
    fn default() -> Self {
        Settings {
            controller_name: DEFAULT_CONTROLLER_NAME.to_string(),
            gateway_address_pool: "127.0.1.0/24".parse().expect("valid literal network"),
        }
    }
}
