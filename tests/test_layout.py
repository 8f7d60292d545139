"""The package's structure: no import cycles, dependencies one way between the subpackages."""

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "lora_gym"
LAYERS = {"core": 0, "tasks": 1, "policies": 1, "rollout": 1, "engine": 2, "replay": 2,
          "envs": 3, "cli": 4}
"""Rank of each part of the package: a module imports only parts of lower rank, or its own."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """Every project module `path` imports: at module level, in functions, under TYPE_CHECKING."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in MODULES}
    return found


GRAPH = {name: imports(path) - {name} for name, path in MODULES.items()}


def part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_the_graph_sees_the_imports():
    assert "lora_gym.core.config" in GRAPH["lora_gym.envs.lora_tune"]
    assert "lora_gym.envs.lora_tune" in GRAPH["lora_gym.envs.live_replayer"]


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(GRAPH[module]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if part(m) in LAYERS))
def test_dependencies_run_one_way(module):
    mine = part(module)
    for dep in GRAPH[module]:
        theirs = part(dep)
        if theirs is None or theirs == mine:
            continue
        assert LAYERS[theirs] < LAYERS[mine], f"{module} ({mine}) imports {dep} ({theirs})"


def test_core_imports_no_heavy_library():
    heavy = {"torch", "transformers", "peft", "datasets", "stable_baselines3"}
    for name, path in MODULES.items():
        if part(name) != "core":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                    node.module or ""]
                assert not {m.split(".")[0] for m in mods} & heavy, f"{name} imports {mods}"
