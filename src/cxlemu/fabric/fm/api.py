"""The fabric manager's HTTP API (FastAPI).  Reads are open; every mutating
call needs ``Authorization: Bearer <token>`` (the token is in
``racks/RACK/fm/token``, mode 0600).  Errors are JSON: ``{"error": "..."}``
with a 4xx/5xx status; FastAPI's own validation errors (a malformed body)
are 422 with its JSON ``detail``.  The OpenAPI schema is at ``/openapi.json``.
"""

from __future__ import annotations

import hmac
from importlib import resources
from typing import Literal

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from cxlemu.fabric.fm.core import FabricManager, FmError

SizeT = int | str


class AddBody(BaseModel):
    size: SizeT = Field(description="bytes, or a size such as 16G")
    tag: str = Field(min_length=1, max_length=64)
    policy: Literal["free", "contiguous", "prescriptive"] = "free"
    extents: list[tuple[int, int]] | None = Field(default=None, description="prescriptive: [[dpa, length], ...]")


class ShareBody(BaseModel):
    size: SizeT
    tag: str = Field(min_length=1, max_length=64)
    hosts: list[str] = Field(min_length=1)


def make_app(fm: FabricManager, token: str, url_ref: dict) -> FastAPI:
    app = FastAPI(title="cxlemu fabric manager", version="1",
                  description=f"Fabric manager of rack {fm.rack}: pooled and shared CXL memory "
                              "(CXL 3.1 Dynamic Capacity) across the rack's hosts.")

    @app.exception_handler(FmError)
    async def _fm_error(_req: Request, e: FmError):
        return JSONResponse(status_code=e.status, content={"error": e.message})

    @app.exception_handler(Exception)
    async def _internal(_req: Request, e: Exception):
        return JSONResponse(status_code=500, content={"error": f"internal error: {type(e).__name__}: {e}"})

    def auth(authorization: str | None = Header(default=None)) -> None:
        want = f"Bearer {token}"
        if authorization is None or not hmac.compare_digest(authorization.encode(), want.encode()):
            raise FmError(401, "missing or wrong token (Authorization: Bearer <racks/RACK/fm/token>)")

    @app.get("/v1/health")
    def health() -> dict:
        return {"ok": True, "rack": fm.rack}

    @app.get("/v1/status")
    def status() -> dict:
        return fm.status(url_ref.get("url", ""), url_ref.get("pid"))

    @app.get("/v1/hosts")
    def hosts() -> list:
        return fm.status(url_ref.get("url", ""), url_ref.get("pid"))["hosts"]

    @app.get("/v1/hosts/{host}")
    def host(host: str) -> dict:
        fm.heads_of(host)
        return next(h for h in fm.status()["hosts"] if h["name"] == host)

    @app.get("/v1/devices")
    def devices() -> list:
        return fm.devices()

    @app.get("/v1/history")
    def history(limit: int = 200) -> list:
        return fm.history(max(1, min(limit, 10000)))

    @app.get("/v1/capacity")
    def capacity(limit: int = 1000) -> list:
        return fm.samples(max(1, min(limit, 100000)))

    @app.get("/v1/events")
    def events() -> list:
        return fm.events()

    @app.post("/v1/hosts/{host}/allocations", status_code=201, dependencies=[Depends(auth)])
    def add(host: str, body: AddBody) -> dict:
        return fm.add(host, body.size, body.tag, body.policy, [list(e) for e in body.extents or []])

    @app.delete("/v1/hosts/{host}/allocations/{tag}", dependencies=[Depends(auth)])
    def release(host: str, tag: str, forced: bool = False) -> dict:
        return fm.release(host, tag, forced)

    @app.post("/v1/shares", status_code=201, dependencies=[Depends(auth)])
    def share(body: ShareBody) -> list:
        return fm.share(body.tag, body.size, body.hosts)

    @app.post("/v1/reconcile", dependencies=[Depends(auth)])
    def reconcile() -> dict:
        return fm.reconcile()

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return (resources.files("cxlemu.fabric.fm") / "static" / "index.html").read_text()

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in ("app.js", "style.css"):
            raise FmError(404, f"no such file {name!r}")
        body = (resources.files("cxlemu.fabric.fm") / "static" / name).read_text()
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(body, media_type=kind)

    return app
