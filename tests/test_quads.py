"""audiodup.quads: four-peak keys survive tempo and pitch changes, a shard file round-trips and
refuses damage, the look-up ranks the altered work first within its budget, and a catalog
writes, checks, upgrades and compacts its four-peak files."""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from audiodup import Catalog, CatalogError
from audiodup.fingerprint import Fingerprint
from audiodup.hashes import pack_entry_ids, scrambled_work_ids, unpack_entry_ids
from audiodup.peaks import PEAK_DTYPE
from audiodup.quads import (
    ALL_COORDINATES,
    CATALOG_FANOUT,
    LINE_MAX_HITS,
    QUERY_FANOUT,
    QuadHits,
    Quads,
    _as_triplets,
    best_cell_works,
    best_quad_works,
    bucket_bits,
    cell_lead,
    grouped_quads,
    line_hits,
    merged_quad_works,
    quad_file_of,
    quad_hashes,
    quad_hits,
    quad_shard,
    query_quads,
    read_quad_shard,
    shard_budget,
    write_quad_shard,
)
from audiodup.settings import DEFAULT_SETTINGS as S

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "audio"


def random_peaks(seed: int, seconds: float = 60.0, per_second: float = 7.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * per_second)
    peaks = np.zeros(n, PEAK_DTYPE)
    peaks["frame"] = np.sort(rng.integers(0, int(seconds * S.frames_per_second), n))
    peaks["bin"] = rng.integers(40 * 16, 300 * 16, n) / 16  # stored bins are in 1/16
    peaks["strength"] = rng.uniform(1, 20, n)
    return peaks


def altered(peaks: np.ndarray, tempo: float, semitones: float) -> np.ndarray:
    out = peaks.copy()
    out["frame"] = np.round(peaks["frame"] / tempo).astype(np.uint32)
    out["bin"] = peaks["bin"] + semitones * S.bins_per_semitone
    return out


def fingerprint(peaks: np.ndarray) -> Fingerprint:
    return Fingerprint(peaks, np.zeros((0, 12), np.float32), 0.0, 60.0, S.recipe)


def test_quad_keys_survive_a_tempo_change_and_a_pitch_shift() -> None:
    peaks = random_peaks(1)
    stored = set(quad_hashes(peaks, CATALOG_FANOUT).keys.tolist())
    for tempo, semitones in [(1.0, 0.0), (1.25, 0.0), (0.85, -2.0), (1.1, 3.0)]:
        query = quad_hashes(altered(peaks, tempo, semitones), QUERY_FANOUT, S, ALL_COORDINATES)
        kept = len(stored & set(query.keys.tolist())) / len(stored)
        assert kept > (0.99 if tempo == 1.0 else 0.5), (tempo, semitones, kept)
    unrelated = quad_hashes(random_peaks(2), QUERY_FANOUT, S, ALL_COORDINATES)
    assert len(stored & set(unrelated.keys.tolist())) / len(stored) < 0.05


def test_probing_adds_keys_only_near_an_edge() -> None:
    peaks = random_peaks(3)
    plain = quad_hashes(peaks, QUERY_FANOUT, S)
    probed = quad_hashes(peaks, QUERY_FANOUT, S, ALL_COORDINATES)
    assert set(plain.keys.tolist()) <= set(probed.keys.tolist())
    assert len(plain.keys) < len(probed.keys) < 4 * len(plain.keys)
    assert len(quad_hashes(peaks[:3], QUERY_FANOUT, S).keys) == 0


@pytest.fixture(scope="module")
def works() -> dict[int, np.ndarray]:
    works = {work_id: random_peaks(100 + work_id) for work_id in range(1, 41)}
    source = works[23]
    # work 24 starts with 5 s of work 23; work 25 holds all of it twice in 16 shuffled pieces:
    # more hits than work 23's own, fewer in any one alignment
    own = works[24].copy()
    own["frame"] += 220
    works[24] = np.concatenate([source[source["frame"] < 215], own])
    pieces = np.array_split(source, 8)
    shuffled, start = [], 0
    for i in np.random.default_rng(0).permutation(16) % 8:
        piece = pieces[i].copy()
        piece["frame"] = piece["frame"] - piece["frame"][0] + start
        start = int(piece["frame"][-1]) + 5
        shuffled.append(piece)
    works[25] = np.concatenate(shuffled)
    return works


def rows_read(shard, monkeypatch) -> list[int]:
    """The number of entries each of ``shard``'s look-ups reads, recorded."""
    read: list[int] = []
    entries_of = type(shard).entries_of

    def counted(self, asked):
        read.extend(len(rows) for rows, _ in asked)
        return entries_of(self, asked)

    monkeypatch.setattr(type(shard), "entries_of", counted)
    return read


