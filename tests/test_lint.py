"""``python -m aorm.lint``: the seeds' "Common mistakes" found, their right forms and a
corpus of correct async Django code left alone.

The snippets are the seeds' own, verbatim (the guides' ❌ marks included);
the snippets with a top-level ``await`` are read as a notebook or an asyncio
REPL would run them, as async code.
"""

# ruff: noqa: E501 (the tables of snippets read best one per line)

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from students import views as seed_views

from aorm.lint import check_source, main
from tests.server import ROOT

# The seeds' "Common mistakes" and "Important Rule": (snippet, [(line, code)]).
SEEDS_WRONG = {
    "forgetting await": (
        """\
student = Student.objects.aget(id=1)
""",
        [(1, "AORM001")],
    ),
    "mixing sync + async": (
        """\
student = await Student.objects.aget(id=1)
all_students = Student.objects.all()  # ❌
""",
        [(2, "AORM005")],
    ),
    "sync ORM inside async view": (
        """\
async def view(request):
    students = Student.objects.all()
""",
        [(2, "AORM005")],
    ),
}

SEED_VIEW_IMPORTS = "from django.http import JsonResponse\nfrom .models import Student\n\n"

# The seeds' right forms and examples: no finding.
SEEDS_RIGHT = {
    "correct await": """\
student = await Student.objects.aget(id=1)
""",
    "use await all": """\
all_students = await Student.objects.all()
""",
    "aget": """\
student = await Student.objects.aget(id=1)
""",
    "acount": """\
count = await Student.objects.acount()
""",
    "aexists": """\
exists = await Student.objects.filter(age=20).aexists()
""",
    "transactions": """\
from django.db import transaction

async with transaction.atomic():
    await Student.objects.acreate(name="Aman", age=20)
""",
    "awaited queryset": """\
students = await Student.objects.filter(age=20)
""",
    # The seeds' two views: the students app's, verbatim, with the seeds' imports.
    "async view": SEED_VIEW_IMPORTS + inspect.getsource(seed_views.student_list),
    "complete example": SEED_VIEW_IMPORTS + inspect.getsource(seed_views.example_view),
    "profiles": """\
from myapp.models import Profile

async def get_profiles():
    profiles = await Profile.objects.all()
    return profiles
""",
}

