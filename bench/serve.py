"""`boxloop serve` under load: 200 /predict requests (one task each) from 8 concurrent
clients on loopback, against the same predictions done in-process.

    .venv/bin/python bench/serve.py                     # 40 LCD images 320x240, imgsz 320
    .venv/bin/python bench/serve.py --weights best.pt   # your model instead of a quick one
    .venv/bin/python bench/serve.py --requests 50       # quicker

The tasks are what Label Studio sends for images in a local-files storage
(``/data/local-files/?d=...``); a small file server on loopback plays Label Studio's media
endpoint, so each request fetches its image over HTTP with the token, as in production.
The in-process baseline does the same work without the server: read the file, decode,
predict, turn the boxes into Label Studio regions, one image at a time, in one worker thread
as the server's handlers run (on a busy machine torch's OpenMP threads are several times
slower in a process's main thread than in a worker thread, which would flatter the server).

Boxes down to ``--conf`` (0.001) are predicted and sent, so each answer carries regions to
convert and serialise, as a trained model's would. Prints the errors (must be 0), p50/p95 latency, requests/s, the server's RSS growth over the
timed run (after a warm-up; aim < 50 MB), the in-process cost, and as the last line
``ratio: X`` = server wall time / in-process time for the same predictions (the server's
overhead; 1.0 would be none). Without --weights, a yolov8n is trained from scratch for one
epoch on the generated images (speed does not depend on how good it is).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds select.py, which would shadow the standard library's select module
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import http.server  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from urllib.parse import parse_qs, urlsplit  # noqa: E402

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

TOKEN = secrets.token_hex(20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MediaServer:
    """Label Studio's ``/data/local-files/?d=`` endpoint over a folder (token required)."""

    def __init__(self, root: Path) -> None:
        files = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*.jpg")}

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                rel = parse_qs(parts.query).get("d", [""])[0]
                ok = parts.path == "/data/local-files/" and self.headers.get("Authorization") == f"Token {TOKEN}"
                body = files.get(rel) if ok else None
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.send_header("Content-Type", "image/jpeg")
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", _free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024  # type: ignore[union-attr]


