"""Store URLs: parsing, option checking, and the table of backends that open them.

A backend registers its scheme, the URL forms it accepts (shown in every error), its
own query options, and a function from a parsed ``StoreURL`` to a store. Fault options
(``FAULT_OPTIONS``) are accepted for every scheme. Errors are ``UsageError`` naming the
problem and listing the supported forms; the URL is shown without any user name or
password, and values of unknown query options are hidden.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from sessionlocker.errors import UsageError
from sessionlocker.stores.async_base import AsyncStore
from sessionlocker.stores.base import Store

__all__ = [
    "FAULT_OPTIONS",
    "Backend",
    "StoreURL",
    "made_from",
    "parse_store_url",
    "redact",
    "register_backend",
    "supported_forms",
]

#: Query options that wrap any store in a ``FaultyStore`` (see ``open_store``).
FAULT_OPTIONS = frozenset({"fail", "latency", "throttle", "retry_after", "unknown", "seed"})


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A store URL taken apart. ``shown`` is the form safe to put in messages."""

    scheme: str
    #: True when the URL has ``//`` after the scheme (``sqlite:///x`` but not ``sqlite:x``).
    has_authority: bool
    #: Host and port as written, without user name or password.
    host: str
    #: The percent-decoded path, with its leading ``/`` (``sqlite:///x.db`` → ``/x.db``).
    path: str
    options: Mapping[str, str]
    shown: str
    forms: tuple[str, ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def error(self, problem: str) -> UsageError:
        """A ``UsageError`` naming ``problem`` in this URL and the supported forms."""
        return _usage_error(problem, self.shown, self.forms)

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float = 0.0,
        maximum: float = math.inf,
    ) -> float:
        """The option ``name`` as a finite number in [minimum, maximum], or ``default``."""
        text = self.options.get(name)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            raise self.error(f"option {name}={text!r} is not a number") from None
        if not math.isfinite(value) or not minimum <= value <= maximum:
            upper = "" if maximum == math.inf else f" and <= {maximum:g}"
            raise self.error(f"option {name}={text!r} must be >= {minimum:g}{upper}")
        return value

    def integer(self, name: str) -> int | None:
        """The option ``name`` as a whole number, or ``None`` when absent."""
        text = self.options.get(name)
        if text is None:
            return None
        try:
            return int(text)
        except ValueError:
            raise self.error(f"option {name}={text!r} is not a whole number") from None


@dataclass(frozen=True, slots=True)
class Backend:
    """How one URL scheme is opened."""

    scheme: str
    #: Example URLs shown in error messages.
    forms: tuple[str, ...]
    #: Query options of this backend, beside ``FAULT_OPTIONS``.
    options: frozenset[str]
    open: Callable[[StoreURL], Store]
    #: A native async store for ``open_async_store``; without one, ``open``'s store
    #: runs on threads.
    open_async: Callable[[StoreURL], AsyncStore] | None = None


_BACKENDS: dict[str, Backend] = {}

S = TypeVar("S")


def made_from(url: StoreURL, factory: Callable[..., S], settings: Mapping[str, Any]) -> S:
    """``factory(**settings)``, its ``UsageError`` re-raised naming ``url`` and its forms."""
    try:
        return factory(**settings)
    except UsageError as exc:
        raise url.error(str(exc)) from None


def register_backend(backend: Backend) -> None:
    """Make ``backend.scheme`` openable by ``open_store`` (a later one replaces it)."""
    _BACKENDS[backend.scheme.lower()] = backend


def supported_forms() -> tuple[str, ...]:
    """Every URL form of every registered backend, for help and error messages."""
    return tuple(form for backend in _BACKENDS.values() for form in backend.forms)


def _known_options() -> frozenset[str]:
    names = set(FAULT_OPTIONS)
    for backend in _BACKENDS.values():
        names |= backend.options
    return frozenset(names)


def redact(url: str) -> str:
    """``url`` made safe to show: no user name or password, unknown option values hidden.

    Everything between ``://`` and the last ``@`` becomes ``***``, even when a password holds a
    ``/``, ``?`` or ``#`` that would confuse a URL parser: hiding too much is fine,
    showing a password is not.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, separator, rest = "", "", url
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    base, question, query = rest.partition("?")
    if question:
        known = _known_options()
        pieces = []
        for piece in query.split("&"):
            name, equals, _value = piece.partition("=")
            pieces.append(piece if name in known or not equals else f"{name}=***")
        query = "&".join(pieces)
    return f"{scheme}{separator}{base}{question}{query}"


def _usage_error(problem: str, shown: str, forms: tuple[str, ...]) -> UsageError:
    options = ", ".join(sorted(FAULT_OPTIONS))
    return UsageError(
        f"bad store URL {shown!r}: {problem}. Supported forms: {', '.join(forms)} "
        f"(fault options for any of them: {options}, e.g. memory://?fail=0.1&seed=1)"
    )


def parse_store_url(url: object) -> tuple[Backend, StoreURL]:
    """Take ``url`` apart and find its backend; ``UsageError`` when anything is wrong."""
    forms = supported_forms()
    if not isinstance(url, str):
        raise UsageError(
            f"a store URL must be a str, not {type(url).__name__}. "
            f"Supported forms: {', '.join(forms)}"
        )
    shown = redact(url)
    if not url.strip():
        raise _usage_error("the URL is empty", shown, forms)
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _usage_error("it cannot be parsed as a URL", shown, forms) from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise _usage_error("it has no scheme (like memory:// or sqlite:///)", shown, forms)
    backend = _BACKENDS.get(scheme)
    if backend is None:
        raise _usage_error(f"unknown scheme {scheme!r}", shown, forms)
    if parts.fragment:
        raise _usage_error("a '#' fragment is not supported", shown, backend.forms)

    options: dict[str, str] = {}
    allowed = backend.options | FAULT_OPTIONS
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in allowed:
            known = ", ".join(sorted(allowed))
            problem = f"unknown option {name!r} (known: {known})"
            raise _usage_error(problem, shown, backend.forms)
        if name in options:
            raise _usage_error(f"option {name!r} is given twice", shown, backend.forms)
        options[name] = value

    userinfo, _at, host = parts.netloc.rpartition("@")
    username, _colon, password = userinfo.partition(":")
    parsed = StoreURL(
        scheme=scheme,
        has_authority=url[len(parts.scheme) + 1 :].startswith("//"),
        host=host,
        path=unquote(parts.path),
        options=options,
        shown=shown,
        forms=backend.forms,
        username=unquote(username) if userinfo else None,
        password=unquote(password) if _colon else None,
    )
    return backend, parsed
