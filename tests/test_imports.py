"""The product's import graph: no cycle, no import inside a function, layers in one direction.

The product is config/, components/, onhost/, tools/, policy/ and __main__.py. Its layers, lowest
first: onhost/ (standard library only: the policy pack ships with it), config/ (the settings and
what is planned from them alone), components/ (the Pulumi components), then __main__.py and
tools/ on top; policy/ uses onhost/ only. Every import counts, wherever it stands (module level,
`if TYPE_CHECKING:`, a function), and importing `a.b` runs package `a`'s `__init__` first, so that
is an edge too. No module reads another's private (`_name`) names.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "components", "onhost", "tools", "policy")
# What each top-level part may import of the product (itself included).
ALLOWED = {
    "onhost": {"onhost"},
    "config": {"config"},
    "components": {"components", "config", "onhost"},
    "policy": {"policy", "onhost"},
    "tools": {"tools", "components", "config", "onhost"},
    "__main__": {"components", "config"},
}


@dataclass(frozen=True)
class Import:
    module: str
    """The importing module."""
    target: str
    """The product module imported (a package means its `__init__`)."""
    names: tuple[str, ...]
    """The names taken from it (`from target import ...`)."""
    line: int
    in_function: bool


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_files(root: Path) -> dict[str, Path]:
    """Module name -> file, for every Python file of the product."""
    files = [root / "__main__.py", *(p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py")))]
    return {module_name(p, root): p for p in files if p.exists()}


def _resolve(name: str, importer: str, modules: dict[str, Path]) -> str | None:
    """The product module `name` means in `importer`: absolute, or a sibling (the policy pack runs
    from policy/, so `policies` there is policy/policies.py)."""
    if name in modules:
        return name
    sibling = ".".join([*importer.split(".")[:-1], name])
    return sibling if "." in importer and sibling in modules else None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """Every import of a product module in one file, the packages whose `__init__` it runs included."""
    found: list[Import] = []

    def add(name: str, names: tuple[str, ...], node: ast.stmt, in_function: bool) -> None:
        target = _resolve(name, module, modules)
        if target is None:
            return
        found.append(Import(module, target, names, node.lineno, in_function))
        parts = target.split(".")
        for i in range(1, len(parts)):  # `import a.b` runs a/__init__.py first
            package = ".".join(parts[:i])
            if package in modules and not module.startswith(package + ".") and package != module:
                found.append(Import(module, package, (), node.lineno, in_function))

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, (), child, in_function)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                for alias in child.names:
                    # `from package import module` imports that module.
                    if _resolve(f"{child.module}.{alias.name}", module, modules):
                        add(f"{child.module}.{alias.name}", (), child, in_function)
                    else:
                        add(child.module, (alias.name,), child, in_function)
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def private_uses(module: str, path: Path, modules: dict[str, Path]) -> list[str]:
    """`_name`s of another product module that this one imports or reads as `module._name`."""
    tree = ast.parse(path.read_text(), str(path))
    bound: dict[str, str] = {}  # local name -> product module it is bound to
    uses: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, module, modules)
                if target and alias.asname:
                    bound[alias.asname] = target
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                sub = _resolve(f"{node.module}.{alias.name}", module, modules)
                if sub:
                    bound[alias.asname or alias.name] = sub
                elif _resolve(node.module, module, modules) and alias.name.startswith("_"):
                    uses.append(f"{module}:{node.lineno} imports {node.module}.{alias.name}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and bound[node.value.id] != module
        ):
            uses.append(f"{module}:{node.lineno} reads {bound[node.value.id]}.{node.attr}")
    return uses


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing itself
    (Tarjan), each sorted; sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strongconnect(w)
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
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    return sorted(found)


def graph(root: Path) -> tuple[dict[str, Path], list[Import]]:
    modules = product_files(root)
    return modules, [imp for m, p in modules.items() for imp in imports_of(m, p, modules)]


def edges_of(imports: list[Import]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for imp in imports:
        edges.setdefault(imp.module, set()).add(imp.target)
    return edges


def layer(module: str) -> str:
    return module.split(".")[0]


MODULES, IMPORTS = graph(ROOT)


def test_the_product_is_all_there() -> None:
    """The graph reads the files it should (a rename would otherwise leave them out silently)."""
    for name in ("__main__", "config.settings", "components.openstack", "onhost.chain", "tools.render",
                 "policy.policies", "policy.__main__"):
        assert name in MODULES
    assert ("components.openstack", "onhost.chain") in {(i.module, i.target) for i in IMPORTS}
    assert ("policy.__main__", "policy.policies") in {(i.module, i.target) for i in IMPORTS}


def test_no_import_cycle() -> None:
    assert cycles(edges_of(IMPORTS)) == []


def test_no_function_level_import_of_the_product() -> None:
    assert [f"{i.module}:{i.line} imports {i.target}" for i in IMPORTS if i.in_function] == []


def test_layers_import_downwards_only() -> None:
    wrong = [f"{i.module}:{i.line} imports {i.target}" for i in IMPORTS
             if layer(i.target) not in ALLOWED[layer(i.module)]]
    assert wrong == []


def test_onhost_uses_the_standard_library_only() -> None:
    """The policy pack runs with onhost/ and nothing of the program's requirements."""
    outside = []
    for name, path in MODULES.items():
        if layer(name) != "onhost":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            roots = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            outside += [f"{name}: {r}" for r in roots
                        if r.split(".")[0] not in sys.stdlib_module_names and layer(r) != "onhost"]
    assert outside == []


def test_no_private_name_read_outside_its_module() -> None:
    assert [use for m, p in MODULES.items() for use in private_uses(m, p, MODULES)] == []


# ---- the checks themselves, on a tree made for them ----


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.fixture
def bad_tree(tmp_path: Path) -> Path:
    return _tree(tmp_path, {
        "__main__.py": "import components.a\n",
        "config/__init__.py": "from config.settings import Settings\n",
        "config/settings.py": "from config import checks\nSettings = 1\n",
        "config/checks.py": "def f():\n    from components.a import _helper\n    return _helper\n",
        "components/__init__.py": "",
        "components/a.py": "from config.checks import f\nimport config.settings as s\nX = s._hidden\n"
                           "def _helper():\n    pass\n",
        "policy/__main__.py": "from policies import P\n",
        "policy/policies.py": "P = 1\n",
    })


def test_a_cycle_through_a_function_level_import_is_found(bad_tree: Path) -> None:
    modules, imports = graph(bad_tree)
    found = cycles(edges_of(imports))
    # config.checks -> components.a (in a function) -> config.checks, and components.a -> config (the
    # package's __init__) -> config.settings -> config.checks -> components.a: one knot of four.
    assert found == [["components.a", "config", "config.checks", "config.settings"]]
    assert [(i.module, i.target) for i in imports if i.in_function] == [("config.checks", "components.a"),
                                                                        ("config.checks", "components")]
    assert ("policy.__main__", "policy.policies") in {(i.module, i.target) for i in imports}


def test_private_names_read_across_modules_are_found(bad_tree: Path) -> None:
    modules, _ = graph(bad_tree)
    uses = [u for m, p in modules.items() for u in private_uses(m, p, modules)]
    assert uses == ["config.checks:2 imports components.a._helper", "components.a:3 reads config.settings._hidden"]
