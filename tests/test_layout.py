"""The house: pg_lightning's modules import one way, each only from floors below its own (or its
own floor, without a circle), ``TYPE_CHECKING`` and function-level imports included; no file is
over 300 lines. A new module must be given a floor here (and in the README's layout section)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pg_lightning"
MAX_LINES = 300

# from the ground up; a module imports only modules on its own floor or below
FLOORS = [
    # ground floor: generic helpers and pure functions, no pg_lightning types
    ["errors", "classpaths", "returns", "losses", "statistics", "distributed", "observations", "packaged", "batch",
     "lockstep"],
    # what the run is made of, each on its own
    ["trust", "optim", "normalization", "networks", "envs", "games", "loggers", "trainer_checks", "numpy_actor"],
    ["distributions", "policies", "checkpoints", "callbacks", "lightning_speed", "run_statistics", "gradient_step",
     "seed_loggers", "seed_stack"],
    ["collector", "collection_worker", "data", "evaluation", "agent", "seed_checkpoints"],
    ["modules.arguments", "modules.evaluation_steps", "modules.checkpoint_state", "modules.run_counters", "modules.seed_table",
     "modules.base"],
    ["modules.actor_critic", "modules.reinforce"],
    ["modules.a2c", "modules.ppo"],
    ["modules"],
    # above the algorithms: names, checkpoints rebuilt, the commands
    ["registry", "hub_download"],
    ["cli_args"],
    ["export", "play", "plot", "cli"],
    ["hub", "seeds"],
    ["command", "__init__"],
]
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def imports(path: Path) -> set[str]:
    """The pg_lightning modules ``path`` imports, wherever the import statement stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pg_lightning"):
            base = node.module.removeprefix("pg_lightning").lstrip(".")
            for alias in node.names:  # ``from pg_lightning import trust`` imports a module
                child = f"{base}.{alias.name}".lstrip(".")
                found.add(child if child in FLOOR else base or "__init__")
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("pg_lightning").lstrip(".") or "__init__" for a in node.names
                      if a.name.startswith("pg_lightning")}
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_floor():
    assert sorted(module_name(p) for p in SOURCES if module_name(p) not in FLOOR) == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_imports_run_down(path):
    here = module_name(path)
    upward = sorted(m for m in imports(path) - {here} if FLOOR.get(m, 99) > FLOOR[here])
    assert upward == [], f"{here} (floor {FLOOR[here]}) imports from higher floors: {upward}"


def test_no_circles():
    graph = {module_name(p): imports(p) - {module_name(p)} for p in SOURCES}
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError(f"import circle: {' -> '.join(path[path.index(node):] + [node])}")
        if node in done or node not in graph:
            return
        for child in sorted(graph[node]):
            visit(child, path + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_no_file_is_over_300_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES



def test_importing_the_package_changes_no_global_state():
    code = ("import warnings, torch, lightning, gymnasium, jsonargparse; "  # what the dependencies do is theirs
            "filters = list(warnings.filters); threads = torch.get_num_threads(); "
            "import pg_lightning, pg_lightning.modules, pg_lightning.cli, pg_lightning.export; "
            "assert warnings.filters == filters and torch.get_num_threads() == threads, 'changed'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
