"""What the ``winnow`` subcommands share: turning winnow's errors and SIGINT/SIGTERM into a message and an exit code.

Used by :mod:`winnow.pipeline.cli.app`, :mod:`winnow.pipeline.report.report`, :mod:`winnow.pipeline.cli.student`
and :mod:`winnow.pipeline.cli.mix`.
"""

from __future__ import annotations

import errno
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from winnow.core.errors import ConfigError, CurationError, Interrupted

__all__ = ["exit_on_error", "exit_on_signal"]


@contextmanager
def exit_on_error(console: Console, *, config_label: str = "error") -> Iterator[None]:
    """Print a ``ConfigError`` and exit 2, any other ``CurationError`` or a full disk (``ENOSPC``) and exit 1.

    The message is printed as ``<label>: <message>``, escaped, so that a ``[...]`` in it (a glob, a list of
    columns) is printed as it is instead of being read as rich markup. Other exceptions pass through.

    Args:
        console: Where the message goes (the command's stderr console).
        config_label: The label of a ``ConfigError`` (default ``error``; ``winnow run`` and the stage commands say
            ``config error``). Other errors are labelled ``error``.

    Raises:
        typer.Exit: With code 2 for a ``ConfigError``, 1 for another ``CurationError``.
    """
    try:
        yield
    except ConfigError as e:
        console.print(f"[bold red]{config_label}:[/] {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from None
    except CurationError as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        raise typer.Exit(1) from None
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        where = f" ({e.filename})" if e.filename else ""
        msg = f"no space left on device{where}: free space and rerun the same command (completed units are kept)"
        console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False)
        raise typer.Exit(1) from None


@contextmanager
def exit_on_signal(console: Console) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` inside the block, and that into one line and exit 130 / 143.

    The first signal raises ``Interrupted`` in the main thread, wherever it is: the code it unwinds stops its
    workers and cleans up (``run_pipeline`` terminates the executor's processes, removes temporary files and
    releases the run directory's lock); further signals are ignored until the block is left, so that clean-up runs
    to its end. Outside the main thread, the block runs with the handlers as they are.

    Raises:
        typer.Exit: With 128 + the signal's number.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        _PENDING["signum"] = signum  # kept in case the raise below lands where Python ignores exceptions
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
        check_interrupted()  # a signal whose exception was swallowed still ends the run as interrupted
    except Interrupted as e:
        console.print(f"[bold red]interrupted:[/] {e.name}: the run stopped; rerun it to resume", highlight=False)
        raise typer.Exit(e.exit_code) from None
    finally:
        _PENDING["signum"] = None
        for sig, handler in previous.items():
            signal.signal(sig, handler)


#: the signal received inside ``exit_on_signal`` (None: none). A handler's exception can land in a weakref
#: callback or a ``__del__``, where Python prints and ignores it; long loops call ``check_interrupted`` so that the
#: run still stops.
_PENDING: dict[str, int | None] = {"signum": None}


def check_interrupted() -> None:
    """Raise :class:`Interrupted` if SIGINT/SIGTERM arrived inside ``exit_on_signal`` (a no-op otherwise, and in
    executor worker processes)."""
    signum = _PENDING["signum"]
    if signum is not None:
        raise Interrupted(signum)
