"""The house rules, checked on the source: no import circles, packages layered by pipeline stage, core free of ROS.

Imports are read from the AST of every module, including imports inside functions, so a
lazy import cannot hide a circle. Package ``__init__`` files resolve their public names
lazily (PEP 562), so importing one module never drags its siblings in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: vpr_core's packages and top-level modules, lowest layer first: a module may import only its own layer or lower ones.
LAYERS = [
    {"errors", "registry", "geodesy", "_lazy", "config"},
    {"io"},
    {"store"},
    {"models"},
    {"rerank"},
    {"runtime"},
    {"train"},
    {"map"},
    {"localize"},
    {"eval", "online"},
    {"demo"},
    {"cli"},
]
ROS_PREFIXES = (
    "rclpy",
    "vpr_ros",
    "rcl_interfaces",
    "sensor_msgs",
    "geometry_msgs",
    "std_msgs",
    "diagnostic_msgs",
    "nav_msgs",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in ("vpr_core", "vpr_ros") for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Absolute names imported anywhere in the module (a ``from pkg import mod`` counts as importing ``pkg.mod``)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.add(sub if sub in known else target)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(m, p, known) for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in g.get(v, ()):
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in g:
        if v not in index:
            visit(v)
    return out


def layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "vpr_core" or len(parts) == 1:
        return None
    for i, names in enumerate(LAYERS):
        if parts[1] in names:
            return i
    raise AssertionError(f"{module}: its package is in no layer; add it to LAYERS in {Path(__file__).name}")


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, "import circles (imports inside functions count): " + "; ".join(" <-> ".join(c) for c in found)


def test_cycle_detection_finds_a_planted_cycle():
    """The checker itself: a circle through a function-level import is found."""
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]


def test_packages_are_layered_by_pipeline_stage():
    wrong = []
    for mod, deps in graph().items():
        lo = layer(mod)
        if lo is None:
            continue
        for d in deps:
            ld = layer(d)
            if ld is not None and ld > lo:
                wrong.append(f"{mod} (layer {lo}) imports {d} (layer {ld})")
    assert not wrong, "\n".join(sorted(wrong))


def test_core_never_imports_ros():
    bad = [
        f"{m} imports {d}"
        for m, deps in graph().items()
        if m.startswith("vpr_core")
        for d in deps
        if d.startswith(ROS_PREFIXES)
    ]
    assert not bad, bad


@pytest.mark.parametrize("pkg", sorted(p.parent for p in (ROOT / "vpr_core").rglob("__init__.py")))
def test_packages_document_themselves(pkg: Path):
    tree = ast.parse((pkg / "__init__.py").read_text())
    doc = ast.get_docstring(tree)
    assert doc and len(doc) > 60, f"{pkg.name}: a one-paragraph docstring"
    names = [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
    assert "__all__" in names, f"{pkg.name}: no __all__"


def test_every_module_imports_and_public_names_resolve():
    """One fresh interpreter imports every vpr_core module and reads every package's public names."""
    code = (
        "import importlib, sys\n"
        f"mods = {sorted(m for m in modules() if m.startswith('vpr_core') and not m.endswith('__main__'))!r}\n"
        "for m in mods:\n"
        "    mod = importlib.import_module(m)\n"
        "    for name in getattr(mod, '__all__', []):\n"
        "        getattr(mod, name)\n"
        "assert not any(k.startswith(('rclpy', 'vpr_ros')) for k in sys.modules), 'vpr_core pulled in ROS'\n"
        "print('ok', len(mods))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr[-2000:]


def test_user_docs_are_short_linked_and_free_of_issue_numbers():
    """The README is read in ten minutes (at most 300 lines); detail lives in docs/*.md; every relative link
    resolves; user-facing text never speaks of issue numbers."""
    import re

    readme = ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= 300
    pages = [readme, *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        assert not re.search(r"(?<![\w/&])#\d+\b", text), f"{page.name}: an issue number"
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
