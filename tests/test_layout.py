"""The package layout: imports run one way (service -> priorviz -> priors), and the engine is gRPC-free.

``priorviz_objectives`` (shipped by the client distribution, imported by the engine, the service
and the SDK) imports nothing but the standard library.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# For each package: the first-party and heavy third-party packages it must never import.
FORBIDDEN: dict[str, set[str]] = {
    "priors": {"priorviz", "service", "priorviz_client", "grpc", "google", "prometheus_client"},
    "priorviz": {"service", "priorviz_client", "grpc", "google", "prometheus_client", "grpc_health", "grpc_reflection"},
    "service": {"priorviz_client"},
    "clients/python/priorviz_client": {"priorviz", "priors", "service", "torch", "torchvision", "numpy"},
    "clients/python/priorviz_objectives": {
        "priorviz",
        "priors",
        "service",
        "priorviz_client",
        "torch",
        "numpy",
        "grpc",
        "google",
    },
}
STANDARD_LIBRARY_ONLY = "clients/python/priorviz_objectives"


def imported_packages(path: Path) -> set[str]:
    """Top-level package names a module imports, at any depth (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def python_files(package: str) -> list[Path]:
    return [path for path in sorted((ROOT / package).rglob("*.py")) if "_proto" not in path.parts]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_run_one_way(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in python_files(package)
    }
    wrong = {path: names for path, names in wrong.items() if names}
    assert not wrong, f"imports that go the wrong way: {wrong}"


def test_the_objective_specifications_use_the_standard_library_only() -> None:
    imported = set().union(*(imported_packages(path) for path in python_files(STANDARD_LIBRARY_ONLY)))
    assert imported - sys.stdlib_module_names == {"priorviz_objectives"}
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import priorviz_objectives, priorviz_objectives.proto\n"
        "print(','.join(sorted(m for m in set(sys.modules) - before if m.split('.')[0] not in sys.stdlib_module_names"
        " and not m.startswith('priorviz_objectives'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert loaded.stdout.strip() == ""


def test_only_the_service_imports_grpc() -> None:
    users = {
        str(path.relative_to(ROOT))
        for package in ("priorviz", "priors")
        for path in python_files(package)
        if "grpc" in imported_packages(path)
    }
    assert not users


def test_importing_the_engine_loads_no_grpc_protobuf_or_prometheus() -> None:
    code = (
        "import sys, priorviz, priorviz.training.distill\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'prometheus_client', 'service')"
        " or m.startswith('google.protobuf'))\n"
        "print(','.join(bad))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert loaded.stdout.strip() == ""


def test_the_engine_reads_like_lucent() -> None:
    import priorviz

    for name in ("get_model", "render", "objectives", "list_models", "parse_objective", "errors"):
        assert hasattr(priorviz, name), name