def test_the_altered_work_leads_the_quad_works(works, monkeypatch) -> None:
    shard = quad_shard([(w, fingerprint(p)) for w, p in works.items()], S)
    offsets = shard.offsets.astype(np.int64)
    assert offsets[0] == 0 and offsets[-1] == shard.ntotal and np.all(np.diff(offsets) >= 0)
    upload = query_quads(fingerprint(altered(works[23], 1.2, -1.0)))
    ranked = best_quad_works(shard, upload, S, budget=300_000, top=3)
    assert [v.work_id for v in ranked] == [23, 25, 24]
    assert ranked[0].support > ranked[1].support > ranked[2].support
    # a budget far below the upload's hits keeps its rarest keys, reads no more entries than it
    # allows and still finds the work first
    read = rows_read(shard, monkeypatch)
    small = best_quad_works(shard, upload, S, budget=3000, top=3)
    assert small[0].work_id == 23 and small[0].support < ranked[0].support
    assert 2500 < read[-1] <= 3000
    # a dead work is not a candidate
    alive = best_quad_works(shard, upload, S, 300_000, 3, is_live=lambda w: w != 23)
    assert 23 not in [v.work_id for v in alive]
    unrelated = query_quads(fingerprint(random_peaks(999)))
    assert all(v.support <= 3 for v in best_quad_works(shard, unrelated, S, 300_000, 3))


def test_the_first_votes_carry_the_lead_of_their_fullest_cell(works) -> None:
    """The altered work's vote leads at its tempo and pitch, its anchors on its line; only the
    first ``peak_check_quad_leads`` votes carry a lead, which changes no vote, and a lead does
    not depend on the order the hits came in."""
    shard = quad_shard([(w, fingerprint(p)) for w, p in works.items()], S)
    upload = query_quads(fingerprint(altered(works[23], 1.2, -1.0)))
    one = dataclasses.replace(S, peak_check_quad_leads=1)
    ranked = best_quad_works(shard, upload, one, 300_000, 3)
    lead = ranked[0].lead
    assert ranked[0].work_id == 23
    assert lead.tempo_ratio == pytest.approx(1.2, rel=0.03)
    assert lead.pitch_semitones == pytest.approx(-1.0, abs=0.25)
    assert lead.ref_frame == pytest.approx(1.2 * lead.query_frame, abs=2.0)
    assert [v.lead is not None for v in ranked] == [True, False, False]
    two = best_quad_works(
        shard, upload, dataclasses.replace(S, peak_check_quad_leads=2), 300_000, 3
    )
    assert [v.lead is not None for v in two] == [True, True, False] and two[0] == ranked[0]
    assert S.peak_check_quad_leads >= 3  # by default every vote of the three leads
    every = best_quad_works(shard, upload, S, 300_000, 3)
    assert all(v.lead is not None for v in every) and every[0] == ranked[0]
    unled = best_quad_works(
        shard, upload, dataclasses.replace(S, peak_check_quad_leads=0), 300_000, 3
    )
    assert [v._replace(lead=None) for v in ranked] == unled
    hits = quad_hits(shard, upload, S)
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(hits.work))
        assert cell_lead(hits.rows(order), 23, S) == lead
    assert cell_lead(hits, 10**6, S) is None  # a work without hits


def test_a_copy_at_the_edge_of_a_cell_leads_from_the_grid_that_holds_it(works) -> None:
    """Tempo 0.93 with -1.5 semitones: the lead comes from the cell of another grid that holds
    most of the copy's hits, at the copy's tempo and pitch."""
    shard = quad_shard([(w, fingerprint(p)) for w, p in works.items()], S)
    upload = query_quads(fingerprint(altered(works[23], 0.93, -1.5)))
    lead = best_quad_works(shard, upload, S, 10**6, 1)[0].lead
    assert lead.tempo_ratio == pytest.approx(0.93, rel=0.03)
    assert lead.pitch_semitones == pytest.approx(-1.5, abs=0.25)


def test_a_copy_at_the_edge_of_a_cell_keeps_its_hits_together_on_another_grid(works) -> None:
    """Tempo 0.93 lies near the edge of a 0.05 log-tempo cell and -1.5 semitones on the edge of
    a semitone: on one grid the copy's hits split among neighbouring cells; the grids a third
    of a cell apart hold most of them in one. A copy at the centre of a cell gains nothing, and
    an unrelated upload stays at chance."""
    shard = quad_shard([(w, fingerprint(p)) for w, p in works.items()], S)

    def support(peaks: np.ndarray, grids: int) -> float:
        settings = dataclasses.replace(S, quad_cell_grids=grids)
        ranked = best_quad_works(shard, query_quads(fingerprint(peaks)), settings, 10**6, 1)
        return ranked[0].support if ranked else 0.0

    edge = altered(works[23], 0.93, -1.5)
    assert support(edge, 3) > 2 * support(edge, 1)
    centre = altered(works[23], 1.0, 0.0)
    assert support(centre, 3) == support(centre, 1)
    assert support(random_peaks(999), 3) <= 3


