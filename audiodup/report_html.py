"""Self-contained HTML reports for reviewers: one file that works offline.

Everything is inline: CSS, a few lines of vanilla JavaScript that sort a table when a header is
clicked, the evidence pictures (:mod:`audiodup.explain`, PNG as ``data:`` URIs) and short audio
excerpts of the aligned regions of upload and reference (Ogg Vorbis at 16 kHz mono, about 20 kB
for 8 s, as ``data:`` URIs in ``<audio controls>``), so a reviewer can see and hear each match.
The page references no external URL. All user text (file names, titles, uploaders, errors that
quote them) is HTML-escaped, attributes included, with control characters shown as escapes;
the only script is the fixed sorting code, and no user text goes into it.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .audio import load_audio
from .catalog import Catalog
from .errors import AudiodupError
from .explain import drawn_queries, drawn_views, most_patterns, render_explain, titled
from .fingerprint import Fingerprint, fingerprint_audio
from .rescan import Cluster, Link, Member, Pair, RescanReport, work_query
from .results import (
    SIGNAL_WORDS,
    Match,
    ReviewDecision,
    Section,
    Signal,
    UploadInfo,
    Verdict,
    heard_in,
    ids_text,
    listed_text,
    partly_screened,
    relation_text,
    screened_part,
    shown_text,
    upload_text,
)
from .stereo import signal_audio

SNIPPET_S = 8.0
SNIPPET_RATE_HZ = 16000
_FADE_S = 0.02
PICTURE_DPI = 72

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#c7cbd4}main{padding:16px 28px 60px;max-width:1400px}
h2{margin:28px 0 10px;font-size:18px}h3{margin:0 0 8px;font-size:16px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0 6px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px 16px;min-width:120px}
.card b{display:block;font-size:22px}.card span{color:#5b6473;font-size:12px}
table{border-collapse:collapse;background:#fff;border:1px solid #dde1e7;margin:6px 0 12px;
font-size:13px}th,td{padding:5px 9px;border-bottom:1px solid #e6e9ee;text-align:left;
vertical-align:top}th{background:#eef1f5;white-space:nowrap}td.num{text-align:right;
font-variant-numeric:tabular-nums}table.sortable th{cursor:pointer;user-select:none}
table.sortable th::after{content:" \\2195";color:#9aa3b1}
table.sortable th[aria-sort=ascending]::after{content:" \\2191";color:#1d2330}
table.sortable th[aria-sort=descending]::after{content:" \\2193";color:#1d2330}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.duplicate{background:#fde2e1;color:#a3201b}.suspect{background:#fff1cc;color:#7a5800}
.clean{background:#dff3e4;color:#1e6b34}.error{background:#e9e2f7;color:#5a2ca0}
.copy_of{background:#fde2e1;color:#a3201b}.identical{background:#fde2e1;color:#a3201b}
.original{background:#dff3e4;color:#1e6b34}.contains_excerpt_of{background:#fff1cc;color:#7a5800}
.overlap,.same_recording,.undetermined,.unclustered{background:#eef1f5;color:#3a4353}
.caveats{color:#7a5800;margin:4px 0 8px}
.detail{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:14px 18px;
margin:14px 0}.detail img{max-width:100%;height:auto;border:1px solid #eef1f5}
.evidence{color:#3a4353;margin:4px 0 8px}.listen{display:flex;flex-wrap:wrap;gap:18px}
.listen figure{margin:6px 0}.listen figcaption{font-size:12px;color:#5b6473}
.muted{color:#5b6473}code{font-size:12px}a{color:#1f5fbf}.scroll{overflow-x:auto}
"""

_JS = """
(function () {
  function key(cell) {
    var raw = cell.getAttribute("data-sort");
    if (raw === null) { raw = cell.textContent.trim(); }
    var num = Number(raw);
    return raw !== "" && isFinite(num) ? [0, num, ""] : [1, 0, raw.toLowerCase()];
  }
  function compare(a, b) {
    if (a[0] !== b[0]) { return a[0] - b[0]; }
    if (a[0] === 0) { return a[1] - b[1]; }
    return a[2] < b[2] ? -1 : (a[2] > b[2] ? 1 : 0);
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, column) {
      th.setAttribute("title", "click to sort");
      th.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var c = compare(key(r1.cells[column]), key(r2.cells[column]));
          return ascending ? c : -c;
        });
        rows.forEach(function (row) { body.appendChild(row); });
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      });
    });
  });
  document.documentElement.setAttribute("data-sortable", String(tables.length));
})();
"""


