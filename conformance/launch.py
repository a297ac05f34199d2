"""Run Django's ``tests/runtests.py`` with extra apps always installed.

``python -m conformance.launch TESTS_DIR [--with-app APP]... RUNTESTS_ARGS...``

``runtests.py`` replaces ``INSTALLED_APPS`` with its module-level
``ALWAYS_INSTALLED_APPS`` plus the apps under test, in every process it starts,
so a settings module cannot install an app. This runs the script as
``__main__``, unchanged on disk, with the given apps appended to that list in
its syntax tree; tracebacks still point at the real file.
"""

from __future__ import annotations

import ast
import sys
import types
from pathlib import Path


def _with_apps(tree: ast.Module, apps: list[str]) -> ast.Module:
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(target, "id", None) for target in node.targets]
            == ["ALWAYS_INSTALLED_APPS"]
            and isinstance(node.value, ast.List)
        ):
            node.value.elts.extend(ast.Constant(app) for app in apps)
            return ast.fix_missing_locations(tree)
    raise SystemExit("runtests.py: no ALWAYS_INSTALLED_APPS = [...] to extend")


def main(argv: list[str]) -> None:
    tests_dir, *args = argv
    apps: list[str] = []
    while args[:1] == ["--with-app"]:
        apps.append(args[1])
        del args[:2]
    script = Path(tests_dir, "runtests.py").resolve()
    tree = _with_apps(ast.parse(script.read_text(), str(script)), apps)
    code = compile(tree, str(script), "exec")

    module = types.ModuleType("__main__")
    module.__file__ = str(script)
    sys.modules["__main__"] = module
    sys.argv = [str(script), *args]
    # As if run as a script: its directory first, then this checkout (conformance.*).
    sys.path.insert(0, str(script.parent))
    exec(code, module.__dict__)


if __name__ == "__main__":
    main(sys.argv[1:])