@pytest.mark.parametrize("top", [1, 3, 8])
def test_the_other_grids_leave_out_only_works_that_cannot_reach_the_top(works, top) -> None:
    """The first ``top`` works are those of ranking every work with every hit on every grid."""
    shard = quad_shard([(w, fingerprint(p)) for w, p in works.items()], S)
    mixed = np.concatenate([works[23][:150], works[7][150:300], works[31][300:]])
    for peaks in [altered(works[23], 0.93, -1.5), altered(mixed, 1.1, 0.5), random_peaks(998)]:
        upload = query_quads(fingerprint(peaks))
        every = best_quad_works(shard, upload, S, 10**6, 10**6, rarity_total=shard.ntotal)
        first = best_quad_works(shard, upload, S, 10**6, top, rarity_total=shard.ntotal)
        assert first == every[:top]


def test_shards_split_by_work_propose_what_one_shard_does(works) -> None:
    """Each shard's share of the budget follows its share of the entries, and the merge ranks
    by support then the scramble of the work id: with budgets that take every hit, the split
    equals the whole."""
    items = [(w, fingerprint(p)) for w, p in works.items()]
    whole = quad_shard(items, S)
    parts = [quad_shard(items[i::3], S) for i in range(3)]
    upload = query_quads(fingerprint(altered(works[23], 0.9, 2.0)))
    total = sum(p.ntotal for p in parts)
    assert total == whole.ntotal
    budgets = [shard_budget(10**9, p.ntotal, total) for p in parts]
    assert sum(budgets) <= 10**9 and all(b > 0 for b in budgets)
    per_shard = [best_quad_works(p, upload, S, b, 5) for p, b in zip(parts, budgets, strict=True)]
    split = merged_quad_works(per_shard, 5, S.peak_check_quad_leads)
    whole_works = best_quad_works(whole, upload, S, 10**9, 5)
    # a single hit may be a collision of the 16 check bits, and their odds follow the directory's
    # size (a shard of 11 bits tells apart fewer keys than one of 13): compared from two hits up
    assert [v for v in split if v.support > 1] == [v for v in whole_works if v.support > 1]
    assert split[0][0] == 23
    assert all(v.lead is not None for v in split)  # 5 votes, 8 leads by default
    one_lead = merged_quad_works(per_shard, 5, 1)
    assert one_lead[0] == split[0] and all(v.lead is None for v in one_lead[1:])
    # equal supports: in the fixed scramble's order, not the lower work id's (the works added
    # first would win every tie, on every upload)
    assert scrambled_work_ids(9) < scrambled_work_ids(3)
    merged = merged_quad_works([[(4, 1, 2), (9, 1, 7)], [(3, 1, 7), (1, 1, 1)]], 3)
    assert [v[:3] for v in merged] == [(9, 1, 7), (3, 1, 7), (4, 1, 2)]
    # more hits on one line first, whatever the cells' support
    assert merged_quad_works([[(4, 1, 9.0)], [(5, 2, 2.0)]], 2)[0].work_id == 5
    tied = [[(w, 1, 2) for w in range(200)]]
    assert sorted(v.work_id for v in merged_quad_works(tied, 8)) != list(range(8))
    assert shard_budget(300_000, 10, 0) == 0 and shard_budget(300_000, 1, 10**9) == 1


def test_a_small_shard_beside_a_large_one_reads_at_least_an_equal_split(works) -> None:
    """A growing catalog's newest works sit in a small shard beside a large one: by entries
    alone its share of the budget is a few entries and a copy of its work gets too few votes;
    with the floor (an equal split over the catalog's shards) it is voted first, while the
    large shard's share and equal shards' shares stay as they were."""
    items = [(w, fingerprint(p)) for w, p in works.items()]
    large = quad_shard([(w, f) for w, f in items if w not in (23, 24, 25)], S)
    small = quad_shard([(w, f) for w, f in items if w == 23], S)
    upload = query_quads(fingerprint(altered(works[23], 0.9, 2.0)))
    total = large.ntotal + small.ntotal
    budget = total // 20
    by_entries = shard_budget(budget, small.ntotal, total)
    floored = shard_budget(budget, small.ntotal, total, 2)
    assert floored == budget // 2 > 10 * by_entries
    assert shard_budget(budget, large.ntotal, total, 2) == budget * large.ntotal // total
    starved = best_quad_works(small, upload, S, by_entries, 5, rarity_total=total)
    fed = best_quad_works(small, upload, S, floored, 5, rarity_total=total)
    assert fed[0].work_id == 23
    assert fed[0].support > 2 * (starved[0].support if starved else 0)
    # equal shards keep their share by entries; the reads stay within twice the budget
    assert shard_budget(300_000, 250, 1_000, 4) == 75_000
    sizes = [10**6, 24, 9, 7, 6, 1]
    shares = [shard_budget(300_000, n, sum(sizes), len(sizes)) for n in sizes]
    assert shares[1:] == [50_000] * 5 and sum(shares) <= 600_000
    assert shard_budget(300_000, 24, sum(sizes)) == 7  # the number of shards unknown: no floor