# -- screening reports -------------------------------------------------------------------------
def screen_html(
    verdicts: Sequence[Verdict],
    catalog: Catalog | None,
    *,
    max_details: int = 50,
    snippet_s: float = SNIPPET_S,
    files: Sequence[str | Path] | None = None,
) -> str:
    """The report of ``screen``: summary, sortable table of uploads, and for each flagged upload
    (duplicate, then suspect; at most ``max_details``) its evidence, picture and excerpts, read
    from ``files`` (the screened paths, one per verdict) when given, else the shown paths."""
    counts = {label: sum(v.verdict == label for v in verdicts) for label in _LABELS}
    counts["error"] = sum(v.error is not None for v in verdicts)
    cards = [(len(verdicts), "uploads")] + [(counts[k], k) for k in (*_LABELS, "error")]
    cards.append((sum(map(partly_screened, verdicts)), "screened only to the decoding limits"))
    order = sorted(
        (i for i, v in enumerate(verdicts) if v.verdict in ("duplicate", "suspect")),
        key=lambda i: (verdicts[i].verdict != "duplicate", i),
    )
    detailed = order[:max_details]
    rows = []
    for i, v in enumerate(verdicts):
        label = v.verdict or "error"
        top = v.matches[0] if v.matches else None
        name = _link(f"upload-{i}", Path(v.path).name) if i in detailed else _e(Path(v.path).name)
        rows.append(
            [
                (name, Path(v.path).name),
                (_badge(label) + _part_note(v), _LABEL_ORDER.get(label, 9)),
                _e(f"{top.work_id}: {_work_name(top)}{_owner_note(top)}")
                if top
                else _e(v.error or ""),
                _e(relation_text(top)) if top else "",
                *_number_cells(top),
            ]
        )
    body = [
        _cards(cards),
        "<h2>Uploads</h2>",
        _table(
            ["upload", "verdict", "best match", "relation", *_NUMBER_HEADERS],
            rows,
            table_id="uploads",
        ),
    ]
    if order:
        body.append("<h2>Flagged uploads</h2>")
        if len(order) > len(detailed):
            body.append(
                f'<p class="muted">Evidence shown for the first {len(detailed)} of '
                f"{len(order)} flagged uploads.</p>"
            )
    for i in detailed:
        file = files[i] if files is not None else verdicts[i].path
        body.append(_screen_detail(i, verdicts[i], file, catalog, snippet_s))
    return _page("audiodup screening report", _subtitle(catalog), "\n".join(body))


def _part_note(verdict: Verdict) -> str:
    part = screened_part(verdict)
    return f' <span class="muted">{_e(part)}</span>' if part else ""


def _screen_detail(
    index: int, verdict: Verdict, file: str | Path, catalog: Catalog | None, snippet_s: float
) -> str:
    parts = [
        f'<section class="detail" id="upload-{index}">',
        f"<h3>{_e(Path(verdict.path).name)} {_badge(verdict.verdict)}</h3>",
        f'<p class="muted"><code>{_e(verdict.path)}</code></p>',
        _matches_table(verdict.matches),
    ]
    top = verdict.matches[0]
    if catalog is not None:
        try:
            decoded = load_audio(file, catalog.settings)
            audio = signal_audio(decoded, top.signal, catalog.settings)
            drawn = drawn_queries(audio, catalog.settings)
        except (AudiodupError, OSError) as exc:
            parts.append(f'<p class="muted">No picture: {_e(str(exc))}</p>')
        else:
            parts.append(_picture(catalog, drawn, top.work_id, Path(verdict.path).name))
        parts.append(_listen(file, _work_file(catalog, top.work_id, top.path), top, snippet_s))
    parts.append("</section>")
    return "\n".join(parts)


