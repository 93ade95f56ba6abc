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
other; then each such group is attached to at most one longer group that is its original side
and mostly contains it (the strongest containment first). Excerpts and overlaps never merge.

A work in a group takes the group's originality only for what the group's works hold: between
two groups, the longer side is dated by its members whose pairs with it line up the seconds it
shares with the other side (:func:`holders_first`). Works that are mostly each other can still
differ in the rest: a medley mostly made of one track is that track's copy, and the other track
it quotes was not first uploaded when that track was.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..owners import Originality, upload_date, work_originality  # noqa: F401  (re-exported)
from ..results import UploadInfo
from .clusters import aligned_spans
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
    if a.order() == b.order():
        if a.reference and b.reference:
            why = (
                f"both {a_name} and {b_name} are references registered at {a.first_text}"
                if a.first is not None
                else f"both {a_name} and {b_name} are references without an upload date"
            )
        elif a.first is None:
            why = f"neither {a_name} nor {b_name} has a reference or an upload date"
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

    def find(self, w: int) -> int:
        self.parent.setdefault(w, w)
        while self.parent[w] != w:
            self.parent[w] = self.parent[self.parent[w]]
            w = self.parent[w]
        return w

    def join(self, child: int, parent: int) -> None:
        self.parent[self.find(child)] = self.find(parent)


def relate(
    pairs: tuple[Pair, ...],
    uploads_by_work: dict[int, list[UploadInfo]],
    min_share: float,
) -> tuple[Link, ...]:
    """One typed link per duplicate pair: copies first, then same recordings, excerpts and
    overlaps. Links with ``clustered`` set join their works into one cluster."""
    works = sorted({w for p in pairs for w in p.work_ids})
    own = {w: work_originality(w, uploads_by_work.get(w, ())) for w in works}
    pair_of = {frozenset(pair.work_ids): pair for pair in pairs}
    groups = _Groups()
    for w in works:
        groups.find(w)
    # step 1: works that are mostly each other are one recording, whatever came first
    for pair in pairs:
        a, b = pair.work_ids
        if pair.share_of(a) >= min_share and pair.share_of(b) >= min_share:
            groups.join(b, a)
    same_recording = {w: groups.find(w) for w in works}  # step-1 group of each work
    step1 = _first_by_group(same_recording, own)
    step1_members = _members(same_recording)

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
        outer_first = holders_first(outer, inner, step1_members[outer_root], pair_of, own)
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
    final = {w: groups.find(w) for w in works}
    first = _first_by_group(final, own)
    final_members = _members(final)
    links = []
    for pair in pairs:
        a, b = pair.work_ids
        if pair.work_ids in decided:
            direction = decided[pair.work_ids]
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
        else:
            direction = _between_clusters(
                a,
                b,
                own,
                holders_first(a, b, final_members[final[a]], pair_of, own),
                holders_first(b, a, final_members[final[b]], pair_of, own),
            )
        links.append(_link(pair, direction, min_share, final[a] == final[b]))
    order = {"copy_of": 0, "same_recording": 1, "contains_excerpt_of": 2, "overlap": 3}
    links.sort(key=lambda link: (order[link.kind], link.source_work_id, link.work_id))
    return tuple(links)


def holders_first(
    work: int,
    other: int,
    group: list[int],
    pair_of: dict[frozenset, Pair],
    own: dict[int, Originality],
) -> Originality:
    """The earliest originality among the works of ``work``'s ``group`` that hold
    what ``work`` shares with ``other``. A member whose own pair with ``work`` lines up with
    less than half of those seconds of ``work`` does not: it is no evidence of when that
    material was first uploaded (a medley mostly of one track also quotes another). A member
    without such a pair takes the group's part, as a copy takes its cluster's date."""
    shared = _spans_on(pair_of[frozenset((work, other))], work)
    holders = [
        own[w]
        for w in group
        if w == work or _holds(pair_of.get(frozenset((w, work))), work, shared)
    ]
    return earliest(holders)


def _holds(pair: Pair | None, work: int, shared: list[tuple[float, float]]) -> bool:
    if pair is None:
        return True
    total = sum(hi - lo for lo, hi in shared)
    covered = sum(
        max(0.0, min(hi, b) - max(lo, a)) for lo, hi in shared for a, b in _spans_on(pair, work)
    )
    return covered >= 0.5 * total


def _spans_on(pair: Pair, work: int) -> list[tuple[float, float]]:
    """The seconds of ``work`` that the pair's evidence lines up, merged."""
    return aligned_spans(pair.evidence, on_query=pair.query_work_id == work)


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


def _link(
    pair: Pair,
    direction: Direction,
    min_share: float,
    same_cluster: bool,
) -> Link:
    """The link of one pair, ``same_cluster`` when its works ended in one cluster."""
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
    if pair.evidence.signal == "stereo_difference":
        caveats.append(
            f"found in the stereo difference of work {pair.query_work_id}, which its mix cancels"
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
