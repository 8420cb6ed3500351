"""What a user test against a real Label Studio server found in push and pull, mended, each
checked against a real server (no mocks): a one-off push to another project leaves the default
project as it was and a plain pull reads both; images labeled already are not sent again; a
project that cannot label some classes is named; the why reads as words; a deleted task says
what became of its image, once; a skipped task is said once; a short workspace name still
makes a project; messages name only options the command has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _console import flat
from boxloop.annotation.labelstudio import (
    META_PROJECT,
    OFFERED,
    TOOL,
    connect,
    default_project_title,
    pull,
    push,
)
from boxloop.annotation.review import META_REVIEW_PROJECT, projects_to_pull
from boxloop.cli import app
from boxloop.errors import InputError, SyncError
from boxloop.formats.labelstudio import ITEM_KEY, label_config
from boxloop.types import Selection
from boxloop.workspace import Workspace
from test_labelstudio import annotate, coco_classes, make_workspace, project_tasks, save_selection

pytestmark = pytest.mark.slow


def by_item(client, project_id: int) -> dict[str, dict]:
    return {t["data"][ITEM_KEY]: t for t in project_tasks(client, project_id)}


def accept(client, task: dict) -> int:
    """Submit the task's pre-labels as they are, as a person pressing Submit."""
    preds = task.get("predictions") or []
    return annotate(client, task, preds[0]["result"] if preds else [])


def cli(ws: Workspace, *args: str) -> tuple[int, str]:
    """Run the CLI in-process: its exit code and its output without the console's wrapping
    (compare with ``flat(...)``)."""
    res = CliRunner().invoke(app, ["-w", str(ws.root), *args], env={"COLUMNS": "400", "BOXLOOP_NO_PROGRESS": "1"})
    return res.exit_code, flat(res.output)


# -- 1. a one-off push to another project ----------------------------------------------------------
def test_a_one_off_push_elsewhere_keeps_the_default_project_and_a_plain_pull_reads_both(
    tmp_path, coco128, ls_media, ls_server, client, token_env
):
    ws, items, _ = make_workspace(tmp_path / f"main-{tmp_path.name}", coco128, ls_media, 6)
    connect(ws, url=ls_server.url)
    save_selection(ws, items[:4], "mv1", "sel-main")
    main = push(ws)
    assert main.project_title == ws.root.name and main.default_project is None
    assert ws.store.get_meta(META_PROJECT) == ws.root.name

    save_selection(ws, items[4:], "mv1", "sel-other")
    other_title = f"other-{tmp_path.name}"
    other = push(ws, project=other_title)
    assert other.created == 2 and other.project_id != main.project_id
    # the default stays, and the push says so
    assert ws.store.get_meta(META_PROJECT) == ws.root.name and default_project_title(ws) == ws.root.name
    assert other.default_project == ws.root.name
    assert flat(f"the default project stays {ws.root.name!r}: plain push and round send batches there") in flat(
        other.summary())

    # a person labels one task in each project; a plain pull reads both
    accept(client, by_item(client, main.project_id)[items[0].id])
    accept(client, by_item(client, other.project_id)[items[4].id])
    assert projects_to_pull(ws) == [None]
    code, out = cli(ws, "pull")
    assert code == 0, out
    assert flat(f"pulled from project {main.project_id} ({ws.root.name!r})") in out
    assert flat(f"pulled from project {other.project_id} ({other_title!r})") in out
    assert ws.store.label_version(items[0].id) == 1 and ws.store.label_version(items[4].id) == 1
    again = pull(ws)
    assert (again.labeled, again.unchanged, again.open) == (0, 2, 4)
    assert {p.project_id for p in again.parts} == {main.project_id, other.project_id}

    # a plain push (and a round's) still goes to the default project
    later = push(ws)  # the latest selection: sel-other, one of its two images labeled by now
    assert later.project_id == main.project_id and later.created == 1 and later.labeled_already == 1


