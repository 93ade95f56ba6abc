"""The review queue's HTML pages (pure: typed values in, one page of text out).

Pages reference nothing outside the server: the CSS is inline under the response's
Content-Security-Policy nonce, and there is no script. Every user string (titles, uploaders,
file names, notes, identifiers) goes through :func:`audiodup.report_html._e`: HTML-escaped,
attributes included, control characters shown as escapes. URLs are built from integers and
fixed words only, and query strings are percent-encoded.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from ..report_html import _CSS, _badge, _e, _matches_table, _s
from ..results import REVIEW_LABELS, Match, ReviewDecision, UploadInfo, relation_text

DECISION_TEXT = {"copy": "copy", "not_a_copy": "not a copy", "escalate": "escalate"}
FLAGGED = ("duplicate", "suspect")


@dataclass(frozen=True)
class QueueRow:
    """One flagged upload in the queue."""

    upload: UploadInfo
    name: str  # its title, else the file name the client sent
    verdict: str
    screened_at: str
    top: Match | None
    decision: ReviewDecision | None


@dataclass(frozen=True)
class QueueFilter:
    """The queue's filters, as the form sends them (empty: no filter)."""

    verdict: str = ""  # "", "duplicate" or "suspect"
    uploader: str = ""
    since: str = ""  # a date (YYYY-MM-DD), recorded on or after it
    until: str = ""  # a date, recorded on or before it
    undecided: bool = False


def login_page(nonce: str, error: str | None = None) -> str:
    message = f'<p class="error-text" role="alert">{_e(error)}</p>' if error else ""
    body = (
        '<section class="detail narrow"><h2>Sign in</h2>'
        "<p>Paste an API key with the <code>review</code> scope "
        "(<code>audiodup keys create NAME --scope review</code>). The key is exchanged for a "
        "session cookie and is not kept by the browser.</p>"
        f"{message}"
        '<form method="post" action="/review/login" autocomplete="off">'
        '<label for="key">API key</label><br>'
        '<input id="key" name="key" type="password" size="60" required autofocus> '
        '<button type="submit">Sign in</button></form></section>'
    )
    return page("audiodup review: sign in", nonce, body, reviewer=None, csrf=None)


def queue_page(
    rows: Sequence[QueueRow],
    filters: QueueFilter,
    *,
    nonce: str,
    reviewer: str,
    csrf: str,
    more_after: int | None,
) -> str:
    """The list of flagged uploads with the filter form; ``more_after``: the upload id after
    which the next page starts (None: this is the last page)."""
    verdicts = "".join(
        f'<option value="{v}"{" selected" if filters.verdict == v else ""}>{label}</option>'
        for v, label in (
            ("", "duplicate or suspect"),
            ("duplicate", "duplicate"),
            ("suspect", "suspect"),
        )
    )
    form = (
        '<form class="filters" method="get" action="/review">'
        f'<label>verdict <select name="verdict">{verdicts}</select></label> '
        # the uploader as it is (escaped for the attribute only): sent again, it finds the same
        f'<label>uploader <input name="uploader" value="{_attr(filters.uploader)}" size="16">'
        "</label> "
        "<label>recorded from "
        f'<input name="since" type="date" value="{_e(filters.since)}"></label> '
        f'<label>to <input name="until" type="date" value="{_e(filters.until)}"></label> '
        f'<label><input type="checkbox" name="undecided" value="1"'
        f"{' checked' if filters.undecided else ''}> undecided only</label> "
        '<button type="submit">Filter</button> <a href="/review">clear</a></form>'
    )
    table_rows = []
    for row in rows:
        u, top = row.upload, row.top
        name = row.name
        match = _e(f"work {top.work_id}: {top.title or Path(top.path).name}") if top else ""
        alteration = (
            _e(f"x{top.tempo_ratio:.3f}, {top.pitch_shift_semitones:+.2f} st") if top else ""
        )
        decided = (
            f'<span class="badge decided-{_e(row.decision.decision)}">'
            f"{_e(DECISION_TEXT[row.decision.decision])}</span>"
            if row.decision
            else '<span class="muted">undecided</span>'
        )
        table_rows.append(
            "<tr>"
            f'<td class="num">{u.upload_id}</td>'
            f'<td><a href="/review/uploads/{u.upload_id}">{_e(name)}</a></td>'
            f"<td>{_uploader_link(u.uploader)}</td>"
            f"<td>{_e(u.uploaded_at or '')}</td>"
            f"<td>{_e(u.recorded_at[:19].replace('T', ' '))}</td>"
            f"<td>{_badge(row.verdict)}</td>"
            f"<td>{match}</td><td>{alteration}</td>"
            f'<td class="num">{_e(f"{top.score:.1f}") if top else ""}</td>'
            f"<td>{decided}</td></tr>"
        )
    headers = (
        "upload",
        "title or file sent",
        "uploader",
        "uploaded at",
        "recorded (UTC)",
        "verdict",
        "best match",
        "tempo, pitch",
        "score",
        "decision",
    )
    table = (
        '<div class="scroll"><table id="queue"><thead><tr>'
        + "".join(f'<th scope="col">{h}</th>' for h in headers)
        + f"</tr></thead><tbody>{''.join(table_rows)}</tbody></table></div>"
        if rows
        else '<p class="muted" id="queue-empty">No flagged upload matches these filters.</p>'
    )
    more = ""
    if more_after is not None:
        query = _query(filters, after_id=more_after)
        more = f'<p><a id="next-page" href="/review?{_e(query)}">next page</a></p>'
    export = (
        '<p class="muted">Export the decisions: '
        '<a id="export-csv" href="/v1/reviews/export?format=csv">CSV</a> · '
        '<a id="export-json" href="/v1/reviews/export?format=json">JSON</a> '
        "(the decision in force per upload; add <code>&amp;history=true</code> for every "
        "decision)</p>"
    )
    body = f"{form}<h2>Flagged uploads</h2>{table}{more}{export}"
    return page("audiodup review queue", nonce, body, reviewer=reviewer, csrf=csrf)