def quads(keys, frames, spans=40, anchor_bins=60.0) -> Quads:
    """Quads of the given keys and anchor frames, with one span and anchor bin for all (or
    one each)."""
    n = len(keys)
    return Quads(
        np.asarray(keys, np.int64),
        np.asarray(frames, np.int64),
        np.broadcast_to(np.asarray(anchor_bins, np.float64), n).copy(),
        np.broadcast_to(np.asarray(spans, np.int64), n).copy(),
    )


def entries(work_id, keys, frames, spans=40) -> tuple[np.ndarray, np.ndarray]:
    """A stored work's quad keys and entry ids (:func:`grouped_quads`' parts)."""
    held = quads(keys, frames, spans)
    return held.keys, pack_entry_ids(work_id, _as_triplets(held))


def test_among_equal_hits_the_work_whose_hits_are_rarer_ranks_first() -> None:
    """Works 1 and 2 each hold two of the upload's quads in one cell, and 40 fillers each hold
    one of work 2's keys elsewhere: counted, the two tie; weighted by rarity, work 1 (its keys
    in buckets of their own) ranks before work 2, and both before every filler."""
    from audiodup.quads import _bucket_and_check

    keys = [11, 22, 33, 44]
    parts = [entries(1, keys[:2], [100, 300]), entries(2, keys[2:], [500, 700])]
    parts += [entries(100 + i, [keys[2 + i % 2]], [5000 + 400 * i]) for i in range(40)]
    shard = grouped_quads(parts)
    bucket, _ = _bucket_and_check(np.array(keys), shard.bits)
    assert len(set(bucket.tolist())) == 4  # each key in a bucket of its own
    upload = quads(keys, [100, 300, 500, 700])
    counted = best_quad_works(shard, upload, S, 10**6, 3)
    assert {v.work_id for v in counted[:2]} == {1, 2}
    assert counted[0].support == counted[1].support == 2
    weighted = best_quad_works(shard, upload, S, 10**6, 3, rarity_total=shard.ntotal)
    assert [v.work_id for v in weighted[:2]] == [1, 2] and weighted[0].support > weighted[1].support
    assert weighted[2].support < weighted[1].support


def test_two_hits_on_a_line_rank_before_three_chance_hits_in_one_cell() -> None:
    """Work 1 holds two of the upload's quads whose anchors lie on the line of tempo 0.93
    that their spans give; work 2 holds three in one cell of (tempo, pitch, offset) whose
    anchors lie on no line. By the cells work 2 leads; by the hits on one line work 1 does."""
    keys = [11, 22, 33, 44, 55]
    upload = quads(keys, [100, 400, 500, 600, 700], spans=100)
    # work 1: reference = 0.93 x query + 1000 frames, spans 93 (the same tempo ratio)
    parts = [entries(1, keys[:2], [1093, 1372], spans=93)]
    # work 2: offsets 2000, 1960, 1980 frames (one 2-s cell), anchors 60 and 120 frames apart
    # for 100 of the query's: slopes 0.6 and 1.2, not the tempo 1.0 of their spans
    parts.append(entries(2, keys[2:], [2500, 2560, 2680], spans=100))
    shard = grouped_quads(parts)
    with_grids = dataclasses.replace(S, quad_cell_grids=1)
    ranked = best_quad_works(shard, upload, with_grids, 10**6, 2)
    assert [(v.work_id, v.line_hits) for v in ranked] == [(1, 2), (2, 1)]
    assert ranked[1].support == 3 and ranked[0].support == 2
    assert best_cell_works(*cell_support_of(shard, upload, with_grids), 2)[0][0] == 2
    assert [v.work_id for v in best_quad_works(shard, upload, S, 10**6, 2)] == [1, 2]


def cell_support_of(shard, upload, settings) -> tuple[np.ndarray, np.ndarray]:
    """The cells and supports of every hit of ``upload`` on the first grid (ranked by cells
    alone)."""
    from audiodup.quads import cell_support, quad_cells

    hits = quad_hits(shard, upload, settings)
    return cell_support(
        quad_cells(hits.work, hits.log_tempo, hits.pitch, hits.offset_s, 0.0), hits.weights
    )


