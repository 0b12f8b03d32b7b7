//! Routing and the resource handlers. Handlers run synchronously under the state lock,
//! so each request sees and leaves a consistent state; only watches stream afterwards.

use super::fields;
use super::kinds::{Kind, NAMESPACES, SECRETS};
use super::state::{now, Key, State};
use super::status::{ApiError, Cause};
use super::validate;
use super::watch::{self, Filter, WatchPlan};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

const APPLY: &str = "application/apply-patch+yaml";
const MERGE: &str = "application/merge-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";

#[derive(Debug, Clone)]
pub struct Target {
    pub kind: &'static Kind,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Route {
    Version,
    AccessReview,
    Resource(Target),
    Unknown,
}

/// One HTTP request, decoded.
pub struct Call {
    pub method: String,
    pub route: Route,
    pub params: Vec<(String, String)>,
    pub content_type: String,
    pub user_agent: String,
    pub body: Vec<u8>,
    /// As sent, for the request log.
    pub path: String,
    pub query: String,
}

pub enum Reply {
    Json(u16, Value),
    Watch(WatchPlan),
}

pub fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Route::Version,
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Route::Unknown,
    };
    if group == "authorization.k8s.io" && version == "v1" && rest == ["selfsubjectaccessreviews"] {
        return Route::AccessReview;
    }
    let (namespace, plural, name) = match rest {
        ["namespaces", ns, plural, tail @ ..] if tail.len() <= 1 => {
            (Some(*ns), *plural, tail.first().copied())
        }
        [plural] => (None, *plural, None),
        [plural, name] => (None, *plural, Some(*name)),
        _ => return Route::Unknown,
    };
    match Kind::by_path(group, version, plural) {
        // Namespaced kinds also list/watch across namespaces; nothing else mixes scopes.
        Some(kind)
            if kind.namespaced == namespace.is_some() || (kind.namespaced && name.is_none()) =>
        {
            Route::Resource(Target {
                kind,
                namespace: namespace.map(str::to_string),
                name: name.map(str::to_string),
            })
        }
        _ => Route::Unknown,
    }
}

impl Call {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// kube sends `dryRun=All` in the query, and for deletes in the body too.
    fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
            || serde_json::from_slice::<Value>(&self.body).is_ok_and(|b| {
                b["dryRun"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|v| v == "All"))
            })
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }

    /// The Kubernetes verb, as RBAC and the request log name it.
    pub fn verb(&self) -> String {
        let named = match &self.route {
            Route::Resource(t) => t.name.is_some(),
            _ => false,
        };
        match (self.method.as_str(), named) {
            ("GET", true) => "get",
            ("GET", false) if matches!(self.route, Route::Version) => "get",
            ("GET", false) if self.flag("watch") => "watch",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            (other, _) => return other.to_ascii_lowercase(),
        }
        .to_string()
    }

    pub fn resource(&self) -> &'static str {
        match &self.route {
            Route::Version => "version",
            Route::AccessReview => "selfsubjectaccessreviews",
            Route::Resource(t) => t.kind.plural,
            Route::Unknown => "",
        }
    }

    fn manager(&self) -> String {
        self.param("fieldManager")
            .map(str::to_string)
            .unwrap_or_else(|| self.user_agent.split('/').next().unwrap_or("").to_string())
    }

    fn body_object(&self) -> Result<Value, ApiError> {
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(value @ Value::Object(_)) => Ok(value),
            Ok(_) => Err(ApiError::bad_request(
                "the request body must be a JSON object",
            )),
            Err(e) => Err(ApiError::bad_request(format!(
                "the request body is not valid JSON (YAML bodies are not supported): {e}"
            ))),
        }
    }
}

