//! The resource types the emulator serves. Adding a type is one row here; it then gets
//! the generic get/list/watch/create/update/patch/apply/delete behaviour.

use serde_json::Value;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kind {
    pub plural: &'static str,
    pub kind: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub namespaced: bool,
    /// A PUT without `metadata.resourceVersion` overwrites instead of failing with 422.
    pub unconditional_update: bool,
    /// A PUT of a missing object creates it instead of answering 404.
    pub create_on_update: bool,
}

pub static SECRETS: Kind = Kind {
    plural: "secrets",
    kind: "Secret",
    group: "",
    version: "v1",
    namespaced: true,
    unconditional_update: true,
    create_on_update: false,
};

pub static NAMESPACES: Kind = Kind {
    plural: "namespaces",
    kind: "Namespace",
    group: "",
    version: "v1",
    namespaced: false,
    unconditional_update: true,
    create_on_update: false,
};

static LEASES: Kind = Kind {
    plural: "leases",
    kind: "Lease",
    group: "coordination.k8s.io",
    version: "v1",
    namespaced: true,
    unconditional_update: false,
    create_on_update: true,
};

static CORE_EVENTS: Kind = Kind {
    plural: "events",
    kind: "Event",
    group: "",
    version: "v1",
    namespaced: true,
    unconditional_update: true,
    create_on_update: true,
};

static EVENTS: Kind = Kind {
    plural: "events",
    kind: "Event",
    group: "events.k8s.io",
    version: "v1",
    namespaced: true,
    unconditional_update: true,
    create_on_update: true,
};

pub static KINDS: [&Kind; 5] = [&SECRETS, &NAMESPACES, &LEASES, &CORE_EVENTS, &EVENTS];

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `secrets`, `leases.coordination.k8s.io`: how messages name the resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
        KINDS
            .iter()
            .copied()
            .find(|k| k.group == group && k.version == version && k.plural == plural)
    }

    /// The kinds a test helper name refers to: `Secret`, `secrets`, `Lease`... ("Event"
    /// names both event APIs).
    pub fn named(name: &str) -> Vec<&'static Kind> {
        KINDS
            .iter()
            .copied()
            .filter(|k| k.kind.eq_ignore_ascii_case(name) || k.plural.eq_ignore_ascii_case(name))
            .collect()
    }

    /// The kind of a whole object from its `kind` and (optional) `apiVersion`.
    pub fn of_object(object: &Value) -> Option<&'static Kind> {
        let kind = object.get("kind")?.as_str()?;
        let api_version = object.get("apiVersion").and_then(Value::as_str);
        KINDS
            .iter()
            .copied()
            .find(|k| k.kind == kind && api_version.is_none_or(|v| v == k.api_version()))
    }

    pub fn is_event(&self) -> bool {
        self.kind == "Event"
    }
}
