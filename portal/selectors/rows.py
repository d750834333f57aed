"""Model instances straight from rows, and queries whose SQL is built once per process.

The API's hot reads (a server, a page of servers, the flavors) spent most of their time in the ORM
rather than in the database: building and compiling the same SQL again for every request, then running
``Model.__init__`` field by field for every row and every related row. Here a read names its columns
once (``Columns``), runs the queryset as plain rows, and turns each row into the same models the views
already render: fields set at once into the instance's ``__dict__``, related rows into the relation's
cache, as ``select_related`` would. ``CompiledQuery`` keeps the SQL of a query whose shape never changes
and only binds the new values.

The instances are ordinary models (properties, relations, lazy loads of the columns left out), but made
without ``pre_init``/``post_init`` signals: nothing in the project listens to them.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from django.core.exceptions import EmptyResultSet
from django.db import connections, transaction
from django.db.models import BooleanField, F, Func, JSONField, Model, QuerySet, Value
from django.db.models.base import ModelState
from django.db.models.expressions import Col

if TYPE_CHECKING:
    from portal.auth.context import RequestContext


class Columns:
    """The columns read of ``model`` (all its concrete ones but ``leave_out``, or ``only`` those and its
    primary key) and of the related models joined to it, in ``values_list`` terms.

    ``related`` maps a foreign key's name on ``model`` to the related model's columns to read (its
    primary key is always read); a row whose key is NULL relates to None. Columns not read are loaded
    when first used, as ``defer`` and ``only`` do.
    """

    def __init__(
        self,
        model: type[Model],
        *,
        leave_out: Iterable[str] = (),
        only: Iterable[str] | None = None,
        related: dict[str, Iterable[str]] | None = None,
    ):
        self.model = model
        leave_out = set(leave_out)
        fields = model._meta.concrete_fields
        if only is not None:
            only = {model._meta.pk.name, *only}
            fields = [f for f in fields if {f.name, f.attname} & only]
        self.attnames = [f.attname for f in fields if not {f.name, f.attname} & leave_out]
        self.related: list[tuple[str, str, type[Model], list[str], int]] = []
        self.paths = list(self.attnames)
        for name, only in (related or {}).items():
            field = model._meta.get_field(name)
            related_model = field.related_model
            pk = related_model._meta.pk.attname
            attnames = [pk, *(related_model._meta.get_field(n).attname for n in only if n != pk)]
            self.related.append((name, field.attname, related_model, attnames, len(self.paths)))
            self.paths += [f"{name}__{attname}" for attname in attnames]

    def values_list(self, queryset: QuerySet) -> QuerySet:
        return queryset.values_list(*self.paths)

    def instances(self, rows: Iterable[Sequence], using: str = "default") -> list[Model]:
        model, attnames = self.model, self.attnames
        related = [
            (name, attnames.index(attname), related_model, related_attnames, start)
            for name, attname, related_model, related_attnames, start in self.related
        ]
        made = []
        for row in rows:
            obj = _model(model, attnames, row, using)
            if related:
                cache = obj._state.fields_cache
                for name, key, related_model, related_attnames, start in related:
                    cache[name] = (
                        None if row[key] is None else _model(related_model, related_attnames, row[start:], using)
                    )
            made.append(obj)
        return made


def every_field(model: type[Model]) -> list[str]:
    """The names of ``model``'s concrete fields: what ``Columns`` reads of a related model read whole."""
    return [field.name for field in model._meta.concrete_fields]


def _model(model: type[Model], attnames: list[str], values: Sequence, using: str) -> Model:
    """``model`` with ``attnames`` set from the first of ``values``."""
    obj = model.__new__(model)
    state = ModelState()
    state.adding = False
    state.db = using
    fields = obj.__dict__
    fields.update(zip(attnames, values, strict=False))  # the row goes on with the related models' columns
    fields["_state"] = state
    return obj


def returning(model: type[Model], using: str, sql: str, params: Sequence) -> list[Model]:
    """The rows an ``UPDATE`` of ``model``'s table (``sql`` and ``params``, on PostgreSQL) writes, as
    models: every concrete column as written, read by the statement itself (``RETURNING``), so that no
    second query reads them again."""
    attnames, columns, converters = _returning(model, using)
    with transaction.mark_for_rollback_on_error(using):
        rows = _run(using, f"{sql} RETURNING {columns}", params, converters)
    return [_model(model, attnames, row, using) for row in rows]


@functools.cache
def _returning(model: type[Model], using: str) -> tuple[list[str], str, list]:
    """Every concrete column of ``model``: the attribute names, the ``RETURNING`` list, and the converters
    a query reading them applies."""
    attnames = [field.attname for field in model._meta.concrete_fields]
    compiler = model._base_manager.using(using).values_list(*attnames).query.get_compiler(using)
    compiler.as_sql()
    quote = connections[using].ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(f"{table}.{quote(field.column)}" for field in model._meta.concrete_fields)
    return attnames, columns, _converters(compiler)


def refresh_from(instance: Model, fresh: Model) -> None:
    """``instance.refresh_from_db()`` from a copy of its row already read (``returning``'s). A
    related object it holds stays while its key is unchanged; the rest of its caches are cleared."""
    cached = instance._state.fields_cache
    for field in instance._meta.concrete_fields:
        value = fresh.__dict__[field.attname]
        if field.is_relation and instance.__dict__.get(field.attname, value) != value:
            cached.pop(field.cache_name, None)
        instance.__dict__[field.attname] = value
    for related in instance._meta.related_objects:
        cached.pop(related.cache_name, None)
    instance.__dict__.pop("_prefetched_objects_cache", None)
    instance._state.db = fresh._state.db


