//! The Kubernetes side: the client every Kubernetes call goes through (`client`) and
//! leader election on a Lease (`leader`). Nothing here knows what is written: the
//! Secret sink (`sink::kube_secret`) and the tenants controller use this.

mod client;
pub mod leader;

pub use client::{
    can_i, describe, is_timeout, own_namespace, reference, Kube, KubeSetupError, PodRef,
    DELETION_ANNOTATION, FIELD_MANAGER, HASH_ANNOTATION, INSTANCE_ANNOTATION, MANAGED_BY,
    MANAGED_BY_LABEL, REQUEST_TIMEOUT, SOURCE_ANNOTATION,
};
