"""deploy/: every Kubernetes manifest validates against the Kubernetes OpenAPI schema (kubernetes-validate, offline),
the pieces reference each other correctly, the compose file is complete, and every CUTOVER_* variable they set is a
real setting of the command the container runs, with a value that setting accepts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from proxy import cli, config

DEPLOY = Path(__file__).parent.parent / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.30.0"
# Secrets the operator creates (kubectl create secret ...), never kept in git: name -> keys.
OPERATOR_SECRETS = {"cutover-tls": {"tls.crt", "tls.key", "ca.crt"}, "cutover-admin": {"token"}}
# Read from the environment directly rather than through a flag (a secret never on a command line).
DIRECT_VARIABLES = {"CUTOVER_ADMIN_TOKEN"}
FILE_PARSERS = (config.readable_file, config.readable_dir)
DEFAULT_COMMAND = ["proxy"]  # deploy/Dockerfile: ENTRYPOINT cutover, CMD proxy


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(KUBERNETES.glob("*.yaml")) for doc in documents(path)
            if doc.get("kind") != "Kustomization"]  # fmt: skip


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


def kustomization() -> dict[str, Any]:
    (doc,) = documents(KUBERNETES / "kustomization.yaml")
    return doc


def settings(command: str) -> dict[str, Callable[[str], Any]]:
    """The CUTOVER_* variables of a `cutover` subcommand, with the parser of each."""
    namespace = vars(cli.build_parser().parse_args([command]))
    found = {config.env_name(flag): parse for name, (flag, parse, _) in
             ((n, v) for n, v in namespace.items() if n.startswith("_spec_"))}  # fmt: skip
    return found | {name: str for name in DIRECT_VARIABLES}


def check_variables(where: str, command: list[str], variables: dict[str, str | None]) -> None:
    known = settings(command[0])
    for name, value in variables.items():
        assert name.startswith("CUTOVER_"), f"{where}: {name} is not a CUTOVER_* setting"
        assert name in known, f"{where}: {name} is not a setting of `cutover {command[0]}`"
        if value is None or "${" in value or known[name] in FILE_PARSERS:
            continue  # from a Secret, interpolated by compose, or a path inside the container
        try:
            known[name](value)
        except ValueError as exc:
            pytest.fail(f"{where}: {name}={value!r} {exc}")


def pod_templates() -> list[tuple[str, dict[str, Any]]]:
    return [(name, doc["spec"]["template"]) for kind in ("Deployment", "StatefulSet")
            for name, doc in of_kind(kind).items()]  # fmt: skip


@pytest.mark.parametrize(("path", "doc"), manifests(), ids=lambda v: v.name if isinstance(v, Path) else v["kind"])
def test_each_manifest_validates_against_the_kubernetes_schema(path: Path, doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_the_kustomization_names_every_manifest_and_existing_files() -> None:
    doc = kustomization()
    assert sorted(doc["resources"]) == sorted(
        p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    for generator in doc["configMapGenerator"]:
        for file in generator["files"]:
            assert (KUBERNETES / file).is_file(), f"{generator['name']}: {file} does not exist"
    dashboards = {Path(f).name for g in doc["configMapGenerator"] for f in g["files"] if f.endswith(".json")}
    assert dashboards == {p.name for p in (DEPLOY.parent / "grafana" / "dashboards").glob("*.json")}


def test_pods_use_only_real_settings_configmaps_secrets_and_volumes() -> None:
    config_maps = of_kind("ConfigMap")
    generated = {g["name"] for g in kustomization()["configMapGenerator"]}
    claims = {name: {claim["metadata"]["name"] for claim in doc["spec"].get("volumeClaimTemplates", [])}
              for name, doc in of_kind("StatefulSet").items()}  # fmt: skip
    for name, template in pod_templates():
        spec = template["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps.keys() | generated, f"{name}: {volume}"
            if "secret" in volume:
                assert volume["secret"]["secretName"] in OPERATOR_SECRETS, f"{name}: {volume}"
        for container in spec["containers"]:
            where = f"{name}/{container['name']}"
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes.keys() | claims.get(name, set()), f"{where}: no volume {mount['name']}"
            if not container["image"].startswith("ocpp-cutover"):
                continue
            variables: dict[str, str | None] = {}
            for source in container.get("envFrom", []):
                variables |= config_maps[source["configMapRef"]["name"]]["data"]
            for env in container.get("env", []):
                variables[env["name"]] = env.get("value")
                secret = env.get("valueFrom", {}).get("secretKeyRef")
                if secret:
                    assert secret["key"] in OPERATOR_SECRETS[secret["name"]], f"{where}: {secret}"
            check_variables(where, container.get("args", DEFAULT_COMMAND), variables)


def test_services_select_pods_and_name_their_ports() -> None:
    templates = dict(pod_templates())
    for name, service in of_kind("Service").items():
        selector = service["spec"]["selector"]
        matching = [t for t in templates.values() if selector.items() <= t["metadata"]["labels"].items()]
        assert matching, f"Service {name} selects no pods"
        port_names = {p["name"] for t in matching for c in t["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"Service {name}: no container port {port['targetPort']}"


def test_prometheus_scrapes_the_admin_listener_of_each_cutover_pod() -> None:
    for name, template in pod_templates():
        container = template["spec"]["containers"][0]
        if not container["image"].startswith("ocpp-cutover"):
            continue
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
        listen = {e["name"]: e.get("value") for e in container["env"]}["CUTOVER_ADMIN_LISTEN"]
        assert listen.endswith(":" + annotations["prometheus.io/port"]), name
        assert int(annotations["prometheus.io/port"]) in {p["containerPort"] for p in container["ports"]}


def test_the_proxy_terminates_tls_from_a_secret() -> None:
    template = dict(pod_templates())["cutover-proxy"]
    container = template["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "tls"]
    assert env["CUTOVER_TLS_CERT"] == f"{mount['mountPath']}/tls.crt"
    assert env["CUTOVER_TLS_KEY"] == f"{mount['mountPath']}/tls.key"
    assert of_kind("ConfigMap")["cutover-proxy-config"]["data"]["CUTOVER_SECURITY_PROFILE"] in ("2", "3")
    (service_port,) = of_kind("Service")["cutover-proxy"]["spec"]["ports"]
    assert service_port["protocol"] == "TCP" and service_port["targetPort"] == "ocpp"


def test_the_compose_file_is_complete() -> None:
    (compose,) = documents(DEPLOY / "compose.yaml")
    services = compose["services"]
    assert {"redis", "proxy", "shadow", "prometheus", "grafana"} <= services.keys()
    for name, service in services.items():
        assert "image" in service or "build" in service, f"compose service {name}: no image or build"
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"compose service {name}: depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert (DEPLOY / source).exists(), f"compose service {name}: {source} does not exist"
        if "build" in service:
            assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
            check_variables(f"compose {name}", service.get("command", DEFAULT_COMMAND), service["environment"])
    (scrape,) = documents(DEPLOY / "prometheus.yml")
    for job in scrape["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host, port = target.split(":")
            assert host in services and services[host]["environment"]["CUTOVER_ADMIN_LISTEN"].endswith(":" + port)
