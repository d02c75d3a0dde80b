//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! Every replica serves traffic; only the leader writes status. The holder renews every
//! [`LeaseConfig::renew_every`]; a replica takes over a lease whose `renewTime` is older
//! than its `leaseDurationSeconds`. Updates carry the lease's `resourceVersion`, so two
//! replicas racing for an expired lease cannot both win (409 Conflict for the loser). A
//! leader that cannot renew steps down before its lease can expire elsewhere.
use crate::error::{Error, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::watch;

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease (default `sluice-leader`).
    pub name: String,
    /// Our identity (pod name or hostname, plus pid).
    pub identity: String,
    /// Lease duration (default 15 s).
    pub duration: Duration,
    /// Renew period (default 5 s).
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// The defaults: `sluice-leader`, 15 s, renew every 5 s.
    pub fn new(namespace: &str, identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.to_string(),
            name: "sluice-leader".to_string(),
            identity: identity.to_string(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

/// `POD_NAME` (or `HOSTNAME`, or `sluice`) plus `-<pid>`.
pub fn default_identity() -> String {
    let base = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "sluice".to_string());
    format!("{base}-{}", std::process::id())
}

fn micro(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Starts the election loop; the receiver says whether we lead.
pub fn spawn(client: kube::Client, cfg: LeaseConfig) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    tokio::spawn(async move {
        let mut last_renew: Option<tokio::time::Instant> = None;
        loop {
            let leading = *tx.borrow();
            let r = tokio::time::timeout(cfg.renew_every, try_acquire_or_renew(&api, &cfg)).await;
            let now_leading = match r {
                Ok(Ok(true)) => {
                    last_renew = Some(tokio::time::Instant::now());
                    true
                }
                Ok(Ok(false)) => false,
                other => {
                    if let Ok(Err(e)) = &other {
                        tracing::warn!(error = %e, lease = %cfg.name, "lease update failed");
                    } else {
                        tracing::warn!(lease = %cfg.name, "lease update timed out");
                    }
                    // Keep leading only while the lease we hold is surely still ours:
                    // step down one renew period before it could expire.
                    leading
                        && last_renew.is_some_and(|t| t.elapsed() + cfg.renew_every < cfg.duration)
                }
            };
            if now_leading != leading {
                if now_leading {
                    tracing::info!(identity = %cfg.identity, lease = %cfg.name, "became leader");
                } else {
                    tracing::info!(identity = %cfg.identity, lease = %cfg.name, "lost leadership");
                }
                tx.send_replace(now_leading);
            }
            let wait = if now_leading {
                cfg.renew_every
            } else {
                // Followers look a little more often, so failover stays within the lease
                // duration.
                cfg.renew_every.min(Duration::from_secs(2))
            };
            tokio::time::sleep(wait).await;
        }
    });
    rx
}

/// One round: create, renew or take over the lease. `Ok(true)` when we hold it.
async fn try_acquire_or_renew(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool> {
    let kube_err = |context: &'static str| {
        move |e: kube::Error| Error::Kube {
            context,
            source: Box::new(e),
        }
    };
    let now = Utc::now();
    let secs = i64::try_from(cfg.duration.as_secs()).unwrap_or(15);
    let current = api
        .get_opt(&cfg.name)
        .await
        .map_err(kube_err("reading the lease"))?;
    let Some(lease) = current else {
        let lease: Lease = serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": cfg.name, "namespace": cfg.namespace},
            "spec": {
                "holderIdentity": cfg.identity,
                "leaseDurationSeconds": secs,
                "acquireTime": micro(now),
                "renewTime": micro(now),
                "leaseTransitions": 0,
            }
        }))
        .map_err(|e| Error::Kube {
            context: "building the lease",
            source: Box::new(e),
        })?;
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(kube_err("creating the lease")(e)),
        };
    };
    let mut value = serde_json::to_value(&lease).map_err(|e| Error::Kube {
        context: "reading the lease",
        source: Box::new(e),
    })?;
    let spec = value.pointer("/spec").cloned().unwrap_or(Value::Null);
    let holder = spec
        .get("holderIdentity")
        .and_then(Value::as_str)
        .unwrap_or("");
    let held_secs = spec
        .get("leaseDurationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(secs);
    let renewed = spec
        .get("renewTime")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let expired = match renewed {
        Some(t) => now > t + chrono::Duration::seconds(held_secs),
        None => true,
    };
    let ours = holder == cfg.identity;
    if !ours && !holder.is_empty() && !expired {
        return Ok(false);
    }
    let transitions = spec
        .get("leaseTransitions")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut new_spec = json!({
        "holderIdentity": cfg.identity,
        "leaseDurationSeconds": secs,
        "renewTime": micro(now),
        "leaseTransitions": if ours { transitions } else { transitions + 1 },
        "acquireTime": if ours {
            spec.get("acquireTime").cloned().unwrap_or_else(|| Value::String(micro(now)))
        } else {
            Value::String(micro(now))
        },
    });
    if let (Some(obj), Some(m)) = (value.as_object_mut(), new_spec.as_object_mut()) {
        obj.insert("spec".into(), Value::Object(std::mem::take(m)));
    }
    let lease: Lease = serde_json::from_value(value).map_err(|e| Error::Kube {
        context: "building the lease",
        source: Box::new(e),
    })?;
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => {
            if !ours {
                tracing::info!(previous = %holder, "took over the lease");
            }
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(kube_err("updating the lease")(e)),
    }
}
