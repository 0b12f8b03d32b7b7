#!/usr/bin/env python3
"""Renders one deployment shape of the Helm chart with the real Helm library, for the pod tests
(tests/it/pods.rs), which play the result with `podman kube play`.

    render_pod.py [--secret NAME=DIR]... [--empty-dirs DIR] [--kube-api HOST:PORT --service-account DIR] SHAPE VALUES.json

SHAPE is one of chart_check.SHAPES' names (sidecar, init-only, native-sidecar, controller-1, ...):
the same chart, CI values file, release and namespace that `scripts/chart-check.sh` checks.
VALUES.json is deep-merged over the shape's values: the test's own settings (image, config,
moto's endpoint in extraEnv), all of them chart values.

Prints a JSON array of the rendered objects that a pod needs (workloads, ConfigMaps), with the
test-only overlay below and nothing else changed:
- `hostNetwork: true` on every pod template, because the tests' moto and Kubernetes API emulator
  listen on loopback;
- and what podman 4.3 (Debian 12's, the only one here) cannot play, each replaced by what a
  kubelet would give the container (PODMAN_GAPS below).
The pod tests assert that the overlay changed nothing else (`--diff` prints the changes).
"""
from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chart_check as cc  # noqa: E402


# What podman 4.3.1's `kube play` lacks, found by playing the chart's pods here, and what stands
# in for each: the same thing a kubelet would have given the container.
PODMAN_GAPS = {
    "ports": "with hostNetwork, podman refuses any containerPort (\"PortMappings can only be used "
             "with Bridge or slirp4netns networking\"); with host networking the port is the "
             "container's own, so the declarations are dropped and probes name the port's number",
    "fieldRef metadata.namespace": "podman supports only metadata.name/uid/labels/annotations; "
                                   "the value is the pod's namespace, as the kubelet resolves it",
    "secret volume": "podman 4.3 crashes on secret volumes (nil pointer in VolumeFromSecret); a "
                     "hostPath directory holding the Secret's keys, with the volume's defaultMode, "
                     "stands in for it (the test writes it)",
    "fsGroup": "podman ignores fsGroup; the kubelet adds it to every container's supplementary "
               "groups, so it is given as supplementalGroups",
    "emptyDir": "podman makes an emptyDir a volume owned by the first container that mounts it "
                "(in the example, the app's read-only mount: uid 10001), so the daemon may not "
                "write it; the kubelet makes it mode 0777, setgid and group fsGroup. A host "
                "directory made that way stands in (--empty-dirs DIR; medium: Memory is not kept)",
    "restartPolicy": "podman 4.3 restarts an init container that exited 0 when the pod's "
                     "restartPolicy is Always (a kubelet never does), so the app never starts; a "
                     "pod with init containers is played with OnFailure, under which a kubelet "
                     "runs init containers the same way (a failed one is retried)",
    "service account": "with automountServiceAccountToken, the kubelet gives every container "
                       "KUBERNETES_SERVICE_HOST/PORT and mounts the token, ca.crt and namespace at "
                       "/var/run/secrets/kubernetes.io/serviceaccount; podman does neither, so the "
                       "test's (--kube-api HOST:PORT --service-account DIR) are added the same way",
}

SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def podman_overlay(pod: dict, namespace: str, secret_dirs: dict[str, str], kube_api: str | None,
                   service_account: str | None, empty_dirs: str | None) -> list[str]:
    """Applies the stand-ins for PODMAN_GAPS to one pod spec; returns what it changed."""
    changed = []
    pod["hostNetwork"] = True
    automount = pod.get("automountServiceAccountToken", True)
    if automount:
        if not (kube_api and service_account):
            raise SystemExit("render_pod.py: the pod mounts a service-account token: give --kube-api HOST:PORT "
                             "and --service-account DIR")
        pod.setdefault("volumes", []).append(
            {"name": "kube-api-access", "hostPath": {"path": service_account, "type": "Directory"}})
        changed.append("service account")
    for c in pod.get("initContainers", []) + pod.get("containers", []):
        if automount:
            host, _, port = kube_api.rpartition(":")
            c.setdefault("env", []).extend([{"name": "KUBERNETES_SERVICE_HOST", "value": host},
                                            {"name": "KUBERNETES_SERVICE_PORT", "value": port}])
            c.setdefault("volumeMounts", []).append(
                {"name": "kube-api-access", "mountPath": SERVICE_ACCOUNT_MOUNT, "readOnly": True})
        ports = {p["name"]: p["containerPort"] for p in c.pop("ports", []) or [] if "name" in p}
        if ports:
            changed.append(f"{c['name']}: ports")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            get = (c.get(probe) or {}).get("httpGet")
            if get and isinstance(get.get("port"), str) and get["port"] in ports:
                get["port"] = ports[get["port"]]
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("fieldRef") or {}
            if ref.get("fieldPath") == "metadata.namespace":
                del e["valueFrom"]
                e["value"] = namespace
                changed.append(f"{c['name']}: env {e['name']}")
    for v in pod.get("volumes", []):
        if "secret" in v:
            name = v.pop("secret")["secretName"]
            if name not in secret_dirs:
                raise SystemExit(f"render_pod.py: the pod mounts Secret {name}: give its directory with --secret {name}=DIR")
            v["hostPath"] = {"path": secret_dirs[name], "type": "Directory"}
            changed.append(f"volume {v['name']}: secret {name}")
    if pod.get("initContainers") and pod.get("restartPolicy", "Always") == "Always":
        pod["restartPolicy"] = "OnFailure"
        changed.append("restartPolicy")
    sc = pod.setdefault("securityContext", {})
    for v in pod.get("volumes", []):
        if "emptyDir" in v:
            if not empty_dirs:
                raise SystemExit("render_pod.py: the pod has an emptyDir: give --empty-dirs DIR")
            del v["emptyDir"]
            path = os.path.join(empty_dirs, v["name"])
            os.makedirs(path, exist_ok=True)
            if "fsGroup" in sc:
                os.chown(path, 0, sc["fsGroup"])
            os.chmod(path, 0o2777 if "fsGroup" in sc else 0o777)
            v["hostPath"] = {"path": path, "type": "Directory"}
            changed.append(f"volume {v['name']}: emptyDir")
    if "fsGroup" in sc:
        sc["supplementalGroups"] = sorted(set(sc.get("supplementalGroups", [])) | {sc["fsGroup"]})
        changed.append("supplementalGroups")
    return changed


def main() -> int:
    args = sys.argv[1:]
    secret_dirs, kube_api, service_account, empty_dirs = {}, None, None, None
    while len(args) >= 2 and args[0].startswith("--"):
        if args[0] == "--secret":
            k, _, v = args[1].partition("=")
            secret_dirs[k] = v
        elif args[0] == "--kube-api":
            kube_api = args[1]
        elif args[0] == "--service-account":
            service_account = args[1]
        elif args[0] == "--empty-dirs":
            empty_dirs = args[1]
        else:
            print(f"render_pod.py: unknown option {args[0]}", file=sys.stderr)
            return 2
        args = args[2:]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    name, values_path = args[0], Path(args[1])
    shapes = {s.name: s for s in cc.SHAPES}
    if name not in shapes:
        print(f"render_pod.py: no shape {name!r}; the shapes: {', '.join(shapes)}", file=sys.stderr)
        return 2
    shape = shapes[name]
    overrides = json.loads(values_path.read_text())
    values = cc.deep_merge(cc.load_values([str(cc.ROOT / v) for v in shape.values]), overrides)
    ws = cc.Workspace()
    try:
        rendered = cc.render(ws.chart_dir(shape.chart), values, shape.release, shape.namespace)
    except cc.helm.HelmError as e:
        print(f"render_pod.py: helm could not render {name}: {e}", file=sys.stderr)
        return 1
    finally:
        ws.close()
    objs, errors = cc.parse_rendered(rendered)
    if errors:
        print("render_pod.py: " + "; ".join(errors), file=sys.stderr)
        return 1
    out, rendered_pods, rbac, changes = [], [], [], []
    for _, o in objs:
        if o["kind"] in ("Deployment", "ConfigMap"):
            if o["kind"] == "Deployment":
                rendered_pods.append(copy.deepcopy(o["spec"]["template"]["spec"]))
                changes += podman_overlay(o["spec"]["template"]["spec"], shape.namespace, secret_dirs, kube_api,
                                          service_account, empty_dirs)
            out.append(o)
        elif o["kind"] in ("Role", "ClusterRole"):
            rbac.append(o)
    # objects: what podman plays; rendered_pods: the same pod specs before the overlay; rbac:
    # the rendered Roles, which the test grants in its Kubernetes API emulator.
    json.dump({"objects": out, "rendered_pods": rendered_pods, "rbac": rbac, "overlay": changes}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