pub fn handle(state: &mut State, call: &Call) -> Result<Reply, ApiError> {
    match &call.route {
        Route::Version => Ok(Reply::Json(200, version())),
        Route::AccessReview if call.method == "POST" => access_review(state, call),
        Route::AccessReview => Err(ApiError::method_not_allowed()),
        Route::Unknown => Err(ApiError::no_route()),
        Route::Resource(target) => {
            authorize(state, call, target)?;
            match call.verb().as_str() {
                "get" => get(state, target),
                "list" => list(state, call, target),
                "watch" => watch::plan(state, call, target).map(Reply::Watch),
                "create" if target.name.is_none() => create(state, call, target),
                "update" if target.name.is_some() => update(state, call, target),
                "patch" if target.name.is_some() => patch(state, call, target),
                "delete" => delete(state, call, target),
                _ => Err(ApiError::method_not_allowed()),
            }
        }
    }
}

/// The namespace RBAC sees: for a namespace object it is the namespace itself.
pub fn rbac_namespace(target: &Target) -> Option<String> {
    if *target.kind == NAMESPACES {
        target.name.clone()
    } else {
        target.namespace.clone()
    }
}

fn authorize(state: &State, call: &Call, target: &Target) -> Result<(), ApiError> {
    let verb = call.verb();
    let namespace = rbac_namespace(target);
    if state.allows(&verb, target.kind.plural, namespace.as_deref()) {
        return Ok(());
    }
    Err(ApiError::forbidden(
        target.kind,
        target.name.as_deref(),
        &verb,
        namespace.as_deref(),
    ))
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0",
        "gitCommit": "kube-emulator",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn access_review(state: &State, call: &Call) -> Result<Reply, ApiError> {
    let mut review = call.body_object()?;
    let attributes = &review["spec"]["resourceAttributes"];
    let text = |k: &str| attributes[k].as_str().unwrap_or("").to_string();
    let namespace = text("namespace");
    let allowed = state.allows(
        &text("verb"),
        &text("resource"),
        Some(namespace.as_str()).filter(|ns| !ns.is_empty()),
    );
    review["apiVersion"] = "authorization.k8s.io/v1".into();
    review["kind"] = "SelfSubjectAccessReview".into();
    review["metadata"] = json!({"creationTimestamp": null});
    review["status"] = json!({"allowed": allowed});
    Ok(Reply::Json(201, review))
}

fn key(target: &Target, name: &str) -> Key {
    Key::new(target.kind, target.namespace.as_deref().unwrap_or(""), name)
}

fn live(state: &State, target: &Target) -> Result<(Key, Value), ApiError> {
    let name = target.name.as_deref().unwrap_or("");
    let key = key(target, name);
    match state.get(&key) {
        Some(object) => Ok((key, object.clone())),
        None => Err(ApiError::not_found(target.kind, name)),
    }
}

fn get(state: &State, target: &Target) -> Result<Reply, ApiError> {
    live(state, target).map(|(_, object)| Reply::Json(200, object))
}

fn list(state: &State, call: &Call, target: &Target) -> Result<Reply, ApiError> {
    let filter = Filter::new(call, target)?;
    let after = call
        .param("continue")
        .filter(|c| !c.is_empty())
        .map(decode_continue)
        .transpose()?;
    let limit = call
        .param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let matching: Vec<(&Key, &Value)> = state
        .objects(target.kind, target.namespace.as_deref())
        .filter(|(k, v)| filter.matches(k, v))
        .filter(|(k, _)| {
            after
                .as_ref()
                .is_none_or(|(ns, name)| (&k.namespace, &k.name) > (ns, name))
        })
        .collect();
    let page = limit.map_or(matching.len(), |l| l.min(matching.len()));
    let mut metadata = json!({"resourceVersion": state.resource_version().to_string()});
    if page < matching.len() {
        let (last, _) = matching[page - 1];
        metadata["continue"] = encode_continue(last).into();
        metadata["remainingItemCount"] = (matching.len() - page).into();
    }
    let items: Vec<Value> = matching[..page]
        .iter()
        .map(|(_, v)| without_type_meta(v))
        .collect();
    Ok(Reply::Json(
        200,
        json!({
            "kind": format!("{}List", target.kind.kind),
            "apiVersion": target.kind.api_version(),
            "metadata": metadata,
            "items": items,
        }),
    ))
}

/// List items carry no `apiVersion`/`kind` on the real server.
fn without_type_meta(object: &Value) -> Value {
    let mut item = object.clone();
    if let Some(map) = item.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    item
}

fn encode_continue(key: &Key) -> String {
    STANDARD.encode(json!([key.namespace, key.name]).to_string())
}

fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    STANDARD
        .decode(token)
        .ok()
        .and_then(|raw| serde_json::from_slice::<(String, String)>(&raw).ok())
        .ok_or_else(|| ApiError::bad_request("continue key is not valid"))
}