# -- rescan reports ---------------------------------------------------------------------------
def rescan_html(
    report: RescanReport,
    catalog: Catalog | None,
    *,
    max_details: int = 100,
    max_pictures: int = 60,
    snippet_s: float = SNIPPET_S,
) -> str:
    """The report of ``rescan``: summary, sortable tables of clusters (original, owner,
    caveats), excerpts and overlaps (never merged into clusters), uploaders and pairs, and per
    cluster its member uploads with their relation to the original, the alteration of each
    work and, for the pair behind it, the evidence, picture and excerpts (pictures and excerpts
    for at most ``max_pictures`` pairs)."""
    kinds = [k.kind for k in report.links]
    cards = [
        (report.works, "works in the catalog"),
        (report.uploads, "uploads"),
        (report.scanned, "screened"),
        (len(report.clusters), "clusters (an original and its copies)"),
        (sum(not c.determined for c in report.clusters), "clusters without a determined original"),
        (kinds.count("contains_excerpt_of"), "excerpt links"),
        (kinds.count("overlap"), "overlaps, direction unknown"),
        (len(report.pairs), "duplicate pairs"),
        (len(report.suspect_pairs), "suspect pairs"),
        (len(report.fallbacks), "screened from stored fingerprints"),
        (len(report.errors), "errors"),
        (len(report.partly_scanned), "seen only to the decoding limits"),
    ]
    uploads = {m.upload_id: m for m in report.linked_uploads}
    by_work: dict[int, list[Member]] = {}
    for m in report.linked_uploads:
        by_work.setdefault(m.work_id, []).append(m)
    cluster_of = {w: c for c in report.clusters for w in c.work_ids}
    body = [_cards(cards)]
    if report.unscanned:
        body.append(
            f'<p class="muted">{len(report.unscanned)} works have not been screened yet '
            "(run <code>audiodup rescan --new-only</code>).</p>"
        )
    body.append("<h2>Clusters</h2>")
    body.append(
        '<p class="muted">A cluster is one original and its copies (works that are mostly '
        "the original, altered). The original is the reference upload when there is one, else "
        "the earliest dated upload. Medleys, compilations and mixes are listed under "
        "<i>Excerpts</i> and never join a cluster.</p>"
    )
    cluster_rows = []
    for c in report.clusters:
        strongest = max(
            (p.evidence.score for p in report.pairs if set(p.work_ids) <= set(c.work_ids)),
            default=0.0,
        )
        uploaders = sorted({m.uploader for m in c.members if m.uploader})
        linked = c.cluster_id <= max_details
        cluster_rows.append(
            [
                (
                    _link(f"cluster-{c.cluster_id}", str(c.cluster_id))
                    if linked
                    else str(c.cluster_id),
                    c.cluster_id,
                ),
                (str(len(c.members)), len(c.members)),
                _e(_original_text(c, uploads)),
                _e(", ".join(listed_text(u) for u in uploaders)),
                _e("; ".join(c.caveats)),
                _e("; ".join(f"work {a.work_id}: {a.description}" for a in c.alterations)),
                (f"{strongest:.1f}", strongest),
            ]
        )
    body.append(
        _table(
            [
                "cluster",
                "uploads",
                "original (owner)",
                "uploaders",
                "caveats",
                "alterations",
                "best score",
            ],
            cluster_rows,
            table_id="clusters",
            numeric={1, 6},
        )
        if cluster_rows
        else '<p class="muted">No copies found.</p>'
    )
    others = [k for k in report.links if not k.clustered]
    if others:
        body.append("<h2>Excerpts and overlaps</h2>")
        body.append(
            '<p class="muted"><i>contains_excerpt_of</i>: the work uses part of the source (a '
            "medley, compilation or mix); it is not called a copy and joins no cluster. "
            "<i>overlap</i>: the two share material but which came first is unknown, so neither "
            "is accused. <i>copy_of</i> here: a copy that is clustered with a stronger source."
            "</p>"
        )
        body.append(_links_table(others, report, by_work, cluster_of, max_details))
    if report.uploaders:
        body.append("<h2>Uploaders</h2>")
        body.append(
            '<p class="muted">Copies: uploads that are copies (altered or identical) of another '
            "uploader's original, in clusters whose original is determined. Excerpts used and "
            "uploads in clusters without a determined original are counted apart; a reference "
            "is never counted as a copy.</p>"
        )
        body.append(
            _table(
                [
                    "uploader",
                    "copies",
                    "share of their uploads",
                    "copies duration",
                    "uploads",
                    "originals copied by others",
                    "self copies",
                    "excerpts used",
                    "in clusters without original",
                    "disputed references",
                ],
                [
                    [
                        _e(u.uploader),
                        (str(u.copies), u.copies),
                        (f"{100 * u.share:.0f} %", u.share),
                        (_duration(u.copies_duration_s), u.copies_duration_s),
                        (str(u.uploads), u.uploads),
                        (str(u.originals_copied), u.originals_copied),
                        (str(u.self_copies), u.self_copies),
                        (str(u.excerpts_used), u.excerpts_used),
                        (str(u.undetermined), u.undetermined),
                        (str(u.disputed_references), u.disputed_references),
                    ]
                    for u in report.uploaders
                ],
                table_id="uploaders",
                numeric={1, 2, 3, 4, 5, 6, 7, 8, 9},
            )
        )
    for title, pairs, table_id in (
        ("Duplicate pairs", report.pairs, "pairs"),
        ("Suspect pairs", report.suspect_pairs, "suspect-pairs"),
    ):
        if pairs:
            body.append(f"<h2>{title}</h2>")
            body.append(_pairs_table(pairs, table_id, report))
    notes = (*report.fallbacks, *report.errors, *report.partly_scanned)
    if notes:
        body.append("<h2>Notes</h2><ul>")
        for note in notes:
            body.append(
                f"<li>work {note.work_id} <code>{_e(note.path)}</code>: {_e(note.note)}</li>"
            )
        body.append("</ul>")
    if report.clusters:
        body.append("<h2>Cluster details</h2>")
    queries: dict[tuple[int, str], list[tuple[Fingerprint, str | None]] | None] = {}
    budget = [max_pictures]
    for cluster in report.clusters[:max_details]:
        body.append(_cluster_detail(cluster, report, catalog, snippet_s, queries, budget))
    derived = sorted({k.work_id for k in others if k.kind == "contains_excerpt_of"})
    if derived:
        body.append("<h2>Excerpt details</h2>")
    for work_id in derived[:max_details]:
        body.append(
            _excerpt_detail(
                work_id, report, by_work, cluster_of, catalog, snippet_s, queries, budget
            )
        )
    return _page("audiodup rescan report", _subtitle(catalog), "\n".join(body))