class _EqualsAny(Func):
    """``column = ANY(array)``: PostgreSQL's membership test with the values as one array parameter."""

    template = "%(expressions)s)"
    arg_joiner = " = ANY("
    output_field = BooleanField()


def where_in(queryset: QuerySet, column: str, values: Sequence) -> QuerySet:
    """``queryset.filter(<column>__in=values)``. On PostgreSQL the values are one array parameter: the
    ORM's IN list costs a parameter, and Python work, per value (a page's thousand servers)."""
    if connections[queryset.db].vendor != "postgresql":
        return queryset.filter(**{f"{column}__in": values})
    field = queryset.model._meta.get_field(column)
    return queryset.filter(_EqualsAny(F(field.attname), Value(list(values))))


def instances_from(columns: Columns, queryset: QuerySet) -> list[Model]:
    """The rows of ``queryset`` (filters, order and slice already applied) as ``columns``' models."""
    return columns.instances(fetch(columns.values_list(queryset)), using=queryset.db)


def fetch(queryset: QuerySet) -> list:
    """The rows of a ``values_list`` queryset, as the queryset would give them (each a sequence)."""
    compiler = queryset.query.get_compiler(using=queryset.db)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:
        return []
    return _run(queryset.db, sql, params, _converters(compiler))


def _run(using: str, sql: str, params, converters) -> list:
    connection = connections[using]
    with prepared_cursor(connection) as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not converters:
        return rows
    converted = []
    for row in rows:
        row = list(row)
        for position, (functions, expression) in converters:
            value = row[position]
            for function in functions:
                value = function(value, expression, connection)
            row[position] = value
        converted.append(tuple(row))
    return converted


def prepared_cursor(connection):
    """A cursor for a statement whose SQL is built once per process: on PostgreSQL, prepared once the
    connection runs it a second time (``portal.db.postgresql``); elsewhere Django's cursor."""
    make = getattr(connection, "prepared_cursor", None)
    return make() if make is not None else connection.cursor()


def _converters(compiler) -> list:
    """The compiled query's converters by column, with a faster decoder for plain JSON columns."""
    fields = [column[0] for column in compiler.select[: compiler.col_count]]
    converters = []
    for position, (functions, expression) in sorted(compiler.get_converters(fields).items()):
        functions = [_json_value if _plain_json(function, expression) else function for function in functions]
        converters.append((position, (functions, expression)))
    return converters


def _plain_json(function, expression) -> bool:
    field = getattr(function, "__self__", None)
    return (
        isinstance(field, JSONField)
        and field.decoder is None
        and getattr(function, "__func__", None) is JSONField.from_db_value
        and isinstance(expression, Col)
    )


# Most servers' metadata, hints and extra specs are empty: those need no parser.
_EMPTY_JSON = {"{}": dict, "[]": list}


def _json_value(value, _expression, _connection):
    """``JSONField.from_db_value`` for a column read as it is (no key transform, no custom decoder)."""
    if value is None:
        return None
    empty = _EMPTY_JSON.get(value)
    if empty is not None:
        return empty()
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


# The shapes each query keeps (a client choosing filters and orders cannot grow a process without end).
MAX_SHAPES = 256


def scoped_rows(query: CompiledQuery, ctx: RequestContext, **values: Any) -> list[tuple]:
    """``query``'s rows for the caller: of shape ``"admin"`` for an admin, who sees every project's, else of
    shape ``"project"`` with the caller's project as ``project_id``."""
    if ctx.is_admin:
        return query.rows("admin", **values)
    return query.rows("project", project_id=ctx.project.pk, **values)


class CompiledQuery:
    """A ``values_list`` query of one shape whose SQL Django builds once per process and database.

    ``build(shape, **values)`` makes the queryset; the first call for a ``shape`` compiles it and finds where
    each of ``values`` went among the SQL's parameters; later calls only bind the new values. A value
    that cannot be told apart from the query's own constants leaves the shape uncached (compiled each
    time, never wrong).
    """

    def __init__(self, build: Callable[..., QuerySet]):
        self.build = build
        self._plans: dict[Hashable, tuple | None] = {}
        self._lock = threading.Lock()

    def rows(self, shape: Hashable, **values: Any) -> list[tuple]:
        key = (shape, tuple(sorted(values)))
        plan = self._plans.get(key)
        if plan is None:
            queryset = self.build(shape, **values)
            plan = _plan(queryset, values)
            if plan is None or len(self._plans) >= MAX_SHAPES:
                return list(queryset)
            with self._lock:
                self._plans[key] = plan
        using, sql, slots, converters = plan
        params = [form(values[name]) if name is not None else form for name, form in slots]
        return _run(using, sql, params, converters)


def _same(value: Any) -> Any:
    return value


def _hex(value: Any) -> Any:
    return value.hex


_FORMS = (_same, _hex, str)


def _plan(queryset: QuerySet, values: dict[str, Any]) -> tuple | None:
    compiler = queryset.query.get_compiler(using=queryset.db)
    sql, params = compiler.as_sql()
    # (name, how the value is written) for a value's parameter; (None, the parameter) for a constant.
    slots: list[tuple[str | None, Any]] = []
    for param in params:
        found = []
        for name, value in values.items():
            form = next((form for form in _FORMS if _written_as(value, form, param)), None)
            if form is not None:
                found.append((name, form))
        if len(found) > 1:
            return None
        slots.append(found[0] if found else (None, param))
    # Each value in exactly one place: a constant equal to a value could be taken for it.
    named = [name for name, _ in slots if name is not None]
    if sorted(named) != sorted(values):
        return None
    return queryset.db, sql, slots, _converters(compiler)


def _written_as(value: Any, form: Callable, param: Any) -> bool:
    if form is _hex and not isinstance(value, uuid.UUID):
        return False
    written = form(value)
    return type(written) is type(param) and written == param