def upload_page(
    upload: UploadInfo,
    name: str,
    verdict: str | None,
    screened_at: str | None,
    matches: Sequence[Match],
    chosen: Match | None,
    history: Sequence[ReviewDecision],
    *,
    nonce: str,
    reviewer: str,
    csrf: str,
    notice: str | None = None,
) -> str:
    """One upload: who sent it, the evidence, the picture, the A/B players and the form."""
    facts = [
        ("upload", str(upload.upload_id)),
        ("title", upload.title or ""),
        ("artist", upload.artist or ""),
        ("uploader", upload.uploader or ""),
        ("uploaded at", upload.uploaded_at or ""),
        ("recorded at", upload.recorded_at),
        ("screened at", screened_at or ""),
        *((k, v) for k, v in upload.external_ids.items()),
        ("kept as", Path(upload.source_path).name),
    ]
    facts_html = "".join(
        f'<tr><th scope="row">{_e(k)}</th><td>{_e(v)}</td></tr>' for k, v in facts if v
    )
    parts = [
        '<p><a href="/review">&larr; queue</a></p>',
        f'<h2 id="upload-title">{_e(name)} {_badge(verdict or "clean")}</h2>',
    ]
    if notice:
        parts.append(f'<p class="notice" role="status" id="notice">{_e(notice)}</p>')
    parts.append(f'<div class="scroll"><table class="facts">{facts_html}</table></div>')
    if not matches:
        parts.append('<p class="muted">The screening found no match.</p>')
    else:
        parts.append("<h3>Evidence</h3>")
        parts.append(_matches_table(matches))
    if chosen is not None:
        parts.append(_comparison(upload.upload_id, chosen, matches))
    parts.append(_decision_form(upload.upload_id, chosen, matches, csrf))
    parts.append(_history(history))
    return page(
        f"audiodup review: upload {upload.upload_id}",
        nonce,
        "\n".join(parts),
        reviewer=reviewer,
        csrf=csrf,
    )


def _comparison(upload_id: int, m: Match, matches: Sequence[Match]) -> str:
    base = f"/review/uploads/{upload_id}"
    work = f"work_id={m.work_id}"
    others = ""
    if len(matches) > 1:
        links = " · ".join(
            f'<a href="{base}?{f"work_id={o.work_id}"}">work {o.work_id}</a>'
            for o in matches
            if o.work_id != m.work_id
        )
        others = f'<p class="muted">Compare with another match: {links}</p>'
    return (
        f'<section class="detail" id="compare"><h3>Against work {m.work_id}: '
        f"{_e(m.title or Path(m.path).name)}</h3>{others}"
        f'<p class="evidence">{_e(relation_text(m, m.relation.replace("_", " ")))}, '
        "upload tempo "
        f"x{m.tempo_ratio:.3f} and pitch {m.pitch_shift_semitones:+.2f} st against the "
        f"reference; upload {_s(m.query_start_s)}–{_s(m.query_end_s)} s lines up with reference "
        f"{_s(m.ref_start_s)}–{_s(m.ref_end_s)} s.</p>"
        f'<figure><img id="explain" alt="matched hashes and aligned chroma against work '
        f'{m.work_id}" src="{base}/explain.png?{work}"></figure>'
        '<div class="listen">'
        "<figure><figcaption>A: reference excerpt</figcaption>"
        f'<audio id="player-reference" controls preload="metadata" '
        f'src="{base}/listen/reference.wav?{work}"></audio></figure>'
        "<figure><figcaption>B: upload excerpt, brought back to the reference "
        f"(played at x{1 / m.tempo_ratio:.3f} speed, shifted {-m.pitch_shift_semitones:+.2f} st)"
        "</figcaption>"
        f'<audio id="player-upload" controls preload="metadata" '
        f'src="{base}/listen/upload.wav?{work}"></audio></figure></div>'
        '<p class="muted">Both excerpts cover the same music: the upload\'s is time-stretched '
        "and pitch-shifted by the measured tempo ratio and semitones, so the two play at the "
        "same speed and in the same key.</p></section>"
    )


