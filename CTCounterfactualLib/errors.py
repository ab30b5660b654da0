"""The one exception type users can hit."""


class CTCFError(Exception):
    """A problem the user can fix (bad input, wrong model, unknown target, ...).

    The message is one line that says what is wrong and what to do; the CLI prints it
    without a traceback and exits non-zero.
    """
