"""ORM queries compiled to SQL once and then run with new parameters.

Building a Django queryset and compiling it to SQL costs far more Python than the query costs
PostgreSQL: on the agent API's status write, compiling the locked device read (with its
fleet's TemplateVersion as a subquery) was about a fifth of the process's CPU at fleet scale
(docs/scale.md). A :class:`CompiledLookup` builds its queryset once, with placeholder values,
keeps the SQL Django produced together with what Django's model iterable derives from the
compiler (the columns' converters, which columns make the model and which are annotations),
and afterwards only swaps the values in, runs the statement on a cursor and builds the instance
with ``Model.from_db``: the same statement, the same model instances (missing columns
deferred, annotations as attributes), none of the per-call compilation. (``Model.objects.raw``
did the same with the SQL but re-derived columns, converters and field order on every call:
half of a status write's CPU in the agent API.) The SQL stays Django's, so it follows the
models.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connections, transaction

#: placeholder values no real lookup uses, to find their positions in the compiled parameters
_ORG = uuid.UUID("5e471ae1-0000-4000-8000-00000000c0de")
_NAME = "\x00compiled-lookup-name\x00"


@dataclass(frozen=True)
class _Compiled:
    model: type
    db: str
    sql: str
    params: list
    slots: dict  # parameter index -> "org" | "name"
    converters: list  # (column, converter functions, expression), as Django's iterable
    init_list: list  # attribute names of the model's columns, in column order
    model_columns: slice
    annotations: dict  # attribute name -> column


class CompiledLookup:
    """``build(org_id, name)`` → a queryset; ``first(org_id, name)`` runs its SQL."""

    def __init__(self, build: Callable):
        self._build = build
        self._compiled: tuple | None = None
        self._lock = threading.Lock()

    def _compile(self) -> _Compiled:
        with self._lock:
            if self._compiled is None:
                queryset = self._build(_ORG, _NAME)[:1]
                compiler = queryset.query.get_compiler(queryset.db)
                # In a transaction: Django refuses to compile a locking read (FOR UPDATE)
                # outside one, and the compiled SQL may be sent with its own BEGIN. Nothing is
                # sent to the database here.
                with transaction.atomic(using=queryset.db, savepoint=False):
                    sql, params = compiler.as_sql()  # also sets up select, klass_info, ...
                slots = {i: key for i, value in enumerate(params)
                         for key, marker in (("org", _ORG), ("name", _NAME))
                         if value == marker or value == str(marker)}
                if sorted(slots.values()) != ["name", "org"]:
                    raise RuntimeError(f"cannot find the lookup's parameters in {params!r}")
                info, select = compiler.klass_info, compiler.select
                if info.get("related_klass_infos"):
                    raise RuntimeError("a compiled lookup cannot select related models")
                columns = slice(info["select_fields"][0], info["select_fields"][-1] + 1)
                converters = compiler.get_converters(
                    [column[0] for column in select[:compiler.col_count]])
                self._compiled = _Compiled(
                    model=queryset.model, db=queryset.db, sql=sql, params=list(params),
                    slots=slots,
                    converters=[(i, convs, expr) for i, (convs, expr) in converters.items()],
                    init_list=[column[0].target.attname for column in select[columns]],
                    model_columns=columns, annotations=dict(compiler.annotation_col_map or {}))
            return self._compiled

    def first(self, org_id, name: str, prefix: str = ""):
        """The instance, or None. ``prefix``: one statement sent in the same round trip ahead
        of the query (``BEGIN``: devices.services' status write)."""
        compiled = self._compile()
        values = {"org": uuid.UUID(str(org_id)), "name": name}
        run = list(compiled.params)
        for index, key in compiled.slots.items():
            run[index] = values[key]
        connection = connections[compiled.db]
        with connection.cursor() as cursor:
            if prefix:
                cursor.execute(f"{prefix}; {compiled.sql}", run)
                cursor.nextset()  # the prefix's result, then the query's
            else:
                cursor.execute(compiled.sql, run)
            row = cursor.fetchone()
        if row is None:
            return None
        row = list(row)
        for index, convs, expression in compiled.converters:
            value = row[index]
            for convert in convs:
                value = convert(value, expression, connection)
            row[index] = value
        instance = compiled.model.from_db(compiled.db, compiled.init_list,
                                          row[compiled.model_columns])
        for attribute, index in compiled.annotations.items():
            setattr(instance, attribute, row[index])
        return instance