def _decision_form(
    upload_id: int, chosen: Match | None, matches: Sequence[Match], csrf: str
) -> str:
    if not matches:
        return ""
    selected = chosen.work_id if chosen else None
    works = "".join(
        f'<option value="{m.work_id}"{" selected" if m.work_id == selected else ""}>'
        f"work {m.work_id}: {_e(m.title or Path(m.path).name)}</option>"
        for m in matches
    )
    choices = "".join(
        f'<label class="choice"><input type="radio" name="decision" value="{label}" '
        f'id="decision-{label}" required> {DECISION_TEXT[label]}</label>'
        for label in REVIEW_LABELS
    )
    return (
        '<section class="detail" id="decide"><h3>Decision</h3>'
        f'<form method="post" action="/review/uploads/{upload_id}/decision">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
        f'<label>compared with <select name="work_id" id="decision-work">{works}</select></label>'
        f'<div class="choices">{choices}</div>'
        '<label for="note">note</label><br>'
        '<textarea id="note" name="note" rows="3" cols="70" maxlength="4000"></textarea><br>'
        '<button type="submit" id="decision-submit">Record decision</button></form></section>'
    )


def _history(history: Sequence[ReviewDecision]) -> str:
    if not history:
        return '<p class="muted" id="history-empty">No decision yet.</p>'
    rows = "".join(
        "<tr>"
        f"<td>{_e(d.decided_at[:19].replace('T', ' '))}</td>"
        f"<td>{_e(DECISION_TEXT[d.decision])}</td><td>work {d.work_id}</td>"
        f"<td>{_e(d.reviewer)}</td><td>{_e(d.note)}</td></tr>"
        for d in reversed(history)
    )
    return (
        '<h3>Decisions</h3><p class="muted">The latest is in force; earlier ones are kept.</p>'
        '<div class="scroll"><table id="history"><thead><tr><th>decided (UTC)</th>'
        "<th>decision</th><th>against</th><th>reviewer</th><th>note</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )


def page(title: str, nonce: str, body: str, *, reviewer: str | None, csrf: str | None) -> str:
    who = ""
    if reviewer is not None and csrf is not None:
        who = (
            f'<form class="who" method="post" action="/review/logout">signed in as '
            f'<b id="reviewer">{_e(reviewer)}</b> <input type="hidden" name="csrf" '
            f'value="{_e(csrf)}"><button type="submit">Sign out</button></form>'
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<title>{_e(title)}</title><style nonce="{_e(nonce)}">{_CSS}{_REVIEW_CSS}</style>'
        f"</head>\n<body><header>{who}<h1>{_e(title)}</h1></header>\n<main>\n{body}\n</main>"
        "</body></html>\n"
    )


def _attr(text: str) -> str:
    """User text as a form field's value: escaped for HTML only, so the form sends it back."""
    return html.escape(text, quote=True)


def _uploader_link(uploader: str | None) -> str:
    """An uploader shown escaped, linked to the queue filtered by exactly that uploader (also
    one a form field cannot hold, such as a name with a newline)."""
    if not uploader:
        return ""
    return f'<a href="/review?{_attr(urlencode({"uploader": uploader}))}">{_e(uploader)}</a>'


def _query(filters: QueueFilter, **extra) -> str:
    values = {
        "verdict": filters.verdict,
        "uploader": filters.uploader,
        "since": filters.since,
        "until": filters.until,
        "undecided": "1" if filters.undecided else "",
        **{k: str(v) for k, v in extra.items()},
    }
    return urlencode({k: v for k, v in values.items() if v})


_REVIEW_CSS = """
.who{float:right;color:#c7cbd4;margin:0}.who button{margin-left:8px}
.filters{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px 14px;margin:12px 0}
.filters label{margin-right:10px}.narrow{max-width:720px}
.facts th{background:#eef1f5;text-align:left}.choices{margin:8px 0}.choice{margin-right:16px}
.notice{background:#dff3e4;border:1px solid #9fd3ae;padding:6px 10px;border-radius:6px}
.error-text{color:#a3201b;font-weight:600}
.decided-copy{background:#fde2e1;color:#a3201b}.decided-not_a_copy{background:#dff3e4;
color:#1e6b34}.decided-escalate{background:#fff1cc;color:#7a5800}
"""
