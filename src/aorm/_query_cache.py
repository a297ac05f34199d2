"""Compiled SQL, reused across executions of the same query shape (``AORM_QUERY_CACHE_SIZE``).

A repeated ``await Student.objects.aget(pk=pk)`` compiles the same SELECT again
and again: Django's ``SQLCompiler.as_sql`` spends most of its time on parts
that do not depend on the filter's values (the select list, the FROM clause,
ordering, limits). ``as_sql`` below keeps, per connection and query shape,
the SQL and the compiler state that the iterables read afterwards (``select``,
``klass_info``, ``annotation_col_map``...), and on a hit runs only the part
that depends on the values: each leaf of the WHERE clause, compiled by Django.

The key is the query's whole state with the right-hand values of the WHERE
clause's lookups left out, plus the SQL each lookup compiles to with its
current value (``filter(flag=True)`` and ``pk__in`` lists of other lengths
compile differently, and so do custom lookups). A shape is cached only if it is
built from plain parts: lookups on a column with a plain value, columns, tables
and joins, no annotations, subqueries, extra() parameters, combinators or
``select_for_update``; anything else is compiled by Django every time. The
first compile of a shape checks that Django's ``as_sql`` did not change the
query and that its parameters are exactly the lookups' ones; otherwise the
shape is remembered as not cacheable. The cache is an LRU of
``AORM_QUERY_CACHE_SIZE`` entries (default 1024; 0 switches it off), for
aorm's aliases only, and is emptied when models, migrations or settings change.
"""

from __future__ import annotations

import datetime
import decimal
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from django.conf import settings
from django.core.signals import setting_changed
from django.db.models.base import ModelBase
from django.db.models.expressions import Col
from django.db.models.fields import Field
from django.db.models.fields.reverse_related import ForeignObjectRel
from django.db.models.lookups import Lookup
from django.db.models.signals import class_prepared, post_migrate, pre_migrate
from django.db.models.sql.compiler import SQLCompiler
from django.db.models.sql.datastructures import BaseTable, Join
from django.db.models.sql.where import WhereNode
from django.utils.functional import cached_property

from aorm.backends.base import BridgedDatabaseWrapper

__all__ = ["DEFAULT_SIZE", "SETTING", "Info", "as_sql", "clear", "info", "valid_size"]

SETTING = "AORM_QUERY_CACHE_SIZE"
DEFAULT_SIZE = 1024

logger = logging.getLogger("aorm")
_django_as_sql: Callable[..., tuple[str, Any]] = SQLCompiler.as_sql

# Query and node attributes that as_sql neither reads nor needs to be equal:
# caches derived from keyed attributes (and every cached_property, see
# _ignored), and state used only while building.
_IGNORED = frozenset(
    {
        "_lookup_joins",
        "used_aliases",
        "filter_is_sticky",
        "_annotation_select_cache",
        "_extra_select_cache",
        "_constructor_args",
    }
)
# What as_sql sets on the compiler for a plain SELECT; with anything else the
# shape is not cached (``where`` is set to the query's own on a hit).
_COMPILER_STATE = frozenset(
    {
        "select",
        "klass_info",
        "annotation_col_map",
        "col_count",
        "has_extra_select",
        "_meta_ordering",
    }
)
_SETUP = frozenset({"where", "having", "qualify", "quote_cache"})  # not kept
_PLAIN = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
        bytes,
        decimal.Decimal,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        uuid.UUID,
    }
)
_COLLECTIONS = frozenset({list, tuple, set, frozenset})
_EMPTY = _COLLECTIONS | {dict}
_STRUCTURE = (WhereNode, Col, BaseTable, Join)


class _Uncacheable(Exception):
    """A part of the query this module does not know how to key."""


class _Found:
    """What keying a query found: its lookups, and the objects its key names by id.

    A key holds ``id(obj)`` (hashed and compared in C); the entry holds ``obj``,
    so that while the entry lives no other object can have that id.
    """

    __slots__ = ("leaves", "refs")

    def __init__(self) -> None:
        self.leaves: list[Lookup] = []
        self.refs: list[Any] = []


class _Entry(NamedTuple):
    sql: str | None  # None: a shape found not reusable, compiled by Django every time
    state: dict[str, Any]
    refs: list[Any]


