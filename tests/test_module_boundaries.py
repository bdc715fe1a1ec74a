"""The project's import graph: one door from the site to the engine, and no import circle anywhere.

Imports are read from the source (ast), at module level and inside functions alike: an import
hidden in a function is still a dependency, and a circle through one is still a circle.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("leaderboard", "workers")
# The only modules of leaderboard/ that may import the engine: the bridge, and the Celery app's
# configuration (it schedules the engine's tasks by the names the engine's contract gives them).
ENGINE_DOORS = {"leaderboard.engine", "leaderboard.celery"}


def project_modules() -> dict[str, Path]:
    """Every module of the project by its dotted import name: the packages, bench/, tests/, manage.py."""
    modules = {}
    for folder in (*PACKAGES, "bench", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    modules["manage"] = ROOT / "manage.py"
    return modules


def _aliases(modules: dict[str, Path]) -> dict[str, str]:
    """pytest puts each test folder on sys.path, so a test helper is also imported by its file name."""
    return {name.rsplit(".", 1)[-1]: name for name in modules if name.startswith(("tests.", "bench."))}


def _resolve(name: str, modules: dict[str, Path], aliases: dict[str, str]) -> str | None:
    """The project module an imported dotted name lands in (its longest known prefix)."""
    parts = name.split(".")
    if parts[0] in aliases:
        parts = aliases[parts[0]].split(".") + parts[1:]
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `module` imports anywhere in its file."""
    aliases = _aliases(modules)
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from package import name`: the submodule when `name` is one, else the package itself
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name, modules, aliases)
            if target is not None and target != module:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {module: imports_of(module, path, modules) for module, path in modules.items()}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, circles = {}, {}, set(), [], []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        circles.append(sorted(component))
    return circles


def test_only_the_bridge_imports_the_engine():
    graph = import_graph()
    offenders = {
        module: sorted(target for target in targets if target.split(".")[0] == "workers")
        for module, targets in graph.items()
        if module.split(".")[0] == "leaderboard" and module not in ENGINE_DOORS
    }
    assert {module: targets for module, targets in offenders.items() if targets} == {}


def test_the_engine_imports_django_only_in_its_celery_tasks():
    graph = import_graph()
    for module, path in project_modules().items():
        if module.split(".")[0] != "workers" or module == "workers.tasks":
            continue
        tree = ast.parse(path.read_text())
        django = [node.lineno for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "django"
                  or isinstance(node, ast.Import) and any(a.name.split(".")[0] == "django" for a in node.names)]
        assert django == [], f"{module} imports Django (line {django[0] if django else ''})"
        assert not any(target.split(".")[0] == "leaderboard" for target in graph[module]), module


def test_no_import_circle_anywhere():
    assert import_circles(import_graph()) == []


def test_the_circle_finder_finds_a_circle_through_a_function_level_import(tmp_path):
    # The detector itself, on the shape of the circle this project once had (services <-> tasks).
    graph = {"site.services": {"engine.tasks"}, "engine.tasks": {"site.services"}, "site.views": {"site.services"}}
    assert import_circles(graph) == [["engine.tasks", "site.services"]]
    source = tmp_path / "a.py"
    source.write_text("def f():\n    from b import g\n")
    assert imports_of("a", source, {"a": source, "b": tmp_path / "b.py"}) == {"b"}