def _excerpt_detail(
    work_id: int,
    report: RescanReport,
    by_work: dict[int, list[Member]],
    cluster_of: dict,
    catalog: Catalog | None,
    snippet_s: float,
    queries: dict,
    budget: list[int],
) -> str:
    """A medley, compilation or mix: which part of it is which source (per source cluster,
    the link to the cluster's original when there is one), with the evidence and excerpts."""
    links = [k for k in report.links if k.work_id == work_id and k.kind == "contains_excerpt_of"]
    chosen: dict[object, Link] = {}
    for k in sorted(links, key=lambda k: -k.score):
        cluster = cluster_of.get(k.source_work_id)
        key = cluster.cluster_id if cluster else -k.source_work_id
        if cluster is not None and k.source_work_id == cluster.original_work_id:
            chosen[key] = k  # the original stands for its cluster
        chosen.setdefault(key, k)
    pairs = {p.work_ids: p for p in report.pairs}
    uploads = by_work.get(work_id, [])
    parts = [
        f'<section class="detail" id="excerpts-{work_id}">',
        f"<h3>{_e(_work_text(work_id, by_work))}</h3>",
        f"<p>Contains excerpts of {len(chosen)} source{'s' if len(chosen) != 1 else ''}; it is "
        "not a copy of any of them and joins none of their clusters.</p>",
    ]
    duration_s = uploads[0].duration_s if uploads else 0.0
    seen_from = {
        k.source_work_id: _as_seen_from(pairs[_ids(k)], work_id, duration_s)
        for k in chosen.values()
    }
    # in the order the sources play in the work
    for k in sorted(chosen.values(), key=lambda k: seen_from[k.source_work_id].query_start_s):
        pair, seen = pairs[_ids(k)], seen_from[k.source_work_id]
        cluster = cluster_of.get(k.source_work_id)
        where = f" (cluster {cluster.cluster_id})" if cluster else ""
        parts.append(
            f"<h4>{_e(f'work {work_id} ' + k.kind + ' work ' + str(k.source_work_id))}"
            f"{_e(where)}: {100 * k.work_share:.0f} % of it, {100 * k.source_share:.0f} % of "
            f"the source</h4>"
        )
        parts.append(f"<p>Source: {_e(_work_text(k.source_work_id, by_work))}</p>")
        reason = "; ".join((k.direction, *k.caveats))
        parts.append(f'<p class="muted">Why this direction: {_e(reason)}</p>')
        parts.append(_pair_evidence(pair, work_id, k.source_work_id, seen))
        source = by_work.get(k.source_work_id)
        if catalog is not None and budget[0] > 0 and uploads and source:
            budget[0] -= 1
            signals = _pair_signals(pair, work_id)
            parts.append(_pair_picture(catalog, pair, work_id, queries, lambda w: f"work {w}"))
            parts.append(
                _listen(
                    _work_file(catalog, work_id, uploads[0].path),
                    _work_file(catalog, k.source_work_id, source[0].path),
                    seen,
                    snippet_s,
                    (f"work {work_id}", f"work {k.source_work_id}"),
                    signals,
                )
            )
    parts.append("</section>")
    return "\n".join(parts)


def _ids(link: Link) -> tuple[int, int]:
    return tuple(sorted((link.work_id, link.source_work_id)))


def _links_table(
    links: Sequence[Link],
    report: RescanReport,
    by_work: dict[int, list[Member]],
    cluster_of: dict,
    max_details: int,
) -> str:
    pairs = {p.work_ids: p for p in report.pairs}
    rows = []
    for k in links:
        pair = pairs[tuple(sorted((k.work_id, k.source_work_id)))]
        duration_s = by_work[k.work_id][0].duration_s if by_work.get(k.work_id) else 0.0
        seen = _as_seen_from(pair, k.work_id, duration_s)
        spans = (
            f"work {k.work_id} {_s(seen.query_start_s)}–{_s(seen.query_end_s)} s ↔ work "
            f"{k.source_work_id} {_s(seen.ref_start_s)}–{_s(seen.ref_end_s)} s"
        )
        source_cluster = cluster_of.get(k.source_work_id)
        where = ""
        if source_cluster is not None:
            text = f"cluster {source_cluster.cluster_id}"
            where = (
                " (" + _link(f"cluster-{source_cluster.cluster_id}", text) + ")"
                if source_cluster.cluster_id <= max_details
                else f" ({_e(text)})"
            )
        rows.append(
            [
                _e(_work_text(k.work_id, by_work)),
                f'<span class="badge {_e(k.kind)}">{_e(k.kind)}</span>',
                _e(_work_text(k.source_work_id, by_work)) + where,
                (f"{100 * k.work_share:.0f} %", k.work_share),
                (f"{100 * k.source_share:.0f} %", k.source_share),
                _e(spans),
                _e(k.direction),
                _e("; ".join(k.caveats)),
                (f"{k.score:.1f}", k.score),
            ]
        )
    return _table(
        [
            "work",
            "relation",
            "source work",
            "share of the work",
            "share of the source",
            "where (main section)",
            "why this direction",
            "caveats",
            "score",
        ],
        rows,
        table_id="links",
        numeric={3, 4, 8},
    )


def _work_text(work_id: int, by_work: dict[int, list[Member]]) -> str:
    """``work 7 "title": upload 13 (dj, upload, 2024-01-01)`` with every upload of the work."""
    uploads = by_work.get(work_id, [])
    if not uploads:
        return f"work {work_id}"
    name = listed_text(uploads[0].title or Path(uploads[0].path).name)
    return f"work {work_id} {name}: " + "; ".join(
        upload_text(m, "reference: the owner" if m.role == "reference" else None) for m in uploads
    )