def test_hits_lie_on_one_line_only_at_the_tempo_their_spans_give() -> None:
    """The hits of a copy at tempo 0.8 lie on one line; a hit of another pitch shift, one whose
    anchor is too close to the others' in time, one off the line and the hits of another work
    do not join it."""
    frames = np.array([100.0, 200.0, 300.0, 400.0, 500.0, 505.0, 600.0, 700.0])
    ref = 0.8 * frames + 50
    ref[6] += 200  # off the line
    pitch = np.zeros(8)
    pitch[3] = 1.0  # another pitch shift
    work = np.array([7, 7, 7, 7, 7, 7, 7, 9])
    ref[7] = 0.8 * frames[7] + 50  # on work 7's line, but work 9's hit
    hits = QuadHits(work, frames, ref, np.full(8, np.log(0.8)), pitch, np.zeros(8), np.ones(8))
    line = line_hits(hits, S.frames_per_second)
    # 100, 200, 300, 500 and 505 lie on the line, but 505 is 5 frames from 500: pairs of
    # anchors closer than LINE_MIN_GAP_S give no slope, so the best hit joins 4 others
    assert line.tolist() == [5] * 7 + [1]
    apart = hits.rows(np.array([0, 3, 6, 7]))
    assert line_hits(apart, S.frames_per_second).tolist() == [1, 1, 1, 1]
    # the tempo the spans give must be the slope's
    shifted = dataclasses.replace(hits, log_tempo=np.full(8, np.log(0.8) + 0.05))
    assert line_hits(shifted, S.frames_per_second).max() == 1
    assert len(line_hits(hits.rows(np.zeros(8, bool)), S.frames_per_second)) == 0


def test_hits_on_one_line_count_the_same_in_any_order() -> None:
    """120 hits of one work at one pitch, more than a hit is compared with (LINE_MAX_HITS),
    every other one on one line, and chance hits of other works: each hit's count does not
    depend on the order the hits came in (a catalog in one shard or in several gives them in
    other orders)."""
    rng = np.random.default_rng(5)
    frames = np.concatenate([np.arange(120) * 50.0, rng.uniform(0, 6000, 200)])
    work = np.r_[np.full(120, 3), rng.integers(4, 40, 200)]
    on_line = (work == 3) & (np.arange(320) % 2 == 0)
    ref = np.where(on_line, 1.25 * frames + 80, rng.uniform(0, 8000, 320))
    pitch = np.where(work == 3, 2.0, rng.uniform(-3, 3, 320))
    hits = QuadHits(
        work, frames, ref, np.full(320, np.log(1.25)), pitch, np.zeros(320), np.ones(320)
    )
    line = line_hits(hits, S.frames_per_second)
    assert LINE_MAX_HITS // 2 < line[0] <= 60 and line[-1] < 5
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(320)
        assert np.array_equal(line_hits(hits.rows(order), S.frames_per_second), line[order])


@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 60), st.integers(1, 4)), max_size=300),
    st.integers(1, 12),
)
@example([(1, offset, 4) for offset in range(13)] + [(2, 0, 1), (3, 0, 1)], 3)
def test_the_best_cells_give_the_works_sorting_every_cell_gives(items, top) -> None:
    """Works of many equal supports, fewer works than ``top`` among the best cells, or fewer
    cells than ``4 * top``: the works and supports of sorting every cell."""
    cell_support = {work << 32 | offset: support / 2 for work, offset, support in items}
    cells = np.array(sorted(cell_support), dtype=np.int64)
    support = np.array([cell_support[c] for c in cells.tolist()], dtype=np.float64)
    everything: dict[int, float] = {}
    for row in np.lexsort((scrambled_work_ids(cells >> 32), -support)):
        everything.setdefault(int(cells[row] >> 32), float(support[row]))
    assert best_cell_works(cells, support, top) == list(everything.items())[:top]


def test_works_of_equal_support_are_proposed_without_favouring_the_first_added(works) -> None:
    """The same recording stored as 40 works: every one has the copy's support, and the 8
    proposed are the first 8 of the scramble, not the 8 lowest work ids."""
    same = fingerprint(works[23])
    shard = quad_shard([(w, same) for w in range(40)], S)
    upload = query_quads(fingerprint(altered(works[23], 0.9, 2.0)))
    proposed = best_quad_works(shard, upload, S, 10**9, 8)
    assert len({(v.line_hits, v.support) for v in proposed}) == 1
    expected = sorted(range(40), key=lambda w: int(scrambled_work_ids(w)))[:8]
    assert [v.work_id for v in proposed] == expected


