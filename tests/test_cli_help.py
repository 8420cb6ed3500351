"""Every command's --help: an example, and each option's help shown whole (rich markup once
swallowed "[train]" in "default: [train] device", leaving "default:  device")."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from _console import flat
from boxloop.cli import app


def _commands() -> list[tuple[list[str], Any]]:
    """(command path, click command) of every leaf command (Typer's click may be its own copy)."""
    root = typer.main.get_command(app)
    out: list[tuple[list[str], Any]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        else:
            out.append((path, cmd))

    walk(root, [])
    return out


COMMANDS = _commands()


def test_every_command_is_walked() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"round", "train", "predict", "add video", "labelstudio connect", "simulate", "export"} <= names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_has_an_example_and_shows_every_option_whole(path: list[str], command: Any) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0, result.output
    shown = flat(result.output.replace("│", ""))  # the options panel's borders split wrapped lines
    assert "Example:" in result.output
    assert flat((command.help or "").replace("\\[", "[")) in shown, f"--help of {' '.join(path)}: its text is cut"
    for param in command.params:
        text = getattr(param, "help", None)
        if not text or param.name in ("install_completion", "show_completion"):
            continue
        assert flat(text.replace("\\[", "[")) in shown, f"--help of {' '.join(path)}: {param.name}'s help is cut: {text!r}"
    # an on/off flag shows no type: "<bool>" read as if it took a value (`--zip true` is refused)
    assert "<bool>" not in result.output, f"--help of {' '.join(path)} shows a flag as taking a <bool>"


def test_help_text_flows_as_paragraphs_and_keeps_example_lines() -> None:
    from boxloop.cli._app import flowing

    doc = """Find likely label mistakes: the labeled images
    a model disagrees with most.

    With --folds K, every
    label is judged.

    Example: boxloop audit --top 30
    Example: boxloop audit --folds 5
    """
    assert flowing(doc) == (
        "Find likely label mistakes: the labeled images a model disagrees with most.\n\n"
        "With --folds K, every label is judged.\n\n"
        "Example: boxloop audit --top 30\nExample: boxloop audit --folds 5"
    )
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}, terminal_width=200)
    line = next(x for x in result.output.splitlines() if x.startswith("│ audit "))
    assert "disagrees with most, most suspect first." in line  # the list shows one flowing sentence


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_at_80_columns_cuts_no_option_name_or_word(path: list[str], command: Any) -> None:
    """A terminal 80 columns wide: rich cuts a cell's word that does not fit with "…" (once
    ``--allow-missing-class…``, widened away by the ``<int range> [x>=32]`` type column)."""
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    cut = [line for line in result.output.splitlines() if "…" in line]
    assert not cut, f"--help of {' '.join(path)} at 80 columns cuts: {cut}"
    names = {opt for param in command.params for opt in getattr(param, "opts", []) if opt.startswith("--")}
    for name in names - {"--install-completion", "--show-completion"}:
        assert name in result.output, f"--help of {' '.join(path)} at 80 columns does not show {name} whole"


def test_ctrl_c_however_early_ends_with_one_line_and_no_traceback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C while the command's modules still load (the first half second) once printed a
    40-line traceback; now, whenever it lands, a line and exit code 130 (or the command ends)."""
    import os
    import shutil
    import signal
    import subprocess
    import time

    exe = shutil.which("boxloop", path=os.path.dirname(__import__("sys").executable))  # the venv's command
    assert exe is not None
    for delay in (0.05, 0.15, 0.3, 0.6):
        proc = subprocess.Popen([exe, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in out + err, (delay, err)
        assert proc.returncode in (0, 130), (delay, proc.returncode, err)


def test_version() -> None:
    from boxloop import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"boxloop {__version__}"
