"""A mypy plugin: what aorm adds to Django's classes, as django-stubs' types see it.

When it installs (``aorm._install``), aorm gives ``QuerySet`` and
``RawQuerySet`` an ``__await__``, ``QuerySet`` and managers an ``aall()``, and
``transaction.Atomic`` ``__aenter__``/``__aexit__``. django-stubs describes
Django without them, so mypy would reject ``await qs`` and ``async with
atomic()``. This plugin adds those methods to django-stubs' classes while mypy
analyses them::

    await Student.objects.filter(...)                     # list[Student]
    await Student.objects.aall()                          # list[Student]
    await Student.objects.values_list("name", flat=True)  # list[str]: list(qs)'s rows
    async with transaction.atomic() as block:             # block: Atomic

Enable it before django-stubs' plugin (mypy asks plugins in order, and the
first one with a hook for a class wins)::

    [tool.mypy]
    plugins = ["aorm.mypy", "mypy_django_plugin.main"]
"""

from __future__ import annotations

from collections.abc import Callable

from mypy.maptype import map_instance_to_supertype
from mypy.nodes import ARG_POS, Argument, Decorator, FuncBase, TypeInfo, Var
from mypy.options import Options
from mypy.plugin import (
    ClassDefContext,
    Plugin,
    ReportConfigContext,
    SemanticAnalyzerPluginInterface,
)
from mypy.plugins.common import add_method_to_class
from mypy.semanal_shared import has_placeholder
from mypy.types import AnyType, Instance, NoneType, Type, TypeOfAny, TypeType, UnionType
from mypy.typevars import fill_typevars

__all__ = ["AormPlugin", "plugin"]

QUERYSET = "django.db.models.query.QuerySet"
RAW_QUERYSET = "django.db.models.query.RawQuerySet"
BASE_MANAGER = "django.db.models.manager.BaseManager"
ATOMIC = "django.db.transaction.Atomic"
DJANGO_PLUGIN = "mypy_django_plugin.main"
MODULES = {name.rpartition(".")[0] for name in (QUERYSET, RAW_QUERYSET, BASE_MANAGER, ATOMIC)}
VERSION = "1"  # bump when the methods added change: mypy then re-analyses the classes


class AormPlugin(Plugin):
    """Adds aorm's methods to django-stubs' QuerySet, RawQuerySet, BaseManager and Atomic."""

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        names = [path.removesuffix(".py").replace("/", ".") for path in options.plugins]
        mine = next((i for i, name in enumerate(names) if name.endswith("aorm.mypy")), None)
        theirs = next((i for i, name in enumerate(names) if name.endswith(DJANGO_PLUGIN)), None)
        if mine is not None and theirs is not None and theirs < mine:
            raise SystemExit(  # a configuration error, said as mypy says its own
                f"aorm.mypy: list it before {DJANGO_PLUGIN} in mypy's plugins "
                f'(plugins = ["aorm.mypy", "{DJANGO_PLUGIN}"]): mypy uses the first plugin '
                "with a hook for QuerySet, and aorm's adds `await queryset`"
            )

    def get_customize_class_mro_hook(
        self, fullname: str
    ) -> Callable[[ClassDefContext], None] | None:
        return {
            QUERYSET: _awaitable_queryset,
            RAW_QUERYSET: _awaitable_raw_queryset,
            BASE_MANAGER: _manager_aall,
            ATOMIC: _async_atomic,
        }.get(fullname)

    def report_config_data(self, ctx: ReportConfigContext) -> str | None:
        return VERSION if ctx.id in MODULES else None


def _awaitable_queryset(ctx: ClassDefContext) -> None:
    rows = _list_of(ctx.api, _row_type(ctx.api, ctx.cls.info))
    _add_await(ctx, rows)
    _add_aall(ctx, rows)


def _awaitable_raw_queryset(ctx: ClassDefContext) -> None:
    _add_await(ctx, _list_of(ctx.api, _row_type(ctx.api, ctx.cls.info)))


def _manager_aall(ctx: ClassDefContext) -> None:
    model = _self_type(ctx.cls.info).args[0]  # BaseManager[_T]
    _add_aall(ctx, _list_of(ctx.api, model))


def _async_atomic(ctx: ClassDefContext) -> None:
    """``async with atomic() as block``: ``__aenter__`` returns the Atomic, like aorm's."""
    api = ctx.api
    any_ = AnyType(TypeOfAny.special_form)
    entered = api.named_type("typing.Coroutine", [any_, any_, _self_type(ctx.cls.info)])
    _add_method(ctx, "__aenter__", [], entered)
    exc_type = TypeType(api.named_type("builtins.BaseException"))
    exc_value = api.named_type("builtins.BaseException")
    traceback = api.named_type("types.TracebackType")
    arguments = []
    for name, typ in (("exc_type", exc_type), ("exc_value", exc_value), ("exc_tb", traceback)):
        optional = UnionType.make_union([typ, NoneType()])
        arguments.append(Argument(Var(name, optional), optional, None, ARG_POS))
    exited = api.named_type("typing.Coroutine", [any_, any_, NoneType()])
    _add_method(ctx, "__aexit__", arguments, exited)


def _add_await(ctx: ClassDefContext, result: Type) -> None:
    """``def __await__(self) -> Generator[Any, None, result]``."""
    any_ = AnyType(TypeOfAny.special_form)
    generator = ctx.api.named_type("typing.Generator", [any_, NoneType(), result])
    _add_method(ctx, "__await__", [], generator)


def _add_aall(ctx: ClassDefContext, result: Type) -> None:
    """``async def aall(self) -> result``, as the coroutine function it is."""
    any_ = AnyType(TypeOfAny.special_form)
    coroutine = ctx.api.named_type("typing.Coroutine", [any_, any_, result])
    _add_method(ctx, "aall", [], coroutine)


def _add_method(
    ctx: ClassDefContext, name: str, arguments: list[Argument], return_type: Type
) -> None:
    """Add the method once the class's types are complete, unless the class defines it.

    While a type the signature uses is still a placeholder (django-stubs'
    modules import each other), mypy defers the class and calls the hook
    again: a method added with a placeholder would never be complete.
    """
    types = [return_type, _self_type(ctx.cls.info)] + [a.variable.type for a in arguments]
    if any(typ is not None and has_placeholder(typ) for typ in types):
        return
    defined = (
        isinstance(node, (FuncBase, Decorator)) and node.name == name for node in ctx.cls.defs.body
    )
    if not any(defined):  # by the stubs, or by this hook in an earlier pass
        add_method_to_class(ctx.api, ctx.cls, name, arguments, return_type)


def _row_type(api: SemanticAnalyzerPluginInterface, info: TypeInfo) -> Type:
    """What iterating the class gives, as its ``Iterable[...]`` base says: ``list(qs)``'s rows."""
    iterable = api.named_type("typing.Iterable", [AnyType(TypeOfAny.special_form)]).type
    return map_instance_to_supertype(_self_type(info), iterable).args[0]


def _self_type(info: TypeInfo) -> Instance:
    self_type = fill_typevars(info)
    assert isinstance(self_type, Instance)  # a class, not a NamedTuple
    return self_type


def _list_of(api: SemanticAnalyzerPluginInterface, item: Type) -> Instance:
    return api.named_type("builtins.list", [item])


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point."""
    return AormPlugin
