"""Optional packages: which extra installs each, and the one-line ``MissingPackageError`` that
says so when one is absent.

A plain ``pip install docpipe`` has no ``local`` extra (the embedded Postgres, moto's server,
SAM CLI's template reader). ``require`` checks, before a command starts anything, that the
packages it will import are there; ``imported`` turns the ``ModuleNotFoundError`` of a lazy
import into the same error (a provider's package missing from a broken install). The CLI
prints the error's message and exits 2.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

from shared.errors import MissingPackageError

# import name -> (the extra that installs it, the distribution when its name differs)
OPTIONAL: dict[str, tuple[str, str | None]] = {
    "pgserver": ("local", None),
    "moto": ("local", None),
    "samcli": ("local", "aws-sam-cli"),
    "rich": ("local", None),
}


def missing(package: str, needed_by: str) -> MissingPackageError:
    """The error for ``package`` not being installed, naming what installs it."""
    if package in OPTIONAL:
        extra, distribution = OPTIONAL[package]
        name = f"{package} (from {distribution})" if distribution else package
        return MissingPackageError(
            package, f"{needed_by} needs {name}, which is not installed: pip install 'docpipe[{extra}]'"
        )
    # A core dependency: only a broken or partial install lacks it.
    return MissingPackageError(
        package, f"{needed_by} needs the {package} package, which is not installed: reinstall docpipe (pip install docpipe)"
    )


def require(needed_by: str, *packages: str) -> None:
    """Raise ``MissingPackageError`` for the first of ``packages`` that cannot be imported."""
    for package in packages:
        try:
            found = importlib.util.find_spec(package) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise missing(package, needed_by)


@contextlib.contextmanager
def imported(package: str, needed_by: str) -> Iterator[None]:
    """Imports inside the block that fail for want of ``package`` raise ``MissingPackageError``."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != package:
            raise
        raise missing(package, needed_by) from exc
