"""What the ``winnow`` subcommands share: turning winnow's errors into a message and an exit code.

Used by :mod:`winnow.pipeline.cli.app`, :mod:`winnow.pipeline.report.report`, :mod:`winnow.pipeline.cli.student` and :mod:`winnow.pipeline.cli.mix`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape
from winnow.core.errors import ConfigError, CurationError

__all__ = ["exit_on_error"]


@contextmanager
def exit_on_error(console: Console, *, config_label: str = "error") -> Iterator[None]:
    """Print a ``ConfigError`` and exit 2, or any other ``CurationError`` and exit 1 (the CLI's exit codes).

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
