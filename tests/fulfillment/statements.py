"""Count every statement sent to PostgreSQL, whichever cursor sends it.

CaptureQueriesContext sees Django's cursors only; inventory's hot reservation statements run on a
raw psycopg cursor (prepared, server-side binding) that it doesn't see. Patching psycopg's
``Cursor.execute``/``executemany`` counts both (Django's cursors are psycopg cursor subclasses).
BEGIN and COMMIT are counted apart: psycopg sends them itself, once per transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg


@dataclass
class Sent:
    statements: list[str] = field(default_factory=list)
    commits: int = 0

    def __len__(self) -> int:
        return len(self.statements)


@contextmanager
def count_statements() -> Iterator[Sent]:
    sent = Sent()
    execute, executemany, commit = psycopg.Cursor.execute, psycopg.Cursor.executemany, psycopg.Connection.commit

    def counted_execute(self, query, params=None, *args, **kwargs):
        sent.statements.append(query if isinstance(query, str) else repr(query))
        return execute(self, query, params, *args, **kwargs)

    def counted_executemany(self, query, params_seq, *args, **kwargs):
        params_seq = list(params_seq)
        sent.statements.extend([query if isinstance(query, str) else repr(query)] * len(params_seq))
        return executemany(self, query, params_seq, *args, **kwargs)

    def counted_commit(self):
        sent.commits += 1
        return commit(self)

    psycopg.Cursor.execute = counted_execute
    psycopg.Cursor.executemany = counted_executemany
    psycopg.Connection.commit = counted_commit
    try:
        yield sent
    finally:
        psycopg.Cursor.execute = execute
        psycopg.Cursor.executemany = executemany
        psycopg.Connection.commit = commit
