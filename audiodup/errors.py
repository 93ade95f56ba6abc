"""Error types. The CLI turns each into one line naming the file and the cause."""

from collections.abc import Callable


class AudiodupError(Exception):
    """Base class of every error audiodup raises on purpose."""


class AudioDecodeError(AudiodupError):
    """The file could not be decoded as audio (corrupt, empty, not audio, unsupported)."""


class AudioTooShortError(AudioDecodeError):
    """The decoded audio is shorter than the minimum duration."""


class SilentAudioError(AudioDecodeError):
    """The decoded audio holds no signal (all silence or constant)."""


class CatalogError(AudiodupError):
    """The catalog is missing, damaged, locked or of another fingerprint recipe."""


class RecipeMismatchError(CatalogError):
    """The catalog was built with another fingerprint recipe."""


class MetadataError(AudiodupError):
    """A metadata CSV is unreadable or has invalid rows; ``problems`` lists each with its line."""

    def __init__(self, source: str, problems: list[tuple[int, str]], outcome: str = "added"):
        self.source = source
        self.problems = problems  # (line number, what is wrong), line 1 is the header
        self.outcome = outcome
        super().__init__("\n".join(self.lines()))

    def lines(self, shown: Callable[[str], str] = str) -> list[str]:
        """The message, a line for the file and one for each problem (at most 20), the CSV's
        name and each problem's text passed through ``shown`` (a file name holding a newline
        stays in its line, and the indent is not part of the text)."""
        problems = self.problems
        noun = "problem" if len(problems) == 1 else "problems"
        return [
            f"{shown(self.source)}: {len(problems)} {noun}, nothing was {self.outcome}",
            *(f"  line {line}: {shown(text)}" for line, text in problems[:20]),
            *([f"  ... and {len(problems) - 20} more"] if len(problems) > 20 else []),
        ]


class WorkNotFoundError(CatalogError):
    """A work id that is not (or no longer) in the catalog."""


class CatalogDamagedError(CatalogError):
    """The catalog database is damaged (SQLite reports corruption or missing tables)."""


class CatalogReadOnlyError(CatalogError):
    """The catalog can be read but not written here (read-only mount, permissions)."""


class CatalogBusyError(CatalogError):
    """Another process holds the catalog (its writer lock or its database) for too long."""


class DiskFullError(CatalogError):
    """The disk (or quota) holding the catalog is full; nothing committed was lost."""


class CatalogChangedError(CatalogError):
    """The catalog's index changed between a sharded look's plan and a shard group's opening
    (a commit or merge landed meanwhile): the look can be taken again."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type name when it has none), at most 200
    characters: what an error built from it shows of the cause."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


class ClusterError(AudiodupError):
    """A Dask cluster did not answer within the time allowed, or lost every worker."""


class ClusterDataLostError(ClusterError):
    """A Dask worker holding data that tasks needed was lost, so those tasks were cancelled."""


class SchedulerUnreachableError(ClusterError):
    """The Dask scheduler could not be reached (its address is in the message)."""


class WorkersCannotOpenCatalogError(ClusterError):
    """The Dask workers cannot open the catalog the client screens (they do not see it at the
    same absolute path): the cluster's problem, never a work's result."""
