"""Errors the harness reports to users as one line (never a traceback)."""


class HarnessError(Exception):
    """A user-facing failure: bad input, missing tool, failed build.

    ``exit_code`` follows the CLI convention: 1 for an invalid input file,
    2 for usage, I/O or environment errors.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