/// Checks the body's `apiVersion`/`kind`/name/namespace against the URL and fills them in.
fn identify(object: &mut Value, target: &Target, name: Option<&str>) -> Result<(), ApiError> {
    let kind = target.kind;
    let api_version = kind.api_version();
    if let Some(sent) = object["apiVersion"].as_str().filter(|v| *v != api_version) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({sent}) does not match the expected API version ({api_version})"
        )));
    }
    if let Some(sent) = object["kind"].as_str().filter(|k| *k != kind.kind) {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({sent}) does not match the expected kind ({})",
            kind.kind
        )));
    }
    object["apiVersion"] = api_version.into();
    object["kind"] = kind.kind.into();
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    if let Some(url_name) = name {
        match object["metadata"]["name"].as_str() {
            Some(sent) if sent != url_name => {
                return Err(ApiError::bad_request(format!(
                "the name of the object ({sent}) does not match the name on the URL ({url_name})"
            )))
            }
            Some(_) => {}
            None => object["metadata"]["name"] = url_name.into(),
        }
    }
    if let Some(namespace) = &target.namespace {
        match object["metadata"]["namespace"].as_str() {
            Some(sent) if sent != namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
            _ => object["metadata"]["namespace"] = namespace.as_str().into(),
        }
    }
    Ok(())
}

fn require_namespace(state: &State, target: &Target) -> Result<(), ApiError> {
    match &target.namespace {
        Some(ns) if !state.namespace_exists(ns) => Err(ApiError::not_found(&NAMESPACES, ns)),
        _ => Ok(()),
    }
}

/// Metadata the server owns; whatever a client sends for these is replaced.
fn reset_system_fields(object: &mut Value, live: Option<&Value>) {
    const SYSTEM: [&str; 5] = [
        "uid",
        "creationTimestamp",
        "managedFields",
        "selfLink",
        "deletionTimestamp",
    ];
    for field in SYSTEM {
        match live.map(|l| &l["metadata"][field]).filter(|v| !v.is_null()) {
            Some(value) => object["metadata"][field] = value.clone(),
            None => {
                if let Some(meta) = object["metadata"].as_object_mut() {
                    meta.remove(field);
                }
            }
        }
    }
}

fn sent_resource_version(object: &Value) -> Option<&str> {
    object["metadata"]["resourceVersion"]
        .as_str()
        .filter(|rv| !rv.is_empty())
}

fn check_resource_version(object: &Value, live: &Value, target: &Target) -> Result<(), ApiError> {
    match sent_resource_version(object) {
        Some(rv) if Some(rv) != live["metadata"]["resourceVersion"].as_str() => Err(
            ApiError::stale(target.kind, target.name.as_deref().unwrap_or("")),
        ),
        _ => Ok(()),
    }
}

/// Stores `object` unless it equals `live`: the real server skips no-op writes, so the
/// resourceVersion does not move and watches see nothing.
/// A dry run answers what would have been stored, without storing it.
fn persist(
    state: &mut State,
    call: &Call,
    key: Key,
    live: Option<&Value>,
    mut object: Value,
) -> Value {
    if let Some(live) = live {
        object["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"].clone();
        if *live == object {
            return object;
        }
    }
    if call.dry_run() {
        return object;
    }
    let created = live.is_none();
    let stored = state.commit(key.clone(), Some(object));
    if created && key.kind.is_event() {
        state.event_keys.push(key);
    }
    stored
}

