"""Who a match names: the upload that stands for a work in a verdict (its owner), and the
upload identity carried by every match (pure).

A work is content; several uploads can carry it. A verdict names the **reference** upload when
there is one (what a rights holder registered as their own), else the earliest *dated* upload,
else the first recorded one, and says which rule chose it. Matches that are duplicates on
their own evidence name references first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from .metadata import is_future, parse_timestamp
from .results import Match, UploadInfo
from .settings import Settings
from .verdict import decide


@dataclass(frozen=True)
class Originality:
    """How early a work (or a group of works) is: references before uploads, then dated
    before undated, then the earlier date. ``upload_id`` is the upload that gives it."""

    reference: bool
    first: datetime | None  # earliest parseable uploaded_at of the counted uploads
    first_text: str | None  # that date as given
    upload_id: int | None
    work_id: int
    undated: tuple[int, ...] = ()  # counted uploads without a usable date
    # when the first of those was recorded: uploaded no later than that
    undated_recorded: datetime | None = None

    @property
    def first_is_day(self) -> bool:
        """Whether the first date is a day (``2024-03-01``), not an instant."""
        return self.first_text is not None and is_day(self.first_text)

    def order(self) -> tuple:
        # the exact instant: a float timestamp cannot tell microseconds apart in year 9999
        dated = self.first is not None
        return (not self.reference, not dated, self.first if dated else _NO_DATE)


_NO_DATE = datetime.min.replace(tzinfo=UTC)  # the order's place holder of an undated side


def is_day(text: str) -> bool:
    """Whether an ``uploaded_at`` names a day (``2024-03-01``), not an instant in it: it is
    read as the day's first instant (UTC), so it does not come before the same day's later
    instants, it is tied with them."""
    try:
        date.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def same_time(first: datetime, first_text: str | None, when: datetime) -> bool:
    """Whether ``when`` (no earlier than ``first``) cannot be told after ``first``: the same
    instant, or within the day ``first_text`` names."""
    day = first_text is not None and is_day(first_text)
    return when == first or (day and when < first + timedelta(days=1))


def upload_date(upload: UploadInfo) -> datetime | None:
    """``uploaded_at`` as an aware datetime, or None when it is missing, not ISO 8601 or in the
    future (:func:`~audiodup.metadata.upload_date_problem`: stored before that check, or by a
    clock that ran ahead, it would make its upload the earliest dated one); no later than the
    upload was recorded."""
    if not upload.uploaded_at:
        return None
    try:
        when = parse_timestamp(upload.uploaded_at)
    except (ValueError, OverflowError):
        return None
    if is_future(when):
        return None
    # uploaded no later than audiodup recorded it: a date after that (a day's slack for clocks
    # ahead, a local time read as UTC) put a first upload after a later one (a red team)
    recorded = recorded_time(upload)
    return min(when, recorded) if recorded is not None else when


def dated_uploads(
    uploads: Iterable[UploadInfo],
) -> tuple[list[tuple[datetime, UploadInfo]], tuple[int, ...]]:
    """``(the uploads with a usable uploaded_at and that date, earliest first, ties by upload
    id; the ids of the others, in order)``; each date is parsed once."""
    dated, undated = [], []
    for upload in uploads:
        when = upload_date(upload)
        if when is None:
            undated.append(upload.upload_id)
        else:
            dated.append((when, upload))
    dated.sort(key=lambda pair: (pair[0], pair[1].upload_id))
    return dated, tuple(sorted(undated))


def recorded_time(upload: UploadInfo) -> datetime | None:
    """When audiodup recorded ``upload`` (None: not a readable time)."""
    try:
        return parse_timestamp(upload.recorded_at)
    except (ValueError, OverflowError, TypeError):
        return None


def recorded_before(when: datetime, uploads: Iterable[UploadInfo]) -> UploadInfo | None:
    """The first recorded of the undated ``uploads`` that audiodup recorded before ``when``:
    uploaded no later than it was recorded, it came before any upload dated ``when``. A date
    only orders uploads after the undated ones recorded before it: a catalog added without
    dates, then an upload of one of its works (dated by its arrival), must not make that
    upload the work's owner (a review: any screening key took a work so)."""
    earlier = [
        (at, u.upload_id, u)
        for u in uploads
        if upload_date(u) is None and (at := recorded_time(u)) is not None and at < when
    ]
    return min(earlier, key=lambda row: row[:2])[2] if earlier else None


def one_uploader(uploads: list[UploadInfo]) -> bool:
    """Whether ``uploads`` all come from one named uploader (a missing name may be anyone)."""
    names = {u.uploader for u in uploads}
    return len(names) == 1 and None not in names and "" not in names


def work_originality(work_id: int, uploads: Iterable[UploadInfo]) -> Originality:
    """A work's originality: its reference uploads if it has any, else all its uploads."""
    uploads = list(uploads)
    references = [u for u in uploads if u.role == "reference"]
    counted = references or uploads
    dated, undated = dated_uploads(counted)
    times = [at for u in counted if u.upload_id in undated and (at := recorded_time(u))]
    recorded = min(times, default=None)
    if dated:
        first, upload = dated[0]
        return Originality(
            bool(references), first, upload.uploaded_at, upload.upload_id, work_id, undated,
            recorded,
        )  # fmt: skip
    upload_id = min((u.upload_id for u in counted), default=None)
    return Originality(bool(references), None, None, upload_id, work_id, undated, recorded)