class Info(NamedTuple):
    hits: int
    misses: int
    entries: int
    maxsize: int


_lock = threading.Lock()
_entries: OrderedDict[Any, _Entry] = OrderedDict()
_maxsize: int | None = None
_hits = _misses = 0


def valid_size(size: Any) -> bool:
    return isinstance(size, int) and not isinstance(size, bool) and size >= 0


def _size() -> int:
    global _maxsize
    if _maxsize is None:
        size = getattr(settings, SETTING, DEFAULT_SIZE)
        if not valid_size(size):
            logger.error("%s is %r (check aorm.E005): the query cache is off.", SETTING, size)
            size = 0
        _maxsize = size
    return _maxsize


def clear(**kwargs: Any) -> None:
    """Forget every entry (the receiver of the signals that can change a query's SQL)."""
    global _maxsize, _hits, _misses
    with _lock:
        _entries.clear()
        _maxsize = None
        _hits = _misses = 0


def info() -> Info:
    with _lock:
        return Info(_hits, _misses, len(_entries), _size())


for _signal in (class_prepared, pre_migrate, post_migrate, setting_changed):
    _signal.connect(clear, dispatch_uid="aorm._query_cache.clear")


def _parts(value: Any, found: _Found, skip: str = "") -> tuple[Any, ...]:
    """The key of an object's attributes, but for cached properties and _IGNORED."""
    cls = value.__class__
    ignored = _ignored_by_class.get(cls) or _ignored(cls)
    parts: list[Any] = []
    for name, item in vars(value).items():
        if name in ignored or name == skip:
            continue
        item_cls = item.__class__
        if item_cls is str or item is None:
            parts.append((name, item))
        elif item_cls in _PLAIN:
            parts.append((name, item_cls, item))
        elif not item and item_cls in _EMPTY:
            parts.append((name, item_cls))
        else:
            parts.append((name, (_keyers.get(item_cls) or _keyer(item_cls))(item, found)))
    return tuple(parts)


def _key(value: Any, found: _Found) -> Any:
    cls = value.__class__
    if cls is str or value is None:
        return value
    if cls in _PLAIN:
        return cls, value
    return (_keyers.get(cls) or _keyer(cls))(value, found)


def _sequence(value: Any, found: _Found) -> Any:
    return value.__class__, *[_key(item, found) for item in value]


def _mapping(value: Any, found: _Found) -> Any:
    return dict, *[(_key(k, found), _key(v, found)) for k, v in value.items()]


def _set(value: Any, found: _Found) -> Any:
    return frozenset, frozenset([_key(item, found) for item in value])


def _field(value: Any, found: _Found) -> Any:
    found.refs.append(value)
    return id(value), value.column


def _model(value: Any, found: _Found) -> Any:
    meta = value._meta
    found.refs += (value, meta.concrete_fields)
    return id(value), meta.db_table, id(meta.concrete_fields)


def _same(value: Any, found: _Found) -> Any:
    found.refs.append(value)
    return id(value)


def _lookup(value: Any, found: _Found) -> Any:
    if value.lhs.__class__ is not Col or not _plain(value.rhs):
        raise _Uncacheable(value)
    found.leaves.append(value)
    return value.__class__, _parts(value, found, skip="rhs")


def _node(value: Any, found: _Found) -> Any:
    if getattr(value, "filtered_relation", None) is not None:
        raise _Uncacheable(value)
    return value.__class__, _parts(value, found)


def _uncacheable(value: Any, found: _Found) -> Any:
    raise _Uncacheable(value)


_Keyer = Callable[[Any, "_Found"], Any]
_keyers: dict[type, _Keyer] = {
    tuple: _sequence,
    list: _sequence,
    dict: _mapping,
    set: _set,
    frozenset: _set,
}
_ignored_by_class: dict[type, frozenset[str]] = {}


def _keyer(cls: type) -> _Keyer:
    """How to key the instances of ``cls`` (found once per class)."""
    keyer: _Keyer
    if issubclass(cls, Field):
        keyer = _field
    elif issubclass(cls, ModelBase):  # the class of a model class
        keyer = _model
    elif issubclass(cls, ForeignObjectRel):
        keyer = _same
    elif issubclass(cls, Lookup):
        keyer = _lookup
    elif issubclass(cls, _STRUCTURE):
        keyer = _node
    else:
        keyer = _uncacheable
    _keyers[cls] = keyer
    return keyer


