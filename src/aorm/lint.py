"""``python -m aorm.lint PATH...``: the async ORM's common mistakes, found before they run.

Static, on the standard library's ``ast``: nothing is imported or executed. It
looks for the mistakes the seeds' "Common mistakes" describe, and their
cousins, where they are bugs: in ``async def`` bodies (and in snippets with a
top-level ``await``, as in an asyncio REPL or a notebook). Code in a nested
``def`` or ``lambda`` is synchronous and is left alone (it may be run with
``aorm.run``).

======== =================================================================
AORM001  an ``a``-method (``aget``, ``acreate``...) or ``aorm.run(...)``
         called and not awaited: the query never runs (anywhere, not only
         in ``async def``)
AORM002  a QuerySet evaluated synchronously: iterated with ``for``,
         ``list()``, ``len()``, ``bool()``/``if``, ``in``, indexing, or a
         sync method (``get()``, ``count()``, ``first()``...)
AORM003  ``with transaction.atomic()`` instead of ``async with``
AORM004  a model instance's sync ``save()``, ``delete()`` or
         ``refresh_from_db()``
AORM005  a QuerySet built and never evaluated (``students =
         Student.objects.all()`` where ``await`` was meant)
======== =================================================================

What counts as a QuerySet is known from its shape, to keep false positives
low: a chain of QuerySet methods on ``X.objects`` (or ``_default_manager``,
``_base_manager``), or a name assigned from one. A model instance is a name
assigned from an awaited ``aget()``/``acreate()``/``afirst()``...,
``aget_object_or_404()``, a loop over an awaited QuerySet, or a call of a
class imported from a ``models`` module. ``# noqa`` (or ``# noqa: AORM002``)
on a line silences it.

Exit status: 0 when nothing is found, 1 when something is, 2 on usage errors.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Django's coroutine functions and methods (QuerySet, Model, related managers,
# shortcuts, auth) and aorm's: calling one without awaiting it does nothing.
ASYNC_METHODS = frozenset(
    {
        "aget", "acreate", "aget_or_create", "aupdate_or_create", "abulk_create",
        "abulk_update", "acount", "ain_bulk", "alatest", "aearliest", "afirst", "alast",
        "aaggregate", "aexists", "acontains", "aupdate", "adelete", "aexplain", "aall",
        "asave", "arefresh_from_db", "aadd", "aremove", "aclear", "aset",
        "aprefetch_related_objects", "aget_object_or_404", "aget_list_or_404",
        "aauthenticate", "alogin", "alogout", "aget_user", "aget_autocommit",
        "aget_rollback", "aset_rollback",
    }
)  # fmt: skip

# QuerySet methods that return a QuerySet: lazy, fine anywhere.
LAZY_METHODS = frozenset(
    {
        "all", "filter", "exclude", "order_by", "select_related", "prefetch_related",
        "values", "values_list", "distinct", "annotate", "alias", "only", "defer", "using",
        "reverse", "none", "union", "intersection", "difference", "select_for_update",
        "extra", "dates", "datetimes", "complex_filter",
    }
)  # fmt: skip

# QuerySet methods that run a query, and the awaitable form to use instead.
SYNC_METHODS = {
    name: f"a{name}"
    for name in (
        "get", "create", "get_or_create", "update_or_create", "bulk_create", "bulk_update",
        "count", "in_bulk", "iterator", "latest", "earliest", "first", "last", "aggregate",
        "exists", "contains", "update", "delete", "explain",
    )
}  # fmt: skip

MANAGERS = frozenset({"objects", "_default_manager", "_base_manager"})

# Model instance methods that run queries.
INSTANCE_METHODS = {"save": "asave", "delete": "adelete", "refresh_from_db": "arefresh_from_db"}

# Awaited calls that return a model instance (or a tuple whose first item is one).
INSTANCE_RETURNING = frozenset(
    {
        "aget", "acreate", "afirst", "alast", "alatest", "aearliest", "aget_or_create",
        "aupdate_or_create", "aget_object_or_404",
    }
)  # fmt: skip

# Builtins that evaluate an iterable: (name, what to write instead).
EVALUATING_BUILTINS = {
    "list": "await {qs}",
    "tuple": "tuple(await {qs})",
    "set": "set(await {qs})",
    "sorted": "sorted(await {qs})",
    "len": "await {qs}.acount()",
    "bool": "await {qs}.aexists()",
    "any": "any(await {qs})",
    "all": "all(await {qs})",
    "sum": "sum(await {qs})",
    "max": "max(await {qs})",
    "min": "min(await {qs})",
    "dict": "dict(await {qs})",
    "enumerate": "enumerate(await {qs})",
}

NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z0-9, ]+))?", re.IGNORECASE)
SKIPPED_DIRS = frozenset({".git", "__pycache__", "node_modules", ".tox", ".nox", ".eggs"})


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    col: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col} {self.code} {self.message}"


def code_of(node: ast.AST) -> str:
    """Source text for a message, shortened: ``Student.objects.aget(...)``."""
    text = ast.unparse(node)
    return text if len(text) <= 60 else f"{text[:57]}..."


def call_name(node: ast.AST) -> str | None:
    """The called function's last name: ``aget`` for ``X.objects.aget(...)``."""
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute):
            return node.func.attr
        if isinstance(node.func, ast.Name):
            return node.func.id
    return None


