"""Static import closure of a workflow script through the ``tlcgcnn`` package (``ast`` only).

Used by ``tests/workflow/test_envs.py`` to prove, rule by rule, that a rule's conda env holds every
third-party distribution its script can import. The analysis works per *symbol*, so that a
module holding two entry points (say a CGCNN cell and a scikit-learn cell) does not charge
one rule with the other's lazy imports:

* a module's top-level code (its module-level imports, at any nesting of ``if``/``try``, and
  the names its top-level statements use) runs whenever the module is imported;
* a function or class brings in the imports inside its body (lazy imports included, at any
  depth) and every name it uses that resolves to a function, class or module of the package;
* importing ``tlcgcnn.a.b`` also runs ``tlcgcnn/__init__.py`` and ``tlcgcnn/a/__init__.py``.

Names that cannot be resolved statically (a method called on an object) are covered by the
class: a class node includes all of its methods. ``read_parquet`` / ``to_parquet`` anywhere in
reached code count as an import of ``pyarrow`` (pandas' parquet engine).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

PARQUET_CALLS = {"read_parquet", "to_parquet"}
ALL = "*"  # symbol meaning "every top-level function and class of the module"

Node = tuple[str, "str | None"]  # (module name, top-level symbol or None for the module body)


@dataclass
class _Scope:
    """What one node needs directly."""

    external: dict[str, int] = field(default_factory=dict)  # third-party top-level name -> line
    refs: set[Node] = field(default_factory=set)
    parquet: bool = False


@dataclass
class _Module:
    name: str
    path: Path
    is_package: bool
    defs: set[str]
    nodes: dict[str | None, _Scope]
    bindings: dict[str, Node] = field(default_factory=dict)


class ImportClosure:
    """Import closure of scripts whose local imports (``tlcgcnn`` and any module of the extra
    roots) resolve under ``roots``."""

    def __init__(self, *roots: Path) -> None:
        self.roots = [Path(r) for r in roots]
        self._modules: dict[str, _Module | None] = {}

    # ------------------------------------------------------------------ module loading
    def _find(self, modname: str) -> tuple[Path, bool] | None:
        if not modname or modname.startswith("<"):
            return None
        for root in self.roots:
            base = root.joinpath(*modname.split("."))
            if (base / "__init__.py").is_file():
                return base / "__init__.py", True
            if base.with_suffix(".py").is_file():
                return base.with_suffix(".py"), False
        return None

    def is_local(self, modname: str) -> bool:
        """Whether ``modname``'s top-level name is a module or package under the roots."""
        return self._find(modname.split(".")[0]) is not None

    def module(self, modname: str) -> _Module | None:
        if modname not in self._modules:
            found = self._find(modname)
            self._modules[modname] = None if found is None else self._parse(modname, *found)
        return self._modules[modname]

    def load_script(self, path: Path) -> str:
        """Parse a script outside the package; returns its pseudo module name."""
        name = f"<script {path}>"
        self._modules[name] = self._parse(name, Path(path), False)
        return name

    def _parse(self, modname: str, path: Path, is_package: bool) -> _Module:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        defs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        mod = _Module(modname, path, is_package, defs, {})
        top_bindings = self._bindings(mod, tree.body, top_level=True)
        mod.bindings = top_bindings
        body = _Scope()
        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                scope = _Scope()
                # decorators, bases and defaults run at import time
                for expr in [*stmt.decorator_list, *getattr(stmt, "bases", [])]:
                    self._visit(mod, expr, top_bindings, body)
                bindings = {**top_bindings, **self._bindings(mod, [stmt], top_level=False)}
                self._visit(mod, stmt, bindings, scope, skip_self=True)
                mod.nodes[stmt.name] = scope
            else:
                self._visit(mod, stmt, top_bindings, body)
        mod.nodes[None] = body
        return mod

    # ------------------------------------------------------------------ import handling
    def _absolute(self, mod: _Module, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        parts = mod.name.split(".")
        base = parts if mod.is_package else parts[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join([*base, node.module] if node.module else base)

    def _bindings(self, mod: _Module, stmts: list[ast.stmt], top_level: bool) -> dict[str, Node]:
        """Names bound to package modules / symbols by import statements in ``stmts``
        (top level: not descending into functions; otherwise everything below)."""
        out: dict[str, Node] = {}
        todo: list[ast.AST] = list(stmts)
        while todo:
            n = todo.pop()
            if top_level and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if _is_type_checking(n):
                todo.extend(n.orelse)  # type: ignore[attr-defined]
                continue
            if isinstance(n, ast.Import):
                for a in n.names:
                    if self.is_local(a.name):
                        if a.asname:
                            out[a.asname] = (a.name, None)
                        else:
                            out[a.name.split(".")[0]] = (a.name.split(".")[0], None)
            elif isinstance(n, ast.ImportFrom):
                src = self._absolute(mod, n)
                if self.is_local(src):
                    for a in n.names:
                        sub = f"{src}.{a.name}"
                        target: Node = (sub, None) if self._find(sub) else (src, a.name)
                        out[a.asname or a.name] = target
            todo.extend(ast.iter_child_nodes(n))
        return out

    def _visit(
        self, mod: _Module, root: ast.AST, bindings: dict[str, Node], scope: _Scope, skip_self: bool = False
    ) -> None:
        todo: list[ast.AST] = list(ast.iter_child_nodes(root)) if skip_self else [root]
        if skip_self and isinstance(root, (ast.FunctionDef, ast.AsyncFunctionDef)):
            todo = [*root.body, root.args]
        while todo:
            n = todo.pop()
            if _is_type_checking(n):
                todo.extend(n.orelse)  # type: ignore[attr-defined]
                continue
            if isinstance(n, ast.Import):
                for a in n.names:
                    self._import(a.name, n.lineno, scope)
            elif isinstance(n, ast.ImportFrom):
                src = self._absolute(mod, n)
                self._import(src, n.lineno, scope)
                if self.is_local(src):
                    for a in n.names:
                        sub = f"{src}.{a.name}"
                        scope.refs.add((sub, None) if self._find(sub) else (src, a.name))
            elif isinstance(n, ast.Attribute):
                if n.attr in PARQUET_CALLS:
                    scope.parquet = True
                chain = _attribute_chain(n)
                if chain is not None:
                    if chain[0] in mod.defs:
                        scope.refs.add((mod.name, chain[0]))
                    elif chain[0] in bindings:
                        self._ref_chain(bindings[chain[0]], chain[1:], scope)
                    continue
            elif isinstance(n, ast.Name):
                if n.id in mod.defs:
                    scope.refs.add((mod.name, n.id))
                elif n.id in bindings:
                    target = bindings[n.id]
                    # a module used as a value (stored, passed on): any of its functions
                    # may be called through it
                    scope.refs.add((target[0], ALL) if target[1] is None else target)
            todo.extend(ast.iter_child_nodes(n))

    def _ref_chain(self, start: Node, attrs: list[str], scope: _Scope) -> None:
        modname, sym = start
        if sym is not None:
            scope.refs.add(start)
            return
        for attr in attrs:
            sub = f"{modname}.{attr}"
            if self._find(sub):
                modname = sub
                continue
            scope.refs.add((modname, attr))
            return
        scope.refs.add((modname, None))

    def _import(self, name: str, lineno: int, scope: _Scope) -> None:
        top = name.split(".")[0]
        if not top:
            return
        if self.is_local(top):
            scope.refs.add((name, None) if self._find(name) else (name.rsplit(".", 1)[0], None))
            return
        if top in sys.stdlib_module_names or top == "__future__":
            return
        scope.external.setdefault(top, lineno)

    # ------------------------------------------------------------------ closure
    def closure(self, script: Path) -> tuple[dict[str, str], set[str]]:
        """Third-party top-level import names reached from ``script`` -> where (file:line),
        and the local modules whose code the script runs."""
        start = self.load_script(script)
        return self._walk([(start, None)], str(script))

    def closure_of_module(self, modname: str) -> tuple[dict[str, str], set[str]]:
        """Like :meth:`closure`, for all of a local module's code (every function and class)."""
        return self._walk([(modname, ALL)], modname)

    def _walk(self, start: list[Node], what: str) -> tuple[dict[str, str], set[str]]:
        needed: dict[str, str] = {}
        seen: set[Node] = set()
        todo: list[Node] = list(start)
        modules: set[str] = set()
        while todo:
            node = todo.pop()
            if node in seen:
                continue
            seen.add(node)
            modname, sym = node
            mod = self.module(modname)
            if mod is None:
                raise ImportError(f"{what}: imports {modname} (not found under {self.roots})")
            modules.add(modname)
            if sym == ALL:
                todo.append((modname, None))
                todo.extend((modname, d) for d in mod.defs)
                continue
            if sym is not None:
                todo.append((modname, None))
                scope = mod.nodes.get(sym)
                if scope is None:
                    # a name the module re-exports from elsewhere (follow it), or a
                    # module-level value (covered by the module body)
                    if sym in mod.bindings:
                        todo.append(mod.bindings[sym])
                    continue
            else:
                scope = mod.nodes[None]
                if not modname.startswith("<"):
                    parts = modname.split(".")
                    todo.extend((".".join(parts[:i]), None) for i in range(1, len(parts)))
            for ext, line in scope.external.items():
                needed.setdefault(ext, f"{mod.path}:{line}")
            if scope.parquet:
                needed.setdefault("pyarrow", f"{mod.path} (read_parquet/to_parquet)")
            todo.extend(scope.refs)
        return needed, {m for m in modules if not m.startswith("<")}


def _attribute_chain(node: ast.Attribute) -> list[str] | None:
    parts: list[str] = []
    cur: ast.AST = node
    while isinstance(cur, ast.Attribute):
        parts.append(cur.attr)
        cur = cur.value
    if not isinstance(cur, ast.Name):
        return None
    parts.append(cur.id)
    return parts[::-1]


def _is_type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` / ``if typing.TYPE_CHECKING:`` (never runs)."""
    if not isinstance(node, ast.If):
        return False
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )
