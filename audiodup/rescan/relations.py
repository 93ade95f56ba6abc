"""Which of two related works is the original side, and what their relation is (pure).

Originality: a work with a ``reference`` upload is the source; otherwise the work with the
earlier *dated* upload. An undated upload never beats a dated one (the decision says so in a
caveat); two references are ordered by their dates (with a caveat); anything else (no dates,
the same earliest date) is *undetermined*, and an undetermined direction never yields an
accusation.

The kind of a pair follows from the shares of each work that the other explains
(:attr:`Pair.covered_share`) and ``copy_min_share``:

* each mostly the other: one recording. ``copy_of`` from the later side to the original side,
  or ``same_recording`` when undetermined; either way one cluster.
* one mostly contained in the other: a trimmed copy (``copy_of``) when the longer one is the
  original side, but the longer one ``contains_excerpt_of`` the shorter when the shorter is the
  original side (a medley of a whole short track); ``overlap`` when undetermined.
* neither: ``contains_excerpt_of`` from the later side, ``overlap`` when undetermined.

Clusters are the connected components over ``copy_of`` and ``same_recording`` links, built in
two steps so that no excerpt can merge two originals: first the works that are mostly each
other (pairs of one aligned stretch before those of several, then the strongest first); then
each such group is attached to at most one longer group that is its original side and mostly
contains it (the strongest containment first). Excerpts and overlaps never merge. In both steps
a work joins only if what the pair lines up of it is mostly its group's recording
(:class:`_Recordings`), so two medleys of the same two tracks never join the tracks.

A work in a group takes the group's originality only for what the group's works hold: between
two groups, the longer side is dated by its members whose pairs with it line up the seconds it
shares with the other side (:func:`holders_first`). Works that are mostly each other can still
differ in the rest: a medley mostly made of one track is that track's copy, and the other track
it quotes was not first uploaded when that track was.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations

from ..owners import Originality, same_time, upload_date, work_originality  # noqa: F401  (re-exported)
from ..results import UploadInfo, cancelled_by_the_mix, heard_in, listed_text
from .clusters import merged_spans, sections_of
from .clusters import spans_length as _length
from .clusters import spans_on as _spans_on
from .clusters import spans_outside as _outside
from .clusters import spans_within as _intersection
from .results import Link, LinkKind, Pair


def earliest(group: Iterable[Originality]) -> Originality:
    """The earliest of several works' originalities (ties: the lowest work id)."""
    return min(group, key=lambda o: (o.order(), o.work_id))


@dataclass(frozen=True)
class Direction:
    """The outcome of comparing two sides: ``source`` is the original side's work id (None when
    undetermined), ``reason`` says why, ``caveats`` what the decision did not rest on."""

    source: int | None
    reason: str
    caveats: tuple[str, ...] = ()


def decide_direction(a: Originality, b: Originality, a_name: str, b_name: str) -> Direction:
    """Which of two sides is the original. ``a_name``/``b_name`` name the sides in the text
    (``work 3`` or ``work 3's cluster``)."""
    if (recorded := _recorded_first(a, b, a_name, b_name)) is not None:
        return recorded
    if _same_time(a, b):
        if a.reference and b.reference:
            why = (
                f"both {a_name} and {b_name} are references registered at {a.first_text}"
                if a.first is not None
                else f"both {a_name} and {b_name} are references without an upload date"
            )
        elif a.first is None:
            why = f"neither {a_name} nor {b_name} has a reference or an upload date"
        elif a.first_is_day or b.first_is_day:
            days = sorted({o.first_text for o in (a, b) if o.first_is_day})
            why = f"{a_name} and {b_name} were first uploaded on the same day ({days[0]})"
        else:
            why = f"{a_name} and {b_name} were first uploaded at the same time ({a.first_text})"
        return Direction(None, f"undetermined: {why}")
    (first, first_name), (later, later_name) = sorted(
        ((a, a_name), (b, b_name)), key=lambda side: side[0].order()
    )
    caveats = []
    if first.reference and not later.reference:
        reason = f"{first_name} has a reference upload"
    elif first.reference:
        reason = f"{first_name} is the earlier registered reference ({first.first_text})"
        caveats.append(
            f"both are references: {later_name} was registered later"
            + (f" ({later.first_text})" if later.first_text else " (no date)")
        )
    else:
        reason = f"{first_name} was uploaded first ({first.first_text})"
    if later.first is None and not (first.reference and not later.reference):
        caveats.append(
            f"{later_name} has no upload date: an undated upload never counts as the first"
        )
    return Direction(first.work_id, reason, tuple(caveats))


def _recorded_first(a: Originality, b: Originality, a_name: str, b_name: str) -> Direction | None:
    """The direction when a side the dates put second holds an undated upload recorded before
    the other side's first date: uploaded no later than it was recorded, it came first (a
    review: a catalog added without dates, then a re-encode of one of its works uploaded
    through the service, dated by its arrival, made the catalog's owner the copier). Both
    sides holding undated uploads recorded before that date: undetermined. None: the dates
    decide."""
    if a.reference != b.reference:
        return None
    dated = [side for side in ((a, a_name), (b, b_name)) if side[0].first is not None]
    if not dated:
        return None
    (first, first_name) = min(dated, key=lambda side: side[0].first)
    (other, other_name) = (b, b_name) if first is a else (a, a_name)
    if other.undated_recorded is None or not other.undated_recorded < first.first:
        return None
    when = f"{other.undated_recorded.isoformat(timespec='seconds')}"
    if first.undated_recorded is not None and first.undated_recorded < first.first:
        return Direction(
            None,
            f"undetermined: {a_name} and {b_name} both hold uploads recorded without a date "
            f"before {first_name}'s first date ({first.first_text})",
        )
    reason = (
        f"{other_name} was recorded (undated) at {when}, before {first_name}'s first upload "
        f"date ({first.first_text})"
    )
    return Direction(other.work_id, reason)


def _same_time(a: Originality, b: Originality) -> bool:
    """Whether neither side can be told first: the same place in the order, or first dates a
    day apart at most where the earlier is a day (:func:`~audiodup.owners.same_time`)."""
    if a.order() == b.order():
        return True
    if a.reference != b.reference or a.first is None or b.first is None:
        return False
    early, late = sorted((a, b), key=lambda o: o.first)
    return same_time(early.first, early.first_text, late.first)


def link_kind(derived_share: float, source_share: float, determined: bool, min_share: float):
    """The kind of a pair's link: see the module docstring."""
    derived_mostly = derived_share >= min_share
    if determined:
        return "copy_of" if derived_mostly else "contains_excerpt_of"
    return "same_recording" if derived_mostly and source_share >= min_share else "overlap"


class _Groups:
    """Union-find over work ids; ``join(child, parent)`` keeps ``parent``'s root."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.size: dict[int, int] = {}

    def find(self, w: int) -> int:
        if w not in self.parent:
            self.parent[w], self.size[w] = w, 1
        while self.parent[w] != w:
            self.parent[w] = self.parent[self.parent[w]]
            w = self.parent[w]
        return w

    def size_of(self, w: int) -> int:
        """How many works ``w``'s group holds."""
        return self.size[self.find(w)]

    def join(self, child: int, parent: int) -> None:
        child_root, parent_root = self.find(child), self.find(parent)
        if child_root != parent_root:
            self.parent[child_root] = parent_root
            self.size[parent_root] += self.size.pop(child_root)


def relate(
    pairs: tuple[Pair, ...],
    uploads_by_work: dict[int, list[UploadInfo]],
    min_share: float,
    durations: dict[int, float],
    doubts: Doubts | None = None,
) -> tuple[Link, ...]:
    """One typed link per duplicate pair: copies first, then same recordings, excerpts and
    overlaps. Links with ``clustered`` set join their works into one cluster. ``doubts`` (from
    the suspect pairs, which never make a link) can only leave a direction undetermined."""
    works = sorted({w for p in pairs for w in p.work_ids})
    own = {w: work_originality(w, uploads_by_work.get(w, ())) for w in works}
    doubts = doubts or Doubts((), uploads_by_work)
    pair_of = {frozenset(pair.work_ids): pair for pair in pairs}
    groups = _Groups()
    for w in works:
        groups.find(w)
    # step 1: works that are mostly each other are one recording, whatever came first, unless
    # what they share is not the recording their groups hold (two medleys of the same tracks);
    # one aligned stretch first, so that a medley's groups are known before it meets another
    mostly_each_other = sorted(
        (p for p in pairs if min(p.covered_share) >= min_share),
        key=lambda p: (
            len(sections_of(p.evidence)) > 1,  # pieces at several alignments (a medley) last
            -min(p.covered_share),
            -p.evidence.score,
            p.work_ids,
        ),
    )
    recording = _Recordings(durations, min_share, pairs, own)
    mixes = _Mixes(pairs, doubts, own, min_share)
    apart: set[tuple[int, int]] = set()
    for pair in mostly_each_other:
        a, b = pair.work_ids
        if groups.find(a) == groups.find(b):
            continue
        if mixes.reason(pair) or not recording.agrees(pair):
            apart.add(pair.work_ids)
            continue
        recording.join(pair, groups)
        groups.join(b, a)
    same_recording = {w: groups.find(w) for w in works}  # step-1 group of each work
    step1 = _first_by_group(same_recording, own)
    step1_members = _members(same_recording)
    doubts.set_groups(same_recording, step1)

    # step 2: a group mostly contained in a longer one that is its original side is a trimmed
    # copy of it; each group is attached to one container at most (the strongest containment)
    contained = [
        p
        for p in pairs
        if (p.share_of(p.work_ids[0]) >= min_share) != (p.share_of(p.work_ids[1]) >= min_share)
    ]
    contained.sort(key=lambda p: (-max(p.covered_share), -p.evidence.score, p.work_ids))
    attached: dict[int, int] = {}  # step-1 root of an attached group -> the work it was attached to
    decided: dict[tuple[int, int], Direction] = {}
    for pair in contained:
        inner = next(w for w in pair.work_ids if pair.share_of(w) >= min_share)
        outer = pair.other(inner)
        inner_root, outer_root = same_recording[inner], same_recording[outer]
        if inner_root == outer_root or groups.find(inner) == groups.find(outer):
            continue
        if mixes.reason(pair) or not (
            recording.contained(pair, inner) and recording.holds(outer, _spans_on(pair, outer))
        ):
            apart.add(pair.work_ids)
            continue
        outer_first = holders_first(
            outer, inner, step1_members[outer_root], pair_of, own, recording
        )
        direction = _between_groups(inner, outer, step1[inner_root], outer_first)
        if direction.source != outer:
            continue
        if inner_root in attached:
            decided[pair.work_ids] = Direction(
                outer,
                direction.reason,
                direction.caveats
                + (
                    f"not clustered with work {outer}: work {inner} is already clustered with "
                    f"work {attached[inner_root]}, which contains more of it",
                ),
            )
            continue
        attached[inner_root] = outer
        decided[pair.work_ids] = direction
        groups.join(inner, outer)
        recording.attach(pair, inner, outer_first)
    final = {w: groups.find(w) for w in works}
    first = _first_by_group(final, own)
    final_members = _members(final)
    doubts.set_groups(final, first)
    links = []
    for pair in pairs:
        a, b = pair.work_ids
        if pair.work_ids in decided:
            direction = decided[pair.work_ids]
        elif mixes.reason(pair) and final[a] != final[b]:
            direction = Direction(None, f"undetermined: {mixes.reason(pair)}")
        elif final[a] == final[b] and first[final[a]].work_id not in (a, b):
            # two copies of one original: each takes its originality, neither is the source
            original = first[final[a]].work_id
            direction = Direction(
                None,
                f"undetermined: works {a} and {b} are both copies in the cluster of work "
                f"{original}",
            )
        elif final[a] == final[b]:
            direction = decide_direction(own[a], own[b], f"work {a}", f"work {b}")
            if direction.source is not None:
                direction = doubts.doubt(pair, direction, own[direction.source]) or direction
        else:
            first_a = holders_first(a, b, final_members[final[a]], pair_of, own, recording)
            first_b = holders_first(b, a, final_members[final[b]], pair_of, own, recording)
            direction = _between_clusters(a, b, own, first_a, first_b)
            source_first = first_a if direction.source == a else first_b
            direction = (
                doubts.doubt(pair, direction, source_first)
                or doubts.own_material(pair, direction, source_first)
                or direction
            )
        # a mix's direction says why it was kept apart
        kept_apart = pair.work_ids in apart and not mixes.reason(pair)
        why_apart = _NOT_ONE_RECORDING.format(a=a, b=b) if kept_apart else None
        links.append(_link(pair, direction, min_share, final[a] == final[b], why_apart))
    order = {"copy_of": 0, "same_recording": 1, "contains_excerpt_of": 2, "overlap": 3}
    links.sort(key=lambda link: (order[link.kind], link.source_work_id, link.work_id))
    return tuple(links)


class Doubts:
    """What the suspect pairs and the uploaders leave in doubt, so that an owner's re-upload
    never becomes a copy of a thief's because the match of the owner's own earlier upload was
    weak: a link's direction (:meth:`doubt`, :meth:`own_material`) and a cluster member's count
    as a copy (:meth:`in_cluster`). A doubt needs a work its uploader provably uploaded first
    (:meth:`_theirs_first`), before the source side; a reference is never doubted."""

    def __init__(self, suspects: tuple[Pair, ...], uploads_by_work: dict) -> None:
        self.group_first: dict[int, Originality] = {}
        self.partners: dict[int, list[tuple[int, Pair]]] = {}
        self.uploads_by_work = uploads_by_work
        self.uploaders = {
            w: {u.uploader for u in ups if u.uploader} for w, ups in uploads_by_work.items()
        }
        for pair in suspects:
            for w in pair.work_ids:
                self.partners.setdefault(w, []).append((pair.other(w), pair))

    def uploader_of(self, work: int, upload_id: int | None) -> str | None:
        return next(
            (u.uploader for u in self.uploads_by_work.get(work, ()) if u.upload_id == upload_id),
            None,
        )

    def set_groups(self, root_of: dict[int, int], first: dict[int, Originality]) -> None:
        """The groups the works are in (each root's earliest originality): a work that is a
        copy in another's group is nobody's earlier upload of its own."""
        self.group_first = {w: first[root] for w, root in root_of.items()}

    def _theirs_first(self, work: int, uploaders: set[str]) -> Originality | None:
        """``work``'s originality when ``uploaders`` uploaded it first, else None: the upload
        that gives it is theirs, no upload of it by anyone else is undated (that one might be
        earlier), and it is no copy in a group whose earliest upload is another's (an altered
        copy of someone's track is no earlier upload of one's own)."""
        ups = self.uploads_by_work.get(work, ())
        origin = work_originality(work, ups)
        if self.uploader_of(work, origin.upload_id) not in uploaders:
            return None
        if any(u.uploader not in uploaders and upload_date(u) is None for u in ups):
            return None
        group = self.group_first.get(work, origin)
        theirs = self.uploader_of(group.work_id, group.upload_id) in uploaders
        return origin if group.work_id == work or theirs else None

    def own_material(
        self, pair: Pair, direction: Direction, source_first: Originality
    ) -> Direction | None:
        """The undetermined direction when the upload that dated the source side
        (``source_first``, of another work of its cluster) is one of the derived work's
        uploader: what they share was theirs first (an owner's re-upload and a thief's trim of
        the owner's original), or None."""
        if direction.source is None or source_first.work_id == direction.source:
            return None
        derived = pair.other(direction.source)
        dating = self.uploader_of(source_first.work_id, source_first.upload_id)
        if dating is None or dating not in self.uploaders.get(derived, set()):
            return None
        return Direction(
            None,
            f"undetermined: {direction.reason}, and work {source_first.work_id} is uploaded by "
            f"{_names({dating})} too: what work {derived} shares was theirs first",
            direction.caveats,
        )

    def in_cluster(self, work_ids: list[int], original_work: int) -> dict[str, str]:
        """The uploaders whose uploads in a cluster of ``work_ids`` are not to be counted as
        copies of its original, each with why: they uploaded first another work, before that
        original, whose suspect match lines up most of one of their works in the cluster (the
        owner's remaster found with a thief's earlier trim, the owner's first upload matched
        only weakly). Only their uploads: the original and everybody else's stand."""
        first = work_originality(original_work, self.uploads_by_work.get(original_work, ()))
        if first.reference:
            return {}  # a reference names the owner
        owner = self.uploader_of(original_work, first.upload_id)
        inside = set(work_ids)
        doubted: dict[str, str] = {}
        for m in work_ids:
            for w, suspect in self.partners.get(m, ()):
                if w in inside or suspect.share_of(m) < 0.5:
                    continue
                for uploader in sorted(self.uploaders.get(m, set()) - {owner} - set(doubted)):
                    earlier = self._theirs_first(w, {uploader})
                    if earlier is not None and earlier.order() < first.order():
                        doubted[uploader] = (
                            f"{_names({uploader})}'s uploads are not counted as copies: they "
                            f"uploaded work {w} first ({_when(earlier)}), and its suspect match "
                            f"lines up {100 * suspect.share_of(m):.0f} % of work {m}"
                        )
        return doubted

    def doubt(
        self, pair: Pair, direction: Direction, source_first: Originality
    ) -> Direction | None:
        """The undetermined direction that replaces ``direction``, or None when nothing
        doubts it. ``source_first`` is the originality that dated the source side."""
        if direction.source is None or source_first.reference:
            return None
        derived = pair.other(direction.source)
        mine = self.uploaders.get(derived, set())
        if self.uploader_of(source_first.work_id, source_first.upload_id) in mine:
            return None  # one uploader's own works: nobody is accused
        shared = _spans_on(pair, derived)
        for w, suspect in self.partners.get(derived, ()):
            earlier = self._theirs_first(w, mine)
            if w == direction.source or earlier is None:
                continue
            if earlier.order() < source_first.order() and _holds(suspect, derived, shared):
                who = self.uploader_of(w, earlier.upload_id)
                return Direction(
                    None,
                    f"undetermined: {direction.reason}, but {_names({who})} uploaded work {w} "
                    f"first ({_when(earlier)}) and work {derived} too, and work {w}'s suspect "
                    f"match with work {derived} lines up what work {derived} shares",
                    direction.caveats,
                )
        return None


def _when(first: Originality) -> str:
    return "a reference" if first.reference else first.first_text or "undated"


def _names(uploaders: set[str | None]) -> str:
    return ", ".join(listed_text(u or "") for u in sorted(uploaders, key=str))


Spans = list[tuple[float, float]]


class _Recordings:
    """Which seconds of each work hold its group's recording (``None``: all of it, or unknown),
    as steps 1 and 2 join works. A work joins another's group only if what their pair lines up
    of it is mostly its own group's recording: a medley of tracks S and T is mostly each other
    with another medley of S and T, but if the first is in S's group and the second in T's,
    joining them would make S and T one recording."""

    def __init__(
        self,
        durations: dict[int, float],
        min_share: float,
        pairs: tuple[Pair, ...],
        own: dict[int, Originality],
    ) -> None:
        self.durations = durations
        self.min_share = min_share
        self.own = own
        self.first: dict[int, Originality] = {}  # each group's earliest work, by its root
        self.held: dict[int, Spans | None] = {}
        # per work, the seconds that each work it is not mostly one recording with, and known
        # to be earlier, lines up (a ringtone or a medley quoting it, later, undated or of the
        # same day, is no other recording in it)
        self.quoted: dict[int, list[Spans]] = {}
        for pair in pairs:
            for w in pair.work_ids:
                other = own[pair.other(w)]
                earlier = (other.first is not None or other.reference) and (
                    other.order() < own[w].order()
                )
                if pair.share_of(w) < min_share and earlier:
                    self.quoted.setdefault(w, []).append(_spans_on(pair, w))

    def agrees(self, pair: Pair) -> bool:
        """Whether what ``pair`` lines up of each side is mostly that side's recording."""
        a, b = pair.work_ids
        return self.contained(pair, a) and self.contained(pair, b)

    def contained(self, pair: Pair, work: int) -> bool:
        """Whether ``work``'s share of its group's recording that ``pair`` lines up is at least
        the minimum: ``work``'s share, scaled by the part of the pair's seconds on ``work``
        that lie in the recording, over the recording's seconds."""
        lined = _spans_on(pair, work)
        held = self.held.get(work)
        if held is None or not lined:
            return pair.share_of(work) >= self.min_share
        inside = _length(_intersection(lined, held)) / _length(lined)
        share = pair.share_of(work) * self.durations[work] * inside / max(_length(held), 1e-9)
        return share >= self.min_share

    def holds(self, work: int, spans: Spans) -> bool:
        """Whether at least half of ``spans`` of ``work`` lie in its group's recording (or that
        is unknown)."""
        held = self.held.get(work)
        return held is None or _half_inside(spans, held)

    def join(self, pair: Pair, groups: _Groups) -> None:
        """Record what the newly joined works hold: a work joining a group holds what the pair
        carries of the group's recording (both works when neither had a group yet), unless it
        is earlier than the group's earliest work: an original holds all of its recording,
        whatever later copies hold of it."""
        a, b = pair.work_ids
        first = {w: self.first.get(groups.find(w), self.own[w]) for w in (a, b)}
        for x, y in ((a, b), (b, a)):
            if groups.size_of(y) == 1:
                earlier = self.own[y].order() < first[x].order()
                self.held[y] = None if earlier else self._carried_if_complete(pair, x, y)
        self.first[groups.find(a)] = earliest(first.values())  # a's root stays the root

    def attach(self, pair: Pair, inner: int, outer_first: Originality) -> None:
        """Record what ``inner``, attached in step 2 to the group of the pair's other work
        (whose earliest work is ``outer_first``), holds of that group's recording, when nothing
        narrowed it before and it is not earlier than that work."""
        if self.held.get(inner) is None and self.own[inner].order() >= outer_first.order():
            self.held[inner] = self._carried_if_complete(pair, pair.other(inner), inner)

    def _carried_if_complete(self, pair: Pair, x: int, y: int) -> Spans | None:
        """What ``pair`` carries of ``x``'s recording into ``y``, when the rest of ``y`` is
        mostly another recording's: works it is not mostly one recording with line up at least
        half of that rest, each almost only there (a medley's other track, a padded copy's
        pad). ``None`` (all of ``y``) otherwise: the rest of an original beyond a trimmed copy
        of it is still that recording, and another trim of it lines up part of both. ``None``
        (unknown) as well when the pair's evidence lines up clearly less of ``y`` than its
        share says (a partial line)."""
        duration = self.durations[y]
        if _length(_spans_on(pair, y)) < 0.8 * pair.share_of(y) * duration:
            return None
        carried = _carry(pair, x, self.held.get(x))
        rest = _outside(carried, duration)
        foreign = [
            (lo, hi)
            for spans in self.quoted.get(y, ())
            if _length(_intersection(spans, rest)) >= 0.8 * _length(spans)
            for lo, hi in _intersection(spans, rest)
        ]
        other = _length(merged_spans(foreign))
        return carried if rest and other >= 0.5 * _length(rest) else None


# within these a copy's pair is all but always found: two works this close through a third that
# both line up, with no pair of their own, are two recordings
_MIX_MAX_LOG_TEMPO = math.log(1.25)
_MIX_MAX_SEMITONES = 3.0


class _Mixes:
    """Works that mix two recordings over the same seconds (a mashup playing both at once).
    Such a work is mostly each of them, so joining it to both made them one recording, and the
    later one's owner a copier of the earlier one.

    A work mixes two others when each lines up most of it, over the same seconds; they have no
    pair, not even a suspect one, although the transform between them through it is one
    screening finds copies at; nothing else makes them one recording (no chain of pairs of
    works that are mostly each other joins them without a mix); and neither recording was first
    uploaded after it (the earliest work of each is a reference, dated before it or on the same
    day; an undated work may be later than any), and they are not known to be one uploader's
    (a label's stems and their full mix: joining them accuses nobody). A later copy of a track
    lines up the mix as well as the track: it stands for the track's recording, and its
    earliest work for the uploader. An original copied twice is dated before its copies, and
    the middle of a chain of copies before its end, so a missed pair between two copies of one
    recording makes neither a mix.

    A mix joins no cluster through its pairs, and neither does a copy of it (a work that is
    mostly it and it mostly the work, of neither part's recording): joined to one part, or to
    another copy, its date would stand for what it holds of the other. The direction of their
    links with other clusters' works is undetermined: a missed pair can still make a copy look
    like a mix, and nobody is accused through it."""

    def __init__(
        self,
        pairs: tuple[Pair, ...],
        doubts: Doubts,
        own: dict[int, Originality],
        min_share: float,
    ) -> None:
        held: dict[int, list[Pair]] = {}  # per work, the pairs that line up most of it
        for pair in pairs:
            for w in pair.work_ids:
                if pair.share_of(w) >= min_share:
                    held.setdefault(w, []).append(pair)
        related = {frozenset(p.work_ids) for p in pairs} | {
            frozenset((w, o)) for w, found in doubts.partners.items() for o, _ in found
        }
        # works two others line up over the same seconds, those two unrelated (dates aside)
        possible: dict[int, list[tuple[int, int]]] = {}
        for mix, mine in sorted(held.items()):
            for x, y in combinations(mine, 2):
                parts = x.other(mix), y.other(mix)
                if frozenset(parts) not in related and _mixed(mix, x, y):
                    possible.setdefault(mix, []).append(parts)
        # a part's recording: what it is one recording with, the possible mixes left out
        recordings = _joined(held, possible)
        first_work: dict[int, int] = {}  # each recording's earliest work
        for w in own:
            root = recordings.find(w)
            if root not in first_work or own[w].order() < own[first_work[root]].order():
                first_work[root] = w

        def first_of(part: int) -> Originality:
            return own[first_work[recordings.find(part)]]

        def before(part: int, mix: int) -> bool:
            return first_of(part).order() <= own[mix].order()

        def owner(part: int) -> str | None:
            first = first_of(part)
            return doubts.uploader_of(first.work_id, first.upload_id)

        def others(a: int, b: int) -> bool:
            """Whether two parts' recordings are not known to be one uploader's (a label's
            stems and their mix: joining them accuses nobody)."""
            return owner(a) is None or owner(a) != owner(b)

        candidates = {
            mix: [(a, b) for a, b in found if before(a, mix) and before(b, mix) and others(a, b)]
            for mix, found in possible.items()
        }
        candidates = {mix: found for mix, found in candidates.items() if found}
        joined = _joined(held, candidates)  # what clusters could join without the candidates
        apart = {
            mix: [(a, b) for a, b in found if joined.find(a) != joined.find(b)]
            for mix, found in candidates.items()
        }
        self.parts = {mix: found[0] for mix, found in apart.items() if found}  # two of its parts
        # a copy of a mix (a re-post) holds both recordings as the mix does: it joins nothing
        # either (joined to one of them, its date would stand for the other's recording)
        self.copied: dict[int, int] = {}  # a copy of a mix -> the mix
        for mix in self.parts:
            recorded = {recordings.find(w) for parts in apart[mix] for w in parts}
            for pair in held[mix]:
                other = pair.other(mix)
                if (
                    pair in held.get(other, ())
                    and other not in self.parts
                    and recordings.find(other) not in recorded
                ):
                    self.copied.setdefault(other, mix)

    def reason(self, pair: Pair) -> str | None:
        """Why ``pair`` joins no cluster, when one of its works is a mix. Not even a copy of
        the mix joins it: with pairs missed, what looks like a copy of a mix can be an
        owner's own track (measured by ``benchmarks.rescan_fuzz --missed``)."""
        work = next((w for w in pair.work_ids if w in self.parts or w in self.copied), None)
        if work is None:
            return None
        mix = self.copied.get(work, work)
        a, b = self.parts[mix]
        copy = f"work {work} is a copy of work {mix}, which " if work != mix else f"work {mix} "
        return (
            f"{copy}plays works {a} and {b} over the same seconds, and they do not match each "
            "other: it mixes two recordings and joins no cluster, and which of it and another "
            "work came first is not decided through it"
        )


def _joined(held: dict[int, list[Pair]], leaving_out: dict[int, list]) -> _Groups:
    """The works that the pairs of ``held`` whose works are mostly each other join (one
    recording: a medley holds two and is mostly neither), leaving out the pairs that touch
    ``leaving_out``."""
    groups = _Groups()
    for w, pairs_of in held.items():
        for pair in pairs_of:
            other = pair.other(w)
            if pair in held.get(other, ()) and w not in leaving_out and other not in leaving_out:
                groups.join(w, other)
    return groups


def _mixed(mix: int, x: Pair, y: Pair) -> bool:
    """Whether the other works of ``x`` and ``y`` line up the same seconds of ``mix`` and a
    transform screening finds copies at lies between them."""
    on_x, on_y = _spans_on(x, mix), _spans_on(y, mix)
    if not (_half_inside(on_x, on_y) or _half_inside(on_y, on_x)):  # half of the shorter
        return False
    (tempo_x, pitch_x), (tempo_y, pitch_y) = (
        _transform(x, x.other(mix)),
        _transform(y, y.other(mix)),
    )
    return (
        abs(math.log(tempo_x / tempo_y)) <= _MIX_MAX_LOG_TEMPO
        and abs(pitch_x - pitch_y) <= _MIX_MAX_SEMITONES
    )


def _carry(pair: Pair, x: int, spans: Spans | None) -> Spans:
    """The seconds of the pair's other work that line up with ``spans`` of ``x`` (``None``:
    everything of ``x`` the pair lines up), merged."""
    on_query = pair.query_work_id == x
    out = []
    for s in sections_of(pair.evidence):
        x0, x1, y0, y1 = (
            (s.query_start_s, s.query_end_s, s.ref_start_s, s.ref_end_s)
            if on_query
            else (s.ref_start_s, s.ref_end_s, s.query_start_s, s.query_end_s)
        )
        if x1 <= x0:
            continue
        scale = (y1 - y0) / (x1 - x0)
        for lo, hi in [(x0, x1)] if spans is None else spans:
            lo, hi = max(lo, x0), min(hi, x1)
            if hi > lo:
                ends = (y0 + (lo - x0) * scale, y0 + (hi - x0) * scale)
                out.append((min(ends), max(ends)))
    return merged_spans(out)


def _half_inside(spans: Spans, within: Spans) -> bool:
    """Whether at least half of the seconds of ``spans`` lie in ``within``."""
    return _length(_intersection(spans, within)) >= 0.5 * _length(spans)


def holders_first(
    work: int,
    other: int,
    group: list[int],
    pair_of: dict[frozenset, Pair],
    own: dict[int, Originality],
    recording: _Recordings | None = None,
) -> Originality:
    """The earliest originality among the works of ``work``'s ``group`` that hold
    what ``work`` shares with ``other``. A member whose own pair with ``work`` lines up with
    less than half of those seconds of ``work`` does not: it is no evidence of when that
    material was first uploaded (a medley mostly of one track also quotes another). A member
    without such a pair takes the group's part, as a copy takes its cluster's date, unless
    those seconds lie mostly outside what ``recording`` says the group holds of ``work``."""
    shared = _spans_on(pair_of[frozenset((work, other))], work)
    group_holds = recording is None or recording.holds(work, shared)
    holders = [
        own[w]
        for w in group
        if w == work or _holds(pair_of.get(frozenset((w, work))), work, shared, group_holds)
    ]
    return earliest(holders)


def _holds(pair: Pair | None, work: int, shared: Spans, unpaired: bool = True) -> bool:
    """Whether ``pair`` lines up at least half of the ``shared`` seconds of ``work``
    (``unpaired`` when there is no pair)."""
    return unpaired if pair is None else _half_inside(shared, _spans_on(pair, work))


def _members(root_of: dict[int, int]) -> dict[int, list[int]]:
    """Each group's works, by the group's root."""
    members: dict[int, list[int]] = {}
    for w, root in root_of.items():
        members.setdefault(root, []).append(w)
    return members


