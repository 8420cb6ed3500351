"""The Typer app, its sub-apps and the helpers every command shares."""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import BoxloopError, Problems
from ..workspace import Workspace, find_workspace


def _console(*, stderr: bool = False) -> Console:
    """A console that wraps at the terminal's width; piped or redirected (a log, `grep`), it
    wraps nothing, so a `path:line: reason` or a table row stays one line (COLUMNS still sets
    a width)."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not (hasattr(stream, "isatty") and stream.isatty()) and not os.environ.get("COLUMNS")
    return Console(stderr=stderr, width=UNWRAPPED if piped else None)


UNWRAPPED = 1000  # columns of a console writing to a pipe or a file
console = _console()
err_console = _console(stderr=True)

__all__ = [
    "StrictOpt",
    "WorkspaceOpt",
    "add_app",
    "app",
    "check_epochs_or_steps",
    "console",
    "err_console",
    "open_workspace",
    "progress_bar",
    "progress_disabled",
    "report_problems",
]

def flowing(doc: str) -> str:
    """A docstring as help text: each prose paragraph one flowing line (rich markup keeps a
    docstring's line breaks, which broke sentences at the source's margin); paragraphs of
    examples or lists keep theirs."""
    out = []
    for para in inspect.cleandoc(doc).split("\n\n"):
        lines = para.splitlines()
        kept = any(line.startswith(("Example", " ", "- ", "* ", "boxloop ")) or ": boxloop " in line for line in lines)
        out.append(para if kept else " ".join(line.strip() for line in lines))
    return "\n\n".join(out)


def _flags_show_no_type() -> None:
    """Typer 0.2x shows an on/off flag's type in help as ``<bool>``, which reads as if it took
    a value (``--zip true`` is refused): a flag shows none. A number with bounds shows as
    ``<int range> [x>=32]``, which widens the type column until option names are cut at 80
    columns: it shows ``<int>``, and its help text says the bounds."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "boxloop", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) and self.metavar is None:
            return None
        text = shown(self, ctx)
        return text.replace(" range>", ">") if isinstance(text, str) else text

    display_type_rich.boxloop = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
    if hasattr(TyperOption, "_get_number_range_help_str"):
        TyperOption._get_number_range_help_str = lambda self: None  # type: ignore[method-assign]


_flags_show_no_type()


