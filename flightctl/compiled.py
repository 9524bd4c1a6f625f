"""ORM queries compiled to SQL once and then run with new parameters.

Building a Django queryset and compiling it to SQL costs far more Python than the query costs
PostgreSQL: on the agent API's status write, compiling the locked device read (with its
fleet's TemplateVersion as a subquery) was about a fifth of the process's CPU at fleet scale
(docs/scale.md). A :class:`CompiledLookup` builds its queryset once, with placeholder values,
keeps the SQL Django produced, and afterwards only swaps the values in and runs it through
``Model.objects.raw``: the same statement, the same model instances (missing columns deferred,
annotations as attributes), none of the per-call compilation. The SQL stays Django's, so it
follows the models.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

#: placeholder values no real lookup uses, to find their positions in the compiled parameters
_ORG = uuid.UUID("5e471ae1-0000-4000-8000-00000000c0de")
_NAME = "\x00compiled-lookup-name\x00"


class CompiledLookup:
    """``build(org_id, name)`` → a queryset; ``first(org_id, name)`` runs its SQL."""

    def __init__(self, build: Callable):
        self._build = build
        self._compiled: tuple | None = None
        self._lock = threading.Lock()

    def _compile(self) -> tuple:
        with self._lock:
            if self._compiled is None:
                queryset = self._build(_ORG, _NAME)[:1]
                sql, params = queryset.query.get_compiler(queryset.db).as_sql()
                slots = {i: key for i, value in enumerate(params)
                         for key, marker in (("org", _ORG), ("name", _NAME))
                         if value == marker or value == str(marker)}
                if sorted(slots.values()) != ["name", "org"]:
                    raise RuntimeError(f"cannot find the lookup's parameters in {params!r}")
                self._compiled = (queryset.model, sql, list(params), slots)
            return self._compiled

    def first(self, org_id, name: str):
        model, sql, params, slots = self._compile()
        values = {"org": uuid.UUID(str(org_id)), "name": name}
        run = list(params)
        for index, key in slots.items():
            run[index] = values[key]
        return next(iter(model.objects.raw(sql, run)), None)
