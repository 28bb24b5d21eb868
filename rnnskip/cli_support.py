"""What every command-line entry point shares: one ``error:`` line and an exit status
for every failure, and click classes whose usage errors are one line too.

Used by ``rnnskip.cli`` and by the commands other packages declare
(``rnnskip.delta.cli``), which therefore do not import ``rnnskip.cli``.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys

import click

from .errors import RnnskipError


def fail(msg: str, code: int = 2):
    """Print ``error: msg`` on stderr and exit with ``code``."""
    tq = sys.modules.get("tqdm")
    if tq is not None:   # an interrupted progress bar would otherwise share the error's line
        for bar in list(getattr(tq.tqdm, "_instances", ())):
            bar.close()
    click.echo(f"error: {msg}", err=True)
    sys.exit(code)


class Terminated(BaseException):
    """SIGTERM (CI timeouts, `kill`): unwinds like Ctrl-C so partial outputs are removed."""


@contextlib.contextmanager
def _terminate_as_exception():
    """SIGTERM raises Terminated and SIGINT KeyboardInterrupt in this process, deferred
    until the current Unicorn run has stopped (see unicorn_backend.interrupt_emulation)."""
    import signal
    main_pid = os.getpid()

    def on_signal(signum, frame):
        if os.getpid() != main_pid:   # a forked worker: die as usual, the parent cleans up
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        exc = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        backend = sys.modules.get("rnnskip.simulator.unicorn_backend")
        if backend is not None and backend.interrupt_emulation(exc):
            return
        raise exc
    try:
        old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:                # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


class _OneLineErrors:
    """Click's usage errors as one ``error:`` line (exit 2), like every other error,
    instead of its three-line usage block."""

    def main(self, *args, standalone_mode=True, **kw):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kw)
        try:
            rv = super().main(*args, standalone_mode=False, **kw)
        except click.exceptions.Abort:
            fail("interrupted", 130)
        except click.UsageError as e:
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            fail(e.format_message().rstrip(".") + where, e.exit_code)
        except click.ClickException as e:
            fail(e.format_message(), e.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


class OneLineCommand(_OneLineErrors, click.Command):
    pass


class OneLineGroup(_OneLineErrors, click.Group):
    pass


def guard(fn):
    """Run a command body; RnnskipError -> one line, unexpected -> one line + how to debug."""

    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            with _terminate_as_exception():
                return fn(*a, **k)
        except RnnskipError as e:
            fail(str(e))
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Terminated:
            fail("terminated", 143)
        except BrokenPipeError:  # output piped into `head` and the reader left: stop quietly, like cat
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit flush must not fail again
            sys.exit(141)
        except OSError as e:
            if e.errno not in USER_OS_ERRORS or os.environ.get("RNNSKIP_DEBUG"):
                _internal(e)
            # disk full, read-only, no permission: the user's to fix, named with the file where known
            where = f"{e.filename}: " if e.filename else ""
            fail(f"{where}{(e.strerror or str(e)).lower()}; check the output location, its permissions and free space")
        except Exception as e:  # a bug: still one line, traceback on request
            _internal(e)
    return wrapper


#: OSErrors a user causes and fixes (a full disk or quota, a read-only or forbidden location); any other is a bug
USER_OS_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def _internal(e: BaseException) -> None:
    if os.environ.get("RNNSKIP_DEBUG"):
        raise e
    fail(f"internal error: {type(e).__name__}: {e} (set RNNSKIP_DEBUG=1 for the traceback)", 1)


def note(msg: str) -> None:
    """A one-line remark on stderr (the run goes on)."""
    click.echo(msg, err=True)


def certified_budget(fn):
    """The options every certified tuner takes (delta-tune, train-predictor): --max-disagreement
    (a budget needing no labels) and --confidence (rnnskip/certify.py)."""
    fn = click.option("--confidence", type=float, default=0.9, show_default=True,
                      help="Probability, over the draw of the certification rows, that the budget holds on data "
                           "like them.")(fn)
    return click.option("--max-disagreement", type=click.FloatRange(min=0, max=100), default=None,
                        help="Budget instead of --max-loss: percent of sequences whose class differs from the dense "
                             "int8 model's (an output per step: of each sequence's steps, averaged), certified (no "
                             "labels needed in --val).")(fn)
