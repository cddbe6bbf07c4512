"""TLS against real TLS servers: ``rediss://`` and ``postgresql://...?sslmode=verify-full``.

A throwaway CA signs the servers' certificate (``tests/tls_servers.py``). Redis listens
only on a TLS port, PostgreSQL takes only ``hostssl`` connections, and both want a
password, so every test also checks that no error message shows it. A client that
trusts the CA saves and loads (sync and async stores, and a ``LockerService``
session); one that does not, or one that will not speak TLS, fails at once with a
``StoreError`` naming the cause. The servers are started once for this module and
stopped at its end. The PostgreSQL tests are named ``pg`` rather than ``postgresql``, so
``tests/conftest.py`` does not also start the run's plain PostgreSQL server (seconds) for
them; ``rediss`` still starts its plain Redis server, which is quick.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import fast_spec
from servers import ServerError
from sessionlocker import LockerService, Status, StoreError
from sessionlocker.core.record import decode
from sessionlocker.stores import open_async_store, open_store
from tls_servers import (
    OTHER_ADDRESS,
    PASSWORD,
    Certificates,
    TLSPostgresServer,
    TLSRedisServer,
    make_certificates,
)

#: A failed TLS handshake must be reported well within this (no hang, no long retrying).
PROMPT = 4.0


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    try:
        return make_certificates(tmp_path_factory.mktemp("tls"))
    except ServerError as exc:
        pytest.skip(f"TLS NOT TESTED: NO CERTIFICATES: {exc}")


@pytest.fixture(scope="module")
def tls_redis(certificates: Certificates) -> Iterator[TLSRedisServer]:
    server = TLSRedisServer(certificates)
    try:
        server.start()
    except ServerError as exc:
        server.cleanup()
        pytest.skip(f"REDIS TLS NOT TESTED: THE SERVER DID NOT START WITH TLS: {exc}")
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def tls_pg(certificates: Certificates) -> Iterator[TLSPostgresServer]:
    server = TLSPostgresServer(certificates)
    try:
        server.start()
    except ServerError as exc:
        server.cleanup()
        pytest.skip(f"POSTGRESQL TLS NOT TESTED: THE SERVER DID NOT START WITH TLS: {exc}")
    yield server
    server.cleanup()


def rediss(
    server: TLSRedisServer, ca: Path | None, scheme: str = "rediss", host: str = "127.0.0.1"
) -> str:
    """A URL of ``server`` under a fresh prefix, trusting ``ca`` (None: the system's CAs)."""
    trust = f"&ca={ca}" if ca is not None else ""
    prefix = f"tls{uuid.uuid4().hex[:8]}/"
    return f"{scheme}://:{PASSWORD}@{host}:{server.port}/0?prefix={prefix}{trust}"


def pg(server: TLSPostgresServer, options: str, host: str = "127.0.0.1") -> str:
    """A URL of ``server``'s ``postgres`` database with ``options`` and a fresh table."""
    table = f"tls_{uuid.uuid4().hex[:8]}"
    where = f"{host}:{server.port}/postgres"
    return f"postgresql://postgres:{PASSWORD}@{where}?table={table}&{options}"


def verify_full(ca: Path) -> str:
    return f"sslmode=verify-full&sslrootcert={ca}"


def round_trip(url: str) -> None:
    """Write, conditionally rewrite, read and delete a record through ``open_store(url)``."""
    store = open_store(url)
    try:
        first = store.write("k", b"one", None)
        second = store.write("k", b"two", first)
        stored = store.read("k")
        assert stored is not None
        assert (stored.value, stored.revision) == (b"two", second)
        assert list(store.keys("")) == ["k"]
        assert store.delete("k", second)
        assert store.read("k") is None
    finally:
        store.close()


async def async_round_trip(url: str) -> None:
    """``round_trip`` through ``open_async_store(url)``."""
    store = open_async_store(url)
    try:
        first = await store.write("k", b"one", None)
        second = await store.write("k", b"two", first)
        stored = await store.read("k")
        assert stored is not None
        assert (stored.value, stored.revision) == (b"two", second)
        assert [key async for key in store.keys("")] == ["k"]
        assert await store.delete("k", second)
        assert await store.read("k") is None
    finally:
        await store.aclose()


def refused(url: str, *, use_async: bool) -> StoreError:
    """The ``StoreError`` of the first read through ``url``, checked to come promptly and
    to keep the password out of its message."""
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        if use_async:
            asyncio.run(_read_async(url))
        else:
            store = open_store(url)
            try:
                store.read("k")
            finally:
                store.close()
    elapsed = time.monotonic() - started
    assert elapsed < PROMPT, f"the failure took {elapsed:.1f} s"
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value)
    return caught.value


async def _read_async(url: str) -> None:
    store = open_async_store(url)
    try:
        await store.read("k")
    finally:
        await store.aclose()


def session_over(url: str) -> None:
    """One ``LockerService`` session that saves, then a second store that sees it."""
    spec = fast_spec()
    store = open_store(url)
    try:
        with LockerService(store, spec) as service:
            with service.session("p1", timeout=10) as player:
                assert player.status is Status.LOADED
                player.data["log"].append("over tls")
                player.mark_changed()
            assert player.status is Status.IDLE
    finally:
        store.close()
    check = open_store(url)
    try:
        stored = check.read("players/p1")
        assert stored is not None
        record: Any = decode(stored.value)
        assert record.data == {"log": ["over tls"]}
        assert record.lock is None
    finally:
        check.close()


