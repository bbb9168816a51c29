"""What is wrong with a configuration: issues with their place in the file."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ConfigError", "ConfigIssue"]


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: where it is (dotted ``path`` and 1-based ``line``) and what it is."""

    path: str
    line: int | None
    message: str

    def format(self, source: str) -> str:
        """One line: ``FILE:LINE: PATH: MESSAGE`` (parts that are unknown are left out)."""
        where = source if self.line is None else f"{source}:{self.line}"
        what = f"{self.path}: {self.message}" if self.path else self.message
        return f"{where}: {what}"


class ConfigError(Exception):
    """A configuration that cannot be used; ``issues`` holds every problem found, in file order."""

    def __init__(self, issues: Iterable[ConfigIssue], source: str) -> None:
        self.issues: list[ConfigIssue] = sorted(
            issues, key=lambda i: -1 if i.line is None else i.line
        )
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(issue.format(self.source) for issue in self.issues)

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[ConfigIssue], str]]:
        return (ConfigError, (self.issues, self.source))
