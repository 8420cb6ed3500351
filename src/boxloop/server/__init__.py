"""``boxloop serve``: a Label Studio ML backend backed by the boxloop workspace.

Label Studio calls ``/setup``, ``/predict`` and ``/webhook`` (protocol in
../shared/LABEL_STUDIO.md); the model is loaded once per process, predictions come back
one per task with the model version and region and task scores, and annotations made in
Label Studio retrain the model in a background process.

    images.py    the image of a task: only from Label Studio or allowed storage, size-limited
    protocol.py  pure conversions: detections → regions, task score, project ids, webhook events
    training.py  the background worker (one job at a time, triggers coalesced) and the job
    service.py   the state behind the routes: model, counters, worker, Label Studio connection
    app.py       the FastAPI app: routes, basic auth, body limit, errors as JSON
    connect.py   register the backend on a Label Studio project

FastAPI, httpx and torch are imported only inside the modules that use them.
"""

from __future__ import annotations

__all__: list[str] = []