def test_a_plain_pull_after_only_one_off_pushes_reads_those_projects(
    tmp_path, coco128, ls_media, ls_server, client, token_env
):
    """No push ever went to the default project (it does not exist): a plain pull reads the
    projects boxloop has tasks in, done ones too, and asks nothing about the default one; a
    project deleted in Label Studio takes its tasks with it, said once."""
    ws, items, _ = make_workspace(tmp_path / f"oneoff-{tmp_path.name}", coco128, ls_media, 3)
    connect(ws, url=ls_server.url)
    save_selection(ws, items[:2], "mv1", "sel-a")
    first = push(ws, project=f"first-{tmp_path.name}")
    save_selection(ws, items[2:], "mv1", "sel-b")
    second = push(ws, project=f"second-{tmp_path.name}")
    assert ws.store.get_meta(META_PROJECT) is None
    accept(client, by_item(client, first.project_id)[items[1].id])
    pulled = pull(ws)
    assert {p.project_id for p in pulled.parts} == {first.project_id, second.project_id}
    assert (pulled.labeled, pulled.open) == (1, 2)

    # the second project done: an annotation changed there later still comes back
    ann = accept(client, by_item(client, second.project_id)[items[2].id])
    assert pull(ws).labeled == 1
    client.annotations.update(id=ann, result=[])
    assert pull(ws).updated == 1 and ws.store.label_version(items[2].id) == 2

    # the first project deleted in Label Studio: its tasks went with it, each said once, and the pull goes on
    task_ids = {i: t["id"] for i, t in by_item(client, first.project_id).items()}
    client.projects.delete(id=first.project_id)
    gone = pull(ws)
    assert {p.reason for p in gone.problems} == {
        f"task {task_ids[items[0].id]} was deleted in Label Studio with its project {first.project_id}; "
        "the image is back in the pool",
        f"task {task_ids[items[1].id]} was deleted in Label Studio with its project {first.project_id}; "
        "the image keeps its labels (version 1)",
    }
    assert gone.back_to_pool == 1 and gone.unchanged == 1 and ws.store.count_by_state()["in_review"] == 0
    again = pull(ws)
    assert again.project_id == second.project_id and not again.problems and again.unchanged == 1
    ws.store.set_meta(META_REVIEW_PROJECT, "oneoff review")  # and `boxloop pull` reads them beside a review project
    assert projects_to_pull(ws) == [None, "oneoff review"]


# -- 2. images labeled already --------------------------------------------------------------------------
def test_push_leaves_out_images_labeled_already_and_refuses_a_selection_labeled_whole(
    tmp_path, coco128, ls_media, ls_server, client, token_env
):
    ws, items, _ = make_workspace(tmp_path / "ws", coco128, ls_media, 5)
    save_selection(ws, items[:3], "mv1", "sel-1")
    first = push(ws, url=ls_server.url, project=f"labeled-{tmp_path.name}")
    for t in project_tasks(client, first.project_id):
        accept(client, t)
    assert pull(ws, url=ls_server.url, project=str(first.project_id)).labeled == 3

    # the same selection, all labeled: nothing is sent, to this project or any other
    second_title = f"labeled-again-{tmp_path.name}"
    with pytest.raises(InputError, match="labeled already") as e:
        push(ws, url=ls_server.url, project=second_title)
    assert "boxloop select" in str(e.value) and "3 image(s)" in str(e.value)
    assert not [p for p in client.projects.list(title=second_title) if p.title == second_title]
    code, out = cli(ws, "push", "--project", second_title, "--url", ls_server.url)
    assert code == 1 and flat("is labeled already") in out and flat("run `boxloop select` for a new batch") in out

    # a selection part labeled: only the rest goes out, and the push says how many and why
    save_selection(ws, items[1:], "mv1", "sel-2")
    part = push(ws, url=ls_server.url, project=second_title)
    assert (part.created, part.labeled_already) == (2, 2)
    assert sorted(by_item(client, part.project_id)) == sorted(it.id for it in items[3:])
    assert "2 image(s) of the selection left out: labeled already" in part.summary()
    # the pull of the new project counts only the new images' acceptance
    for t in project_tasks(client, part.project_id):
        accept(client, t)
    assert pull(ws, url=ls_server.url, project=second_title).labeled == 2
    assert len(ws.store.acceptance_rows(tool=TOOL)) == 5