fn create(state: &mut State, call: &Call, target: &Target) -> Result<Reply, ApiError> {
    let mut object = call.body_object()?;
    identify(&mut object, target, None)?;
    if sent_resource_version(&object).is_some() {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    create_object(state, call, target, object)
}

fn create_object(
    state: &mut State,
    call: &Call,
    target: &Target,
    mut object: Value,
) -> Result<Reply, ApiError> {
    let kind = target.kind;
    validate::require_name(kind, &object)?;
    if object["metadata"]["name"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        let prefix = object["metadata"]["generateName"].as_str().unwrap_or("");
        object["metadata"]["name"] = format!("{prefix}{}", state.name_suffix()).into();
    }
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    require_namespace(state, target)?;
    let key = key(target, &name);
    if state.contains(&key) {
        return Err(ApiError::already_exists(kind, &name));
    }
    reset_system_fields(&mut object, None);
    state.stamp_new(&mut object);
    validate::normalize(kind, &mut object)?;
    validate::validate(kind, &object, None)?;
    fields::record_update(None, &mut object, &call.manager(), &now());
    Ok(Reply::Json(201, persist(state, call, key, None, object)))
}

fn update(state: &mut State, call: &Call, target: &Target) -> Result<Reply, ApiError> {
    let mut object = call.body_object()?;
    identify(&mut object, target, target.name.as_deref())?;
    let name = target.name.as_deref().unwrap_or("");
    let key = key(target, name);
    let Some(live) = state.get(&key).cloned() else {
        if !target.kind.create_on_update {
            return Err(ApiError::not_found(target.kind, name));
        }
        strip_resource_version(&mut object);
        return create_object(state, call, target, object);
    };
    if sent_resource_version(&object).is_none() && !target.kind.unconditional_update {
        // The real server names the resource where the kind belongs here.
        let cause = Cause::invalid_number(
            "metadata.resourceVersion",
            0,
            "must be specified for an update",
        );
        return Err(super::status::invalid_status(
            target.kind.plural,
            target.kind.group,
            name,
            vec![cause],
        ));
    }
    check_resource_version(&object, &live, target)?;
    write_over(state, call, target, key, live, object)
}

fn strip_resource_version(object: &mut Value) {
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
}

/// The tail every non-apply write shares: server fields, defaults, validation,
/// ownership, store.
fn write_over(
    state: &mut State,
    call: &Call,
    target: &Target,
    key: Key,
    live: Value,
    mut object: Value,
) -> Result<Reply, ApiError> {
    reset_system_fields(&mut object, Some(&live));
    validate::normalize(target.kind, &mut object)?;
    validate::validate(target.kind, &object, Some(&live))?;
    fields::record_update(Some(&live), &mut object, &call.manager(), &now());
    Ok(Reply::Json(
        200,
        persist(state, call, key, Some(&live), object),
    ))
}

fn patch(state: &mut State, call: &Call, target: &Target) -> Result<Reply, ApiError> {
    let media = call.content_type.split(';').next().unwrap_or("").trim();
    if media == APPLY {
        return apply(state, call, target);
    }
    if media != MERGE && media != STRATEGIC {
        return Err(ApiError::unsupported_media(media));
    }
    if call.param("force").is_some() {
        return Err(invalid_patch_options(Cause::forbidden(
            "force",
            "may not be specified for non-apply patch",
        )));
    }
    let patch = call.body_object()?;
    let (key, live) = live(state, target)?;
    check_resource_version(&patch, &live, target)?;
    let mut object = live.clone();
    merge_patch(&mut object, &patch);
    identify(&mut object, target, target.name.as_deref())
        .and_then(|()| keep_identity(&mut object, &live, target))?;
    write_over(state, call, target, key, live, object)
}

/// A merge patch may not rename or move an object.
fn keep_identity(object: &mut Value, live: &Value, target: &Target) -> Result<(), ApiError> {
    if object["metadata"]["name"] != live["metadata"]["name"] {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    object["metadata"]["namespace"] = live["metadata"]["namespace"].clone();
    if !target.kind.namespaced {
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("namespace");
        }
    }
    Ok(())
}

fn invalid_patch_options(cause: Cause) -> ApiError {
    super::status::invalid_status("PatchOptions", "meta.k8s.io", "", vec![cause])
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(fields) = target {
        for (key, change) in changes {
            if change.is_null() {
                fields.remove(key);
            } else {
                merge_patch(fields.entry(key.clone()).or_insert(Value::Null), change);
            }
        }
    }
}

fn apply(state: &mut State, call: &Call, target: &Target) -> Result<Reply, ApiError> {
    let manager = call
        .param("fieldManager")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            invalid_patch_options(Cause::required(
                "fieldManager",
                "is required for apply patch",
            ))
        })?;
    let mut config = call.body_object()?;
    if config["apiVersion"].as_str().is_none() || config["kind"].as_str().is_none() {
        return Err(ApiError::bad_request(
            "apiVersion and kind must be set in an apply configuration",
        ));
    }
    identify(&mut config, target, target.name.as_deref())?;
    if *target.kind == SECRETS {
        validate::fold_string_data(&mut config)?;
    }
    let name = target.name.as_deref().unwrap_or("");
    let key = key(target, name);
    let live = state.get(&key).cloned();
    match &live {
        Some(live) => check_resource_version(&config, live, target)?,
        None if sent_resource_version(&config).is_some() => {
            return Err(ApiError::not_found(target.kind, name))
        }
        None => require_namespace(state, target)?,
    }
    let mut object = fields::apply(live.as_ref(), &config, manager, call.flag("force"), &now())
        .map_err(|conflicts| {
            let (message, causes) = fields::conflict_report(&conflicts);
            let mut error = ApiError::new(409, "Conflict", message);
            error.details.insert("causes".into(), causes);
            error
        })?;
    if live.is_none() {
        state.stamp_new(&mut object);
    }
    validate::normalize(target.kind, &mut object)?;
    validate::validate(target.kind, &object, live.as_ref())?;
    let code = if live.is_some() { 200 } else { 201 };
    Ok(Reply::Json(
        code,
        persist(state, call, key, live.as_ref(), object),
    ))
}