@dataclass
class Scope:
    """What names stand for in one async body, as its statements are read in order."""

    querysets: dict[str, ast.AST] = field(default_factory=dict)  # name -> where assigned
    instances: set[str] = field(default_factory=set)
    instance_lists: set[str] = field(default_factory=set)
    used: set[str] = field(default_factory=set)


class Checker(ast.NodeVisitor):
    """One module's findings."""

    def __init__(self, path: str, tree: ast.Module) -> None:
        self.path = path
        self.findings: list[Finding] = []
        self.model_classes: set[str] = set()
        self.run_names: set[str] = set()  # local names of aorm.run
        self.aorm_modules: set[str] = set()  # local names of the aorm module
        self.parents: dict[ast.AST, ast.AST] = {}
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent
        self.scope: Scope | None = None  # None: synchronous code
        self.tree = tree

    # -- entry points -------------------------------------------------------

    def check(self) -> list[Finding]:
        self.collect_imports()
        if has_top_level_await(self.tree):
            self.check_async_body(self.tree.body, self.tree)
        else:
            for statement in self.tree.body:
                self.visit(statement)
        return self.findings

    def collect_imports(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and node.module is not None:
                for alias in node.names:
                    local = alias.asname or alias.name
                    if node.module.split(".")[-1] == "models" or node.module == "models":
                        self.model_classes.add(local)
                    if node.module == "aorm" and alias.name == "run":
                        self.run_names.add(local)
            elif isinstance(node, ast.ImportFrom) and node.level and not node.module:
                continue
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "aorm":
                        self.aorm_modules.add(alias.asname or "aorm")

    def check_async_body(self, body: Sequence[ast.stmt], owner: ast.AST) -> None:
        outer, self.scope = self.scope, Scope()
        try:
            for statement in body:
                self.visit(statement)
            self.report_unevaluated(owner)
        finally:
            self.scope = outer

    # -- scopes -----------------------------------------------------------

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        if self.scope is not None:
            self.scope.used.update(names_loaded(node))  # a closure reads the outer names
        self.check_async_body(node.body, node)

    def visit_sync_function(self, node: ast.FunctionDef | ast.Lambda) -> None:
        """A ``def`` or a ``lambda``: synchronous code, where only AORM001 applies."""
        outer, self.scope = self.scope, None
        try:
            if outer is not None:
                outer.used.update(names_loaded(node))  # a closure reads the outer names
            self.generic_visit(node)
        finally:
            self.scope = outer

    visit_FunctionDef = visit_Lambda = visit_sync_function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        outer, self.scope = self.scope, None
        try:
            self.generic_visit(node)
        finally:
            self.scope = outer

    # -- what names stand for ---------------------------------------------

    def is_queryset(self, node: ast.AST) -> bool:
        """``X.objects``, a lazy method chain on one, or a name bound to one."""
        if isinstance(node, ast.Attribute) and node.attr in MANAGERS:
            return True
        if isinstance(node, ast.Name):
            return self.scope is not None and node.id in self.scope.querysets
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
            return self.is_queryset(node.value)  # qs[:10] is still lazy
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            return node.func.attr in LAZY_METHODS and self.is_queryset(node.func.value)
        return False

    def is_instance(self, node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Name)
            and self.scope is not None
            and (node.id in self.scope.instances)
        )

    def bind(self, target: ast.AST, value: ast.AST | None) -> None:
        """Record what an assignment makes of a name (or forget what it was)."""
        scope = self.scope
        if scope is None:
            return
        if isinstance(target, ast.Tuple | ast.List):
            first = isinstance(value, ast.Await) and call_name(value.value) in {
                "aget_or_create",
                "aupdate_or_create",
            }
            for index, element in enumerate(target.elts):
                self.forget(element)
                if first and index == 0 and isinstance(element, ast.Name):
                    scope.instances.add(element.id)
            return
        if not isinstance(target, ast.Name):
            return
        self.forget(target)
        name = target.id
        if value is None:
            return
        if self.is_queryset(value) and not isinstance(value, ast.Attribute):
            scope.querysets[name] = target
        elif isinstance(value, ast.Await):
            inner = value.value
            if call_name(inner) in INSTANCE_RETURNING:
                scope.instances.add(name)
            elif self.is_model_list(inner):
                scope.instance_lists.add(name)
        elif self.is_model_class_call(value):
            scope.instances.add(name)

    def is_model_class_call(self, node: ast.AST) -> bool:
        """``Student(...)`` where ``Student`` was imported from a ``models`` module."""
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in self.model_classes
            and node.func.id[:1].isupper()
        )

    def is_model_list(self, node: ast.AST) -> bool:
        """An awaited QuerySet of model instances (not ``values()``/``values_list()``)."""
        if isinstance(node, ast.Call) and call_name(node) == "aall":
            assert isinstance(node.func, ast.Attribute)
            node = node.func.value
        if not self.is_queryset(node):
            return False
        return not any(
            call_name(part) in {"values", "values_list", "dates", "datetimes"}
            for part in ast.walk(node)
        )

    def forget(self, target: ast.AST) -> None:
        if self.scope is not None and isinstance(target, ast.Name):
            self.scope.querysets.pop(target.id, None)
            self.scope.instances.discard(target.id)
            self.scope.instance_lists.discard(target.id)

    def bind_loop_target(self, target: ast.AST, iterable: ast.AST) -> None:
        if self.scope is None or not isinstance(target, ast.Name):
            for name in ast.walk(target):
                self.forget(name)
            return
        self.forget(target)
        iterated = iterable.value if isinstance(iterable, ast.Await) else iterable
        over_list = isinstance(iterated, ast.Name) and iterated.id in self.scope.instance_lists
        if over_list or (isinstance(iterable, ast.Await) and self.is_model_list(iterated)):
            self.scope.instances.add(target.id)

    # -- statements -------------------------------------------------------

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit_target(target)
            self.bind(target, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit_target(node.target)
        self.bind(node.target, node.value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.generic_visit(node)
        self.forget(node.target)

    def visit_target(self, target: ast.AST) -> None:
        """Subscripts and attributes in a target still read names (``d[qs_key] = ...``)."""
        if not isinstance(target, ast.Name):
            self.visit(target)

    def visit_For(self, node: ast.For) -> None:
        self.visit(node.iter)
        if self.scope is not None and self.is_queryset(node.iter):
            self.report(
                node.iter,
                "AORM002",
                f"`for` over the QuerySet `{code_of(node.iter)}` evaluates it synchronously: "
                f"use `async for ... in {code_of(node.iter)}` or `for ... in await "
                f"{code_of(node.iter)}`",
            )
        self.bind_loop_target(node.target, node.iter)
        for statement in [*node.body, *node.orelse]:
            self.visit(statement)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> None:
        self.visit(node.iter)
        if isinstance(node.target, ast.Name) and self.scope is not None:
            self.forget(node.target)
            if self.is_model_list(node.iter) or (
                isinstance(node.iter, ast.Call)
                and call_name(node.iter) == "aiterator"
                and isinstance(node.iter.func, ast.Attribute)
                and self.is_model_list(node.iter.func.value)
            ):
                self.scope.instances.add(node.target.id)
        for statement in [*node.body, *node.orelse]:
            self.visit(statement)

    def visit_With(self, node: ast.With) -> None:
        if self.scope is not None:
            for item in node.items:
                if is_atomic(item.context_expr):
                    self.report(
                        node,
                        "AORM003",
                        f"`with {code_of(item.context_expr)}` in async code: use "
                        f"`async with {code_of(item.context_expr)}`",
                    )
        self.generic_visit(node)

    def visit_condition(self, node: ast.If | ast.While | ast.IfExp | ast.Assert) -> None:
        """``if``, ``while``, ``... if ... else ...`` and ``assert`` all test ``node.test``."""
        self.check_truth(node.test)
        self.generic_visit(node)

    visit_If = visit_While = visit_IfExp = visit_Assert = visit_condition

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        for value in node.values:
            self.check_truth(value)
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not):
            self.check_truth(node.operand)
        self.generic_visit(node)

    def check_truth(self, test: ast.AST) -> None:
        if self.scope is not None and self.is_queryset(test):
            self.report(
                test,
                "AORM002",
                f"the truth of the QuerySet `{code_of(test)}` is tested synchronously: "
                f"use `await {code_of(test)}.aexists()`",
            )

    def visit_Compare(self, node: ast.Compare) -> None:
        if self.scope is not None:
            for op, right in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, ast.In | ast.NotIn) and self.is_queryset(right):
                    self.report(
                        right,
                        "AORM002",
                        f"`in {code_of(right)}` evaluates the QuerySet synchronously: use "
                        f"`await {code_of(right)}.acontains(obj)`",
                    )
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        if self.scope is not None and not node.is_async and self.is_queryset(node.iter):
            self.report(
                node.iter,
                "AORM002",
                f"a comprehension over the QuerySet `{code_of(node.iter)}` evaluates it "
                f"synchronously: use `async for` in it, or iterate over `await "
                f"{code_of(node.iter)}`",
            )
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if (
            self.scope is not None
            and not isinstance(node.slice, ast.Slice)
            and isinstance(node.ctx, ast.Load)
            and self.is_queryset(node.value)
        ):
            qs = code_of(node.value)
            self.report(
                node,
                "AORM002",
                f"indexing the QuerySet `{qs}` runs a query synchronously: use "
                f"`await {qs}.afirst()` or `(await {qs}[i:i + 1])[0]`",
            )
        self.generic_visit(node)

    def visit_Await(self, node: ast.Await) -> None:
        """``await qs`` fills the QuerySet's result cache: later sync reads of ``qs`` are free."""
        self.generic_visit(node)
        if self.scope is not None and isinstance(node.value, ast.Name):
            self.scope.querysets.pop(node.value.id, None)

    def visit_Name(self, node: ast.Name) -> None:
        if self.scope is not None and isinstance(node.ctx, ast.Load):
            self.scope.used.add(node.id)

    def visit_Expr(self, node: ast.Expr) -> None:
        value = node.value
        if self.scope is not None and isinstance(value, ast.Call) and self.is_queryset(value):
            self.report(
                node.value,
                "AORM005",
                f"the QuerySet `{code_of(node.value)}` is built and never evaluated: "
                f"`await {code_of(node.value)}` runs it",
            )
        self.generic_visit(node)

    # -- calls ------------------------------------------------------------

    def visit_Call(self, node: ast.Call) -> None:
        name = call_name(node)
        if name is not None:
            self.check_not_awaited(node, name)
            if self.scope is not None:
                self.check_sync_call(node, name)
        self.generic_visit(node)

    def is_aorm_run(self, node: ast.Call) -> bool:
        func = node.func
        if isinstance(func, ast.Name):
            return func.id in self.run_names
        return (
            isinstance(func, ast.Attribute)
            and func.attr == "run"
            and isinstance(func.value, ast.Name)
            and func.value.id in self.aorm_modules
        )

    def check_not_awaited(self, node: ast.Call, name: str) -> None:
        """AORM001: a coroutine made and dropped, or used as if it were its result."""
        aorm_run = self.is_aorm_run(node)
        # Methods by any name in the list; plain functions only for Django's own shortcuts
        # (a user's own ``aset()`` function is none of our business).
        function = isinstance(node.func, ast.Name) and not name.startswith(("aget_", "aprefetch"))
        if not aorm_run and (name not in ASYNC_METHODS or function):
            return
        parent = self.parents.get(node)
        if isinstance(parent, ast.Await):
            return
        # Handed to something that schedules or awaits it (gather, create_task, wait_for,
        # async_to_sync...), or collected for that: not a mistake.
        if isinstance(parent, ast.Call) and node is not parent.func:
            return
        if isinstance(parent, ast.keyword | ast.Starred | ast.List | ast.Tuple | ast.Set):
            return
        if isinstance(parent, ast.ListComp | ast.GeneratorExp | ast.SetComp):
            return
        if isinstance(parent, ast.Lambda) or (
            isinstance(parent, ast.Return | ast.Yield) and self.scope is None
        ):
            return  # a sync helper returning the coroutine for its caller to await
        target = "aorm.run(...)" if aorm_run else f"{code_of(node.func)}(...)"
        self.report(
            node,
            "AORM001",
            f"`{target}` is not awaited: nothing runs until it is; use `await {target}`",
        )

    def check_sync_call(self, node: ast.Call, name: str) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            receiver = func.value
            if name in SYNC_METHODS and self.is_queryset(receiver):
                self.report(
                    node,
                    "AORM002",
                    f"`{code_of(receiver)}.{name}()` runs a query synchronously in async "
                    f"code: use `await {code_of(receiver)}.{SYNC_METHODS[name]}()`",
                )
            elif name in INSTANCE_METHODS and self.is_instance(receiver):
                self.report(
                    node,
                    "AORM004",
                    f"`{code_of(receiver)}.{name}()` is synchronous: use "
                    f"`await {code_of(receiver)}.{INSTANCE_METHODS[name]}()`",
                )
        elif isinstance(func, ast.Name) and name in EVALUATING_BUILTINS and node.args:
            argument = node.args[0]
            if self.is_queryset(argument) and not isinstance(argument, ast.Attribute):
                instead = EVALUATING_BUILTINS[name].format(qs=code_of(argument))
                self.report(
                    node,
                    "AORM002",
                    f"`{name}({code_of(argument)})` evaluates the QuerySet synchronously: "
                    f"use `{instead}`",
                )

    # -- findings ---------------------------------------------------------

    def report_unevaluated(self, owner: ast.AST) -> None:
        """AORM005: a name bound to a QuerySet that nothing in the body ever reads."""
        assert self.scope is not None
        for name, target in self.scope.querysets.items():
            if name not in self.scope.used and not name.startswith("_"):
                self.report(
                    target,
                    "AORM005",
                    f"`{name}` is a QuerySet that is never evaluated: "
                    f"`{name} = await ...` gives its rows",
                )

    def report(self, node: ast.AST, code: str, message: str) -> None:
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0) + 1
        self.findings.append(Finding(self.path, line, col, code, message))


