"""The Helm chart, linted and rendered by Helm's own engine (helm-python-sdk),
its manifests validated strictly against Kubernetes' schemas, in both modes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from probed.cli import SHUTDOWN_TIMEOUT
from probed.config import parse_config

ROOT = Path(__file__).parent.parent
CHART = ROOT / "helm" / "probed"
KUBERNETES = "1.30.0"  # native sidecars (restartPolicy on init containers) need 1.29+
CRDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}  # monitoring.coreos.com: not in Kubernetes' schemas


def render(chart: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    manifests = helm.Chart.load(str(chart)).render(values or {}, name="web", namespace="shop")
    documents = [
        doc
        for path, text in manifests.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    return documents


def by_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [doc for doc in documents if doc["kind"] == kind]
    return found


@pytest.fixture(scope="module")
def app_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/charts/shop with probed vendored as its dependency (what `helm dependency build` does)."""
    chart = tmp_path_factory.mktemp("charts") / "shop"
    shutil.copytree(ROOT / "tests" / "charts" / "shop", chart)
    shutil.copytree(CHART, chart / "charts" / "probed")
    return chart


def assert_valid_kubernetes(documents: list[dict[str, Any]]) -> None:
    for document in documents:
        if document["kind"] in CRDS:
            assert document["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        kubernetes_validate.validate(document, KUBERNETES, strict=True)


def assert_hardened(container: dict[str, Any]) -> None:
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert {"name": "PROBED_CONFIG", "value": "/etc/probed/probed.yaml"} in container["env"]  # as in the Dockerfile


@pytest.mark.parametrize("chart", ["probed", "shop"])
def test_lint_strict(chart: str, app_chart: Path) -> None:
    path = CHART if chart == "probed" else app_chart
    report = helm.lint(str(path), strict=True, with_subcharts=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_standalone_renders_valid_hardened_manifests() -> None:
    documents = render(CHART, {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}})
    assert sorted(doc["kind"] for doc in documents) == [
        "ConfigMap",
        "Deployment",
        "PrometheusRule",
        "Service",
        "ServiceMonitor",
    ]
    assert_valid_kubernetes(documents)
    pod = by_kind(documents, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert_hardened(container)
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"


def test_optional_monitoring_objects_are_off_by_default() -> None:
    kinds = {doc["kind"] for doc in render(CHART)}
    assert kinds == {"ConfigMap", "Deployment", "Service"}


def test_config_map_holds_a_valid_probed_config() -> None:
    text = by_kind(render(CHART), "ConfigMap")["data"]["probed.yaml"]
    config = parse_config(text, "configmap")
    assert set(config.checks) == {"root-disk", "tmp-writable"}


def test_the_pod_drains_on_shutdown_within_its_grace_period(app_chart: Path) -> None:
    documents = render(CHART)
    config = parse_config(by_kind(documents, "ConfigMap")["data"]["probed.yaml"], "configmap")
    grace = by_kind(documents, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert config.server.shutdown_delay == 5.0
    assert grace >= config.server.shutdown_delay + SHUTDOWN_TIMEOUT + 1  # and a second to stop the checks
    longer = {"config": {"server": {"shutdown_delay": "20s"}}, "terminationGracePeriodSeconds": 30}
    assert (
        by_kind(render(CHART, longer), "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    )
    # An application chart's probed.config.server is merged with the default: its sidecar drains too.
    shop = by_kind(render(app_chart), "ConfigMap")["data"]["probed.yaml"]
    assert parse_config(shop, "configmap", {"DATABASE_URL": "postgresql://db/shop"}).server.shutdown_delay == 5.0


def test_a_config_change_rolls_the_pods_only_when_asked() -> None:
    def annotations(values: dict[str, Any]) -> dict[str, str]:
        deployment = by_kind(render(CHART, values), "Deployment")
        return dict(deployment["spec"]["template"]["metadata"]["annotations"] or {})

    changed = {"config": {"checks": {"data": {"type": "disk", "path": "/data"}}}}
    assert annotations({}) == annotations(changed) == {}  # probed reloads the mounted config itself
    roll = {"rollOnConfigChange": True}

    def checksum(values: dict[str, Any]) -> str:
        return annotations({**roll, **values})["checksum/probed-config"]

    assert checksum({}) == checksum({}) != checksum(changed)


def test_prometheus_rule_is_the_tested_rule_file() -> None:
    rules_file = ROOT / "config" / "prometheus" / "probed-rules.yml"
    assert (CHART / "files" / "probed-rules.yml").read_text() == rules_file.read_text()
    rule = by_kind(render(CHART, {"prometheusRule": {"enabled": True}}), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(rules_file.read_text())


@pytest.mark.parametrize("native", [False, True])
def test_sidecar_mode(app_chart: Path, native: bool) -> None:
    documents = render(app_chart, {"probed": {"sidecar": {"native": native}}})
    # No standalone objects: the Service is the peers' headless one, the PodMonitor the app chart's own.
    assert sorted(doc["kind"] for doc in documents) == ["ConfigMap", "Deployment", "PodMonitor", "Service"]
    assert by_kind(documents, "Service")["metadata"]["name"] == "web-probed-peers"
    assert_valid_kubernetes(documents)
    pod = by_kind(documents, "Deployment")["spec"]["template"]["spec"]
    app = pod["containers"][0]
    assert app["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": 8080}
    assert app["startupProbe"]["httpGet"] == {"path": "/health/startup", "port": 8080}  # latches once passed
    assert "livenessProbe" not in app
    if native:
        assert [c["name"] for c in pod["containers"]] == ["shop"]
        [sidecar] = pod["initContainers"]
        assert sidecar["restartPolicy"] == "Always"
    else:
        assert [c["name"] for c in pod["containers"]] == ["shop", "probed"]
        assert "initContainers" not in pod
        sidecar = pod["containers"][1]
    assert_hardened(sidecar)
    assert {"name": "probed-config", "configMap": {"name": "web-probed"}} in pod["volumes"]
    [scraped] = by_kind(documents, "PodMonitor")["spec"]["podMetricsEndpoints"]
    assert (scraped["port"], scraped["path"]) == (sidecar["ports"][0]["name"], "/metrics")
    config_map = by_kind(documents, "ConfigMap")
    config = parse_config(config_map["data"]["probed.yaml"], "configmap", {"DATABASE_URL": "postgresql://db/shop"})
    assert {name: opts.type for name, opts in config.checks.items()} == {
        "db": "postgres",
        "cache": "redis",
        "mail": "smtp",
    }


def test_app_liveness_on_probed_is_opt_in(app_chart: Path) -> None:
    documents = render(app_chart, {"probed": {"sidecar": {"appProbes": {"liveness": True}}}})
    app = by_kind(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert app["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": 8080}


@pytest.mark.parametrize(
    "values",
    [
        {"image": {"pullPolicy": "Sometimes"}},
        {"config": {"checks": {"db": "postgres"}}},  # a check that is not a mapping
        {"config": {"checks": {"db": {"dsn": "postgresql://db/app"}}}},  # a check without a type
        {"serviceMonitor": {"enabeld": True}},  # a typo must not pass silently
        {"peers": {"enabled": True, "alone": "maybe"}},
        {"peers": {"enabled": True, "quorum": 2}},
        {"terminationGracePeriodSeconds": "15s"},
        {"icmp": {"unprivileged": "yes"}},
        {"peers": {"enabled": True, "sample": 0}},
        {"config": {"server": {"exclusions_token": "a-token-written-in-values"}}},  # from a Secret, never here
        {"exclusions": {"tokenSecret": {"name": "ops", "key": ""}}},
        {"exclusions": {"token": "a-token-written-in-values"}},
        # The chart sets exclusions_token_file from the Secret: one token, not two.
        {"exclusions": {"tokenSecret": {"name": "ops"}}, "config": {"server": {"exclusions_token_file": "/x"}}},
        {"exclusions": {"tokenSecret": {"name": "ops"}}, "config": {"server": {"exclusions_token": "${OPS}"}}},
    ],
)
def test_values_schema_rejects_mistakes(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmError):
        helm.Chart.load(str(CHART)).render(values, name="web", namespace="shop")


PING_GROUPS = {"name": "net.ipv4.ping_group_range", "value": "0 2147483647"}


def test_icmp_unprivileged_sets_the_safe_ping_sysctl_and_keeps_the_pod_hardened() -> None:
    def pod(values: dict[str, Any]) -> dict[str, Any]:
        documents = render(CHART, values)
        assert_valid_kubernetes(documents)
        spec: dict[str, Any] = by_kind(documents, "Deployment")["spec"]["template"]["spec"]
        return spec

    assert "sysctls" not in pod({})["securityContext"]
    unprivileged = pod({"icmp": {"unprivileged": True}})
    assert unprivileged["securityContext"]["sysctls"] == [PING_GROUPS]
    assert unprivileged["securityContext"]["runAsNonRoot"] is True
    assert_hardened(unprivileged["containers"][0])
    # Sysctls of the user's own are kept, and their own ping range wins over the chart's.
    own = {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}
    narrower = {"name": "net.ipv4.ping_group_range", "value": "65532 65532"}
    both = pod({"icmp": {"unprivileged": True}, "podSecurityContext": {"sysctls": [own]}})
    assert both["securityContext"]["sysctls"] == [own, PING_GROUPS]
    kept = pod({"icmp": {"unprivileged": True}, "podSecurityContext": {"sysctls": [narrower]}})
    assert kept["securityContext"]["sysctls"] == [narrower]


def test_peers_get_a_headless_service_that_publishes_unready_pods() -> None:
    documents = render(CHART, {"peers": {"enabled": True, "alone": "pass"}})
    assert_valid_kubernetes(documents)
    services = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "Service"}
    assert set(services) == {"web-probed", "web-probed-peers"}
    peers = services["web-probed-peers"]["spec"]
    assert peers["clusterIP"] == "None" and peers["publishNotReadyAddresses"] is True
    assert peers["selector"] == {"app.kubernetes.io/name": "probed", "app.kubernetes.io/instance": "web"}
    config = parse_config(by_kind(documents, "ConfigMap")["data"]["probed.yaml"], "configmap")
    assert config.peers is not None
    assert (config.peers.dns, config.peers.port, config.peers.alone) == (
        "web-probed-peers.shop.svc.cluster.local",
        8080,
        "pass",
    )


def test_peers_sample_is_passed_to_probed() -> None:
    def sample(peers: dict[str, Any]) -> int:
        text = by_kind(render(CHART, {"peers": {"enabled": True, **peers}}), "ConfigMap")["data"]["probed.yaml"]
        config = parse_config(text, "configmap")
        assert config.peers is not None
        return config.peers.sample

    assert sample({}) == 10  # probed's own default
    assert sample({"sample": 3}) == 3


TOKEN_SECRET = {"exclusions": {"tokenSecret": {"name": "shop-ops", "key": "exclusions"}}}


def _exclusions_token_file(documents: list[dict[str, Any]]) -> Any:
    server = yaml.safe_load(by_kind(documents, "ConfigMap")["data"]["probed.yaml"])["server"]
    assert "exclusions_token" not in server
    return server.get("exclusions_token_file")


def test_the_exclusions_token_comes_from_a_secret_mounted_as_the_token_file(app_chart: Path, tmp_path: Path) -> None:
    for documents, pod in (
        (render(CHART, TOKEN_SECRET), "Deployment"),
        (render(app_chart, {"probed": TOKEN_SECRET}), "Deployment"),  # sidecar mode: the same templates
    ):
        assert_valid_kubernetes(documents)
        spec = by_kind(documents, pod)["spec"]["template"]["spec"]
        [volume] = [v for v in spec["volumes"] if "secret" in v]
        assert volume["secret"] == {"secretName": "shop-ops", "items": [{"key": "exclusions", "path": "token"}]}
        [probed] = [c for c in spec["containers"] if c["name"] == "probed"]
        [mount] = [m for m in probed["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"] is True
        path = _exclusions_token_file(documents)
        assert path == f"{mount['mountPath']}/token"
        assert not path.startswith("/etc/probed/")  # beside the ConfigMap's read-only volume, not in it
        assert_hardened(probed)
    # The rendered config, with the Secret's file where the kubelet puts it, turns the API on.
    text = by_kind(render(CHART, TOKEN_SECRET), "ConfigMap")["data"]["probed.yaml"]
    token = tmp_path / "token"
    token.write_text("from-the-secret-3f9b\n")
    config = parse_config(text.replace(str(path), str(token)), "configmap")
    assert config.server.exclusions_token is not None
    assert config.server.exclusions_token.get_secret_value() == "from-the-secret-3f9b"

    # Without a Secret: no volume, no token file, the API off.
    documents = render(CHART)
    assert _exclusions_token_file(documents) is None
    volumes = by_kind(documents, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert not any("secret" in volume for volume in volumes)


def test_sidecar_peers_select_the_application_pods(app_chart: Path) -> None:
    documents = render(app_chart)  # its values: peers.enabled with the shop pods' labels
    assert_valid_kubernetes(documents)
    service = by_kind(documents, "Service")
    assert service["metadata"]["name"] == "web-probed-peers" and service["spec"]["selector"] == {"app": "shop"}
    text = by_kind(documents, "ConfigMap")["data"]["probed.yaml"]
    config = parse_config(text, "configmap", {"DATABASE_URL": "postgresql://db/shop"})
    assert config.peers is not None and config.peers.dns == "web-probed-peers.shop.svc.cluster.local"
    assert config.checks["db"].scope == "shared"


def _quantity(text: str) -> float:
    """The number of a Kubernetes quantity in the units the chart writes: Mi (MiB), m (millicores)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(?:Mi|m)", str(text))
    assert match, text
    return float(match[1])


def _pod_cost(label: str, pattern: str) -> float:
    """A figure from the README's "What a pod pays" table (measured by bench/podcost.py)."""
    section = (ROOT / "README.md").read_text().split("## What a pod pays", 1)[1].split("\n## ", 1)[0]
    [row] = [line for line in section.splitlines() if line.startswith(f"| {label} |")]
    match = re.search(pattern, row.split("|")[2])
    assert match, (label, row)
    return float(match[1])


def test_resources_follow_what_a_pod_pays() -> None:
    """The chart's requests cover the default config and its memory limit every
    core type at once, with room for reloads, as the README measures them."""
    resources = yaml.safe_load((CHART / "values.yaml").read_text())["resources"]
    default_rss = _pod_cost("memory, the default config", r"(\d+(?:\.\d+)?) MiB")
    every_type_rss = _pod_cost("memory, one check of each core type", r"(\d+(?:\.\d+)?) MiB")
    idle_millicores = _pod_cost("CPU, 10 checks every 10 s", r"(\d+(?:\.\d+)?)m of a core")
    assert _quantity(resources["requests"]["memory"]) >= 1.25 * default_rss
    assert _quantity(resources["limits"]["memory"]) >= 1.5 * every_type_rss
    assert _quantity(resources["requests"]["cpu"]) >= idle_millicores
