"""The package's import graph: no cycles, no private name used outside its module, the buoy's modules TF-free.

Every import statement counts, function-local ones included, and so does the package `__init__` that
importing a submodule runs first.
"""

import ast
import pathlib

import mammalnet

PACKAGE = pathlib.Path(mammalnet.__file__).parent
# What the buoy runtime (numpy + LiteRT only) imports of mammalnet: never tensorflow or keras at module level.
TF_FREE = ("mammalnet.card", "mammalnet.files", "mammalnet.cli", "mammalnet.audio.reader", "mammalnet.detector",
           "mammalnet.edge.events", "mammalnet.edge.buoy", "mammalnet.edge.latency")


def modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["mammalnet", *path.relative_to(PACKAGE).with_suffix("").parts]
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(name: str, path: pathlib.Path, *, top_level_only: bool = False):
    """(imported module or attribute path, the import node) of every import in a module."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            yield base, node
            for alias in node.names:
                yield f"{base}.{alias.name}", node


def import_graph() -> dict[str, set]:
    mods = modules()

    def resolve(target):
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target

    graph = {name: set() for name in mods}
    for name, path in mods.items():
        for target, _ in imported_names(name, path):
            target = resolve(target)
            if not target or target == name:
                continue
            graph[name].add(target)
            parts = target.split(".")
            for i in range(2, len(parts)):  # the packages whose __init__ the import runs first
                parent = ".".join(parts[:i])
                if parent in mods and not (name + ".").startswith(parent + "."):
                    graph[name].add(parent)
    return graph


def cycles(graph: dict[str, set]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_package_init():
    graph = {"a": {"a.b"}, "a.b": {"c"}, "c": {"a"}, "d": set()}
    assert cycles(graph) == [["a", "a.b", "c"]]


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 90 and sum(map(len, graph.values())) > 300  # the whole package was read
    assert cycles(graph) == []


def test_no_private_name_is_imported_from_another_module():
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {target}"
                 for name, path in modules().items() for target, node in imported_names(name, path)
                 if target.startswith("mammalnet.") and target.rpartition(".")[2].startswith("_")
                 and not target.rpartition(".")[2].startswith("__")]
    assert offenders == []


def test_the_buoys_modules_import_no_tensorflow_at_module_level():
    mods = modules()
    imports = {name: {target for target, _ in imported_names(name, mods[name], top_level_only=True)} for name in TF_FREE}
    heavy = [f"{name} imports {target}" for name, targets in imports.items() for target in targets
             if target.split(".")[0] in ("tensorflow", "keras", "scipy", "pandas", "soundfile")]
    # and what they import of mammalnet is on the list too (a module, or a name in one)
    outside = [f"{name} imports {target}" for name, targets in imports.items() for target in targets
               if target.startswith("mammalnet.") and target not in TF_FREE and target.rpartition(".")[0] not in TF_FREE]
    assert heavy == [] and outside == []