@pytest.mark.parametrize("chunk", [1 << 24, 700])
def test_grouping_places_entries_as_a_stable_sort_by_bucket(works, chunk, monkeypatch) -> None:
    from audiodup import quads
    from audiodup.quads import _bucket_and_check, catalog_quads, grouped_quads

    monkeypatch.setattr(quads, "COUNT_CHUNK", chunk)
    parts = [catalog_quads(w, fingerprint(p), S) for w, p in works.items()]
    parts.insert(3, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
    keys = np.concatenate([k for k, _ in parts])
    ids = np.concatenate([i for _, i in parts])
    shard = grouped_quads(list(parts))
    bucket, check = _bucket_and_check(keys, shard.bits)
    order = np.argsort(bucket, kind="stable")
    assert np.array_equal(shard.ids, ids[order]) and np.array_equal(shard.checks, check[order])
    assert np.array_equal(
        np.diff(shard.offsets.astype(np.int64)), np.bincount(bucket, minlength=1 << shard.bits)
    )


def test_the_directory_grows_with_the_entries() -> None:
    assert bucket_bits(0) == 4 and bucket_bits(32) == 4 and bucket_bits(64) == 5
    assert bucket_bits(4 << 20) == 21 and bucket_bits(135_000_000) == 26
    assert bucket_bits(10**12) == 31


def test_a_quad_shard_file_round_trips_and_refuses_damage(works, tmp_path, monkeypatch) -> None:
    shard = quad_shard([(w, fingerprint(p)) for w, p in list(works.items())[:5]], S)
    buffer = io.BytesIO()
    write_quad_shard(shard)(buffer.write)
    path = tmp_path / "q-0123456789ab.quads"
    path.write_bytes(buffer.getvalue())
    back = read_quad_shard(path, check=True)
    assert back.bits == shard.bits
    for name in ("offsets", "ids", "checks"):
        assert np.array_equal(getattr(back, name), getattr(shard, name)), name
    upload = query_quads(fingerprint(altered(works[3], 1.1, 1.0)))
    whole = best_quad_works(shard, upload, S, 10**6, 2)
    assert whole[0].work_id == 3 and best_quad_works(back, upload, S, 10**6, 2) == whole
    from audiodup import quads

    monkeypatch.setattr(quads, "READ_WINDOW", 7)  # read and released 7 entries at a time
    assert best_quad_works(back, upload, S, 10**6, 2) == whole
    # the entries whose check differs fail, the others give their ids, window after window
    rows = np.arange(0, back.ntotal, 3)
    checks = back.checks[rows].copy()
    checks[::2] ^= 1
    passed, ids = back.entries(rows, checks)
    assert np.array_equal(passed, np.arange(len(rows)) % 2 == 1)
    assert ids.dtype == np.int64 and np.array_equal(ids, shard.ids[rows][passed])
    # several look-ups read in one pass give what each gives alone, rows shared or not
    # (a bucket asked twice reads its rows again: the rows go back)
    again = np.r_[rows[:10], rows[5:10], rows[10:]]
    again_checks = np.r_[checks[:10], checks[5:10], checks[10:]]
    asked = [
        (rows, checks),
        (np.arange(1, back.ntotal, 2), back.checks[1::2].copy()),
        (again, again_checks),
        (rows[:0], checks[:0]),
    ]
    for (passed_of, ids_of), (rows_asked, checks_asked) in zip(
        back.entries_of(asked), asked, strict=True
    ):
        truth = shard.checks[rows_asked] == checks_asked
        assert np.array_equal(passed_of, truth)
        assert np.array_equal(ids_of, shard.ids[rows_asked][truth])
    looks = [upload, query_quads(fingerprint(altered(works[1], 0.9, -2.0))), upload]
    assert quads.best_quad_works_of(back, looks, S, 10**6, 2) == [
        best_quad_works(back, look, S, 10**6, 2) for look in looks
    ]
    back.release_pages()
    data = bytearray(buffer.getvalue())
    data[-3] ^= 0xFF  # an entry id
    path.write_bytes(bytes(data))
    read_quad_shard(path)  # only a whole read sees it
    with pytest.raises(RuntimeError, match="checksums"):
        read_quad_shard(path, check=True)
    path.write_bytes(buffer.getvalue()[:-8])
    with pytest.raises(RuntimeError, match="damaged"):
        read_quad_shard(path)
    path.write_bytes(b"not a quad shard" * 4)
    with pytest.raises(RuntimeError, match="not a quad shard"):
        read_quad_shard(path)
    path.write_bytes(b"")
    with pytest.raises(RuntimeError, match="truncated"):
        read_quad_shard(path)


def test_a_damaged_file_is_refused_or_proposes_only_work_ids(works, tmp_path) -> None:
    """Any byte of the file changed: opening refuses it, or a look-up reads wrong rows inside
    the file and proposes works by id (each then verified on its triplet hits), never raises."""
    shard = quad_shard([(w, fingerprint(p)) for w, p in list(works.items())[:6]], S)
    buffer = io.BytesIO()
    write_quad_shard(shard)(buffer.write)
    good = buffer.getvalue()
    upload = query_quads(fingerprint(altered(works[2], 0.9, 1.0)))
    path = tmp_path / "q-0123456789ab.quads"
    rng = np.random.default_rng(7)
    opened = 0
    for at in rng.integers(0, len(good), 300):
        data = bytearray(good)
        data[at] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(data))
        try:
            damaged = read_quad_shard(path)
        except RuntimeError:
            continue
        opened += 1
        for work, _, support, lead in best_quad_works(damaged, upload, S, 10**6, 8):
            assert work >= 0 and support > 0
            assert lead is None or np.all(np.isfinite(lead))
        with pytest.raises(RuntimeError):
            read_quad_shard(path, check=True)
    assert opened > 200


