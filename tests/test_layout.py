"""The package's layout holds: imports point down the layers (no circles between modules or
folders), and no folder reaches into another's private names. Read from the source with ``ast``
(function-local imports included), so nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import opsearch

ROOT = Path(opsearch.__file__).resolve().parent

# Lowest first: a module may import from its own layer's folder or from lower layers only.
LAYERS = [
    {"errors", "settings"},
    {"targets"},
    {"ops"},
    {"db"},
    {"runtime", "costmodel"},
    {"search"},
    {"torch_bridge"},
    {"bench"},  # the model benchmark runs models through the torch bridge
    # functional, nn: the public names of the torch bridge's modules; gpu_runner: run on a GPU
    # machine without TVM (it reads bundles with runtime.bundle and times bench.baselines)
    {"functional", "nn", "cli", "gpu_runner"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(("opsearch", *parts))] = p
    return mods


MODULES = _modules()


def _target(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``from X import ...`` names."""
    if not node.level:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str):
    """(imported module, names bound locally -> module they stand for, private names imported)."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    deps: set[str] = set()
    bound: dict[str, str] = {}
    private: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _target(module, node)
            if not target.startswith("opsearch"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:
                    deps.add(sub)
                    bound[alias.asname or alias.name] = sub
                else:
                    if _known(target):
                        deps.add(_known(target))
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        private.append((target, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("opsearch") and _known(alias.name):
                    deps.add(_known(alias.name))
                    if alias.asname:
                        bound[alias.asname] = _known(alias.name)
    for node in ast.walk(tree):  # mod._private through a module bound by an import
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            private.append((bound[node.value.id], node.attr))
    deps.discard(module)
    deps.discard("opsearch")  # the root package: version and core count, imported by everything
    return deps, private


def _folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


GRAPH = {m: _imports(m)[0] for m in MODULES}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if v not in state and (found := visit(v)):
                return found
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state and (found := visit(u)):
            return found
    return None


def test_every_folder_and_top_level_module_has_a_layer():
    names = {_folder(m) for m in MODULES} - {""}
    assert names <= set(LAYER), f"not placed in LAYERS: {sorted(names - set(LAYER))}"


def test_no_import_circle_between_modules():
    assert _cycle(GRAPH) is None, " -> ".join(_cycle(GRAPH))


def test_imports_point_down_the_layers():
    wrong = [f"{m} imports {d}" for m, deps in GRAPH.items() for d in deps
             if _folder(m) and _folder(d) and LAYER[_folder(d)] > LAYER[_folder(m)]]
    assert not wrong, wrong
    folders: dict[str, set[str]] = {}
    for m, deps in GRAPH.items():
        folders.setdefault(_folder(m), set()).update(_folder(d) for d in deps if _folder(d) != _folder(m))
    assert _cycle(folders) is None, " -> ".join(_cycle(folders))


def test_no_private_name_is_used_across_folders():
    wrong = [f"{m} uses {target}.{name}" for m in MODULES for target, name in _imports(m)[1]
             if _folder(target) != _folder(m)]
    assert not wrong, wrong


def test_the_checker_sees_a_circle_and_an_upward_import():
    """The checks above can fail: a made-up graph with a circle is caught."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert LAYER["ops"] < LAYER["db"] < LAYER["runtime"] < LAYER["search"] < LAYER["torch_bridge"] < LAYER["cli"]