class BoxloopTyper(typer.Typer):
    """A Typer whose commands turn a BoxloopError into one red line and exit code 1."""

    def command(
        self, *args: Any, on_interrupt: str = "re-run the same command to finish the job", **kwargs: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A command; ``on_interrupt`` is what Ctrl-C tells the user to run to go on."""

        def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(f)
            def run(*a: Any, **k: Any) -> Any:
                try:
                    return f(*a, **k)
                except BoxloopError as e:
                    err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
                    raise typer.Exit(1) from None
                except KeyboardInterrupt:
                    err_console.print(f"interrupted; {on_interrupt}")
                    raise typer.Exit(130) from None

            options = dict(kwargs)
            if f.__doc__ and "help" not in options:
                options["help"] = flowing(f.__doc__)
                options.setdefault("short_help", options["help"].split("\n\n", 1)[0])
            typer.Typer.command(self, *args, **options)(run)
            return f

        return decorate


app = BoxloopTyper(
    name="boxloop",
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help=(
        "Active learning for object detection: train on the boxes you drew, pre-label the "
        "rest, label what teaches the model most.\n\n"
        "Example: boxloop init lcd --classes 0,1,2 && cd lcd && boxloop add labels ~/data --format yolo"
    ),
    context_settings={"help_option_names": ["-h", "--help"]},
)
add_app = BoxloopTyper(no_args_is_help=True, help="Add images, labels, videos or predictions to the workspace.")
app.add_typer(add_app, name="add")


WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder (default: BOXLOOP_WORKSPACE, or the nearest folder up holding boxloop.toml).",
        show_default=False,
    ),
]


_global: dict[str, Path | None] = {"workspace": None}


def _show_version(shown: bool) -> None:
    if shown:
        from .. import __version__

        console.print(f"boxloop {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    workspace: WorkspaceOpt = None,
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print boxloop's version and exit.")] = False,
) -> None:
    """Active learning for object detection."""
    _global["workspace"] = workspace


StrictOpt = Annotated[bool, typer.Option("--strict", help="Fail (exit 1) if any input had a problem.")]


def check_out(path: Path | None, *, option: str = "--out", folder: bool = False) -> None:
    """Refuse, before any work, an output path that cannot be written: one under a file, an
    existing folder where a file goes (or a file where a folder goes), or a folder this user
    may not write in. ``folder``: the path is a folder to make."""
    from ..errors import InputError

    if path is None:
        return
    target = Path(os.path.abspath(path.expanduser()))
    if target.exists() and target.is_dir() != folder:
        raise InputError(f"{option} {path}: {target} is a {'folder' if target.is_dir() else 'file'}; give a "
                         f"{'folder' if folder else 'file name'}")
    above = target.parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        raise InputError(f"{option} {path}: {above} is a file, not a folder")
    if not os.access(above, os.W_OK | os.X_OK) or not _accepts_files(above):
        raise InputError(f"{option} {path}: this user cannot write in {above}")


def _accepts_files(folder: Path) -> bool:
    """Whether a file can be made in ``folder`` (root may write everywhere, but not in /proc)."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def open_workspace(path: Path | None) -> Workspace:
    """The workspace named by the command's -w, else the global -w, else found from cwd."""
    return find_workspace(path or _global["workspace"])


def progress_disabled() -> bool:
    """No progress bars when output is not a terminal or BOXLOOP_NO_PROGRESS is set."""
    return bool(os.environ.get("BOXLOOP_NO_PROGRESS")) or not console.is_terminal


def check_epochs_or_steps(epochs: int | None, steps: int | None) -> None:
    """Training length is given in epochs or in optimizer steps, never both."""
    if epochs is not None and steps is not None:
        raise typer.BadParameter("give --epochs or --steps, not both")


@contextmanager
def progress_bar(label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar (silent when not on a terminal); yields an ``advance(n)`` callback."""
    if progress_disabled():
        yield lambda n: None
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def report_problems(
    problems: Problems, *, strict: bool, limit: int = 50, title: str = "problem(s); these inputs were skipped"
) -> None:
    """Print the end-of-batch summary of skipped inputs; with ``strict`` exit 1."""
    if not problems:
        return
    err_console.print(f"[yellow]{len(problems)} {title}:[/yellow]")
    for p in list(problems)[:limit]:
        err_console.print(f"  {p}", markup=False, highlight=False)
    if len(problems) > limit:
        err_console.print(f"  ... and {len(problems) - limit} more")
    if strict:
        err_console.print("[red]--strict: failing because of the above[/red]")
        raise typer.Exit(1)


def acceptance_table(title: str, rows: Iterable[tuple[str, Mapping[str, float]]]) -> Table:
    """What people did with the pre-labels of the batches that came back, a row a round:
    boxes accepted, adjusted, deleted and added, the drawing that saved an image, and the
    threshold the pre-labels were cut at."""
    from ..annotation.acceptance import ACCEPTANCE_KEYS, saved_per_image, threshold_text

    t = Table(
        title=title,
        caption="saved: seconds of drawing the pre-labels saved an image (negative: they cost time); "
        "at conf: the confidence threshold they were cut at",
    )
    for col in ("round", "images", *ACCEPTANCE_KEYS, "saved\ns/image", "at\nconf"):
        t.add_column(col, justify="right", no_wrap=True)
    for rnd, a in rows:
        per_image = saved_per_image(a)
        t.add_row(
            rnd, str(int(a.get("items", 0))), *(str(int(a.get(k, 0))) for k in ACCEPTANCE_KEYS),
            "-" if per_image is None else f"{per_image:+.1f}",
            threshold_text(a) or "-",
        )
    return t