def test_a_directory_rewritten_to_huge_buckets_reads_within_the_budget(
    works, tmp_path, monkeypatch
) -> None:
    """A directory that alternates 0 and the entry count (its two ends intact, so it opens)
    makes every other bucket claim every entry: a look-up still reads at most its budget."""
    shard = quad_shard([(w, fingerprint(p)) for w, p in list(works.items())[:6]], S)
    buffer = io.BytesIO()
    write_quad_shard(shard)(buffer.write)
    data = bytearray(buffer.getvalue())
    n_offsets, width = len(shard.offsets), shard.offsets.dtype.itemsize
    crafted = np.where(np.arange(n_offsets) % 2 == 1, shard.ntotal, 0).astype(f"<u{width}")
    crafted[-1] = shard.ntotal
    data[64 : 64 + n_offsets * width] = crafted.tobytes()
    path = tmp_path / "q-0123456789ab.quads"
    path.write_bytes(bytes(data))
    damaged = read_quad_shard(path)
    read = rows_read(damaged, monkeypatch)
    upload = query_quads(fingerprint(altered(works[2], 0.9, 1.0)))
    for work, _ in best_quad_works(damaged, upload, S, 5000, 8, lambda w: w < 100):
        assert 0 <= work < 100
    assert read and read[-1] <= 5000
    with pytest.raises(RuntimeError, match="checksums"):
        read_quad_shard(path, check=True)


def test_an_empty_shard_proposes_nothing(tmp_path) -> None:
    empty = quad_shard([], S)
    buffer = io.BytesIO()
    write_quad_shard(empty)(buffer.write)
    path = tmp_path / "q-0123456789ab.quads"
    path.write_bytes(buffer.getvalue())
    back = read_quad_shard(path, check=True)
    upload = query_quads(fingerprint(random_peaks(5)))
    assert back.ntotal == 0 and best_quad_works(back, upload, S, 1000, 8) == []


def test_quad_file_names_follow_the_hash_file() -> None:
    assert quad_file_of("h-0123456789ab.sorted") == "q-0123456789ab.quads"
    assert quad_file_of("h-0123456789ab.faiss") == "q-0123456789ab.quads"
    assert quad_file_of("c-0123456789ab.faiss") == "" and quad_file_of(None) == ""  # type: ignore[arg-type]


# -- in a catalog ---------------------------------------------------------------------------------
def quad_files(root: Path) -> list[Path]:
    return sorted((root / "shards").glob("q-*.quads"))


def test_a_catalog_writes_checks_and_replaces_its_quad_files(catalog_copy: Path) -> None:
    with Catalog.open(catalog_copy) as catalog:
        rows = catalog.store.db.execute("SELECT hash_file FROM shards").fetchall()
        assert [p.name for p in quad_files(catalog_copy)] == sorted(
            quad_file_of(h) for (h,) in rows
        )
        indexes = catalog.indexes()
        assert indexes.n_quad_entries > 0 and len(indexes.quad_shards) == len(rows)
        catalog.add_paths([FIXTURES / "uploads" / "unrelated_a.ogg"])
        assert len(quad_files(catalog_copy)) == len(
            catalog.store.db.execute("SELECT * FROM shards").fetchall()
        )
        catalog.rebuild()
        (h,) = catalog.store.db.execute("SELECT hash_file FROM shards").fetchone()
        # the replaced shards' files are gone with them
        assert [p.name for p in quad_files(catalog_copy)] == [quad_file_of(h)]
        assert catalog.verify() == [] and catalog.check().notes == ()


