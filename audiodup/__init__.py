"""audiodup: find uploads that are tempo-, pitch- or length-altered copies of catalog works."""

from .catalog import Catalog
from .errors import AudioDecodeError, AudiodupError, CatalogError, RecipeMismatchError
from .results import Match, Verdict
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