def _ignored(cls: type) -> frozenset[str]:
    """The attributes of ``cls``'s instances left out of keys: _IGNORED and cached properties."""
    cached = {name for name in dir(cls) if isinstance(getattr(cls, name, None), cached_property)}
    ignored = _ignored_by_class[cls] = _IGNORED | cached
    return ignored


def _plain(value: Any) -> bool:
    cls = value.__class__
    if cls in _COLLECTIONS:
        return all(item.__class__ in _PLAIN for item in value)
    return cls in _PLAIN


def _shape(compiler: SQLCompiler, args: tuple[Any, ...], found: _Found) -> Any:
    query = compiler.query
    if query.select_for_update or query.combinator:
        raise _Uncacheable(query)
    connection = compiler.connection
    database = connection.settings_dict
    return (
        connection.alias,
        connection.vendor,
        database.get("ENGINE"),
        database.get("HOST"),
        database.get("PORT"),
        database.get("NAME"),
        compiler.__class__,
        compiler.elide_empty,
        args,
        query.__class__,
        _parts(query, found),
    )


def as_sql(
    self: SQLCompiler, with_limits: bool = True, with_col_aliases: bool = False
) -> tuple[str, Any]:
    """Django's ``SQLCompiler.as_sql``, reusing what it compiled for a query of this shape."""
    if not isinstance(self.connection, BridgedDatabaseWrapper) or not _size():
        return _django_as_sql(self, with_limits, with_col_aliases)
    global _hits, _misses
    query = self.query
    # Django's setup_query gives a query without a table its base table (kept,
    # with no reference, afterwards): done first, so that the key includes it.
    refcounts_before = query.alias_refcount.copy()
    if not any(refcounts_before.values()):
        query.get_initial_alias()
    try:
        found = _Found()
        try:
            shape = _shape(self, (with_limits, with_col_aliases), found)
            compiled = [self.compile(leaf) for leaf in found.leaves]
        except Exception:  # _Uncacheable; or Django's as_sql handles it (EmptyResultSet...)
            return _django_as_sql(self, with_limits, with_col_aliases)
        key = (shape, *[sql for sql, _ in compiled])
        params = tuple([param for _, leaf_params in compiled for param in leaf_params])
        with _lock:
            entry = _entries.get(key)
            if entry is None:
                _misses += 1
            else:
                _entries.move_to_end(key)
                _hits += entry.sql is not None
        if entry is None:
            return _fill(self, key, params, (with_limits, with_col_aliases), found.refs)
        if entry.sql is None:
            return _django_as_sql(self, with_limits, with_col_aliases)
        vars(self).update(entry.state)
        self.where, self.having, self.qualify = query.where, None, None
        return entry.sql, params
    finally:
        query.reset_refcounts(refcounts_before)


def _fill(
    self: SQLCompiler,
    key: Any,
    params: tuple[Any, ...],
    args: tuple[bool, bool],
    refs: list[Any],
) -> tuple[str, Any]:
    """Compile with Django; keep the result if this shape is safe to reuse."""
    before = dict(vars(self))
    sql, django_params = _django_as_sql(self, *args)
    state = {
        name: value
        for name, value in vars(self).items()
        if name not in before or before[name] is not value
    }
    reusable = (
        set(state) - _SETUP <= _COMPILER_STATE
        and self.where is self.query.where
        and self.having is None
        and self.qualify is None
        and tuple(django_params) == params
        and _same_shape(self, args, key[0])
    )
    kept = {name: value for name, value in state.items() if name in _COMPILER_STATE}
    entry = _Entry(sql, kept, refs) if reusable else _Entry(None, {}, refs)
    with _lock:
        _entries[key] = entry
        while len(_entries) > _size():
            _entries.popitem(last=False)
    return sql, django_params


def _same_shape(compiler: SQLCompiler, args: tuple[bool, bool], shape: Any) -> bool:
    """Django's compile left the query's shape as it found it (ordering by a relation joins)."""
    try:
        return bool(_shape(compiler, args, _Found()) == shape)
    except _Uncacheable:
        return False