def names_loaded(node: ast.AST) -> set[str]:
    return {
        n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }


def is_atomic(node: ast.AST) -> bool:
    """``transaction.atomic(...)``, ``atomic(...)``, or ``transaction.atomic`` itself."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr == "atomic" and code_of(node.value).endswith("transaction")
    return isinstance(node, ast.Name) and node.id == "atomic"


def has_top_level_await(tree: ast.Module) -> bool:
    """A snippet run in an async REPL or a notebook: its top level is async code."""
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Await | ast.AsyncWith | ast.AsyncFor):
            return True
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        pending.extend(ast.iter_child_nodes(node))
    return False


def silenced(finding: Finding, lines: Sequence[str]) -> bool:
    if not 0 < finding.line <= len(lines):
        return False
    match = NOQA.search(lines[finding.line - 1])
    if match is None:
        return False
    codes = match.group("codes")
    return codes is None or finding.code in {c.strip().upper() for c in codes.split(",")}


def check_source(source: str, path: str = "<string>") -> list[Finding]:
    """The findings for one module's source text."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as error:
        return [Finding(path, error.lineno or 1, error.offset or 1, "AORM000", error.msg)]
    lines = source.splitlines()
    findings = Checker(path, tree).check()
    return sorted({f for f in findings if not silenced(f, lines)})


def python_files(paths: Iterable[str]) -> Iterator[Path]:
    for name in paths:
        path = Path(name)
        if path.is_dir():
            for child in sorted(path.rglob("*.py")):
                parts = child.relative_to(path).parts[:-1]
                if any(p in SKIPPED_DIRS or p.startswith(".") for p in parts):
                    continue
                if any(
                    (path.joinpath(*parts[: i + 1]) / "pyvenv.cfg").exists()
                    for i in range(len(parts))
                ):
                    continue
                yield child
        else:
            yield path


def main(argv: Sequence[str] | None = None) -> int:
    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths or any(p in ("-h", "--help") for p in paths):
        print(f"usage: python -m aorm.lint PATH...\n\n{__doc__}")
        return 2 if not paths else 0
    found = 0
    for path in python_files(paths):
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            print(f"{path}: cannot read: {error}", file=sys.stderr)
            return 2
        for finding in check_source(source, str(path)):
            print(finding)
            found += 1
    if found:
        print(f"aorm.lint: {found} finding{'s' if found != 1 else ''}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