def _cluster_detail(
    cluster: Cluster,
    report: RescanReport,
    catalog: Catalog | None,
    snippet_s: float,
    queries: dict,
    budget: list[int],
) -> str:
    alteration = {a.work_id: a for a in cluster.alterations}
    uploads = {m.upload_id: m for m in report.linked_uploads}
    rows = []
    for m in cluster.members:
        a = alteration.get(m.work_id) if m.relation != "identical" else None
        rows.append(
            [
                (str(m.upload_id), m.upload_id),
                (str(m.work_id), m.work_id),
                _e(m.title or Path(m.path).name),
                _e(m.uploader or ""),
                _e(m.role),
                _e(m.uploaded_at or "undated"),
                _e(ids_text(m.external_ids, ", ")),
                f'<span class="badge {_e(m.relation)}">{_e(cluster.relation_text(m))}</span>',
                _e(a.description if a else ""),
                (f"x{a.tempo_ratio:.3f}", a.tempo_ratio) if a else ("", ""),
                (f"{a.pitch_shift_semitones:+.2f}", a.pitch_shift_semitones) if a else ("", ""),
                f"<code>{_e(m.path)}</code>",
            ]
        )
    parts = [
        f'<section class="detail" id="cluster-{cluster.cluster_id}">',
        f"<h3>Cluster {cluster.cluster_id}: {len(cluster.members)} uploads of "
        f"{len(cluster.work_ids)} works</h3>",
        f"<p>Original: <b>{_e(_original_text(cluster, uploads))}</b></p>",
    ]
    if cluster.caveats:
        parts.append(
            '<ul class="caveats">'
            + "".join(f"<li>caveat: {_e(c)}</li>" for c in cluster.caveats)
            + "</ul>"
        )
    parts.append(
        _table(
            [
                "upload",
                "work",
                "title",
                "uploader",
                "role",
                "uploaded at",
                "external ids",
                "relation to the original",
                "alteration",
                "tempo",
                "pitch (st)",
                "path",
            ],
            rows,
            table_id=f"cluster-{cluster.cluster_id}-members",
            numeric={0, 1, 9, 10},
        )
    )
    used = [
        k
        for k in report.links
        if not k.clustered
        and k.source_work_id in cluster.work_ids
        and k.work_id not in cluster.work_ids
    ]
    if used:
        by_work: dict[int, list[Member]] = {}
        for m in report.linked_uploads:
            by_work.setdefault(m.work_id, []).append(m)
        parts.append(
            "<p>Also used outside this cluster (not copies, see <i>Excerpts and overlaps</i>):</p>"
            "<ul>"
            + "".join(
                f"<li>{_e(_work_text(k.work_id, by_work))} {_e(k.kind)} work "
                f"{k.source_work_id} ({100 * k.work_share:.0f} % of it)</li>"
                for k in used
            )
            + "</ul>"
        )
    by_ids = {p.work_ids: p for p in report.pairs}
    path_of = {m.work_id: m for m in reversed(cluster.members)}  # each work's first upload
    for a in cluster.alterations:
        hop = (a.via[-2], a.via[-1])
        pair = by_ids.get((min(hop), max(hop)))
        if pair is None:
            continue
        composed = f" (composed along {' → '.join(map(str, a.via))})" if len(a.via) > 2 else ""
        parts.append(
            f"<h4>work {a.work_id} relative to work {a.relative_to}: {_e(a.description)}"
            f"{_e(composed)}</h4>"
        )
        # shown from the altered member's side, like the heading, whichever way it was found
        member, other = hop[1], hop[0]
        seen = _as_seen_from(pair, member, path_of[member].duration_s)
        member_path = _work_file(catalog, member, path_of[member].path)
        other_path = _work_file(catalog, other, path_of[other].path)
        parts.append(_pair_evidence(pair, member, other, seen))
        if catalog is not None and budget[0] > 0:
            budget[0] -= 1
            signals = _pair_signals(pair, member)
            parts.append(
                _pair_picture(catalog, pair, member, queries, lambda w: _label(path_of[w]))
            )
            labels = (f"work {member}", f"work {other}")
            parts.append(_listen(member_path, other_path, seen, snippet_s, labels, signals))
    parts.append("</section>")
    return "\n".join(parts)


def _work_file(catalog: Catalog | None, work_id: int, shown: str) -> str:
    """The file of a work, to take excerpts from (``shown``, its path as shown, without a
    catalog or when the work is gone: a name that is not UTF-8 is shown otherwise)."""
    return (catalog.store.work_file(work_id) if catalog is not None else None) or shown


def _work_drawn(
    catalog: Catalog, work_id: int, cache: dict, signal: Signal = "mix"
) -> list[tuple[Fingerprint, str | None]] | None:
    """A work's query fingerprints to draw from: of its mix, as a rescan screens it, as it
    is and in the other frame phases the rescan looks at it in (:func:`drawn_views`), or of
    its whole stereo difference or channel; None when none can be made."""
    key = (work_id, signal)
    if key not in cache:
        cache[key] = None
        with contextlib.suppress(AudiodupError, OSError):
            if signal == "mix":
                query = work_query(catalog, work_id)
                cache[key] = drawn_views(query.fingerprint, query.view, catalog.settings)
            elif (work := catalog.work(work_id)) is not None:
                file = catalog.store.work_file(work_id) or work.path
                decoded = load_audio(file, catalog.settings)
                audio = signal_audio(decoded, signal, catalog.settings)
                cache[key] = [(fingerprint_audio(audio, catalog.settings, query=True), None)]
    return cache[key]


def _pair_picture(
    catalog: Catalog, pair: Pair, member: int, queries: dict, label: Callable[[int], str]
) -> str:
    """The picture of a pair's evidence: ``member`` against the other work, or, for a pair
    found in a work's stereo difference or one channel, that part against the other work
    whichever way the pair is shown (the other work's catalog entry holds its mix); drawn from the
    analysis that lines up the most of the other work's patterns (:func:`most_patterns`)."""
    if pair.evidence.signal != "mix":
        drawn, against = pair.query_work_id, pair.reference_work_id
    else:
        drawn, against = member, next(w for w in pair.work_ids if w != member)
    queries_drawn = _work_drawn(catalog, drawn, queries, pair.evidence.signal)
    return "" if queries_drawn is None else _picture(catalog, queries_drawn, against, label(drawn))


