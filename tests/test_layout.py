"""The layout's rules, checked on the source: no import circles, argument parsing only in
engine/cli/ (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("stream", "engine", "calibration")


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the mespot modules it imports anywhere in its body (lazy imports count: a circle
    through a function-level import is still a circle in the design)."""
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                found = resolve(target)
                if found is not None and found != module and not module.startswith(found + "."):
                    graph[module].add(found)  # a package's own parents are imported anyway
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles() -> None:
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_one() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_arguments_are_parsed_only_in_the_command_line_package() -> None:
    offenders = []
    for module, path in modules().items():
        if module == "engine.cli" or module.startswith("engine.cli."):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
                offenders.append(f"{module}: imports argparse")
            if isinstance(node, ast.Attribute) and node.attr == "add_argument":
                offenders.append(f"{module}:{node.lineno}: add_argument")
    assert offenders == []


def test_reading_a_bundle_and_scoring_it_with_onnxruntime_imports_no_torch() -> None:
    """The runtime side (bundle, backends) depends on the training configuration, not on the
    training code (`engine.train_config` holds `TrainConfig`), and not on torch: methods, networks
    and the torch backend are registered by import path and imported when used."""
    import subprocess
    import sys

    code = (
        "import sys, engine.runtime, engine.runtime.onnx_backend, engine.bundle, engine.live\n"
        "from engine.bundle import load_bundle\n"
        "from engine.live import default_bundle\n"
        "from engine.runtime import open_backend\n"
        "backend = open_backend(load_bundle(default_bundle()), 'onnxruntime')\n"
        "print(sorted(m for m in ('torch', 'engine.train', 'engine.methods.gim', 'engine.models.spotter')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_lazily_registered_method_or_backend_is_imported_on_first_use() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from engine.methods import METHODS\n"
        "from engine.runtime import BACKENDS\n"
        "assert 'gim' in METHODS and 'torch' in BACKENDS and 'torch' not in sys.modules\n"
        "assert METHODS.get('gim').name == 'gim' and BACKENDS.get('torch').name == 'torch'\n"
        "from engine.runtime import TorchBackend\n"
        "assert TorchBackend is BACKENDS.get('torch')\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