def session_refused(url: str) -> None:
    """A ``session`` on a server whose certificate is not trusted raises the store's
    permanent error at once, not ``LockUnavailable`` at its timeout: the service's own
    session record cannot be written, and no retry would change that."""
    spec = fast_spec()
    started = time.monotonic()
    with LockerService(url, spec) as service, pytest.raises(StoreError) as caught:
        with service.session("p1", timeout=30):
            pass
    elapsed = time.monotonic() - started
    assert elapsed < PROMPT, f"the failure took {elapsed:.1f} s"
    assert not caught.value.retryable
    assert "certificate" in str(caught.value).lower()
    assert PASSWORD not in str(caught.value)


# Redis.


def test_rediss_round_trip_trusting_the_ca(
    tls_redis: TLSRedisServer, certificates: Certificates
) -> None:
    round_trip(rediss(tls_redis, certificates.ca))


def test_rediss_async_round_trip_trusting_the_ca(
    tls_redis: TLSRedisServer, certificates: Certificates
) -> None:
    asyncio.run(async_round_trip(rediss(tls_redis, certificates.ca)))


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("trusted", ["other-ca", "system-cas"])
def test_rediss_refuses_a_server_whose_ca_it_does_not_trust(
    tls_redis: TLSRedisServer, certificates: Certificates, trusted: str, use_async: bool
) -> None:
    ca = certificates.other_ca if trusted == "other-ca" else None
    error = refused(rediss(tls_redis, ca), use_async=use_async)
    assert "certificate verify failed" in str(error).lower()
    assert not error.retryable  # trying again cannot make an untrusted server trusted
    assert f"127.0.0.1:{tls_redis.port}" in str(error)


def test_rediss_through_localhost_matches_the_certificate_name(
    tls_redis: TLSRedisServer, certificates: Certificates
) -> None:
    round_trip(rediss(tls_redis, certificates.ca, host="localhost"))


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_rediss_refuses_an_address_the_certificate_does_not_name(
    tls_redis: TLSRedisServer, certificates: Certificates, use_async: bool
) -> None:
    error = refused(rediss(tls_redis, certificates.ca, host=OTHER_ADDRESS), use_async=use_async)
    assert "certificate verify failed" in str(error).lower()
    assert "mismatch" in str(error).lower()
    assert not error.retryable


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_plain_redis_scheme_against_the_tls_port_fails_promptly(
    tls_redis: TLSRedisServer, use_async: bool
) -> None:
    error = refused(rediss(tls_redis, None, scheme="redis"), use_async=use_async)
    assert "connection" in str(error).lower()


def test_rediss_service_session_end_to_end(
    tls_redis: TLSRedisServer, certificates: Certificates
) -> None:
    session_over(rediss(tls_redis, certificates.ca))


def test_rediss_session_with_an_untrusted_ca_fails_at_once(
    tls_redis: TLSRedisServer, certificates: Certificates
) -> None:
    session_refused(rediss(tls_redis, certificates.other_ca))


# PostgreSQL.


def test_pg_verify_full_round_trip(tls_pg: TLSPostgresServer, certificates: Certificates) -> None:
    round_trip(pg(tls_pg, verify_full(certificates.ca)))


def test_pg_async_verify_full_round_trip(
    tls_pg: TLSPostgresServer, certificates: Certificates
) -> None:
    asyncio.run(async_round_trip(pg(tls_pg, verify_full(certificates.ca))))


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_pg_verify_full_refuses_a_server_whose_ca_it_does_not_trust(
    tls_pg: TLSPostgresServer, certificates: Certificates, use_async: bool
) -> None:
    error = refused(pg(tls_pg, verify_full(certificates.other_ca)), use_async=use_async)
    assert "certificate verify failed" in str(error)
    assert not error.retryable
    assert f"127.0.0.1:{tls_pg.port}" in str(error)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_pg_verify_full_refuses_an_address_the_certificate_does_not_name(
    tls_pg: TLSPostgresServer, certificates: Certificates, use_async: bool
) -> None:
    url = pg(tls_pg, verify_full(certificates.ca), host=OTHER_ADDRESS)
    error = refused(url, use_async=use_async)
    assert f'does not match host name "{OTHER_ADDRESS}"' in str(error)
    assert not error.retryable


def test_pg_verify_ca_does_not_check_the_name(
    tls_pg: TLSPostgresServer, certificates: Certificates
) -> None:
    url = pg(tls_pg, f"sslmode=verify-ca&sslrootcert={certificates.ca}", host=OTHER_ADDRESS)
    round_trip(url)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_pg_sslmode_disable_is_refused_by_a_hostssl_only_server(
    tls_pg: TLSPostgresServer, use_async: bool
) -> None:
    error = refused(pg(tls_pg, "sslmode=disable"), use_async=use_async)
    assert "no pg_hba.conf entry" in str(error)
    assert "no encryption" in str(error)
    assert not error.retryable


def test_pg_service_session_end_to_end(
    tls_pg: TLSPostgresServer, certificates: Certificates
) -> None:
    session_over(pg(tls_pg, verify_full(certificates.ca)))


def test_pg_session_with_an_untrusted_ca_fails_at_once(
    tls_pg: TLSPostgresServer, certificates: Certificates
) -> None:
    session_refused(pg(tls_pg, verify_full(certificates.other_ca)))