def _pair_signals(pair: Pair, work_id: int) -> tuple[Signal, Signal]:
    """The signals of ``work_id`` and of the other work of ``pair`` its evidence was found in:
    the work screened as the query may have been screened in its stereo difference or a
    channel."""
    found_in = pair.evidence.signal
    return (found_in, "mix") if pair.query_work_id == work_id else ("mix", found_in)


def _as_seen_from(pair: Pair, work_id: int, duration_s: float) -> Match:
    """The pair's evidence with ``work_id`` as the query: as found, or inverted (tempo ratio
    1/x, pitch shift -x, upload and reference ranges swapped)."""
    e = pair.evidence
    if pair.query_work_id == work_id:
        return e
    sections = tuple(
        Section(s.ref_start_s, s.ref_end_s, s.query_start_s, s.query_end_s, s.matched_hashes)
        for s in e.sections
    )
    coverage_s = sum(max(0.0, s.query_end_s - s.query_start_s) for s in sections[:1])
    return replace(
        e,
        work_id=pair.query_work_id,
        path=pair.query_path,
        title=pair.query_title,
        tempo_ratio=1.0 / e.tempo_ratio,
        pitch_shift_semitones=-e.pitch_shift_semitones,
        query_start_s=e.ref_start_s,
        query_end_s=e.ref_end_s,
        ref_start_s=e.query_start_s,
        ref_end_s=e.query_end_s,
        coverage_s=coverage_s,
        coverage=min(1.0, coverage_s / max(duration_s, 1e-9)),
        sections=sections,
    )


def _pair_evidence(pair: Pair, member: int, other: int, seen: Match) -> str:
    how = (
        f"Work {member} screened against work {other}"
        if pair.query_work_id == member
        else f"Work {member} against work {other} (found by screening work {other} against "
        f"work {member}; shown inverted)"
    )
    source = (
        "" if pair.query_source == "file" else f" Screened from the stored fingerprint: {pair.note}"
    )
    both = "" if pair.found_both_ways else " Found in one direction only."
    if pair.evidence.signal != "mix":
        both += f" Found{heard_in(pair.evidence.signal)} of work {pair.query_work_id}."
    peaks = "" if seen.matched_peaks is None else f", {seen.matched_peaks} coinciding peaks"
    if seen.matched_onsets is not None:
        peaks += f" from {seen.matched_onsets} onsets"
    if seen.matched_on_shared_material:
        peaks += (
            f" ({seen.matched_on_shared_material} on material other works hold too, not counted"
            " in the probability)"
        )
    return (
        f'<p class="evidence">{_e(how)}: {_e(seen.relation)}, tempo x{seen.tempo_ratio:.3f}, '
        f"pitch {seen.pitch_shift_semitones:+.2f} st, work {member} "
        f"{_s(seen.query_start_s)}–{_s(seen.query_end_s)} s ↔ work {other} "
        f"{_s(seen.ref_start_s)}–{_s(seen.ref_end_s)} s, coverage {100 * seen.coverage:.0f} % "
        f"({seen.coverage_s:.1f} s), {seen.matched_hashes} matched hashes{peaks}, score "
        f"{seen.score:.1f}, false-match probability {seen.false_match_probability:.1e}."
        f"{_e(both)}{_e(source)}</p>"
    )


def _s(seconds: float) -> str:
    """Seconds for display; fitted lines can start a hair before 0."""
    return f"{max(seconds, 0.0):.1f}"


def _label(member) -> str:
    return f"work {member.work_id}: {member.title or Path(member.path).name}"


def _pairs_table(pairs: Sequence[Pair], table_id: str, report: RescanReport) -> str:
    link_of = {tuple(sorted((k.work_id, k.source_work_id))): k for k in report.links}
    rows = []
    for p in pairs:
        link = link_of.get(p.work_ids)
        relation = (
            f"{link.work_id} {link.kind} {link.source_work_id}" if link else "suspect, untyped"
        )
        rows.append(
            [
                (f"{p.work_ids[0]} – {p.work_ids[1]}", p.work_ids[0]),
                _e(relation),
                _e(f"{p.query_work_id}: {p.query_title or Path(p.query_path).name}"),
                _e(f"{p.reference_work_id}: {_work_name(p.evidence)}"),
                _e(relation_text(p.evidence)),
                *_number_cells(p.evidence),
                "yes" if p.found_both_ways else "one way",
            ]
        )
    return _table(
        ["works", "link", "query", "reference", "evidence", *_NUMBER_HEADERS, "both ways"],
        rows,
        table_id=table_id,
    )


def with_decisions_section(
    page: str,
    report: RescanReport,
    decisions: Sequence[ReviewDecision],
    uploads: Sequence[UploadInfo],
) -> str:
    """A rescan report ``page`` (:func:`rescan_html`) with :func:`decisions_section` at the
    end of its main part."""
    section = decisions_section(report, decisions, uploads)
    if not section:
        return page
    head, end, tail = page.rpartition("\n</main>")
    return f"{head}\n{section}{end}{tail}" if end else page


