"""TLS test servers: a throwaway CA, and ``redis-server`` and PostgreSQL speaking only TLS.

``make_certificates`` runs ``openssl`` to make a CA, a server certificate it signs (for
``127.0.0.1`` and ``localhost``), and a second CA that signs nothing here, to stand for a
client that does not trust the server. Both servers also listen on ``OTHER_ADDRESS``,
which the certificate does not name, for host name checks. ``TLSRedisServer`` listens
only on a TLS port
(``--port 0``) and wants a password; ``TLSPostgresServer`` has ``ssl=on``, a password
(SCRAM) for ``postgres`` and a ``pg_hba.conf`` of one ``hostssl`` line, so a plain
connection is refused. Each lives in its own temporary directory on a free loopback port
and is stopped, and its directory removed, by ``cleanup()``. Failures raise
``ServerError`` with the reason (and the server's log).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from servers import ServerError, find_postgres_bin, free_port

__all__ = [
    "OTHER_ADDRESS",
    "PASSWORD",
    "Certificates",
    "TLSPostgresServer",
    "TLSRedisServer",
    "make_certificates",
]

#: The password of both servers: tests check it never shows in an error message.
PASSWORD = "tls-Secret-42"
_START_TIMEOUT = 20.0
#: A second loopback address both servers also listen on; their certificate does not
#: name it, so a client that checks host names must refuse it.
OTHER_ADDRESS = "127.0.0.2"


@dataclass(frozen=True, slots=True)
class Certificates:
    """Paths of the PEM files ``make_certificates`` wrote."""

    ca: Path
    cert: Path
    key: Path
    #: A CA that did not sign the server's certificate.
    other_ca: Path


def _openssl(directory: Path, *args: str) -> None:
    result = subprocess.run(
        ["openssl", *args], cwd=directory, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ServerError(f"openssl {args[0]} failed: {result.stderr.strip()[-1000:]}")


def _self_signed_ca(directory: Path, name: str) -> None:
    _openssl(
        directory, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
        "-subj", f"/CN=sessionlocker test {name}",
    )  # fmt: skip


def make_certificates(directory: Path) -> Certificates:
    """A CA, a server certificate it signed, and an unrelated CA, written in ``directory``."""
    if shutil.which("openssl") is None:
        raise ServerError("openssl is not installed, so no test certificates can be made")
    _self_signed_ca(directory, "ca")
    _self_signed_ca(directory, "other-ca")
    _openssl(
        directory, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
    )  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        directory, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext",
    )  # fmt: skip
    return Certificates(
        ca=directory / "ca.crt",
        cert=directory / "server.crt",
        key=directory / "server.key",
        other_ca=directory / "other-ca.crt",
    )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class TLSRedisServer:
    """``redis-server`` on a TLS-only loopback port, with ``requirepass PASSWORD``."""

    def __init__(self, certificates: Certificates) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerError("redis-server is not installed")
        self.binary = binary
        self.certificates = certificates
        self.directory = Path(tempfile.mkdtemp(prefix="sessionlocker-tls-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def start(self) -> None:
        """Start the server and wait until it answers ``PING`` over TLS."""
        certs = self.certificates
        command = [
            self.binary,
            "--port", "0",
            "--tls-port", str(self.port),
            "--bind", "127.0.0.1", OTHER_ADDRESS,
            "--tls-cert-file", str(certs.cert),
            "--tls-key-file", str(certs.key),
            "--tls-ca-cert-file", str(certs.ca),
            "--tls-auth-clients", "no",
            "--requirepass", PASSWORD,
            "--dir", str(self.directory),
            "--save", "",
            "--logfile", str(self.log),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        context = ssl.create_default_context(cafile=str(certs.ca))
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"redis-server exited while starting; log:\n{_tail(self.log)}")
            try:
                with (
                    socket.create_connection(("127.0.0.1", self.port), timeout=2) as raw,
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
                ):
                    tls.sendall(b"PING\r\n")
                    if tls.recv(64).startswith(b"-NOAUTH"):  # it answers, and wants a password
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise ServerError(f"redis-server did not answer over TLS; log:\n{_tail(self.log)}")

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


class TLSPostgresServer:
    """A PostgreSQL cluster that takes only TLS connections (``hostssl``), with SCRAM.

    The database is ``postgres``; the role ``postgres`` has the password ``PASSWORD``.
    As root, every command runs as the ``postgres`` user, which owns the directory and
    the key (mode 0600, as PostgreSQL demands).
    """

    def __init__(self, certificates: Certificates) -> None:
        bindir = find_postgres_bin()
        if bindir is None:
            raise ServerError("PostgreSQL (initdb, pg_ctl) is not installed")
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        if self.as_root and shutil.which("runuser") is None:
            raise ServerError("running as root, but runuser is missing to run PostgreSQL")
        self.certificates = certificates
        self.directory = Path(tempfile.mkdtemp(prefix="sessionlocker-tls-pg-"))
        self.port = free_port()
        self.running = False

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    def _own(self, path: Path) -> None:
        if self.as_root:
            shutil.chown(path, user="postgres", group="postgres")

    def _run(self, *command: str) -> None:
        program = [str(self.bindir / command[0]), *command[1:]]
        if self.as_root:
            program = ["runuser", "-u", "postgres", "--", *program]
        result = subprocess.run(
            program, capture_output=True, text=True, check=False, cwd=self.directory
        )
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip()[-2000:]
            raise ServerError(f"{command[0]} failed ({result.returncode}): {output}")

    def start(self) -> None:
        """Create the cluster with TLS on and only ``hostssl`` allowed, and start it."""
        try:
            self._own(self.directory)
        except (LookupError, PermissionError) as exc:
            raise ServerError(f"cannot hand the directory to user postgres: {exc}") from exc
        password_file = self.directory / "password"
        password_file.write_text(PASSWORD + "\n")
        self._own(password_file)
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "scram-sha-256",
            f"--pwfile={password_file}", "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        for source, name in ((self.certificates.cert, "server.crt"),
                             (self.certificates.key, "server.key")):  # fmt: skip
            target = self.data / name
            shutil.copyfile(source, target)
            target.chmod(0o600)
            self._own(target)
        (self.data / "pg_hba.conf").write_text(
            "# TLS only: no host or hostnossl line, so a plain TCP connection is refused.\n"
            "hostssl all all 127.0.0.0/8 scram-sha-256\n"
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1,{OTHER_ADDRESS}'\n"
                f"unix_socket_directories = '{self.directory}'\n"
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                "fsync = off\nfull_page_writes = off\n"
            )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", str(int(_START_TIMEOUT)), "start")  # fmt: skip
        self.running = True

    def cleanup(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        if self.running:
            self.running = False
            with contextlib.suppress(ServerError):  # already gone: remove the directory anyway
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)
