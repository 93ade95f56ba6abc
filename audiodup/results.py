"""Typed results and the one place that turns them into JSON."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from .schema import SCHEMA_VERSION

Relation = Literal["same_recording", "same_composition"]
VerdictLabel = Literal["duplicate", "suspect", "clean"]
UploadRole = Literal["reference", "upload"]
# what of the upload a match was found in: the mix screening hears, the stereo difference the
# mix cancels, one channel the other drowns in the mix (audiodup.stereo), or of a file of 3 or
# more channels, one channel the others drown or the difference of two
MAX_SCREENED_CHANNELS = 64  # every channel of a file that audiodup reads (audio.MAX_CHANNELS)
MAX_PAIRED_CHANNELS = 8  # the differences of pairs of channels: among the first 8 (7.1)
_NUMBERED_SIGNALS = tuple(f"channel_{n}" for n in range(1, MAX_SCREENED_CHANNELS + 1)) + tuple(
    f"difference_{a}_{b}" for a, b in itertools.combinations(range(1, MAX_PAIRED_CHANNELS + 1), 2)
)
# "mix", "stereo_difference", "left_channel", "right_channel", "channel_1" .. "channel_64",
# "difference_1_2" .. "difference_7_8"
Signal = Literal[("mix", "stereo_difference", "left_channel", "right_channel", *_NUMBERED_SIGNALS)]
CHANNEL_SIDES: dict[str, Literal["left", "right"]] = {
    "left_channel": "left",
    "right_channel": "right",
}
# the channels of a multichannel file each signal of one takes, from 0: one channel alone, or
# half the difference of two (which their mix cancels, as a stereo file's)
NUMBERED_PARTS: dict[str, tuple[int, ...]] = {
    signal: tuple(int(n) - 1 for n in signal.split("_")[1:]) for signal in _NUMBERED_SIGNALS
}


def numbered_parts_of(channels: int) -> dict[str, tuple[int, ...]]:
    """The parts of a file of ``channels`` channels (3 or more) that screening may look at
    alone (:data:`NUMBERED_PARTS`): each channel, and the difference of each pair of its first
    :data:`MAX_PAIRED_CHANNELS`."""
    return {
        signal: indexes for signal, indexes in NUMBERED_PARTS.items() if max(indexes) < channels
    }


SIGNAL_WORDS: dict[str, str] = {
    "mix": "mix",
    "stereo_difference": "stereo difference",
    "left_channel": "left channel",
    "right_channel": "right channel",
} | {
    signal: f"channel {parts[0] + 1}"
    if len(parts) == 1
    else f"difference of channels {parts[0] + 1} and {parts[1] + 1}"
    for signal, parts in NUMBERED_PARTS.items()
}


def heard_in(signal: Signal) -> str:
    """Words that say where in an upload a match was heard: nothing for its mix, else
    ``" in the stereo difference"``, ``" in the left channel"``, ``" in channel 3"``, ..."""
    if signal == "mix":
        return ""
    one_channel = len(NUMBERED_PARTS.get(signal, ())) == 1
    return f" in {'' if one_channel else 'the '}{SIGNAL_WORDS[signal]}"


def cancelled_by_the_mix(signal: Signal) -> bool:
    """Whether the mix cancels what ``signal`` names (a difference of channels) rather than
    drowns it (one channel under others)."""
    return signal == "stereo_difference" or len(NUMBERED_PARTS.get(signal, ())) == 2


ReviewLabel = Literal["copy", "not_a_copy", "escalate"]
REVIEW_LABELS: tuple[ReviewLabel, ...] = ("copy", "not_a_copy", "escalate")


@dataclass(frozen=True)
class Section:
    """One aligned stretch: upload time ``query_*`` lines up with reference time ``ref_*``."""

    query_start_s: float
    query_end_s: float
    ref_start_s: float
    ref_end_s: float
    matched_hashes: int


@dataclass(frozen=True)
class Match:
    """A catalog work that explains part of an upload, with the evidence."""

    work_id: int
    path: str
    title: str | None
    relation: Relation
    score: float  # -log10(false_match_probability), capped at 300
    false_match_probability: float
    tempo_ratio: float  # upload tempo / reference tempo
    pitch_shift_semitones: float  # upload pitch - reference pitch
    query_start_s: float
    query_end_s: float
    ref_start_s: float
    ref_end_s: float
    coverage: float  # share of the upload explained by this work, 0..1
    coverage_s: float  # seconds of the upload explained by this work
    matched_hashes: int
    chroma_similarity: float | None
    sections: tuple[Section, ...] = ()
    # upload peaks landing on the work's peaks under the alignment, when the guided peak check
    # made or confirmed the match
    matched_peaks: int | None = None
    # the onsets those peaks come from (peakcheck.matched_onsets): a held tone is one
    matched_onsets: int | None = None
    # of the matched hashes (or the peaks, when the peak check made the match), those on seconds
    # of the upload that many works hold (a stock sample or loop): the probability leaves them out
    matched_on_shared_material: int = 0
    # the chroma channel found the hashes' tempo, pitch and offset on its own (and the peaks
    # confirm the recording): the probability is the combined one, and a duplicate needs no
    # hash or peak count floor
    chroma_confirmed: bool = False
    # who the work is (audiodup.owners): the upload that names it, its identifiers and why
    upload_id: int | None = None
    uploader: str | None = None
    role: UploadRole | None = None
    external_ids: dict = field(default_factory=dict)
    attribution: str | None = None
    # the upload's audio is this work's own (the same content, sent again)
    identical_content: bool = False
    # upload tempo at the end of the aligned part / at its start, when the sections show a
    # tempo that changes along the upload (a DJ's ramp); None when it is steady
    tempo_drift: float | None = None
    signal: Signal = "mix"


# the Verdict fields that time the stages: they differ between two runs of the same screening
TIMING_FIELDS = (
    "fingerprint_s",
    "search_s",
    "fingerprint_cpu_s",
    "search_cpu_s",
    "index_load_s",
    "index_load_cpu_s",
)


@dataclass(frozen=True)
class Verdict:
    """The screening result of one upload."""

    path: str
    verdict: VerdictLabel | None
    matches: tuple[Match, ...] = ()
    error: str | None = None
    duration_s: float | None = None
    truncated: bool = False  # only the first max_duration_s of a longer file was screened
    # wall-clock and CPU (user + sys, this process) seconds of each stage: decoding and
    # fingerprinting, loading the catalog's indexes (0 when the loaded ones were reused), search
    fingerprint_s: float = 0.0
    search_s: float = 0.0
    fingerprint_cpu_s: float = 0.0
    search_cpu_s: float = 0.0
    index_load_s: float = 0.0
    index_load_cpu_s: float = 0.0

    @property
    def flagged(self) -> bool:
        return self.verdict == "duplicate"


@dataclass(frozen=True)
class AddResult:
    """One submitted file: ``added`` (new content, new upload), ``identical`` (a new upload of
    content already in the catalog), ``present`` (this very file is already recorded) or
    ``failed``."""

    path: str
    status: Literal["added", "identical", "present", "failed"]
    work_id: int | None = None
    error: str | None = None
    duration_s: float | None = None
    upload_id: int | None = None
    # the file held more than the decoding limits take: only its first duration_s seconds are
    # in the catalog (added) or were compared (identical)
    truncated: bool = False


@dataclass(frozen=True)
class WorkInfo:
    work_id: int
    path: str
    title: str | None
    artist: str | None
    duration_s: float
    sha256: str
    added_at: str
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class UploadInfo:
    """One submission to the catalog (the ledger): who sent which file when, with the
    distributor's identifiers. Content is stored once: every upload of the same audio carries
    the same ``work_id``. A ``reference`` is what a rights holder registered as their own."""

    upload_id: int
    work_id: int
    role: UploadRole
    source_path: str  # absolute and resolved when it was submitted
    sha256: str
    recorded_at: str  # when audiodup recorded it (UTC)
    title: str | None = None
    artist: str | None = None
    uploader: str | None = None
    uploaded_at: str | None = None  # ISO 8601, as the distributor gave it
    isrc: str | None = None
    upc: str | None = None
    external_id: str | None = None
    extra: dict = field(default_factory=dict)  # other metadata columns, kept as given

    @property
    def external_ids(self) -> dict[str, str]:
        ids = {"isrc": self.isrc, "upc": self.upc, "external_id": self.external_id}
        return {k: v for k, v in ids.items() if v}


@dataclass(frozen=True)
class CatalogStats:
    works: int
    hours: float
    index_bytes: int
    catalog_bytes: int
    bytes_per_work: float
    bytes_per_hour: float
    hash_entries: int
    chroma_vectors: int
    shards: int
    uploads: int = 0  # records in the upload ledger (content is stored once per work)
    references: int = 0  # of those, rights holders' references


@dataclass(frozen=True)
class ReviewDecision:
    """A reviewer's decision on a flagged upload: is it a ``copy`` of the matched work, ``not
    a copy``, or ``escalate`` d to someone else. Decisions are appended, never changed: an
    upload's latest decision is the one in force, the earlier ones are its history."""

    decision_id: int
    upload_id: int  # the upload decided on (the ledger's id)
    work_id: int  # the matched work it was compared with
    decision: ReviewLabel
    note: str
    reviewer: str  # the name of the API key that made it
    decided_at: str  # ISO 8601, UTC


