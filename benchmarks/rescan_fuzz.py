"""How often the rescan report accuses an owner of copying their own music: a differential fuzz
of synthetic catalogs through the pure report (no audio, seconds for thousands of catalogs).

``python -m benchmarks.rescan_fuzz [--seeds 3000] [--missed 0.15] [--undated-originals 0.0]
[--ties] [--mashups 0.3] [--recorded-as-uploaded]``

Each seeded catalog holds 2-4 recordings, each with its original (its owner's reference or
upload), and 1-5 derived works: another account's copy (perhaps trimmed at the start or 10 %
slower), the owner's own re-upload, a 15-20 s trim, a medley of 15 s of two recordings, a work
mostly of one recording that quotes 15-25 s of another, a copy padded with 10 s of another
recording. Derived works are dated after what they use (15 % undated). Every two works that
share 3 s or more get the evidence an exact screening would give, in both directions: one
section per shared stretch. ``--missed P`` drops a share P of those pairs and makes another
share P only suspect; ``--undated-originals`` leaves originals undated; ``--ties`` dates on a
coarse grid, so that uploads tie, and adds identical re-uploads by the same or another account.
``--mashups P`` makes a share P of the derived works mashups: two recordings played over the
same seconds, one of them perhaps 5 % faster. Every upload is recorded on one day after all of
them (a catalog imported at once), or with ``--recorded-as-uploaded`` at noon of the day it
was uploaded, its date given or not (a catalog that records uploads as they come).

Counted as an innocent accusation: a ``copy_of`` or ``contains_excerpt_of`` whose derived work's
uploader owns every recording the two works share; a cluster holding two originals or named by
a work that is no original; an upload of its uploader's own music among their copies or excerpts.
Also counted: how many of the other accounts' works are named as copies or excerpts (with exact
evidence, every one of them should be).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated

import typer

from audiodup.rescan import RescanReport, WorkScan, build_report
from audiodup.results import Match, Section, UploadInfo, WorkInfo
from audiodup.settings import DEFAULT_SETTINGS

Segment = tuple[int, float, float, float]  # (recording, start s, end s, tempo) of the recording


@dataclass
class FuzzWork:
    segments: list[Segment]
    kind: str
    uploader: str
    day: int | None
    role: str = "upload"
    recording: int | None = None  # the recording an original is, None for derived works
    under: list[Segment] = field(default_factory=list)  # played over the same seconds (a mashup)

    def layers(self) -> list[list[Segment]]:
        return [self.segments, self.under] if self.under else [self.segments]


@dataclass
class Catalog:
    works: list[FuzzWork]
    report: RescanReport
    missed: list[tuple[int, int]] = field(default_factory=list)
    weak: list[tuple[int, int]] = field(default_factory=list)


def duration(segments: list[Segment]) -> float:
    return sum((end - start) / tempo for _, start, end, tempo in segments)


def shared_sections(x: list[Segment], y: list[Segment]) -> list[Section]:
    """One section per stretch of a recording that both segment lists play, in each one's
    own seconds."""
    sections, x_at = [], 0.0
    for rx, ax, bx, tx in x:
        y_at = 0.0
        for ry, ay, by, ty in y:
            lo, hi = max(ax, ay), min(bx, by)
            if rx == ry and hi > lo:
                sections.append(
                    Section(
                        x_at + (lo - ax) / tx,
                        x_at + (hi - ax) / tx,
                        y_at + (lo - ay) / ty,
                        y_at + (hi - ay) / ty,
                        50,
                    )
                )
            y_at += (by - ay) / ty
        x_at += (bx - ax) / tx
    return sections


def evidence(ref_id: int, x: FuzzWork, y: FuzzWork, score: float) -> Match | None:
    """What screening work ``x`` against work ``ref_id`` (``y``) would find, exactly: the
    stretches each layer of ``x`` shares with each of ``y``, once each."""
    sections = list(
        dict.fromkeys(s for a in x.layers() for b in y.layers() for s in shared_sections(a, b))
    )
    if not sections:
        return None
    covered = sum(s.query_end_s - s.query_start_s for s in sections)
    if covered < 3.0:
        return None
    main = max(sections, key=lambda s: s.query_end_s - s.query_start_s)
    tempo = (main.query_end_s - main.query_start_s) / (main.ref_end_s - main.ref_start_s)
    return Match(
        work_id=ref_id,
        path=f"/w/{ref_id}.ogg",
        title=None,
        relation="same_recording",
        score=score,
        false_match_probability=10.0**-score,
        tempo_ratio=tempo,
        pitch_shift_semitones=0.0,
        query_start_s=main.query_start_s,
        query_end_s=main.query_end_s,
        ref_start_s=main.ref_start_s,
        ref_end_s=main.ref_end_s,
        coverage=min(1.0, covered / duration(x.segments)),
        coverage_s=covered,
        matched_hashes=80,
        chroma_similarity=None,
        sections=tuple(sections),
    )


def derived_work(
    rng: random.Random,
    n: int,
    lengths: list[float],
    days: list[int],
    ties: bool,
    mashups: float = 0.0,
):
    kind = rng.choice(["copy", "selfcopy", "medley", "mostly", "padded", "trim"])
    r = rng.randrange(len(lengths))
    q = rng.choice([i for i in range(len(lengths)) if i != r])
    length, other = lengths[r], lengths[q]
    under: list[Segment] = []
    if mashups and rng.random() < mashups:  # both over the same seconds, q perhaps faster
        kind, tempo = "mashup", rng.choice([1.0, 1.05])
        seconds = min(length, other / tempo)
        segments, under = [(r, 0.0, seconds, 1.0)], [(q, 0.0, seconds * tempo, tempo)]
    elif kind in ("copy", "selfcopy"):
        segments = [(r, rng.choice([0.0, 2.0]), length, rng.choice([1.0, 1.0, 0.9]))]
    elif kind == "trim":
        segments = [(r, 5.0, min(length, 5.0 + rng.choice([15.0, 20.0])), 1.0)]
    elif kind == "medley":
        segments = [(r, 0.0, min(length, 15.0), 1.0), (q, 0.0, min(other, 15.0), 1.0)]
    elif kind == "mostly":
        quote = (q, rng.choice([0.0, 5.0]), min(other, rng.choice([15.0, 20.0, 25.0])), 1.0)
        segments = [(r, 0.0, length, 1.0), quote]
    else:  # padded: 10 s of another recording, then all of this one
        segments = [(q, 10.0, 20.0, 1.0), (r, 0.0, length, 1.0)]
    used = {s[0] for s in segments + under}
    after = max(days[u] for u in used)
    day = after + (rng.choice([0, 1, 400]) if ties else rng.randint(1, 900))
    uploader = f"owner{r}" if kind == "selfcopy" else f"acct{n}"
    return FuzzWork(segments, kind, uploader, None if rng.random() < 0.15 else day, under=under)


def generate(
    seed: int,
    missed: float,
    undated_originals: float = 0.0,
    ties: bool = False,
    mashups: float = 0.0,
    recorded_as_uploaded: bool = False,
) -> Catalog:
    rng = random.Random(seed)
    n_recordings = rng.randint(2, 4)
    lengths = [rng.choice([30.0, 40.0, 60.0]) for _ in range(n_recordings)]
    days = [rng.choice([0, 100]) if ties else rng.randint(0, 800) for _ in range(n_recordings)]
    works = [
        FuzzWork([(r, 0.0, length, 1.0)], "original", f"owner{r}", days[r], "", r)
        for r, length in enumerate(lengths)
    ]
    for w in works:
        w.role = rng.choice(["reference", "upload"])
    for _ in range(rng.randint(1, 5)):
        works.append(derived_work(rng, len(works), lengths, days, ties, mashups))
    true_days = [w.day for w in works]
    for w in works[:n_recordings]:
        if rng.random() < undated_originals:
            w.day = None

    def recorded(day: int | None) -> str:
        if not recorded_as_uploaded or day is None:
            return _IMPORTED_AT
        return f"{_date(day)}T12:00:00+00:00"

    found: dict[int, list[Match]] = {i + 1: [] for i in range(len(works))}
    catalog_missed, weak = [], []
    for i in range(len(works)):
        for j in range(i + 1, len(works)):
            a, b = works[i], works[j]
            if evidence(j + 1, a, b, 60.0) is None and evidence(i + 1, b, a, 60.0) is None:
                continue
            u = rng.random()
            if u < missed:
                catalog_missed.append((i + 1, j + 1))
                continue
            score = 60.0
            if u < 2 * missed:
                weak.append((i + 1, j + 1))
                score = 4.0
            for query, x, ref, y in ((i + 1, a, j + 1, b), (j + 1, b, i + 1, a)):
                match = evidence(ref, x, y, score)
                if match is not None:
                    found[query].append(match)
    uploads = [
        _upload(i + 1, i + 1, w.uploader, _date(w.day), w.role, recorded(true_days[i]))
        for i, w in enumerate(works)
    ]
    if ties:  # identical re-uploads, by the same account or another
        for i, w in enumerate(works):
            if rng.random() < 0.25:
                # drawn only for a dated work, as before: the catalogs of the other options
                # stay those of earlier sessions
                later = 0 if w.day is None else rng.choice([0, 50])
                day = None if w.day is None else w.day + later
                true_day = None if true_days[i] is None else true_days[i] + later
                who = rng.choice([w.uploader, f"reup{i}"])
                uploads.append(
                    _upload(100 + i, i + 1, who, _date(day), "upload", recorded(true_day))
                )
    infos = [
        WorkInfo(i + 1, f"/w/{i + 1}.ogg", None, None, duration(w.segments), f"sha{i + 1}", "")
        for i, w in enumerate(works)
    ]
    scans = {w: WorkScan(w, "file", tuple(ms)) for w, ms in found.items()}
    report = build_report(infos, scans, DEFAULT_SETTINGS, uploads=uploads)
    return Catalog(works, report, catalog_missed, weak)


def _date(day: int | None) -> str | None:
    return None if day is None else (dt.date(2019, 1, 1) + dt.timedelta(days=day)).isoformat()


_IMPORTED_AT = "2024-06-01T00:00:00+00:00"  # after every upload's day


def _upload(
    upload_id: int,
    work_id: int,
    uploader: str,
    when: str | None,
    role: str,
    recorded_at: str = _IMPORTED_AT,
):
    return UploadInfo(
        upload_id=upload_id,
        work_id=work_id,
        role=role,
        source_path=f"/up/{upload_id}.ogg",
        sha256=f"sha{work_id}",
        recorded_at=recorded_at,
        uploader=uploader,
        uploaded_at=when,
    )


def innocent_accusations(catalog: Catalog) -> list[str]:
    """Every accusation of an owner over their own music, and every cluster a wrong original
    names (see the module docstring)."""
    works, report = catalog.works, catalog.report
    segments = {i + 1: [s for layer in w.layers() for s in layer] for i, w in enumerate(works)}
    uploader = {i + 1: w.uploader for i, w in enumerate(works)}

    def owns(who: str, recordings) -> bool:
        return all(who == f"owner{r}" for r in recordings)

    def shared(x: int, y: int) -> set[int]:
        return {
            rx
            for rx, ax, bx, _ in segments[x]
            for ry, ay, by, _ in segments[y]
            if rx == ry and min(bx, by) > max(ax, ay)
        }

    found = []
    for link in report.links:
        derived, source = link.work_id, link.source_work_id
        if (
            link.kind in ("copy_of", "contains_excerpt_of")
            and uploader[derived] != uploader[source]
            and owns(uploader[derived], shared(derived, source))
        ):
            found.append(f"link {derived} {link.kind} {source}")
    for cluster in report.clusters:
        originals = [w for w in cluster.work_ids if works[w - 1].recording is not None]
        if len(originals) > 1:
            found.append(f"cluster {list(cluster.work_ids)} holds originals {originals}")
        named_by = cluster.original_work_id
        if named_by is not None and originals and named_by not in originals:
            found.append(f"cluster {list(cluster.work_ids)} named by {cluster.original_work_id}")
    work_of = {m.upload_id: m.work_id for m in report.linked_uploads}
    for u in report.uploaders:
        for kind, ids in (("copier", u.copy_upload_ids), ("excerpt", u.excerpt_upload_ids)):
            for up in ids:
                if owns(u.uploader, {s[0] for s in segments[work_of[up]]}):
                    found.append(f"{kind} {u.uploader} for own upload {up}")
    return found


def others_named(catalog: Catalog) -> tuple[int, int]:
    """(works of accounts that own nothing named as copies or excerpts, all such works)."""
    work_of = {m.upload_id: m.work_id for m in catalog.report.linked_uploads}
    theirs = {i + 1 for i, w in enumerate(catalog.works) if w.uploader.startswith("acct")}
    named = {
        work_of[up]
        for u in catalog.report.uploaders
        for up in (*u.copy_upload_ids, *u.excerpt_upload_ids)
        if work_of.get(up) in theirs
    }
    return len(named), len(theirs)


def run(
    seeds: int,
    missed: float,
    undated_originals: float,
    ties: bool,
    mashups: float = 0.0,
    recorded_as_uploaded: bool = False,
) -> dict:
    kinds: Counter[str] = Counter()
    wrong_seeds, named, others = [], 0, 0
    for seed in range(seeds):
        catalog = generate(seed, missed, undated_originals, ties, mashups, recorded_as_uploaded)
        found = innocent_accusations(catalog)
        if found:
            wrong_seeds.append(seed)
        kinds.update(item.split()[0] for item in found)
        n, total = others_named(catalog)
        named, others = named + n, others + total
    return {
        "seeds": seeds,
        "seeds_with_an_innocent_accusation": len(wrong_seeds),
        "items": dict(sorted(kinds.items())),
        "other_accounts_works_named": named,
        "other_accounts_works": others,
        "first_wrong_seeds": wrong_seeds[:10],
    }


def main(
    seeds: Annotated[int, typer.Option(help="catalogs to generate (seeds 0..N-1)")] = 3000,
    missed: Annotated[
        float, typer.Option(help="share of pairs dropped, and as many suspect")
    ] = 0.0,
    undated_originals: Annotated[float, typer.Option(help="share of undated originals")] = 0.0,
    ties: Annotated[bool, typer.Option(help="coarse dates and identical re-uploads")] = False,
    mashups: Annotated[float, typer.Option(help="share of derived works that are mashups")] = 0.0,
    recorded_as_uploaded: Annotated[
        bool, typer.Option(help="each upload recorded on its own day, not all after them")
    ] = False,
) -> None:
    result = run(seeds, missed, undated_originals, ties, mashups, recorded_as_uploaded)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    typer.run(main)
