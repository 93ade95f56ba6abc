"""Error types. The CLI turns each into one line naming the file and the cause."""


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
