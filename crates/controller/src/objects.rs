//! `groupbinder_objects`: the AzureGroupBindings by their `Ready` condition, counted from the
//! watch's cache at each scrape (no state of its own to keep right): what the alerts on objects
//! not Ready, and on conflicts, read.

use groupbinder_api::conditions::{READY, reason_label};
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::kinds::Guarded;

/// `ready` is the condition's status (`Unknown` before the first status of the object's
/// generation, with reason `Pending`); `reason` one of the reasons the controller writes, or
/// `Other`, or `Undecodable` for an object the controller cannot read.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabels {
    ready: &'static str,
    reason: &'static str,
}

/// The collector, over the AzureGroupBinding cache.
#[derive(Debug)]
pub struct ObjectsByReady(pub Store<Guarded>);

impl Collector for ObjectsByReady {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let family = Family::<ReadyLabels, Gauge>::default();
        for object in self.0.state() {
            family.get_or_create(&labels(&object)).inc();
        }
        let metric = encoder.encode_descriptor(
            "objects",
            "AzureGroupBindings by their Ready condition: status and reason (Unknown/Pending before the first status of their generation)",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}

fn labels(object: &Guarded) -> ReadyLabels {
    let Ok(agb) = &object.0 else {
        return ReadyLabels {
            ready: "Unknown",
            reason: "Undecodable",
        };
    };
    let ready = agb
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
        .filter(|c| c.observed_generation == agb.metadata.generation);
    match ready {
        Some(c) => ReadyLabels {
            ready: match c.status.as_str() {
                "True" => "True",
                "False" => "False",
                _ => "Unknown",
            },
            reason: reason_label(&c.reason),
        },
        None => ReadyLabels {
            ready: "Unknown",
            reason: "Pending",
        },
    }
}