# Beyond the seeds' text, the same mistakes in other shapes: one finding each, on line 5.
PRELUDE = "from django.db import transaction\nfrom .models import Student\n\nasync def view(request, pk):\n"
MISTAKES = {
    "for over a queryset": ("for s in Student.objects.filter(age=20): pass", "AORM002", "async for"),
    "comprehension": ("names = [s.name for s in Student.objects.all()]; print(names)", "AORM002", "async for"),
    "list()": ("print(list(Student.objects.all()))", "AORM002", "await Student.objects.all()"),
    "len()": ("print(len(Student.objects.filter(age=1)))", "AORM002", ".acount()"),
    "bool()": ("print(bool(Student.objects.filter(age=1)))", "AORM002", ".aexists()"),
    "if": ("if Student.objects.filter(age=1): pass", "AORM002", ".aexists()"),
    "not": ("print(not Student.objects.filter(age=1))", "AORM002", ".aexists()"),
    "in": ("print(pk in Student.objects.all())", "AORM002", ".acontains(obj)"),
    "indexing": ("print(Student.objects.all()[0])", "AORM002", ".afirst()"),
    "get()": ("print(Student.objects.get(pk=pk))", "AORM002", "await Student.objects.aget()"),
    "count()": ("print(Student.objects.filter(age=1).count())", "AORM002", ".acount()"),
    "first()": ("print(Student.objects.order_by('age').first())", "AORM002", ".afirst()"),
    "create()": ("print(Student.objects.create(name='A', age=1))", "AORM002", ".acreate()"),
    "update()": ("print(Student.objects.filter(age=1).update(age=2))", "AORM002", ".aupdate()"),
    "exists()": ("print(Student.objects.filter(age=1).exists())", "AORM002", ".aexists()"),
    "variable": ("qs = Student.objects.filter(age=1); print(qs.count())", "AORM002", "await qs.acount()"),
    "variable iterated": ("qs = Student.objects.all(); print([s for s in qs])", "AORM002", "await qs"),
    "sliced variable": ("qs = Student.objects.all()[:5]; print(len(qs))", "AORM002", "await qs.acount()"),
    "sync atomic": ("with transaction.atomic(): pass", "AORM003", "async with transaction.atomic()"),
    "save()": ("s = await Student.objects.aget(pk=pk); s.age = 3; s.save()", "AORM004", "await s.asave()"),
    "delete()": ("s = await Student.objects.afirst(); s.delete()", "AORM004", "await s.adelete()"),
    "new instance": ("s = Student(name='A', age=1); s.save()", "AORM004", "await s.asave()"),
    "refresh": ("s = await Student.objects.aget(pk=pk); s.refresh_from_db()", "AORM004", "arefresh_from_db"),
    "loop instance": ("for s in await Student.objects.all(): s.save()", "AORM004", "await s.asave()"),
    "async for instance": ("async for s in Student.objects.all(): s.delete()", "AORM004", "adelete"),
    "get_or_create": ("s, _ = await Student.objects.aget_or_create(name='A', age=1); s.save()", "AORM004", "asave"),
    "not awaited": ("s = Student.objects.acreate(name='A', age=1); print(s)", "AORM001", "await Student.objects.acreate(...)"),
    "not awaited, used": ("print(Student.objects.aget(pk=pk).name)", "AORM001", "await"),
    "not awaited, tested": ("if Student.objects.filter(age=1).aexists(): pass", "AORM001", "await"),
    "asave not awaited": ("s = await Student.objects.aget(pk=pk); s.asave()", "AORM001", "await s.asave(...)"),
    "aorm.run not awaited": ("import aorm; aorm.run(print)", "AORM001", "await aorm.run(...)"),
    "run not awaited": ("from aorm import run; run(print)", "AORM001", "await aorm.run(...)"),
    "returned coroutine": ("return Student.objects.aget(pk=pk)", "AORM001", "await"),
    "built, not evaluated": ("Student.objects.filter(age=1)", "AORM005", "await Student.objects.filter(age=1)"),
}  # fmt: skip

# Correct code in the same shapes: no finding.
CORRECT = {
    "lazy then awaited": "qs = Student.objects.filter(age=1)\nif pk:\n    qs = qs.filter(pk=pk)\nreturn await qs",
    "rebound to the rows": "qs = Student.objects.all()\nqs = await qs\nprint(len(qs), qs[0], [s for s in qs])",
    "passed on": "qs = Student.objects.all()\nreturn render(qs)",
    "used by a closure": "qs = Student.objects.filter(age=1)\nasync def rows():\n    return await qs\nreturn await rows()",
    "awaited, then cached": "qs = Student.objects.all()\nrows = await qs\nprint(len(qs), rows)",
    "async for": "async for s in Student.objects.all():\n    print(s)",
    "iterate awaited": "for s in await Student.objects.filter(age=1):\n    print(s)",
    "async comprehension": "print([s async for s in Student.objects.all()])",
    "awaited slice": "print((await Student.objects.all()[0:1])[0])",
    "a-methods": "print(await Student.objects.acount(), await Student.objects.filter(age=1).aexists())",
    "gather": "import asyncio\nprint(await asyncio.gather(Student.objects.acount(), Student.objects.aexists()))",
    "gather a list": "import asyncio\ncalls = [Student.objects.aget(pk=p) for p in (1, 2)]\nprint(await asyncio.gather(*calls))",
    "create_task": "import asyncio\ntask = asyncio.create_task(Student.objects.acount())\nprint(await task)",
    "async atomic": "async with transaction.atomic():\n    await Student.objects.acreate(name='A', age=1)",
    "asave": "s = await Student.objects.aget(pk=pk)\ns.age = 2\nawait s.asave()\nawait s.adelete()",
    "sync helper with aorm.run": (
        "import aorm\ndef rename():\n    s = Student.objects.get(pk=pk)\n    s.save()\n"
        "    with transaction.atomic():\n        return list(Student.objects.all())\n"
        "return await aorm.run(rename)"
    ),
    "lambda": "import aorm\nreturn await aorm.run(lambda: Student.objects.count())",
    "other objects' save": "form = make_form()\nform.save()\nrequest.session.save()\ncache.delete('k')",
    "dict get": "data = {'a': 1}\nprint(data.get('a'), len(data), list(data))",
    "values list": "ages = await Student.objects.values_list('age', flat=True)\nfor age in ages:\n    age.save()",
    "manager attribute": "manager = Student.objects\nprint(await manager.acount())",
    "underscore ignored": "_unused = Student.objects.all()",
    "noqa": "print(Student.objects.count())  # noqa: AORM002",
    "atomic decorator": "@transaction.atomic\nasync def inner():\n    await Student.objects.acreate(name='A', age=1)\nawait inner()",
}  # fmt: skip


