"""The package's shape: no import cycles between modules, layers that import only downward, and
an entry point that loads nothing heavy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import llmrl

SRC = Path(llmrl.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The llmrl modules ``path`` imports, at the top or inside functions (``from a import b``
    counts as ``a.b`` when that is a module, else ``a``)."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m for m in found if m in modules}


def graph() -> dict[str, set[str]]:
    files = sorted(SRC.rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): imports(p, modules) - {module_name(p)} for p in files}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
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
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_modules():
    # A module importing its own package's __init__ (which re-exports its modules) is not a cycle
    # of ideas: those edges are left out.
    g = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph().items()}
    assert cycles(g) == []


def test_layers_import_only_downward():
    """Roles never import a recipe; algorithms never import a role or a recipe; the LM layer and
    environments know nothing of RL, roles or recipes; the scale-out layer (Ray) knows only the
    interfaces it stands behind (environment groups, LanguageModel)."""
    above = {
        "llmrl.lm": ("llmrl.roles", "llmrl.recipes", "llmrl.rl", "llmrl.envs", "llmrl.agents"),
        "llmrl.envs": ("llmrl.roles", "llmrl.recipes", "llmrl.rl", "llmrl.lm", "llmrl.agents"),
        "llmrl.rl": ("llmrl.roles", "llmrl.recipes"),
        "llmrl.data": ("llmrl.roles", "llmrl.recipes", "llmrl.rl", "llmrl.lm", "llmrl.agents"),
        "llmrl.roles": ("llmrl.recipes",),
        "llmrl.agents": ("llmrl.recipes",),
        "llmrl.scale": ("llmrl.roles", "llmrl.recipes", "llmrl.rl", "llmrl.agents"),
        # The sandbox stands alone: its worker must run with the standard library and numpy only.
        "llmrl.sandbox": ("llmrl.roles", "llmrl.recipes", "llmrl.rl", "llmrl.agents", "llmrl.lm", "llmrl.envs",
                          "llmrl.scale", "llmrl.runs", "llmrl.config"),
    }
    bad = [(m, d) for m, deps in graph().items() for layer, banned in above.items() if m.startswith(layer)
           for d in deps if d.startswith(banned)]
    assert bad == []


def test_the_entry_point_and_configs_load_no_torch():
    code = ("import sys, llmrl.cli, llmrl.config, llmrl.recipes; llmrl.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'transformers', 'gymnasium', 'mujoco', 'crafter') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
