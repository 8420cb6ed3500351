"""The Label Studio ML backend: boxloop serve."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from ..errors import BoxloopError, InputError
from ._app import WorkspaceOpt, app, console, err_console, open_workspace

if TYPE_CHECKING:
    import uvicorn

    from ..server.service import Service

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command("serve")
def serve_cmd(
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (default: \\[serve] host = 127.0.0.1). "
                     "Anything else needs --basic-auth and a firewall.", show_default=False),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port to listen on (default: \\[serve] port = 9090).", show_default=False)
    ] = None,
    basic_auth: Annotated[
        str | None,
        typer.Option("--basic-auth", envvar="BOXLOOP_BASIC_AUTH", show_default=False,
                     help="USER:PASS every route but /health requires (or BOXLOOP_BASIC_AUTH, which stays "
                     "out of the process list)."),
    ] = None,
    connect: Annotated[
        str | None,
        typer.Option("--connect", show_default=False,
                     help="Once listening, register with this Label Studio project (title or id), with "
                     "interactive pre-annotation on."),
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option("--public-url", show_default=False,
                     help="Where Label Studio reaches this server, for --connect (default: http://HOST:PORT)."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option("--url", show_default=False,
                     help="Label Studio URL (default: \\[labelstudio] url, or the one `labelstudio connect` saved)."),
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Run a Label Studio ML backend: the newest model pre-labels tasks, and it retrains as people annotate.

    Images are read only from Label Studio (with LABEL_STUDIO_API_KEY) or \\[serve] allowed_storage.

    After \\[serve] train_every new annotations (or Start training) it pulls them and trains in the background; /status shows the job and the last evaluation.

    Example: LABEL_STUDIO_API_KEY=... BOXLOOP_BASIC_AUTH=ml:s3cret boxloop serve --port 9090 --connect lcd
    """
    import uvicorn

    from ..annotation.labelstudio import TOKEN_ENV, resolve_url
    from ..server.app import create_app, parse_basic_auth
    from ..server.service import Service

    ws = open_workspace(workspace)
    cfg = ws.config.serve
    host = host or cfg.host
    port = int(port or cfg.port)
    if not 0 < port < 65536:
        raise InputError(f"--port must be within 1..65535, got {port}")
    auth = parse_basic_auth(basic_auth)
    ls_url = resolve_url(ws, url)
    token = os.environ.get(TOKEN_ENV, "").strip() or None
    if connect and not public_url and host in ("0.0.0.0", "::", ""):
        raise InputError(f"--connect with --host {host} needs --public-url: the address Label Studio reaches this server at")
    backend_url = (public_url or f"http://{'[' + host + ']' if ':' in host else host}:{port}").rstrip("/")
    if host not in _LOOPBACK and auth is None:
        err_console.print(f"[yellow]warning:[/yellow] listening on {host} without --basic-auth: anyone who "
                          "reaches this port can use the model and start trainings")
    if not os.environ.get("BOXLOOP_LOG"):
        logging.getLogger("boxloop.server").setLevel(logging.INFO)

    if connect:  # a wrong token or a server that is down fails here, before the model loads and it says it listens
        from ..annotation.labelstudio import connect as check_label_studio

        check_label_studio(ws, url=ls_url, token=token)
    service = Service(ws, url=ls_url, token=token)
    try:
        version = service.load_model()
        verbose = os.environ.get("BOXLOOP_LOG", "").upper() in ("INFO", "DEBUG")
        server = _server(uvicorn.Config(
            create_app(service, basic_auth=auth), host=host, port=port, log_level="info" if verbose else "warning",
            access_log=verbose, timeout_graceful_shutdown=5, server_header=False,
        ), stopping_note=lambda: (
            f"stopping; Label Studio project {service.project} still lists this ML backend ({backend_url}): it answers "
            f"again when `boxloop serve --connect {connect}` runs (to drop it: the project's Settings → Model)"
            if connect and service.project is not None else None
        ))
        failed: list[str] = []
        if connect:
            threading.Thread(
                target=_register_when_up, args=(server, service, failed),
                kwargs={"project": connect, "backend_url": backend_url, "basic_auth": auth, "token": token},
                name="boxloop-connect", daemon=True,
            ).start()
        console.print(
            f"boxloop ML backend on {backend_url} (model {version or 'none yet'}; Label Studio {ls_url}; "
            f"retrains after {cfg.train_every} annotations){'; basic auth on' if auth else ''}",
            highlight=False,
        )
        server.run()
    finally:
        service.close()
    if failed:
        raise typer.Exit(1)



def _server(config: uvicorn.Config, stopping_note: Callable[[], str | None]) -> uvicorn.Server:
    """uvicorn's server, saying ``stopping_note()`` when a signal stops it (uvicorn re-raises
    SIGTERM once it has stopped, so nothing after `run` gets printed then)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if not self.should_exit:
                note = stopping_note()
                if note:
                    console.print(note, highlight=False)
            super().handle_exit(sig, frame)

    return Server(config)


def _register_when_up(
    server: uvicorn.Server, service: Service, failed: list[str], *, project: str, backend_url: str,
    basic_auth: tuple[str, str] | None, token: str | None,
) -> None:
    """Register with Label Studio once uvicorn listens (Label Studio calls /health and
    /setup while registering); a failure stops the server with exit code 1."""
    from ..annotation.labelstudio import resolve_token
    from ..server.connect import register_backend

    deadline = time.monotonic() + 60
    while not server.started:
        if server.should_exit or time.monotonic() > deadline:
            return
        time.sleep(0.05)
    try:
        info = register_backend(
            url=service.url, token=resolve_token(token), project=project, backend_url=backend_url, basic_auth=basic_auth,
        )
    except BoxloopError as e:
        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        failed.append(str(e))
        server.should_exit = True
        return
    except Exception as e:  # a thread's failure must stop the server, not leave it unregistered
        logging.getLogger(__name__).exception("registering with Label Studio failed")
        err_console.print(f"[red]error:[/red] registering with Label Studio failed ({type(e).__name__})")
        failed.append(type(e).__name__)
        server.should_exit = True
        return
    service.project = int(info["project"])
    console.print(
        f"registered as ML backend {info['ml_backend']} of Label Studio project {info['title']!r} "
        f"(id {info['project']}): {info['state']}, model {info['model_version'] or 'none yet'}; "
        "pre-annotation on",
        highlight=False,
    )