def findings(source: str) -> list[tuple[int, str, str]]:
    return [(f.line, f.code, f.message) for f in check_source(textwrap.dedent(source), "x.py")]


@pytest.mark.parametrize("name", SEEDS_WRONG)
def test_seeds_mistakes_are_found(name: str) -> None:
    source, expected = SEEDS_WRONG[name]
    assert [(line, code) for line, code, _ in findings(source)] == expected


def test_seeds_mistakes_name_the_async_form() -> None:
    (_, _, forgot), = findings(SEEDS_WRONG["forgetting await"][0])  # fmt: skip
    assert "use `await Student.objects.aget(...)`" in forgot
    (_, _, mixing), = findings(SEEDS_WRONG["mixing sync + async"][0])  # fmt: skip
    assert "`all_students = await ...` gives its rows" in mixing


@pytest.mark.parametrize("name", SEEDS_RIGHT)
def test_seeds_right_forms_pass(name: str) -> None:
    assert findings(SEEDS_RIGHT[name]) == []


@pytest.mark.parametrize("name", MISTAKES)
def test_mistake_found_with_its_async_form(name: str) -> None:
    statement, code, advice = MISTAKES[name]
    found = findings(PRELUDE + "    " + statement + "\n")
    assert [(line, c) for line, c, _ in found] == [(5, code)], found
    assert advice in found[0][2], found[0][2]


@pytest.mark.parametrize("name", CORRECT)
def test_correct_code_passes(name: str) -> None:
    body = textwrap.indent(CORRECT[name], "    ")
    assert findings(PRELUDE + body + "\n") == []


def test_sync_code_is_left_alone() -> None:
    source = """\
    from django.db import transaction
    from .models import Student

    def view(request):
        with transaction.atomic():
            s = Student.objects.get(pk=1)
            s.save()
        return list(Student.objects.all()), len(Student.objects.all())
    """
    assert findings(source) == []


CORPUS = [
    ROOT / "examples" / "school",
    ROOT / "tests" / "app" / "views.py",
    ROOT / "tests" / "loadapp",
]


def test_correct_async_django_code_has_no_finding(capsys: pytest.CaptureFixture[str]) -> None:
    """The example app, the suite's views and the load test's app: async Django code as
    written for aorm, which must not produce a single false positive."""
    assert main([str(path) for path in CORPUS]) == 0
    assert capsys.readouterr().out == ""


def test_command_line(tmp_path: Path) -> None:
    """``file:line:col CODE message`` per finding, exit status 1; 0 and silence when clean."""
    wrong = tmp_path / "views.py"
    wrong.write_text(PRELUDE + "    return Student.objects.get(pk=pk)\n")
    (tmp_path / "clean.py").write_text(PRELUDE + "    return await Student.objects.aget(pk=pk)\n")
    proc = subprocess.run(
        [sys.executable, "-m", "aorm.lint", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stdout == (
        f"{wrong}:5:12 AORM002 `Student.objects.get()` runs a query synchronously in async "
        "code: use `await Student.objects.aget()`\n"
    )
    assert "1 finding" in proc.stderr
    clean = subprocess.run(
        [sys.executable, "-m", "aorm.lint", str(tmp_path / "clean.py")],
        capture_output=True,
        text=True,
    )
    assert (clean.returncode, clean.stdout, clean.stderr) == (0, "", "")
    usage = subprocess.run([sys.executable, "-m", "aorm.lint"], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage: python -m aorm.lint PATH..." in usage.stdout


def test_pre_commit_hook_runs_the_checker() -> None:
    hooks = (ROOT / ".pre-commit-hooks.yaml").read_text()
    assert "id: aorm-lint" in hooks
    assert "entry: python -m aorm.lint" in hooks
    assert "types: [python]" in hooks