def test_a_damaged_or_lost_quad_file_is_a_problem_and_a_shard_before_them_a_note(
    catalog_copy: Path,
) -> None:
    victim = quad_files(catalog_copy)[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0x5A
    victim.write_bytes(bytes(data))
    with Catalog.open(catalog_copy) as catalog:
        assert any("four-peak" in p for p in catalog.verify())
    victim.unlink()
    with Catalog.open(catalog_copy) as catalog:  # written with them: the file was lost
        assert any("four-peak index file is missing" in p for p in catalog.verify())
        # a catalog written before the four-peak files (it has not the meta row saying
        # from which shard on they are written)
        catalog.store.db.execute("DELETE FROM meta WHERE key = 'quads_from_shard'")
    with Catalog.open(catalog_copy) as catalog:
        # a shard written before the four-peak files: sound, screened without them
        assert catalog.verify() == []
        assert any("no four-peak index" in note for note in catalog.check().notes)
        assert catalog.indexes().quad_shards == []
        verdict = catalog.screen(FIXTURES / "uploads" / "pitch_-3_work_03.ogg")
        assert verdict.verdict == "duplicate"
        assert catalog.upgrade() == (0, 1)
        assert catalog.upgrade() == (0, 0)
        assert victim.exists() and catalog.verify() == [] and catalog.check().notes == ()
        assert catalog.indexes().n_quad_entries > 0


def test_a_reader_loads_the_quad_files_an_upgrade_writes(catalog_copy: Path) -> None:
    for path in quad_files(catalog_copy):
        path.unlink()
    with Catalog.open(catalog_copy) as reader, Catalog.open(catalog_copy) as writer:
        assert reader.indexes().quad_shards == []
        key = reader.store.index_key()
        assert writer.upgrade() == (0, 1)
        assert reader.store.index_key() != key
        assert len(reader.indexes().quad_shards) == 1


def test_a_reader_loads_a_quad_file_written_again_under_its_name(catalog_copy: Path) -> None:
    with Catalog.open(catalog_copy) as reader, Catalog.open(catalog_copy) as writer:
        (before,) = reader.indexes().quad_shards
        for path in quad_files(catalog_copy):
            path.unlink()
        assert writer.upgrade() == (0, 1)
        (after,) = reader.indexes().quad_shards
        assert after is not before and np.array_equal(after.ids, before.ids)


def test_an_upgrade_that_fails_part_way_still_tells_readers(catalog_copy: Path) -> None:
    """Two shards without four-peak files, a damaged fingerprint in the second: the upgrade
    fails after writing the first, and readers still see that the index files changed."""
    with Catalog.open(catalog_copy) as catalog:
        catalog.add_paths([FIXTURES / "uploads" / "unrelated_a.ogg"])
        shards = catalog.store.db.execute("SELECT shard_id FROM shards ORDER BY shard_id")
        last = [r[0] for r in shards][-1]
        (victim,) = catalog.store.db.execute(
            "SELECT work_id FROM works WHERE shard_id = ?", (last,)
        ).fetchone()
        catalog.store.db.execute(
            "UPDATE fingerprints SET blob = ? WHERE work_id = ?", (b"\x00\x11", victim)
        )
    for path in quad_files(catalog_copy):
        path.unlink()
    with Catalog.open(catalog_copy) as reader, Catalog.open(catalog_copy) as writer:
        key = reader.store.index_key()
        with pytest.raises(CatalogError, match="four-peak index cannot be written"):
            writer.upgrade()
        assert len(quad_files(catalog_copy)) == 1
        assert reader.store.index_key() != key
        assert len(reader.indexes().quad_shards) == 1


def test_upgrade_writes_the_quads_of_live_works_only(catalog_copy: Path) -> None:
    with Catalog.open(catalog_copy) as catalog:
        full = catalog.indexes().n_quad_entries
        first = catalog.works()[0].work_id
        catalog.remove(first)
        for path in quad_files(catalog_copy):
            path.unlink()
        assert catalog.upgrade() == (0, 1)
        (shard,) = catalog.indexes().quad_shards
        works = unpack_entry_ids(np.asarray(shard.ids))[0]
        assert first not in set(works.tolist()) and 0 < shard.ntotal < full


def test_upgrade_on_the_command_line(catalog_copy: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from audiodup.cli import app

    for path in quad_files(catalog_copy):
        path.unlink()
    result = CliRunner().invoke(app, ["index", "upgrade", "--db", str(catalog_copy)])
    assert result.exit_code == 0, result.output
    assert "1 four-peak indexes written" in result.output
    copy = tmp_path / "again"
    shutil.copytree(catalog_copy, copy)
    again = CliRunner().invoke(app, ["index", "upgrade", "--db", str(copy)])
    assert again.exit_code == 0 and "0 four-peak indexes written" in again.output


def test_a_faiss_layout_shard_has_its_quad_file_too(catalog_copy: Path, monkeypatch) -> None:
    """Hash files of the former layout (``h-*.faiss``): the four-peak file follows their token,
    is loaded, checked and replaced like a sorted shard's."""
    from audiodup import store as store_module

    with monkeypatch.context() as patch:
        patch.setattr(store_module, "HASH_LAYOUT", "faiss")
        with Catalog.open(catalog_copy, create=False) as catalog:
            catalog.rebuild()
    (hash_file,) = (catalog_copy / "shards").glob("h-*.faiss")
    assert [p.name for p in quad_files(catalog_copy)] == [quad_file_of(hash_file.name)]
    with Catalog.open(catalog_copy) as catalog:
        assert catalog.verify() == [] and catalog.check().notes == ()
        assert catalog.indexes().n_quad_entries > 0
        catalog.rebuild()  # sorted again: the faiss shard's files go with it
        assert not (catalog_copy / "shards" / quad_file_of(hash_file.name)).exists()
        assert len(quad_files(catalog_copy)) == 1 and catalog.verify() == []