def _workspace(tmp: Path, media: MediaServer, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from boxloop.ingest import add_labels
    from boxloop.synth import CLASSES
    from boxloop.workspace import Workspace

    ws = Workspace.init(tmp / "ws", classes=CLASSES)
    toml = ws.root / "boxloop.toml"
    text = toml.read_text()
    keys = {"url": f'"{media.url}"', "epochs": "1", "imgsz": str(args.imgsz), "batch": "8",
            "conf": str(args.conf), "prelabel_conf": str(args.conf)}
    for key, value in keys.items():
        text = re.sub(rf"^{key} = \S+", f"{key} = {value}", text, count=1, flags=re.M)
    toml.write_text(text)
    ws = Workspace.open(ws.root)
    add_labels(ws, tmp / "media" / "lcd", format="yolo")
    if args.weights:
        from boxloop.modeling import resolve_model

        resolve_model(ws, args.weights)
    else:  # in a process of its own: this one stays as a user's would be
        print(f"training yolov8n.yaml for 1 epoch at {args.imgsz} (pass --weights to skip)...", flush=True)
        subprocess.run(
            [sys.executable, "-c", "from boxloop.cli import main; main()", "-w", str(ws.root), "train",
             "--allow-missing-classes"], check=True, stdout=subprocess.DEVNULL,
        )
    return ws


def _tasks(n: int, images: list[str]) -> list[dict]:
    return [{"id": i + 1, "project": 1, "data": {"image": f"/data/local-files/?d=lcd/images/{images[i % len(images)]}"}}
            for i in range(n)]


def _in_process(ws, tasks: list[dict], media_root: Path) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    from boxloop.formats.labelstudio import label_config, parse_label_config
    from boxloop.modeling import decode_file
    from boxloop.server.protocol import prediction_entry
    from boxloop.server.service import load_newest

    loaded = load_newest(ws)
    assert loaded is not None
    lc = parse_label_config(label_config(ws.classes))
    cfg = ws.config

    def one(task: dict) -> int:
        path = media_root / task["data"]["image"].split("?d=", 1)[1]
        img = decode_file(str(path))
        d = loaded.backend.predict([img], conf=cfg.predict.conf, iou=cfg.predict.iou)[0].detections
        entry = prediction_entry(d, classes=ws.classes, config=lc, width=img.shape[1], height=img.shape[0],
                                 model_version=loaded.version, prelabel_conf=cfg.labelstudio.prelabel_conf)
        return len(entry["result"])

    def run() -> tuple[float, int]:
        for t in tasks[:8]:
            one(t)
        t0 = time.perf_counter()
        regions = sum(one(t) for t in tasks)
        return time.perf_counter() - t0, regions

    with ThreadPoolExecutor(1) as worker:
        return worker.submit(run).result()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200, help="/predict requests, one task each")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients")
    ap.add_argument("--images", type=int, default=40, help="distinct images the tasks cycle through")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--weights", type=Path, default=None, help="a trained .pt (default: train a quick one)")
    ap.add_argument("--conf", type=float, default=0.001,
                    help="predict and pre-label threshold (low: a 1-epoch model's boxes are faint, and every "
                    "box is a region to convert and send)")
    args = ap.parse_args()

    import httpx

    from boxloop.formats.labelstudio import label_config
    from boxloop.synth import generate_images

    with tempfile.TemporaryDirectory(prefix="boxloop-bench-serve-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp / "ultralytics-config"))
        generate_images(tmp / "media" / "lcd", n=args.images, seed=0, size=(320, 240))
        media = MediaServer(tmp / "media")
        ws = _workspace(tmp, media, args)
        images = sorted(p.name for p in (tmp / "media" / "lcd" / "images").iterdir())
        tasks = _tasks(args.requests, images)
        print(f"{args.requests} /predict requests (one task each) from {args.clients} clients; {len(images)} "
              f"images 320x240 fetched from a local-files endpoint; imgsz {args.imgsz}; {os.cpu_count()} CPU cores")

        inproc_s, inproc_regions = _in_process(ws, tasks, tmp / "media")
        print(f"in-process (read, decode, predict, regions): {1000 * inproc_s / len(tasks):7.1f} ms/task, "
              f"{len(tasks) / inproc_s:6.1f} tasks/s  ({inproc_regions} regions)")

        port = _free_port()
        auth = ("bench", secrets.token_hex(8))
        env = {**os.environ, "LABEL_STUDIO_API_KEY": TOKEN, "BOXLOOP_BASIC_AUTH": f"{auth[0]}:{auth[1]}",
               "BOXLOOP_WORKSPACE": str(ws.root)}
        env.pop("BOXLOOP_LOG", None)
        log = open(tmp / "serve.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-c", "from boxloop.cli import main; main()", "serve", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        body = {"project": "1.1", "label_config": label_config(ws.classes)}
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"boxloop serve did not come up:\n{(tmp / 'serve.log').read_text()[-3000:]}")
                time.sleep(0.2)

            local = threading.local()

            def request(task: dict) -> tuple[float, str | None, int]:
                client = getattr(local, "client", None)
                if client is None:
                    client = local.client = httpx.Client(auth=auth, timeout=120)
                t = time.perf_counter()
                try:
                    r = client.post(url + "/predict", json={**body, "tasks": [task]})
                except httpx.HTTPError as e:
                    return time.perf_counter() - t, type(e).__name__, 0
                dt = time.perf_counter() - t
                if r.status_code != 200:
                    return dt, f"{r.status_code} {r.text[:200]}", 0
                results = r.json().get("results") or []
                if len(results) != 1 or not isinstance(results[0], dict) or not results[0].get("model_version"):
                    return dt, f"bad answer {r.text[:200]}", 0
                return dt, None, len(results[0]["result"])

            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(request, tasks[: 2 * args.clients]))  # warm-up: connections, threads, caches
                rss0 = _rss_mb(proc.pid)
                t0 = time.perf_counter()
                answers = list(pool.map(request, tasks))
                wall = time.perf_counter() - t0
                rss1 = _rss_mb(proc.pid)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            log.close()
            media.close()
            ws.close()

        errors = [e for _, e, _ in answers if e is not None]
        latencies = sorted(dt for dt, _, _ in answers)
        p50 = 1000 * latencies[len(latencies) // 2]
        p95 = 1000 * latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
        regions = sum(n for _, _, n in answers)
        print(f"errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
        print(f"server latency p50 {p50:.1f} ms, p95 {p95:.1f} ms; {len(tasks) / wall:6.1f} requests/s "
              f"({regions} regions)")
        print(f"server RSS {rss0:.0f} MB -> {rss1:.0f} MB over the run: {rss1 - rss0:+.1f} MB (aim < 50 MB)")
        print(f"in-process {inproc_s:.2f} s vs server {wall:.2f} s for the same {len(tasks)} predictions")
        print(f"ratio: {wall / inproc_s:.2f}")


if __name__ == "__main__":
    main()
