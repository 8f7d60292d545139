"""The package's structure: no import cycles, dependencies one way between the subpackages."""

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "lora_gym"
LAYERS = {"core": 0, "tasks": 1, "engine": 2, "replay": 2, "envs": 3, "policies": 4, "cli": 5}
"""Rank of each part of the package: a module imports only parts of lower rank, or its own."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _env_entry_points() -> dict[str, str]:
    """Registered env id -> the module of its entry point (from ``lora_gym/__init__.py``)."""
    out = {}
    for node in ast.walk(ast.parse((PACKAGE / "__init__.py").read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "register":
            kw = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
            out[kw["id"]] = kw["entry_point"].split(":")[0]
    return out


ENV_MODULES = _env_entry_points()


def imports(path: Path) -> set[str]:
    """Every project module `path` imports: at module level, in functions, under TYPE_CHECKING,
    and through strings: a literal module name (``importlib.import_module("lora_gym.x")``, an
    entry point ``"lora_gym.x:Cls"``; not the package root's registrations, which load lazily)
    or a registered env id (``gym.make("LoRATune-v0")``)."""
    found = set()
    root = path == PACKAGE / "__init__.py"  # registers the envs' entry points, loaded lazily
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and not root:
            names = [node.value.split(":")[0]]  # a module's exact name, or an entry point
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "make":
            names = [ENV_MODULES.get(a.value, "") for a in node.args[:1]
                     if isinstance(a, ast.Constant) and isinstance(a.value, str)]
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
    # through strings: sim2real's gym.make("LoRATune-v0")
    assert "lora_gym.envs.lora_tune" in GRAPH["lora_gym.policies.sim2real"]


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


def test_the_agents_tooling_never_imports_the_command_package():
    """`lora-gym` loads `lora_gym_agents` modules by name; they must not import `lora_gym.cli`
    back (a package-level loop the module graph above cannot see)."""
    for path in sorted((ROOT / "agents").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("lora_gym.cli"), f"{path.name}: {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("lora_gym.cli") for a in node.names), path.name
