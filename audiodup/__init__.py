"""audiodup: find uploads that are tempo-, pitch- or length-altered copies of catalog works."""

from .errors import AudioDecodeError, AudiodupError, CatalogError, RecipeMismatchError
from .settings import RECIPE, Settings

__all__ = [
    "RECIPE",
    "AudioDecodeError",
    "AudiodupError",
    "Catalog",
    "CatalogError",
    "Match",
    "RecipeMismatchError",
    "Settings",
    "Verdict",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    # ``Catalog`` is imported on first use: ``audiodup --version`` and the light modules
    # (settings, results, errors) do not load the audio and index stack (issue #16); the
    # result types too, so that Ctrl-C finds the console entry point's guard sooner
    if name == "Catalog":
        from .catalog import Catalog

        return Catalog
    if name in ("Match", "Verdict"):
        from . import results

        return getattr(results, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
