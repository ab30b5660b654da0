"""The exception users can hit (and its out-of-memory kind) and the helpers that keep its message on one line."""


class CTCFError(Exception):
    """A problem the user can fix (bad input, wrong model, unknown target, ...).

    The message is one line that says what is wrong and what to do; the CLI prints it
    without a traceback and exits non-zero.
    """


class OutOfMemory(CTCFError):
    """The run needs more memory than the device has (raised before starting, or when an allocation fails)."""


def last_line(error: BaseException) -> str:
    """The last non-empty line of an exception's message (where torch, TorchScript and ITK put the reason)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def one_line(text: str) -> str:
    """``text`` with its lines joined by '; ' (a parser's multi-line message as one line)."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())