def decisions_section(
    report: RescanReport, decisions: Sequence[ReviewDecision], uploads: Sequence[UploadInfo]
) -> str:
    """The reviewers' decisions in force on the report's pairs, and on identical uploads of a
    work's audio (empty when there are none)."""
    from .report import decisions_by_pair, decisions_on_same_audio

    reviewed = decisions_by_pair(decisions, uploads)
    rows = []

    def row(works: tuple[str, int], what: str, found: ReviewDecision) -> list:
        return [
            works,
            _e(what),
            _e(f"upload {found.upload_id} against work {found.work_id}"),
            _e(found.decision.replace("_", " ")),
            _e(found.note),
            _e(found.reviewer),
            _e(found.decided_at),
        ]

    for pair in (*report.pairs, *report.suspect_pairs):
        for found in reviewed.get(pair.work_ids, ()):  # a row per upload decided on
            works = (f"{pair.work_ids[0]} – {pair.work_ids[1]}", pair.work_ids[0])
            rows.append(row(works, pair.label, found))
    for found in decisions_on_same_audio(decisions, uploads):
        rows.append(row((str(found.work_id), found.work_id), "identical audio", found))
    if not rows:
        return ""
    headers = ["works", "pair", "decided on", "decision", "note", "reviewer", "decided at"]
    return (
        '<section id="review-decisions"><h2>Review decisions</h2>'
        '<p class="muted">The decisions in force on each pair, one per upload decided on, '
        "then on uploads of a work's own audio (audiodup serve's review queue).</p>"
        + _table(headers, rows, table_id="review-decisions-table")
        + "</section>"
    )


# -- shared pieces ----------------------------------------------------------------------------
_LABELS = ("duplicate", "suspect", "clean")
_LABEL_ORDER = {"duplicate": 0, "suspect": 1, "clean": 2, "error": 3}
_NUMBER_HEADERS = ["tempo", "pitch (st)", "coverage", "hashes", "score", "false-match p"]


def _number_cells(m: Match | None) -> list:
    if m is None:
        return [""] * len(_NUMBER_HEADERS)
    return [
        (f"x{m.tempo_ratio:.3f}", m.tempo_ratio),
        (f"{m.pitch_shift_semitones:+.2f}", m.pitch_shift_semitones),
        (f"{100 * m.coverage:.0f} %", m.coverage),
        (str(m.matched_hashes), m.matched_hashes),
        (f"{m.score:.1f}", m.score),
        (f"{m.false_match_probability:.1e}", m.false_match_probability),
    ]


def _matches_table(matches: Sequence[Match]) -> str:
    rows = [
        [
            _e(f"{m.work_id}: {_work_name(m)}"),
            _owner(m),
            _e(relation_text(m)),
            f"{_s(m.query_start_s)}–{_s(m.query_end_s)}",
            f"{_s(m.ref_start_s)}–{_s(m.ref_end_s)}",
            *_number_cells(m),
        ]
        for m in matches
    ]
    return _table(
        ["work", "owner", "relation", "upload s", "reference s", *_NUMBER_HEADERS],
        rows,
        sortable=False,
    )


def _owner(m: Match) -> str:
    """Who the work is: the upload that names it, its identifiers and why that upload."""
    if m.upload_id is None:
        return ""
    who = f"upload {m.upload_id}, {m.role}" + (f", by {m.uploader}" if m.uploader else "")
    ids = "".join(f"<br>{_e(k)} <code>{_e(v)}</code>" for k, v in m.external_ids.items())
    why = f'<br><span class="muted">{_e(m.attribution)}</span>' if m.attribution else ""
    return f"{_e(who)}{ids}{why}"


def _picture(
    catalog: Catalog, drawn: list[tuple[Fingerprint, str | None]], work_id: int, name: str
) -> str:
    """The picture of work ``work_id`` in ``name``, drawn from the analysis of ``drawn`` that
    lines up the most of the work (:func:`most_patterns`), its title saying which."""
    try:
        query, how, evidence = most_patterns(catalog, drawn, work_id)
        name = titled(name, how)
        png = render_explain(
            catalog, query, work_id, upload_name=name, dpi=PICTURE_DPI, evidence=evidence
        )
    except AudiodupError as exc:
        return f'<p class="muted">No picture: {_e(str(exc))}</p>'
    except Exception as exc:  # noqa: BLE001 - one upload's picture must not cost the whole report
        return f'<p class="muted">No picture: {_e(type(exc).__name__)}: {_e(str(exc)[:200])}</p>'
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="matched hashes and aligned chroma of {_e(name)} against work '
        f'{work_id}" src="data:image/png;base64,{data}"></figure>'
    )


