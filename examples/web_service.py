"""An asyncio web service (Starlette) serving players' profiles, with purchases.

One ``AsyncLockerService`` per process; a player's profile is held while they are
online (``POST /players/{id}/join`` ... ``POST /players/{id}/leave``), read with
``GET /players/{id}``, and purchases arrive as receipts (``POST /purchases``) that
``Purchaser.process_async`` grants exactly once: ``granted`` is answered only after
the grant is in a committed write, so the payment platform may retry safely.

Serve it with any ASGI server (``create_app(url)``); ``python examples/web_service.py``
runs a short demo in-process through httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sessionlocker import (
    AsyncLockerService,
    EasyStore,
    LoadMode,
    Purchaser,
    Receipt,
    Spec,
    Status,
)

SPEC = Spec("players", lambda: {"gems": 0}, autosave_period=0.3)
PRICES = {"gems-100": 100}


def grant(data: Any, receipt: Receipt) -> None:
    """What a product gives: called once per purchase id, inside the buyer's save."""
    data["gems"] += PRICES[receipt.product_id]


def create_app(service: AsyncLockerService) -> Starlette:
    """The web app over ``service`` (the caller owns and closes the service)."""
    profiles = EasyStore(service)
    purchaser = Purchaser(service, grant)

    async def join(request: Request) -> JSONResponse:
        profile = profiles.start_session(request.path_params["player"], LoadMode.FORCE)
        if not await service.wait_until(profile.is_loaded, timeout=5):
            profiles.end_session(profile.key)
            return JSONResponse({"error": "profile busy, try again"}, status_code=503)
        return JSONResponse({"player": profile.key, "data": profile.data})

    async def show(request: Request) -> JSONResponse:
        profile = profiles.get(request.path_params["player"])
        if profile is None or not profile.is_loaded():
            return JSONResponse({"error": "not online here"}, status_code=404)
        return JSONResponse({"player": profile.key, "data": profile.data})

    async def leave(request: Request) -> JSONResponse:
        key = request.path_params["player"]
        profile = profiles.get(key)
        profiles.end_session(key)  # idempotent
        if profile is not None:
            await service.wait_until(lambda: profile.locker.status is not Status.RELEASING, 5)
        return JSONResponse({"player": key, "online": False})

    async def purchase(request: Request) -> JSONResponse:
        decision = await purchaser.process_async(await request.json(), timeout=5)
        return JSONResponse({"decision": decision.value})

    return Starlette(
        routes=[
            Route("/players/{player}/join", join, methods=["POST"]),
            Route("/players/{player}", show),
            Route("/players/{player}/leave", leave, methods=["POST"]),
            Route("/purchases", purchase, methods=["POST"]),
        ]
    )


@asynccontextmanager
async def client(store_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the app in-process; the service lives as long."""
    async with AsyncLockerService(store_url, SPEC) as service:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://game") as http:
            yield http


async def demo(store_url: str) -> dict[str, Any]:
    """Join, buy twice with the same receipt (a platform retry), read, leave."""
    async with client(store_url) as http:
        receipt = {"purchase_id": "order-1", "product_id": "gems-100", "buyer": "alice"}
        early = (await http.post("/purchases", json=receipt)).json()["decision"]
        print(f"before alice is online: {early}")
        (await http.post("/players/alice/join")).raise_for_status()
        answers = [(await http.post("/purchases", json=receipt)).json()["decision"] for _ in "12"]
        print(f"receipt delivered twice: {answers}")
        profile = (await http.get("/players/alice")).json()
        print(f"alice: {profile}")
        (await http.post("/players/alice/leave")).raise_for_status()
        gone = (await http.get("/players/alice")).status_code
    return {"early": early, "answers": answers, "profile": profile, "after_leave": gone}


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(demo(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as folder:
            asyncio.run(demo(f"sqlite:///{Path(folder) / 'web.db'}"))