def path_text(path) -> str:
    """A path as printable UTF-8 text; undecodable bytes of a file name appear as ``\\xNN``."""
    text = str(path)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


# Characters that act instead of showing: C0/C1 controls (ESC starts terminal escape sequences,
# a newline would let a file name forge an output line), line and paragraph separators, and
# the bidirectional controls that reorder what is shown ("Trojan Source"). And characters that
# do not show: Unicode's format characters and default-ignorable code points (zero-width
# spaces and joiners, the soft hyphen, variation selectors, tags) and the spaces other than
# U+0020, so that "wo\u200brk_03.ogg" is not shown as "work_03.ogg".
_ACTING = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSEEN = (
    "\xa0\xad\u034f\u0600-\u0605\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u1680"
    "\u17b4\u17b5\u180b-\u180f\u2000-\u200d\u202f\u205f-\u2065\u206a-\u206f\u3000"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
)
_INVISIBLE = re.compile(f"[\x00-\x1f{_ACTING}{_UNSEEN}]")
# json.dumps escapes the C0 controls and the backslash itself
_JSON_UNESCAPED = re.compile(f"[{_ACTING}{_UNSEEN}]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_EDGE_SPACES = re.compile(r"^ +| +$")


def shown_text(text) -> str:
    """User text (a file name, a title, an error that quotes one) as one printable line for a
    terminal, a picture or a page, a different line for different text: a backslash is shown
    doubled, so that no escape passes for the characters that spell it; control, format and
    invisible characters become ``\\n``, ``\\xNN`` or ``\\uNNNN`` escapes, and spaces at either
    end ``\\x20``; everything else is kept as it is. Undecodable bytes of a file name are first
    written ``\\xNN`` (:func:`path_text`, as JSON has them), so they show as ``\\\\xNN``
    whether or not the text was already made printable. (Characters that merely look alike, a
    Cyrillic ``а`` and a Latin ``a``, stay as they are: JSON output tells them apart.)"""
    shown = _INVISIBLE.sub(_escape_char, path_text(text).replace("\\", "\\\\"))
    return _EDGE_SPACES.sub(lambda found: "\\x20" * len(found.group()), shown)


# a value shown among others in one line or cell, as it is: no space, quote or separator
_PLAIN_ITEM = re.compile(r'[^\s;,=()"]*')


def listed_text(value: str) -> str:
    """One user value among others in a line or a cell (uploaders, identifiers, a title in a
    sentence): as it is, or as a JSON string when it holds a space, a quote or a separator
    (``;``, ``,``, ``=``, parentheses), so that no value passes for two, or for an identifier of
    another kind. Still user text: shown with :func:`shown_text` or escaped for a page."""
    return value if _PLAIN_ITEM.fullmatch(value) else json.dumps(value, ensure_ascii=False)


def ids_text(ids: dict[str, str], separator: str = " ") -> str:
    """External identifiers as ``isrc=... upc=...``, each value :func:`listed_text`."""
    return separator.join(f"{kind}={listed_text(value)}" for kind, value in ids.items())


def relation_text(m: Match, relation: str | None = None) -> str:
    """How a match relates upload and work, in words: ``identical audio, recording``,
    ``composition``, ``recording in the stereo difference`` (``relation``: other words for
    the relation)."""
    identical = "identical audio, " if m.identical_content else ""
    heard = heard_in(m.signal)
    return identical + (relation or m.relation.replace("same_", "")) + heard


def upload_text(m, role: str | None = None) -> str:
    """``upload 7 (fraud-ring, reference, 2023-01-01, isrc=...)``: who recorded a work's upload
    and as what (``role``: the role's words, default the role), in :func:`listed_text` parts."""
    uploader = listed_text(m.uploader) if m.uploader else "no uploader"
    parts = [uploader, role or m.role, m.uploaded_at or "undated", ids_text(m.external_ids)]
    return f"upload {m.upload_id} ({', '.join(p for p in parts if p)})"


def _escape_char(found: re.Match) -> str:
    char = found.group()
    code = ord(char)
    if code > 0xFFFF:
        return f"\\U{code:08x}"
    return _SHORT_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def _json_escape(found: re.Match) -> str:
    """A character as a JSON escape (a pair of surrogates past U+FFFF)."""
    code = ord(found.group())
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def to_jsonable(obj):
    """Dataclasses (and lists of them) to plain JSON types; NaN/inf become null."""
    if hasattr(obj, "__dataclass_fields__"):
        obj = asdict(obj)
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else float(f"{obj:.6g}")
    return obj


# The JSON documents: each carries ``schema_version`` and is described by a schema in
# audiodup/schemas/ (audiodup.schema). Change a shape here and there together.


def verdict_to_dict(verdict: Verdict) -> dict:
    """One entry of a screen document. Every entry has the same fields; an input that could
    not be screened has ``"verdict": "error"``, the cause in ``error`` and no matches."""
    data = to_jsonable(verdict)
    head = {key: data.pop(key) for key in ("path", "verdict", "error", "matches")}
    if verdict.error is not None:
        head.update(verdict="error", matches=[])
    return {**head, **data}


def screen_label(verdict: Verdict) -> str:
    """``duplicate``, ``suspect``, ``clean``, or ``error`` for an input that was not screened."""
    return "error" if verdict.error is not None else str(verdict.verdict)


# why only the first part of a file was screened or indexed (Settings.max_duration_s and the
# budget of native samples, audiodup.audio)
BEYOND_DECODING_LIMITS = "the file holds more than the decoding limits take"


def partly_screened(verdict: Verdict) -> bool:
    """Whether an upload was screened on its first part only (longer than ``max_duration_s``,
    or than the decoding budget of native samples) and found no duplicate there: it is not
    known to be clean (an uploader can put a copy after 20 minutes of anything). The service
    refuses such uploads (413 ``too_long``)."""
    return verdict.error is None and verdict.truncated and verdict.verdict != "duplicate"


def screened_part(verdict: Verdict) -> str | None:
    """``first 1200 s only`` for a :func:`partly_screened` upload, else None: shown next to its
    verdict wherever it is listed, since its ``clean`` covers only that part."""
    if not partly_screened(verdict):
        return None
    return f"first {verdict.duration_s or 0:.0f} s only"


def screen_summary(verdicts: Sequence[Verdict]) -> dict[str, int]:
    """How many inputs got each verdict, and how many of the screened ones are
    :func:`partly_screened` (the facts the exit code is made of)."""
    labels = Counter(screen_label(v) for v in verdicts)
    return {
        "uploads": len(verdicts),
        **{label: labels[label] for label in ("duplicate", "suspect", "clean", "error")},
        "partly_screened": sum(partly_screened(v) for v in verdicts),
    }


def screen_document(verdicts: Sequence[Verdict]) -> dict:
    """What ``screen --json`` prints and ``screen --out FILE.json`` writes."""
    return {
        "schema_version": SCHEMA_VERSION,
        "summary": screen_summary(verdicts),
        "results": [verdict_to_dict(v) for v in verdicts],
    }


def works_document(works: Sequence[WorkInfo]) -> dict:
    """What ``index list --json`` prints."""
    return {"schema_version": SCHEMA_VERSION, "works": to_jsonable(list(works))}


def uploads_document(uploads: Sequence[UploadInfo]) -> dict:
    """What ``index uploads --json`` prints."""
    return {"schema_version": SCHEMA_VERSION, "uploads": to_jsonable(list(uploads))}


def stats_document(stats: CatalogStats) -> dict:
    """What ``index stats --json`` prints."""
    return {"schema_version": SCHEMA_VERSION, **to_jsonable(stats)}


def decisions_document(decisions: Sequence[ReviewDecision], *, latest_only: bool) -> dict:
    """The review decisions export (``GET /v1/reviews/export?format=json``): the latest
    decision of each upload, or (``latest_only=False``) the whole history."""
    return {
        "schema_version": SCHEMA_VERSION,
        "latest_only": latest_only,
        "decisions": to_jsonable(list(decisions)),
    }


def dumps(obj, *, compact: bool = False) -> str:
    """Indented JSON text (``compact``: on one line, no spaces). Besides the C0 controls that
    JSON always escapes, the other characters of :func:`shown_text` are written as ``\\uNNNN``
    escapes: the value read back is the same, and printing the text cannot drive a terminal."""
    layout = {"separators": (",", ":")} if compact else {"indent": 2}
    text = json.dumps(to_jsonable(obj), ensure_ascii=False, **layout)
    # outside its strings JSON holds only ASCII, so every match is inside a string
    return _JSON_UNESCAPED.sub(_json_escape, text)