def _first_by_group(root_of: dict[int, int], own: dict[int, Originality]) -> dict:
    """Each group's earliest originality, by the group's root."""
    return {root: earliest(own[w] for w in group) for root, group in _members(root_of).items()}


def _between_groups(a: int, b: int, first_a: Originality, first_b: Originality) -> Direction:
    """The direction between works ``a`` and ``b`` of two different groups, decided by each
    side's earliest work (``first_a``, ``first_b``: a copy takes the originality of the earliest
    work of its group that holds the material, :func:`holders_first`)."""
    direction = decide_direction(first_a, first_b, _side(a, first_a), _side(b, first_b))
    if direction.source is None:
        return direction
    source = a if direction.source == first_a.work_id else b
    return Direction(source, direction.reason, direction.caveats)


def _between_clusters(
    a: int, b: int, own: dict[int, Originality], first_a: Originality, first_b: Originality
) -> Direction:
    """The direction between works ``a`` and ``b`` of two clusters that share an excerpt:
    :func:`_between_groups` by the earliest work of each cluster that holds it (``first_a``,
    ``first_b``: :func:`holders_first`), unless both works are dated (or references) and their
    own order says the other way: then the direction is undetermined and nobody is accused
    through this pair. An undated work's own order says nothing (it never counts as the
    first), so the clusters' order stands."""
    by_clusters = _between_groups(a, b, first_a, first_b)
    if by_clusters.source is None:
        return by_clusters
    by_works = decide_direction(own[a], own[b], f"work {a}", f"work {b}")
    dated = all(o.reference or o.first is not None for o in (own[a], own[b]))
    if not dated or by_works.source in (None, by_clusters.source):
        return by_clusters
    return Direction(
        None,
        f"undetermined: by their clusters {by_clusters.reason}, but by their own uploads "
        f"{by_works.reason}; what they share need not come from the clusters' originals",
    )


def _side(work_id: int, first: Originality) -> str:
    if first.work_id == work_id:
        return f"work {work_id}"
    return f"work {first.work_id} of work {work_id}'s cluster, which holds it too,"


_NOT_ONE_RECORDING = (
    "what works {a} and {b} share is not mostly one recording that both their groups hold (a "
    "medley holds parts of several): they are not clustered together"
)


def _link(
    pair: Pair,
    direction: Direction,
    min_share: float,
    same_cluster: bool,
    kept_apart: str | None = None,
) -> Link:
    """The link of one pair, ``same_cluster`` when its works ended in one cluster;
    ``kept_apart``: why they were not joined (what they share is not their groups' recording,
    :class:`_Recordings`, or one of them mixes two recordings, :class:`_Mixes`)."""
    a, b = pair.work_ids
    if direction.source is not None:
        source, derived = direction.source, pair.other(direction.source)
    else:  # no direction: the work with the larger explained share is named first
        derived, source = (a, b) if pair.share_of(a) >= pair.share_of(b) else (b, a)
    kind: LinkKind = link_kind(
        pair.share_of(derived), pair.share_of(source), direction.source is not None, min_share
    )
    caveats = list(direction.caveats)
    if kind == "overlap":
        apart = "in one cluster" if same_cluster else "their clusters stay apart"
        if pair.share_of(derived) >= min_share:
            caveats.append(
                f"work {derived} is mostly contained in work {source} "
                f"({100 * pair.share_of(derived):.0f} %), but which came first is unknown: "
                f"neither is called a copy of the other ({apart})"
            )
        else:
            caveats.append(
                "the two share an excerpt, but which came first is unknown: neither is called "
                f"a copy of the other ({apart})"
            )
    if kept_apart and not same_cluster:
        caveats.append(kept_apart)
    if pair.evidence.signal != "mix":
        caveats.append(
            f"found{heard_in(pair.evidence.signal)} of work {pair.query_work_id}, which its mix "
            + ("cancels" if cancelled_by_the_mix(pair.evidence.signal) else "drowns")
        )
    tempo, pitch = _transform(pair, derived)
    return Link(
        kind=kind,
        work_id=derived,
        source_work_id=source,
        work_share=pair.share_of(derived),
        source_share=pair.share_of(source),
        tempo_ratio=tempo,
        pitch_shift_semitones=pitch,
        score=pair.evidence.score,
        direction=direction.reason,
        caveats=tuple(caveats),
        clustered=same_cluster and kind in ("copy_of", "same_recording"),
    )


def _transform(pair: Pair, target: int) -> tuple[float, float]:
    """(tempo ratio, pitch shift) of ``target`` relative to the pair's other work."""
    e = pair.evidence
    if pair.query_work_id == target:
        return e.tempo_ratio, e.pitch_shift_semitones
    return 1.0 / e.tempo_ratio, -e.pitch_shift_semitones