fn delete(state: &mut State, call: &Call, target: &Target) -> Result<Reply, ApiError> {
    let (key, live) = live(state, target)?;
    if !call.body.is_empty() {
        check_preconditions(&call.body_object()?, &live, target)?;
    }
    if !call.dry_run() {
        remove(state, key);
    }
    let mut details = json!({
        "name": live["metadata"]["name"],
        "kind": target.kind.plural,
        "uid": live["metadata"]["uid"],
    });
    if !target.kind.group.is_empty() {
        details["group"] = target.kind.group.into();
    }
    Ok(Reply::Json(
        200,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }),
    ))
}

/// Deleting a namespace deletes what it holds (at once: no Terminating phase).
fn remove(state: &mut State, key: Key) {
    if *key.kind == NAMESPACES {
        let contained: Vec<Key> = state.objects_in_namespace(&key.name).collect();
        for inner in contained {
            state.commit(inner, None);
        }
    }
    state.commit(key, None);
}

fn check_preconditions(options: &Value, live: &Value, target: &Target) -> Result<(), ApiError> {
    let name = target.name.as_deref().unwrap_or("");
    for (field, label) in [("resourceVersion", "ResourceVersion"), ("uid", "UID")] {
        let Some(wanted) = options["preconditions"][field].as_str() else {
            continue;
        };
        let actual = live["metadata"][field].as_str().unwrap_or("");
        if wanted != actual {
            return Err(ApiError::conflict(
                target.kind,
                name,
                &format!(
                    "Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {actual}"
                ),
            ));
        }
    }
    Ok(())
}

/// Used by 403/404 injection to name the object a create would have made.
pub fn body_name(call: &Call) -> String {
    serde_json::from_slice::<Value>(&call.body)
        .ok()
        .and_then(|b| b["metadata"]["name"].as_str().map(str::to_string))
        .unwrap_or_default()
}
