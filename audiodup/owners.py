"""Who a match names: the upload that stands for a work in a verdict (its owner), and the
upload identity carried by every match (pure).

A work is content; several uploads can carry it. A verdict names the **reference** upload when
there is one (what a rights holder registered as their own), else the earliest *dated* upload,
else the first recorded one, and says which rule chose it. Matches that are duplicates on
their own evidence name references first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from .metadata import parse_timestamp
from .results import Match, UploadInfo
from .settings import Settings
from .verdict import decide


def owner(uploads: list[UploadInfo]) -> tuple[UploadInfo, str]:
    """``(the upload that names the work, why that one)``; ``uploads`` are one work's."""
    references = [u for u in uploads if u.role == "reference"]
    pool = references or uploads
    what = "reference" if references else "upload"
    dated = [(when, u) for u in pool if (when := _date(u.uploaded_at)) is not None]
    if dated:
        when, chosen = min(dated, key=lambda d: (d[0], d[1].upload_id))
        rule = f"earliest dated {what} ({chosen.uploaded_at})" if len(pool) > 1 else what
    else:
        chosen = min(pool, key=lambda u: u.upload_id)
        rule = f"first recorded {what}, no upload dates" if len(pool) > 1 else what
    others = len(uploads) - 1
    if references:
        rule = f"{rule}: the rights holder's registration"
    if others:
        rule += f"; {others} other upload{'s' if others > 1 else ''} of the same audio"
    return chosen, rule


def attribute(
    matches: Iterable[Match],
    uploads: list[UploadInfo],
    settings: Settings,
    identical_work: int | None = None,
) -> list[Match]:
    """``matches`` with the owner's upload identity filled in, ``identical_content`` set on
    the work whose audio is the upload's own, and the duplicates among them ordered
    references first (the rest keep their order)."""
    by_work: dict[int, list[UploadInfo]] = {}
    for upload in uploads:
        by_work.setdefault(upload.work_id, []).append(upload)
    named = []
    for match in matches:
        found = by_work.get(match.work_id)
        if found:
            chosen, rule = owner(found)
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


def _date(text: str | None):
    if not text:
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        return None
