"""The Kubernetes manifests: N servers probed through gRPC health, behind a headless Service that resolves to all."""

from __future__ import annotations

from pathlib import Path

import yaml

from service.config import ServerConfig

MANIFESTS = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"


def load(name: str) -> dict:
    return yaml.safe_load((MANIFESTS / name).read_text())


def test_the_deployment_probes_grpc_health_on_the_served_port() -> None:
    deployment = load("deployment.yaml")
    assert deployment["kind"] == "Deployment" and deployment["spec"]["replicas"] > 1
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    grpc_port = next(port["containerPort"] for port in container["ports"] if port["name"] == "grpc")
    assert grpc_port == ServerConfig().port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": grpc_port}, probe
    assert pod["terminationGracePeriodSeconds"] > ServerConfig().grace_seconds


def test_the_service_is_headless_and_selects_the_deployments_pods() -> None:
    service, deployment = load("service.yaml"), load("deployment.yaml")
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["ports"][0]["port"] == ServerConfig().port
    assert set(load("kustomization.yaml")["resources"]) == {"deployment.yaml", "service.yaml"}