def _listen(
    upload_path: str | Path,
    reference_path: str,
    m: Match,
    snippet_s: float,
    labels: tuple[str, str] = ("upload", "reference"),
    signals: tuple[Signal, Signal] | None = None,
) -> str:
    """Excerpts of the same music in upload and reference: the middle of the main section,
    each from its ``signals`` [default: the upload's as the match says, the reference's mix]."""
    length = max(0.0, min(snippet_s, m.query_end_s - m.query_start_s))
    if length < 1.0 or not math.isfinite(m.tempo_ratio) or m.tempo_ratio <= 0:
        return ""
    q0 = m.query_start_s + (m.query_end_s - m.query_start_s - length) / 2
    r0 = m.ref_start_s + (q0 - m.query_start_s) * m.tempo_ratio
    items = []
    for label, path, start, duration, signal in zip(
        labels,
        (upload_path, reference_path),
        (q0, r0),
        (length, length * m.tempo_ratio),
        signals or (m.signal, "mix"),
        strict=True,
    ):
        clip = audio_snippet(path, start, duration, signal=signal)
        heard = "" if signal == "mix" else f" ({SIGNAL_WORDS[signal]})"
        caption = f"{label}{heard} {start:.1f}–{start + duration:.1f} s"
        if clip is None:
            items.append(
                f"<figure><figcaption>{_e(caption)}: audio not available</figcaption></figure>"
            )
            continue
        data = base64.b64encode(clip).decode("ascii")
        items.append(
            f'<figure><figcaption>{_e(caption)}</figcaption><audio controls preload="metadata" '
            f'src="data:audio/ogg;base64,{data}"></audio></figure>'
        )
    return f'<div class="listen">{"".join(items)}</div>'


def audio_snippet(
    path: str | Path,
    start_s: float,
    duration_s: float,
    rate_hz: int = SNIPPET_RATE_HZ,
    *,
    signal: Signal = "mix",
) -> bytes | None:
    """``duration_s`` (at most 15 s) of ``path`` from ``start_s`` as small mono Ogg Vorbis
    bytes, or None when the file cannot be read. The file is decoded as screening decoded it
    (every chain link and audio stream, one timeline), so the times of a match point at the
    same audio here; ``signal``: its mix, its stereo difference or one channel."""
    duration_s = min(max(duration_s, 0.5), 15.0)
    start_s = max(0.0, start_s)
    try:
        audio = signal_audio(load_audio(path), signal)
    except (AudiodupError, OSError):
        return None
    native = audio.sample_rate_hz
    samples = audio.samples[int(start_s * native) : int((start_s + duration_s) * native)]
    if len(samples) < native // 4:
        return None
    samples = soxr.resample(samples, native, rate_hz).astype(np.float32)
    fade = min(int(_FADE_S * rate_hz), len(samples) // 2)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    samples[:fade] *= ramp
    samples[len(samples) - fade :] *= ramp[::-1]
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak > 1.0:
        samples /= peak
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate_hz, format="OGG", subtype="VORBIS", compression_level=1.0)
    return buffer.getvalue()


def _original_text(cluster: Cluster, uploads: dict[int, Member]) -> str:
    if not cluster.determined:
        return cluster.original_reason
    m = uploads[cluster.original_upload_id]
    name = listed_text(m.title or Path(m.path).name)
    uploader = listed_text(m.uploader or "")
    owner = f", owner {uploader}" if m.role == "reference" and m.uploader else ""
    by = f" by {uploader}" if m.uploader and not owner else ""
    ids = f", {ids_text(m.external_ids, ', ')}" if m.external_ids else ""
    return (
        f"upload {m.upload_id} (work {m.work_id}): {name}{by}{owner}{ids}; "
        f"{cluster.original_reason}"
    )


def _owner_note(m: Match) -> str:
    if m.upload_id is None:
        return ""
    return f" ({m.role} {m.upload_id}" + (f" by {m.uploader})" if m.uploader else ")")


def _work_name(m: Match) -> str:
    return m.title or Path(m.path).name


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _cards(cards: list[tuple[int, str]]) -> str:
    inner = "".join(f'<div class="card"><b>{n}</b><span>{_e(t)}</span></div>' for n, t in cards)
    return f'<div class="cards">{inner}</div>'


def _table(
    headers: Sequence[str],
    rows: list[list],
    *,
    table_id: str | None = None,
    sortable: bool = True,
    numeric: set[int] | None = None,
) -> str:
    """Rows of cells: HTML text, or ``(html, sort key)``. Numeric sort keys sort as numbers."""
    attrs = f' id="{_e(table_id)}"' if table_id else ""
    attrs += ' class="sortable"' if sortable else ""
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in headers)
    body = []
    for row in rows:
        cells = []
        for column, cell in enumerate(row):
            text, key = cell if isinstance(cell, tuple) else (cell, None)
            is_num = isinstance(key, int | float) and not isinstance(key, bool)
            klass = ' class="num"' if is_num or (numeric and column in numeric) else ""
            sort = f' data-sort="{_e(_sort_key(key))}"' if key is not None else ""
            cells.append(f"<td{klass}{sort}>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table{attrs}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _sort_key(key) -> str:
    if isinstance(key, float):
        return repr(key) if math.isfinite(key) else ""
    return str(key)


def _badge(label: str | None) -> str:
    label = label or "error"
    return f'<span class="badge {_e(label)}">{_e(label)}</span>'


def _link(anchor: str, text: str) -> str:
    return f'<a href="#{_e(anchor)}">{_e(text)}</a>'


def _subtitle(catalog: Catalog | None) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = f"catalog {catalog.root}, " if catalog is not None else ""
    return f"{where}generated {when}"


def _page(title: str, subtitle: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>"
        f"<header><h1>{_e(title)}</h1><p>{_e(subtitle)}</p></header>\n<main>\n{body}\n</main>"
        f"<script>{_JS}</script></body></html>\n"
    )


def _e(text) -> str:
    """Text for HTML content and quoted attributes: escaped, control characters shown."""
    return html.escape(shown_text(text), quote=True)