# -- 3. a project with no label for some classes --------------------------------------------------------
def test_a_project_without_some_classes_is_named_by_push_and_pull(
    tmp_path, coco128, ls_media, ls_server, client, token_env
):
    ws, _, _ = make_workspace(tmp_path / "ws", coco128, ls_media, 2)
    classes = coco_classes(coco128)
    some = [c for c in classes if c != "person"]
    title = f"no-person-{tmp_path.name}"
    client.projects.create(title=title, label_config=label_config(some))
    pushed = push(ws, url=ls_server.url, project=title)
    assert pushed.created == 2  # not an error: a project may be meant for some classes only
    (note,) = [p for p in pushed.problems if "labeling config" in p.reason]
    assert note.path == f"Label Studio project {title!r} (id {pushed.project_id})"
    assert "no label for 1 of the workspace's 80 classes: person" in note.reason
    assert "background" in note.reason
    code, out = cli(ws, "push", "--project", title, "--url", ls_server.url)
    assert code == 0 and flat("no label for 1 of the workspace's 80 classes: person") in out

    accept(client, project_tasks(client, pushed.project_id)[0])
    pulled = pull(ws, url=ls_server.url, project=title)
    assert pulled.labeled == 1
    assert any("no label for 1 of the workspace's 80 classes: person" in p.reason for p in pulled.problems)

    # a project boxloop made for every class: nothing said
    full = push(ws, url=ls_server.url, project=f"every-class-{tmp_path.name}")
    assert not [p for p in full.problems if "labeling config" in p.reason]


# -- 4. the why beside the image --------------------------------------------------------------------------
def test_the_why_beside_the_image_reads_as_words_with_class_names(
    tmp_path, coco128, ls_media, ls_server, client, token_env
):
    ws, items, _ = make_workspace(tmp_path / "ws", coco128, ls_media, 5)
    whys = {}
    for rank, it in enumerate(items):
        whys[it.id] = {
            "rank": rank, "score": round(0.9 - 0.1 * rank, 3), "selector": "diverse",
            "components": {"least_confidence": {
                "weight": 1.0, "score": 0.472, "percentile": 0.95,
                "details": {"top_box": {"class_id": 40, "confidence": 0.53, "uncertainty": 0.47}, "boxes": 3,
                            "aggregation": "max"}}},
        }
    whys[items[4].id].update(suppressed_duplicates=[items[0].id], suppressed_count=1)
    ws.store.save_selection(Selection(
        id="sel-why", model_version="mv1", strategy="least_confidence:1", seed=0, item_ids=tuple(it.id for it in items),
        scores={i: w["score"] for i, w in whys.items()}, why=whys, config={"alpha": 0.5, "selector": "diverse"},
    ))
    report = push(ws, url=ls_server.url, project=f"why-{tmp_path.name}")
    why = by_item(client, report.project_id)[items[4].id]["data"]["why"]
    assert why.startswith("#5, score 0.5 = 1 x 0.95 (least_confidence's rank in the pool)")
    assert "most doubtful box is wine glass at confidence 0.53" in why
    assert "picked by ranked batch-mode diversity (alpha 0.5)" in why
    assert f"1 near-duplicate(s) left out in its favour: {Path(items[0].uri).name}" in why
    # no Python repr of boxloop's own dicts, no class ids, the place in the batch once
    assert not re.search(r"[{}\[\]]|': |class_id|class 40|components|selector|suppressed_|\brank \d", why), why


# -- 5. a task deleted in Label Studio --------------------------------------------------------------------
def test_a_deleted_task_says_whether_its_image_keeps_labels_once(
    tmp_path, coco128, ls_media, ls_server, client, token_env
):
    ws, items, _ = make_workspace(tmp_path / "ws", coco128, ls_media, 3)
    report = push(ws, url=ls_server.url, project=f"deleted-{tmp_path.name}")
    pid = report.project_id
    tasks = by_item(client, pid)
    done, labeled_elsewhere, bare = items
    accept(client, tasks[done.id])
    assert pull(ws, url=ls_server.url, project=str(pid)).labeled == 1
    # labeled meanwhile from elsewhere (another project, an import), its task here still open
    ws.store.add_label(labeled_elsewhere.id, ws.store.latest_labels([done.id])[done.id], source="elsewhere")

    for it in items:
        client.tasks.delete(id=str(tasks[it.id]["id"]))
    gone = pull(ws, url=ls_server.url, project=str(pid))
    said = {p.reason for p in gone.problems}
    assert said == {
        f"task {tasks[done.id]['id']} was deleted in Label Studio; the image keeps its labels (version 1)",
        f"task {tasks[labeled_elsewhere.id]['id']} was deleted in Label Studio; the image keeps its labels (version 1)",
        f"task {tasks[bare.id]['id']} was deleted in Label Studio; the image is back in the pool",
    }
    assert gone.back_to_pool == 1 and "1 back to the pool" in gone.summary()
    assert ws.store.count_by_state() == {"pool": 0, "prelabeled": 1, "in_review": 0, "labeled": 2}
    again = pull(ws, url=ls_server.url, project=str(pid))
    assert not again.problems and again.back_to_pool == 0  # said once