def owner(uploads: list[UploadInfo]) -> tuple[UploadInfo, str]:
    """``(the upload that names the work, why that one)``; ``uploads`` are one work's. The
    choice is :func:`work_originality`'s, the rule rescan uses for originals, but for an
    undated upload recorded before the earliest date (:func:`recorded_before`)."""
    origin = work_originality(uploads[0].work_id, uploads)
    chosen = next(u for u in uploads if u.upload_id == origin.upload_id)
    what = "reference" if origin.reference else "upload"
    pooled = [u for u in uploads if (u.role == "reference") == origin.reference]
    earlier = recorded_before(origin.first, pooled) if origin.first is not None else None
    if earlier is not None:
        chosen = earlier
        rule = (
            f"first recorded {what} ({earlier.recorded_at}, undated), recorded before the "
            f"earliest dated one ({origin.first_text})"
        )
    elif len(pooled) == 1:
        rule = what
    elif origin.first is not None:
        rule = f"earliest dated {what} ({origin.first_text})"
        pool_dated, _ = dated_uploads(pooled)
        tied = [u for when, u in pool_dated if same_time(origin.first, origin.first_text, when)]
        if len(tied) > 1 and not one_uploader(tied):
            others = ", ".join(
                str(u.upload_id)
                for u in tied
                if u is not chosen and not (u.uploader and u.uploader == chosen.uploader)
            )
            rule += (
                f", tied with upload {others} of another uploader: the first recorded is named, "
                "neither is the original"
            )
    else:
        rule = f"first recorded {what}, no upload dates"
    if origin.reference:
        rule = f"{rule}: the rights holder's registration"
    others = len(uploads) - 1
    if others:
        rule += f"; {others} other upload{'s' if others > 1 else ''} of the same audio"
    return chosen, rule


def reference_originals(clusters) -> dict[int, tuple[UploadInfo, str]]:
    """From rescan clusters (:class:`audiodup.rescan.results.Cluster`): every work that is a
    copy of another work whose original is a reference, mapped to ``(the reference upload,
    why)``."""
    found = {}
    for cluster in clusters:
        original = next(
            (m for m in cluster.members if m.upload_id == cluster.original_upload_id), None
        )
        if original is None or original.role != "reference":
            continue
        upload = UploadInfo(
            upload_id=original.upload_id,
            work_id=original.work_id,
            role=original.role,
            source_path=original.path,
            sha256="",
            recorded_at="",
            title=original.title,
            artist=original.artist,
            uploader=original.uploader,
            uploaded_at=original.uploaded_at,
            isrc=original.isrc,
            upc=original.upc,
            external_id=original.external_id,
        )
        for work_id in cluster.work_ids:
            if work_id != original.work_id:
                why = (
                    f"reference of work {original.work_id}: the last rescan found work "
                    f"{work_id} a copy of it (cluster {cluster.cluster_id})"
                )
                found[work_id] = (upload, why)
    return found


RESCAN_RESULTS = "rescan.sqlite"  # audiodup.rescan.store.RESULTS_FILE, not imported at start-up


class CopyOwners:
    """:func:`reference_originals` of the last rescan, re-read only when the rescan's results
    changed (their files' sizes and modification times) or uploads' roles and metadata were
    edited (``ledger_edits``); empty when the catalog was never rescanned. New uploads do not
    re-read it: what the rescan found holds until the next rescan. ``clusters`` loads the
    rescan report's clusters."""

    def __init__(
        self, root: Path, clusters: Callable[[], Iterable], ledger_edits: Callable[[], int]
    ):
        self._root = root
        self._clusters = clusters
        self._ledger_edits = ledger_edits
        self._key: tuple | None = None
        self._found: dict[int, tuple[UploadInfo, str]] = {}

    def __call__(self) -> dict[int, tuple[UploadInfo, str]]:
        names = (RESCAN_RESULTS, f"{RESCAN_RESULTS}-wal")
        key = (*(_stamp(self._root / name) for name in names), self._ledger_edits())
        if key != self._key:
            rescanned = (self._root / RESCAN_RESULTS).exists()
            self._found = reference_originals(self._clusters()) if rescanned else {}
            self._key = key
        return self._found


def _stamp(path: Path) -> tuple:
    try:
        stat = path.stat()
    except OSError:
        return (None, None)
    return (stat.st_mtime_ns, stat.st_size)


def attribute(
    matches: Iterable[Match],
    uploads: list[UploadInfo],
    settings: Settings,
    identical_work: int | None = None,
    copy_owners: dict[int, tuple[UploadInfo, str]] | None = None,
) -> list[Match]:
    """``matches`` with the owner's upload identity filled in, ``identical_content`` set on
    the work whose audio is the upload's own, and the duplicates among them ordered
    references first (the rest keep their order). ``copy_owners`` maps a work that a rescan
    found to be a copy of a reference to ``(that reference upload, why)``: a match with such
    a work names the reference."""
    by_work: dict[int, list[UploadInfo]] = {}
    for upload in uploads:
        by_work.setdefault(upload.work_id, []).append(upload)
    copy_owners = copy_owners or {}
    named = []
    for match in matches:
        found = by_work.get(match.work_id)
        if found:
            chosen, rule = copy_owners.get(match.work_id) or owner(found)
            match = replace(
                match,
                upload_id=chosen.upload_id,
                uploader=chosen.uploader,
                role=chosen.role,
                external_ids=chosen.external_ids,
                attribution=rule,
            )
        if match.work_id == identical_work:
            match = replace(match, identical_content=True)
        named.append(match)
    rank = {id(m): i for i, m in enumerate(named)}

    def order(m: Match) -> tuple:
        duplicate = decide([m], settings) == "duplicate"
        return (not duplicate, not (duplicate and m.role == "reference"), rank[id(m)])

    return sorted(named, key=order)
