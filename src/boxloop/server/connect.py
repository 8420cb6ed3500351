"""Register ``boxloop serve`` as the ML backend of a Label Studio project.

Label Studio checks /health and /setup while registering, so the server must already
answer. Registering again (same backend URL) updates the registration instead of adding a
second one. Label Studio also makes a project webhook to ``<backend>/webhook`` for every
event, with no credentials: with basic auth, boxloop adds the Authorization header to it,
or /webhook would refuse Label Studio's events. Pre-annotation is turned on: predictions
pre-label tasks (``show_collab_predictions``, model version = this backend), are fetched
when a task is opened (``evaluate_predictions_automatically``), and the backend is
interactive.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

__all__ = ["BACKEND_TITLE", "register_backend"]

log = logging.getLogger(__name__)
BACKEND_TITLE = "boxloop"


def register_backend(
    *,
    url: str,
    token: str,
    project: str,
    backend_url: str,
    basic_auth: tuple[str, str] | None = None,
    title: str = BACKEND_TITLE,
) -> dict[str, Any]:
    """Register (or update) the backend at ``backend_url`` on ``project`` (title or id);
    returns the project id and title, the ML backend id, its state and model version."""
    from ..annotation.labelstudio import api_client, call_api, find_project, plain_json

    client = api_client(url, token)
    proj = find_project(client, url, project, create_with=None)
    pid = int(proj["id"])
    backend_url = backend_url.rstrip("/")
    auth: dict[str, Any] = {"auth_method": "NONE"}
    if basic_auth is not None:
        auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": basic_auth[0], "basic_auth_pass": basic_auth[1]}
    existing = [
        plain_json(m) for m in call_api(url, f"list the ML backends of project {pid}", client.ml.list, project=pid)
    ]
    mine = [m for m in existing if str(m.get("url") or "").rstrip("/") == backend_url]
    fields = {"url": backend_url, "title": title, "is_interactive": True, **auth}
    if mine:
        ml_id = int(mine[0]["id"])
        ml = plain_json(call_api(url, f"update ML backend {ml_id}", lambda: client.ml.update(id=ml_id, **fields)))
    else:
        ml = plain_json(call_api(url, f"register the ML backend {backend_url}",
                          lambda: client.ml.create(project=pid, **fields)))

    hook_url = backend_url + "/webhook"
    headers: dict[str, str] = {}
    if basic_auth is not None:
        pair = f"{basic_auth[0]}:{basic_auth[1]}".encode()
        headers = {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    hooks = [plain_json(h) for h in call_api(url, "list the project's webhooks", client.webhooks.list, project=str(pid))]
    hook = next((h for h in hooks if str(h.get("url") or "").rstrip("/") == hook_url), None)
    hook_fields = {"url": hook_url, "headers": headers, "is_active": True, "send_payload": True,
                   "send_for_all_actions": True}
    if hook is None:
        call_api(url, f"add the webhook {hook_url}", lambda: client.webhooks.create(project=pid, **hook_fields))
    elif (hook.get("headers") or {}) != headers or not hook.get("is_active", True):
        hook_id = int(hook["id"])
        call_api(url, f"update the webhook {hook_url}", lambda: client.webhooks.update(id=hook_id, **hook_fields))

    call_api(url, f"turn on pre-annotation in project {pid}", client.projects.update, id=pid,
          show_collab_predictions=True, evaluate_predictions_automatically=True, model_version=title)
    log.info("registered %s as ML backend %s of project %d at %s", backend_url, ml.get("id"), pid, url)
    return {
        "project": pid,
        "title": str(proj.get("title") or pid),
        "ml_backend": ml.get("id"),
        "state": ml.get("readable_state") or ml.get("state"),
        "model_version": ml.get("model_version"),
    }
