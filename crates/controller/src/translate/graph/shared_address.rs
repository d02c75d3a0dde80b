//! Listeners of *different* Gateways that end up on the same address and port.
//!
//! In folder mode each Gateway normally has an address of its own, but two Gateways
//! can name the same one in `spec.addresses`. Their listeners then share one socket:
//! that works when their hostnames differ (the proxy selects the server by hostname),
//! and cannot work when two of them claim the same hostname, or speak different
//! protocols on the port. The older Gateway (by `creationTimestamp`, then
//! namespace/name) keeps the port; the newer one's listener is marked `Conflicted`
//! (HostnameConflict or ProtocolConflict), not `Programmed`, and is not served, so
//! that the status never claims traffic that goes elsewhere.

use super::{Graph, ListenerProtocol};
use crate::notice::{Notice, ObjectRef};
use crate::status::conditions as c;
use crate::store::{ObjectKey, Store};
use sluice_ir as ir;
use std::collections::BTreeMap;
use std::net::IpAddr;

struct Claim {
    gateway: ObjectKey,
    listener: String,
    protocol: ListenerProtocol,
    hostname: Option<ir::HostMatch>,
}

/// Marks the listeners that lose a shared address and port (see the module doc).
pub fn detect(store: &Store, g: &mut Graph) {
    let mut order: Vec<(Option<i128>, ObjectKey)> = g
        .gateways
        .keys()
        .map(|k| {
            let created = store
                .gateways
                .get(k)
                .and_then(|gw| gw.metadata.creation_timestamp.as_ref())
                .map(|t| t.0.as_nanosecond());
            (created, k.clone())
        })
        .collect();
    // Oldest first; a Gateway without a timestamp sorts after those with one.
    order.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.1.cmp(&b.1)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    let mut claims: BTreeMap<(IpAddr, u16), Vec<Claim>> = BTreeMap::new();
    for (_, key) in order {
        let Some(gw) = g.gateways.get_mut(&key) else {
            continue;
        };
        let Some(address) = gw.address else {
            continue;
        };
        let mut lost_one = false;
        for l in gw.listeners.iter_mut().filter(|l| l.attachable) {
            let claimed = claims.entry((address, l.port)).or_default();
            let loser = claimed.iter().find(|other| {
                other.gateway != key
                    && (other.protocol != l.protocol || other.hostname == l.hostname)
            });
            match loser {
                Some(other) => {
                    let who = format!(
                        "{} of Gateway {}/{}",
                        other.listener, other.gateway.namespace, other.gateway.name
                    );
                    let cond = if other.protocol != l.protocol {
                        c::listener_protocol_conflict(&who)
                    } else {
                        c::listener_hostname_conflict(&who)
                    };
                    g.notices.push(Notice::warning(
                        ObjectRef::new("Gateway", &key.namespace, &key.name),
                        Some(format!("spec.listeners[{}]", l.name)),
                        format!(
                            "Listener {} shares {address}:{} with listener {who} and conflicts with it; it is not served.",
                            l.name, l.port
                        ),
                    ));
                    l.attachable = false;
                    l.programmable = false;
                    lost_one = true;
                    for existing in &mut l.conditions {
                        if existing.type_ == c::types::CONFLICTED {
                            *existing = cond.clone();
                        } else if existing.type_ == c::types::PROGRAMMED && existing.status {
                            *existing = c::listener_not_programmed(
                                "Listener conflicts with a listener of another Gateway on the same address and port.",
                            );
                        }
                    }
                }
                None => claimed.push(Claim {
                    gateway: key.clone(),
                    listener: l.name.clone(),
                    protocol: l.protocol.clone(),
                    hostname: l.hostname.clone(),
                }),
            }
        }
        // A Gateway left with nothing to serve is not Programmed.
        if lost_one && !gw.listeners.iter().any(|l| l.programmable) {
            for cond in &mut gw.conditions {
                if cond.type_ == c::types::PROGRAMMED && cond.status {
                    *cond = c::gateway_not_programmed(
                        "No listener can be served: each conflicts with a listener of another Gateway on the same address.",
                    );
                }
            }
        }
    }
}