# -- 6. a task skipped once --------------------------------------------------------------------------------
def test_a_skipped_task_is_said_once_stays_in_the_pool_and_a_later_annotation_comes_back(
    tmp_path, coco128, ls_media, ls_server, client, token_env
):
    ws, items, _ = make_workspace(tmp_path / "ws", coco128, ls_media, 2)
    report = push(ws, url=ls_server.url, project=f"skipped-{tmp_path.name}")
    pid = report.project_id
    task = by_item(client, pid)[items[0].id]
    annotate(client, task, [], was_cancelled=True)
    first = pull(ws, url=ls_server.url, project=str(pid), skipped="pool")
    assert (first.back_to_pool, first.open) == (1, 1) and "1 back to the pool" in first.summary()
    # in the pool for select: pre-labeled, not out for labeling, not kept out as skipped
    assert [it.id for it in ws.store.items(state="prelabeled")] == [items[0].id]
    assert ws.store.skipped_item_ids() == set()
    assert {r["item_id"]: r["status"] for r in ws.store.tasks(TOOL, str(pid))}[items[0].id] == OFFERED
    for _ in range(2):
        later = pull(ws, url=ls_server.url, project=str(pid), skipped="pool")
        assert (later.back_to_pool, later.open) == (0, 1) and "back to the pool" not in later.summary()
        assert not later.problems

    # someone labels it after all: it comes back, with its acceptance
    accept(client, task)
    labeled = pull(ws, url=ls_server.url, project=str(pid), skipped="pool")
    assert labeled.labeled == 1 and ws.store.label_version(items[0].id) == 1
    assert [r["item_id"] for r in ws.store.acceptance_rows(tool=TOOL)] == [items[0].id]


# -- 7. a short workspace name ----------------------------------------------------------------------------
def test_a_workspace_named_ws_pushes_to_a_project_label_studio_takes(
    tmp_path, coco128, ls_media, ls_server, client, token_env
):
    ws, _, _ = make_workspace(tmp_path / "ws", coco128, ls_media, 1)
    assert default_project_title(ws) == "ws (boxloop)"
    report = push(ws, url=ls_server.url)
    assert report.project_title == "ws (boxloop)" and report.created == 1
    assert ws.store.get_meta(META_PROJECT) == "ws (boxloop)"
    assert pull(ws, url=ls_server.url).open == 1

    long = Workspace.init(tmp_path / ("a-rowing-machine-display-" * 3), classes=["digit"])
    assert len(default_project_title(long)) == 50
    # a title Label Studio would refuse: one line, before any call (nothing answers at this URL)
    with pytest.raises(InputError, match="'x' cannot be a Label Studio project title: Label Studio takes 3 to 50"):
        push(ws, url="http://127.0.0.1:9", project="x")


# -- 8. options named in messages --------------------------------------------------------------------------
def test_messages_name_only_the_options_the_command_has(tmp_path, ls_server, monkeypatch):
    ws = Workspace.init(tmp_path / "ws", classes=["digit"])
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    monkeypatch.setenv("BOXLOOP_LABELSTUDIO_URL", ls_server.url)
    # serve and round take no --token
    for args in (["serve", "--connect", "lcd"], ["round", "--push", "labelstudio"]):
        code, out = cli(ws, *args)
        assert code == 1 and flat("no Label Studio API token: set LABEL_STUDIO_API_KEY to the token") in out, out
        assert "--token" not in out, out
    # push and pull do
    for args in (["push"], ["pull"]):
        code, out = cli(ws, *args)
        assert code == 1 and flat("set LABEL_STUDIO_API_KEY (or give --token) to the token") in out, out
    # a token the server refuses: what to fix, naming no option (serve and round meet it too)
    with pytest.raises(SyncError, match="401") as e:
        connect(ws, url=ls_server.url, token="f" * 40)
    assert "LABEL_STUDIO_API_KEY" in str(e.value) and "--token" not in str(e.value)
