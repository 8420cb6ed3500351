"""What an annotator sees: boxloop's tasks opened in Label Studio's own labeling page, in real
headless Chromium (Debian's), by a person who logged in through the login form. The image
loads at its size, every pre-drawn box is a region, the why is beside the image, a suspect's
note is on its box, and what the person submits there comes back through pull.

The API tests (test_labelstudio, test_review_labelstudio) check the tasks' JSON; these check
that Label Studio's front end reads that JSON as meant. Screenshots stay in each test's
folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _ls_server import LabelStudioServer
from boxloop.annotation.labelstudio import ITEM_KEY, pull, push
from boxloop.annotation.review import push_review
from test_labelstudio import make_workspace, project_tasks
from test_review_labelstudio import labeled_workspace, suspects_for

pytestmark = pytest.mark.slow

TIMEOUT_MS = 60_000  # Label Studio's front end is a large bundle; a busy 2-core machine is slow


class Annotator:
    """A person at Label Studio's labeling page, logged in with the server's user."""

    def __init__(self, browser: Any, server: LabelStudioServer, shots: Path) -> None:
        self.server, self.shots = server, shots
        self.bad_data: list[str] = []  # a task's image that did not come
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on(
            "response",
            lambda r: self.bad_data.append(f"{r.status} {r.url}") if r.status >= 400 and "/data/" in r.url else None,
        )
        self.page.goto(f"{server.url}/user/login/")
        self.page.fill("input[name=email]", server.email)
        self.page.fill("input[name=password]", server.password)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(lambda u: "/user/login" not in u)

    def open(self, project_id: int, task_id: int, *, regions: int) -> dict[str, Any]:
        """Open one task in the labeling page; wait until its image and regions are drawn."""
        self.page.goto(f"{self.server.url}/projects/{project_id}/data?task={task_id}")
        self.page.wait_for_function(
            "n => { const i = document.querySelector('img[alt=image]');"
            " return i && i.complete && i.naturalWidth > 0"
            " && document.querySelectorAll('.lsf-outliner-item').length >= n }",
            arg=regions,
        )
        return self.page.evaluate(
            "() => { const i = document.querySelector('img[alt=image]');"
            " return {w: i.naturalWidth, h: i.naturalHeight} }"
        )

    def regions(self) -> list[str]:
        """The labels of the regions in the Regions panel, in its order."""
        return self.page.locator(".lsf-outliner-item .lsf-outliner-item__title").all_inner_texts()

    def select(self, index: int) -> None:
        self.page.locator(".lsf-outliner-item").nth(index).click()

    def submit(self, task_id: int) -> None:
        """Press Submit and wait until Label Studio has stored the annotation."""
        with self.page.expect_response(
            lambda r: r.request.method == "POST" and f"/api/tasks/{task_id}/annotations" in r.url
        ) as answer:
            self.page.get_by_role("button", name="Submit").click()
        assert answer.value.status == 201, answer.value.text()

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path


@pytest.fixture
def annotator(browser: Any, ls_server: LabelStudioServer, tmp_path: Path) -> Any:
    person = Annotator(browser, ls_server, tmp_path)
    try:
        yield person
    finally:
        person.page.close()


def test_a_pushed_task_shows_its_image_prelabels_and_why_and_a_deletion_there_comes_back(
    tmp_path, coco128, ls_media, ls_server, token_env, client, annotator
) -> None:
    ws, items, preds = make_workspace(tmp_path / "ws", coco128, ls_media, 2)
    report = push(ws, url=ls_server.url, project=f"browser-{tmp_path.name}")
    pid = report.project_id
    tasks = {t["data"][ITEM_KEY]: t for t in project_tasks(client, pid)}
    first = ws.store.selection("latest").item_ids[0]
    item = next(it for it in items if it.id == first)
    task = tasks[first]
    shown = preds[first][preds[first].confidence >= 0.25]  # what push pre-draws

    size = annotator.open(pid, task["id"], regions=len(shown))
    assert (size["w"], size["h"]) == (item.width, item.height)
    assert annotator.regions() == [ws.classes[c] for c in shown.class_id]
    body = annotator.page.inner_text("body")
    assert "Why this image" in body and task["data"]["why"].splitlines()[0] in body
    assert annotator.shot("labeling-task").stat().st_size > 0

    # the person deletes the first pre-drawn box, keeps the rest, submits
    annotator.select(0)
    annotator.page.keyboard.press("Backspace")
    annotator.page.wait_for_function(
        "n => document.querySelectorAll('.lsf-outliner-item').length === n", arg=len(shown) - 1
    )
    annotator.shot("labeling-corrected")
    annotator.submit(task["id"])
    assert not annotator.bad_data

    pulled = pull(ws, url=ls_server.url)
    assert (pulled.labeled, pulled.open) == (1, 1)
    label = ws.store.latest_labels()[first]
    np.testing.assert_allclose(label.xyxy, shown.xyxy[1:], atol=0.05)
    assert label.class_id.tolist() == shown.class_id[1:].tolist()
    assert (pulled.acceptance["accepted"], pulled.acceptance["deleted"], pulled.acceptance["added"]) == (
        len(shown) - 1, 1, 0,
    )


def test_a_review_task_shows_the_labels_and_each_suspects_note_and_a_fix_there_comes_back(
    tmp_path, coco128, ls_media, ls_server, token_env, client, annotator
) -> None:
    ws, items = labeled_workspace(tmp_path / "ws", coco128, ls_media, 4)
    audit = suspects_for(ws, items)  # the first image: a class suspect on its first label, and a missed dog
    pushed = push_review(ws, audit, top=4, url=ls_server.url, project=f"browser-review-{tmp_path.name}")
    first = items[0]
    task = next(t for t in project_tasks(client, pushed.project_id) if t["data"][ITEM_KEY] == first.id)
    labels = ws.store.latest_labels()[first.id]
    names = [ws.classes[c] for c in labels.class_id]
    class_suspect = audit.images[0][2][0]

    size = annotator.open(pushed.project_id, task["id"], regions=len(labels) + 1)
    assert (size["w"], size["h"]) == (first.width, first.height)
    assert annotator.regions() == [*names, "dog"]  # the labels as they are, then the model's box
    body = annotator.page.inner_text("body")
    for line in task["data"]["why"].splitlines():
        assert line in body
    annotator.select(0)
    read_as = ws.classes[class_suspect.model_class]
    note = f"check: class: labeled {names[0]}, the model reads {read_as} at 0.90"
    assert annotator.page.get_by_text(note, exact=True).is_visible()
    annotator.shot("review-suspect-selected")
    annotator.select(len(labels))
    assert annotator.page.get_by_text("check: the model's box, no label here", exact=False).first.is_visible()

    # the reviewer agrees with the model on the class, finds no dog, submits
    annotator.page.keyboard.press("Backspace")  # the model's box goes
    annotator.page.wait_for_function(
        "n => document.querySelectorAll('.lsf-outliner-item').length === n", arg=len(labels)
    )
    annotator.select(0)
    annotator.page.locator(".lsf-labels .lsf-label__text").filter(
        has_text=re.compile(rf"^{re.escape(read_as)}$")
    ).click()
    assert annotator.regions()[0] == read_as
    annotator.shot("review-corrected")
    annotator.submit(task["id"])
    assert not annotator.bad_data

    pulled = pull(ws, url=ls_server.url, project=pushed.project_title)
    assert (pulled.corrected, pulled.confirmed, pulled.open) == (1, 0, 3)
    fixed = ws.store.latest_labels()[first.id]
    np.testing.assert_allclose(fixed.xyxy, labels.xyxy, atol=0.05)  # same boxes, no dog added
    assert fixed.class_id.tolist() == [class_suspect.model_class, *labels.class_id[1:].tolist()]
