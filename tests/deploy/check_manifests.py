"""Checks deploy/k8s offline: every resource its kustomization lists against the Kubernetes
schemas (kubernetes-validate, strict), the ServiceMonitor by structure (its schema is the
Prometheus Operator's), and that the resources fit together: selectors, port names, the
headless Service, volumes, the Secret, the probes, the grace period.

Usage: check_manifests.py DEPLOY_K8S_DIR. Prints the ConfigMap's node.toml as JSON
({"node_toml": ...}) for the caller to give to the node; exits 1 with every problem found.
"""

import json
import pathlib
import sys
import tomllib

import kubernetes_validate
import yaml

KUBERNETES = "1.37.0"
# The node's drain (GOAWAY to every peer, a last snapshot) takes about 2 s after its
# shutdown_grace_secs.
DRAIN_SECONDS = 2


def main():
    root = pathlib.Path(sys.argv[1])
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    docs = []
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((root / resource).read_text()):
            docs.append((resource, doc))
    problems = []
    for resource, doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{resource}: {doc['kind']}: {e.message}")
    by_kind = {}
    for _, doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    problems += fit_together(by_kind)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    (config,) = by_kind["ConfigMap"].values()
    print(json.dumps({"node_toml": config["data"]["node.toml"]}))


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def fit_together(by_kind):
    problems = []
    (sts,) = by_kind["StatefulSet"].values()
    spec = sts["spec"]
    pod = spec["template"]
    pod_labels = pod["metadata"]["labels"]
    if not selects(spec["selector"]["matchLabels"], pod_labels):
        problems.append("the StatefulSet's selector does not select its pods")
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p.get("protocol", "TCP") for p in container["ports"]}

    services = by_kind["Service"]
    headless = services.get(spec["serviceName"])
    if headless is None or headless["spec"].get("clusterIP") != "None":
        problems.append(f"serviceName {spec['serviceName']} is not a headless Service")
    for name, service in services.items():
        if not selects(service["spec"].get("selector"), pod_labels):
            problems.append(f"Service {name} does not select the pods")
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            if ports.get(target) != port.get("protocol", "TCP"):
                problems.append(f"Service {name}: no {port.get('protocol', 'TCP')} port {target}")

    for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        if not selects(pdb["spec"]["selector"]["matchLabels"], pod_labels):
            problems.append(f"PodDisruptionBudget {name} does not select the pods")

    for name, monitor in by_kind.get("ServiceMonitor", {}).items():
        wanted = monitor["spec"]["selector"]["matchLabels"]
        chosen = [s for s in services.values() if selects(wanted, s["metadata"].get("labels", {}))]
        port_names = {p["name"] for s in chosen for p in s["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            if endpoint["port"] not in port_names:
                problems.append(f"ServiceMonitor {name}: no selected Service has port {endpoint['port']}")

    (config,) = by_kind["ConfigMap"].values()
    node_grace = tomllib.loads(config["data"]["node.toml"]).get("shutdown_grace_secs", 0)
    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
    if grace <= node_grace + DRAIN_SECONDS:
        problems.append(
            f"terminationGracePeriodSeconds {grace} does not cover shutdown_grace_secs "
            f"{node_grace} and the {DRAIN_SECONDS} s drain"
        )
    for probe in ("livenessProbe", "readinessProbe"):
        command = container.get(probe, {}).get("exec", {}).get("command", [])
        if command[:2] != ["setowire-node", "health"]:
            problems.append(f"{probe} does not ask `setowire-node health`: {command}")

    for env in container.get("env", []):
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            secret = by_kind.get("Secret", {}).get(ref["name"])
            if secret is None or ref["key"] not in secret.get("stringData", secret.get("data", {})):
                problems.append(f"{env['name']}: Secret {ref['name']} has no key {ref['key']}")

    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    args = container["args"]
    config_path = args[args.index("--config") + 1]
    state_dir = args[args.index("--state-dir") + 1]
    config_mount = mounts.get(str(pathlib.PurePath(config_path).parent))
    config_volume = volumes.get(config_mount, {}).get("configMap", {}).get("name")
    if config_volume not in by_kind.get("ConfigMap", {}):
        problems.append(f"--config {config_path} is not in a mounted ConfigMap")
    elif pathlib.PurePath(config_path).name not in by_kind["ConfigMap"][config_volume]["data"]:
        problems.append(f"the ConfigMap has no {pathlib.PurePath(config_path).name}")
    if mounts.get(state_dir) not in claims:
        problems.append(f"--state-dir {state_dir} is not on the volume claim")
    return problems


if __name__ == "__main__":
    main()
