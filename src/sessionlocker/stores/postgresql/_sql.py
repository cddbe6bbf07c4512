"""The SQL of the PostgreSQL store: table names, schema creation and every statement.

Kept apart from ``postgresql.py`` so the store reads as Python and this file as SQL.
Statements are composed once per store (identifiers quoted by ``psycopg.sql``) and kept
as bytes, the form psycopg sends fastest.

Objects, for a table named ``t`` in schema ``s``:

- ``s.t``: the records (key, revision, value, updated). Keys use the "C" collation, so
  they sort by code point and a key prefix is one index range.
- ``s.t_revisions``: the sequence every record revision comes from (``CACHE 1``, so
  revisions grow in the order they are drawn, across keys, deletes and connections).
- ``s.t_sessions`` and ``s.t_session_versions``: leases and their versions.
- ``s.t_history``: the last versions of each key (only when history is on).
- ``s.t_user_ids_of(value)``: the user ids a record lists (an IMMUTABLE function that
  parses only values holding ``"user_ids":["``), and ``s.t_user_ids``, a GIN index on
  it: ``keys_for_user`` is one index lookup, maintained by every write.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from psycopg import Connection, sql
from psycopg.rows import TupleRow

from sessionlocker.errors import UsageError

__all__ = [
    "MAX_PAYLOAD",
    "Names",
    "Statements",
    "create_missing",
    "keys_page",
    "notify_payload",
    "prefix_end",
]

#: Longest identifier PostgreSQL keeps (NAMEDATALEN - 1 bytes).
_MAX_IDENTIFIER = 63
#: The longest suffix added to the table name (``_session_versions``).
_LONGEST_SUFFIX = len("_session_versions")
_NAME = re.compile(r"[a-z_][a-z0-9_]*")

#: NOTIFY payloads must be under 8000 bytes; longer keys are sent as a digest.
MAX_PAYLOAD = 7000

#: Sessions expired this long ago are removed by other services' renewals, a few at a time.
_SESSION_GRACE = "interval '1 day'"


def _check_name(value: object, what: str, longest: int) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise UsageError(
            f"{what} must be a lower-case SQL name (letters, digits, '_'), not {value!r}"
        )
    if len(value) > longest:
        raise UsageError(f"{what} {value!r} is longer than {longest} characters")
    return value


def notify_payload(key: str) -> str:
    """The NOTIFY payload naming ``key``: the key itself, or a digest when it is too long."""
    if len(key.encode("utf-8")) <= MAX_PAYLOAD:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Names:
    """The schema and table a store uses, checked, and every name derived from them."""

    schema: str
    table: str

    @classmethod
    def checked(cls, schema: object, table: object) -> Names:
        """``UsageError`` unless both are plain lower-case names that fit with suffixes."""
        return cls(
            schema=_check_name(schema, "schema", _MAX_IDENTIFIER),
            table=_check_name(table, "table", _MAX_IDENTIFIER - _LONGEST_SUFFIX),
        )

    @property
    def shown(self) -> str:
        """``schema.table`` for messages."""
        return f"{self.schema}.{self.table}"

    @property
    def channel(self) -> str:
        """The NOTIFY channel of this table (at most 63 bytes, as channel names must be)."""
        channel = f"sessionlocker:{self.shown}"
        if len(channel) <= _MAX_IDENTIFIER:
            return channel
        return "sessionlocker:" + hashlib.sha256(channel.encode()).hexdigest()[:40]

    def ident(self, suffix: str = "") -> sql.Identifier:
        """The quoted, schema-qualified name of the table plus ``suffix``."""
        return sql.Identifier(self.schema, self.table + suffix)

    def regclass(self, suffix: str) -> sql.Literal:
        """The qualified name as a literal, for ``nextval(...::regclass)`` and ``to_regclass``."""
        return sql.Literal(f'"{self.schema}"."{self.table}{suffix}"')


#: The user ids a stored value lists: none unless it holds ``"user_ids":["`` (a record
#: without users costs one byte scan), and none when it is not a JSON record (the
#: inner block catches the parse error, so any bytes can still be written).
_USER_IDS_OF = (
    "CREATE OR REPLACE FUNCTION {}(value bytea) RETURNS text[]"
    " LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$ BEGIN"
    " IF position('\\x22757365725f696473223a5b22'::bytea IN value) = 0"
    " THEN RETURN ARRAY[]::text[]; END IF;"
    " BEGIN RETURN ARRAY(SELECT e #>> '{{}}' FROM"
    " jsonb_array_elements(convert_from(value, 'UTF8')::jsonb -> 'user_ids') AS e"
    " WHERE jsonb_typeof(e) = 'string');"
    " EXCEPTION WHEN others THEN RETURN ARRAY[]::text[]; END; END $$"
)


def _ddl(names: Names, history: bool) -> list[sql.Composed]:
    table = names.ident
    statements = [
        sql.SQL("CREATE SEQUENCE IF NOT EXISTS {} AS bigint CACHE 1 NO CYCLE").format(
            table("_revisions")
        ),
        sql.SQL("CREATE SEQUENCE IF NOT EXISTS {} AS bigint CACHE 1 NO CYCLE").format(
            table("_session_versions")
        ),
        sql.SQL(
            'CREATE TABLE IF NOT EXISTS {} (key text COLLATE "C" PRIMARY KEY,'
            " revision bigint NOT NULL, value bytea NOT NULL, updated timestamptz NOT NULL)"
        ).format(table()),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (session_id text PRIMARY KEY,"
            " version bigint NOT NULL, ttl double precision NOT NULL,"
            " expires timestamptz NOT NULL, info bytea NOT NULL)"
        ).format(table("_sessions")),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (expires)").format(
            sql.Identifier(names.table + "_sessions_expires"), table("_sessions")
        ),
        sql.SQL(_USER_IDS_OF).format(table("_user_ids_of")),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin ({}(value))").format(
            sql.Identifier(names.table + "_user_ids"), table(), table("_user_ids_of")
        ),
    ]
    if history:
        statements.append(
            sql.SQL(
                'CREATE TABLE IF NOT EXISTS {} (key text COLLATE "C", revision bigint,'
                " value bytea NOT NULL, updated timestamptz NOT NULL,"
                " PRIMARY KEY (key, revision))"
            ).format(table("_history"))
        )
    return statements


def create_missing(connection: Connection[TupleRow], names: Names, history: bool) -> None:
    """Create the schema, sequences and tables that do not exist yet.

    What exists is looked up first, so a role with only row privileges on tables an
    administrator created never needs (or trips over) CREATE. Creation runs in one
    transaction under an advisory lock, so processes starting together do not race.
    """
    suffixes = [
        "",
        "_revisions",
        "_session_versions",
        "_sessions",
        "_sessions_expires",
        "_user_ids",
    ]
    if history:
        suffixes.append("_history")
    probe = sql.SQL("SELECT to_regnamespace({}) IS NOT NULL, {}").format(
        sql.Literal(f'"{names.schema}"'),
        sql.SQL(", ").join(
            sql.SQL("to_regclass({}) IS NOT NULL").format(names.regclass(suffix))
            for suffix in suffixes
        ),
    )
    row = connection.execute(probe).fetchone()
    if row is not None and all(row):
        return
    with connection.transaction():
        lock_key = sql.Literal(f"sessionlocker:{names.shown}")
        connection.execute(sql.SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(lock_key))
        if row is None or not row[0]:
            connection.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(names.schema))
            )
        for statement in _ddl(names, history):
            connection.execute(statement)


def _history_ctes(names: Names, *, trim: bool) -> sql.Composed:
    """Copy the written row to the history and, when ``trim`` (the statement a write
    uses one time in ``TRIM_EVERY``), trim the key's history to ``keep`` + 1.

    Two statements rather than a ``%(trim)s`` parameter: with one, a custom plan
    (``false AND ...`` folds the DELETE away) is always cheaper than the generic one,
    so PostgreSQL planned the statement again at every write, ~0.15 ms."""
    copy = ", h AS (INSERT INTO {history} (key, revision, value, updated)"
    copy += " SELECT %(key)s, revision, value, updated FROM w)"
    trimmed = ", trimmed AS (DELETE FROM {history} WHERE key = %(key)s"
    trimmed += " AND EXISTS (SELECT FROM w) AND revision <= (SELECT revision FROM {history}"
    trimmed += " WHERE key = %(key)s ORDER BY revision DESC OFFSET %(keep)s LIMIT 1))"
    return sql.SQL(copy + trimmed if trim else copy).format(history=names.ident("_history"))


def _written_or_current(names: Names, done: str) -> sql.Composed:
    """The tail of a write: one row (revision, NULL) if ``done`` has a row, and NOTIFY;
    otherwise what is stored now (revision, value), or no row when the key is absent.

    The NOTIFY payload is ``revision:key`` after a write and ``:key`` after a delete
    (``key`` being ``notify_payload(key)``). A write sends it only when ``%(notify)s``
    (a quiet write, which no one waits for, spares every listener); a delete always."""
    wrote = done == "w"
    revision = sql.SQL("{}.revision::text").format(sql.Identifier(done)) if wrote else sql.SQL("''")
    return sql.SQL(
        " SELECT {done}.revision, NULL::bytea FROM {done} LEFT JOIN LATERAL"
        " (SELECT pg_notify(%(channel)s, {revision} || ':' || %(payload)s) WHERE {notify}) AS n"
        " ON true"
        " UNION ALL SELECT r.revision, r.value FROM {records} AS r"
        " WHERE r.key = %(key)s AND NOT EXISTS (SELECT FROM {done})"
    ).format(
        done=sql.Identifier(done),
        revision=revision,
        notify=sql.SQL("%(notify)s" if wrote else "true"),
        records=names.ident(),
    )


def _update_many(names: Names, history: bool) -> sql.Composed:
    """The conditional writes of several keys in one statement, so one commit: each row
    of the arrays (``%(keys)s``, ``%(expected)s``, ``%(values)s``, ``%(payloads)s``,
    ``%(notify)s``, ``%(trim)s``, one element per write, keys distinct) updates its key
    only if the stored revision is its ``expected``, as ``update`` does for one.

    Rows: ``key, revision, NULL`` for each write done (NOTIFY sent when its ``notify``);
    ``key, revision, value`` of what is stored for each key whose revision differed;
    none for an absent key. The keys are sorted so concurrent batches lock rows in the
    same order. The history copy and the trim are those of ``_history_ctes``, per row."""
    keep = sql.SQL(
        ", h AS (INSERT INTO {history} (key, revision, value, updated)"
        " SELECT key, revision, value, updated FROM w)"
        ", trimmed AS (DELETE FROM {history} AS o USING w WHERE w.trims AND o.key = w.key"
        " AND o.revision <= (SELECT x.revision FROM {history} AS x WHERE x.key = w.key"
        " ORDER BY x.revision DESC OFFSET %(keep)s LIMIT 1))"
    ).format(history=names.ident("_history"))
    return sql.SQL(
        'WITH i AS (SELECT u.key COLLATE "C" AS key, u.expected, u.value, u.payload,'
        " u.notify, u.trims FROM unnest(%(keys)b::text[], %(expected)b::bigint[],"
        " %(values)b::bytea[], %(payloads)b::text[], %(notify)b::bool[], %(trim)b::bool[])"
        " AS u(key, expected, value, payload, notify, trims) ORDER BY 1)"
        ", w AS (UPDATE {records} AS r SET revision = {revision}, value = i.value,"
        " updated = now() FROM i WHERE r.key = i.key AND r.revision = i.expected"
        " RETURNING r.key, r.revision, r.value, r.updated, i.payload, i.notify, i.trims)"
        "{keep}"
        " SELECT w.key, w.revision, NULL::bytea FROM w LEFT JOIN LATERAL"
        " (SELECT pg_notify(%(channel)s, w.revision::text || ':' || w.payload)"
        " WHERE w.notify) AS n ON true"
        " UNION ALL SELECT r.key, r.revision, r.value FROM {records} AS r JOIN i"
        " ON r.key = i.key WHERE NOT EXISTS (SELECT FROM w WHERE w.key = i.key)"
    ).format(
        records=names.ident(),
        revision=sql.SQL("nextval({}::regclass)").format(names.regclass("_revisions")),
        keep=keep if history else sql.SQL(""),
    )


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement of one store, as bytes. Parameters are named (``%(key)s``)."""

    read: bytes
    read_entry: bytes
    insert: bytes
    update: bytes
    insert_trimming: bytes
    update_trimming: bytes
    update_many: bytes
    delete: bytes
    delete_expected: bytes
    history: bytes
    forget: bytes
    put_lease: bytes
    get_lease: bytes
    drop_lease: bytes
    keys_for_user: bytes

    @classmethod
    def build(cls, names: Names, history: bool) -> Statements:
        """Compose the statements for ``names``; writes keep history when ``history``."""
        records = names.ident()
        revision = sql.SQL("nextval({}::regclass)").format(names.regclass("_revisions"))
        returning = sql.SQL(" RETURNING revision, value, updated)")
        insert = sql.SQL(
            "WITH w AS (INSERT INTO {} (key, revision, value, updated)"
            " VALUES (%(key)s, {}, %(value)s, now()) ON CONFLICT (key) DO NOTHING"
        ).format(records, revision)
        update = sql.SQL(
            "WITH w AS (UPDATE {} SET revision = {}, value = %(value)s, updated = now()"
            " WHERE key = %(key)s AND revision = %(expected)s"
        ).format(records, revision)
        tail = _written_or_current(names, "w")

        def write(head: sql.Composed, *, trim: bool) -> bytes:
            keep = _history_ctes(names, trim=trim) if history else sql.SQL("")
            return _bytes(sql.Composed([head, returning, keep, tail]))

        delete = sql.SQL("WITH d AS (DELETE FROM {} WHERE key = %(key)s{} RETURNING revision)")
        sessions = names.ident("_sessions")
        session_version = sql.SQL("nextval({}::regclass)").format(
            names.regclass("_session_versions")
        )
        return cls(
            read=_bytes(
                sql.SQL("SELECT value, revision FROM {} WHERE key = %(key)s").format(records)
            ),
            read_entry=_bytes(
                sql.SQL(
                    "SELECT value, revision, extract(epoch FROM updated)::float8 FROM {}"
                    " WHERE key = %(key)s"
                ).format(records)
            ),
            insert=write(insert, trim=False),
            update=write(update, trim=False),
            insert_trimming=write(insert, trim=True),
            update_trimming=write(update, trim=True),
            update_many=_bytes(_update_many(names, history)),
            delete=_bytes(
                sql.Composed(
                    [
                        delete.format(records, sql.SQL("")),
                        _written_or_current(names, "d"),
                    ]
                )
            ),
            delete_expected=_bytes(
                sql.Composed(
                    [
                        delete.format(records, sql.SQL(" AND revision = %(expected)s")),
                        _written_or_current(names, "d"),
                    ]
                )
            ),
            history=_bytes(
                sql.SQL(
                    "SELECT value, revision, extract(epoch FROM updated)::float8 FROM {}"
                    " WHERE key = %(key)s ORDER BY revision DESC LIMIT %(limit)s"
                ).format(names.ident("_history"))
            ),
            forget=_bytes(
                sql.SQL("DELETE FROM {} WHERE key = %(key)s RETURNING revision").format(
                    names.ident("_history")
                )
            ),
            put_lease=_bytes(
                sql.SQL(
                    "WITH gone AS (DELETE FROM {sessions} WHERE session_id IN"
                    " (SELECT session_id FROM {sessions} WHERE expires < now() - {grace}"
                    " AND session_id <> %(session)s LIMIT 10))"
                    " INSERT INTO {sessions} (session_id, version, ttl, expires, info)"
                    " VALUES (%(session)s, {version}, %(ttl)s,"
                    " now() + %(ttl)s * interval '1 second', %(info)s)"
                    " ON CONFLICT (session_id) DO UPDATE SET version = excluded.version,"
                    " ttl = excluded.ttl, expires = excluded.expires, info = excluded.info"
                ).format(sessions=sessions, grace=sql.SQL(_SESSION_GRACE), version=session_version)
            ),
            get_lease=_bytes(
                sql.SQL(
                    "SELECT version, ttl, expires <= now() FROM {} WHERE session_id = %(session)s"
                ).format(sessions)
            ),
            drop_lease=_bytes(
                sql.SQL("DELETE FROM {} WHERE session_id = %(session)s").format(sessions)
            ),
            keys_for_user=_bytes(
                sql.SQL(
                    "SELECT key FROM {} WHERE {}(value) @> ARRAY[%(user)s]::text[]"
                    " AND starts_with(key, %(prefix)s) ORDER BY key"
                ).format(records, names.ident("_user_ids_of"))
            ),
        )


def keys_page(names: Names, *, first: bool, bounded: bool) -> bytes:
    """One page of keys in order: from ``%(start)s`` (inclusive on the first page, else
    exclusive) below ``%(end)s`` when ``bounded``, keeping only those with the prefix."""
    start = sql.SQL(">=" if first else ">")
    end = sql.SQL(" AND key < %(end)s") if bounded else sql.SQL("")
    return _bytes(
        sql.SQL(
            "SELECT key FROM {} WHERE key {} %(start)s{} AND starts_with(key, %(prefix)s)"
            " ORDER BY key LIMIT %(limit)s"
        ).format(names.ident(), start, end)
    )


def prefix_end(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` (code point order,
    the order of the "C" collation), or ``None`` when there is none (empty prefix, or
    only U+10FFFF characters)."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be stored: skip them
            code = 0xE000
        if code <= 0x10FFFF:
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


def _bytes(statement: sql.Composable) -> bytes:
    return statement.as_bytes(None)
