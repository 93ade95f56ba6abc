"""Tests for audiodup.hashes: tempo/pitch-invariant triplet descriptors and packed entry ids."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from audiodup.hashes import (
    KEY_BITS,
    MAX_FRAME,
    MAX_SPAN,
    MAX_WORK_ID,
    TripletHashes,
    keys_to_codes,
    pack_entry_ids,
    stable_argsort,
    triplet_hashes,
    unpack_entry_ids,
)
from audiodup.peaks import PEAK_DTYPE

# No time window: these tests isolate the descriptor geometry from the max_dt cut-off.
GEOMETRY = {"max_dt_frames": 10**6, "max_df_bins": 48, "ratio_levels": 24, "df_quant_bins": 2}


def make_peaks(frames: np.ndarray, bins: np.ndarray) -> np.ndarray:
    peaks = np.zeros(len(frames), dtype=PEAK_DTYPE)
    peaks["frame"] = frames
    peaks["bin"] = bins
    peaks["strength"] = 1.0
    return peaks


def random_peaks(seed: int, n: int = 200, gap: tuple[int, int] = (10, 30)):
    """Peaks at strictly increasing continuous times (frames) and log-frequency bins."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.uniform(*gap, n))
    bins = rng.uniform(30.0, 180.0, n)
    return times, bins


def keyed_by_anchor(hashes: TripletHashes, frame_map: dict[int, int] | None = None) -> set:
    frames = hashes.anchor_frame.tolist()
    if frame_map is not None:
        frames = [frame_map[f] for f in frames]
    return set(zip(hashes.keys.tolist(), frames, strict=True))


@given(seed=st.integers(0, 2**32 - 1), factor=st.integers(2, 5), fanout=st.integers(2, 6))
def test_integer_time_scaling_keeps_every_key(seed: int, factor: int, fanout: int) -> None:
    times, bins = random_peaks(seed)
    frames = np.round(times).astype(np.int64)
    base = triplet_hashes(make_peaks(frames, bins), fanout=fanout, **GEOMETRY)
    scaled = triplet_hashes(make_peaks(frames * factor, bins), fanout=fanout, **GEOMETRY)
    assert len(base) > 0
    assert np.array_equal(base.keys, scaled.keys)
    assert np.array_equal(base.anchor_frame * factor, scaled.anchor_frame)
    assert np.array_equal(base.span_frames * factor, scaled.span_frames)
    assert np.array_equal(base.anchor_bin, scaled.anchor_bin)


@given(seed=st.integers(0, 2**32 - 1), factor=st.floats(0.7, 1.4))
def test_time_scaling_on_integer_frames_keeps_most_keys(seed: int, factor: float) -> None:
    """Real tempo changes land on rounded frames: most catalog keys must survive, and the wider,
    multi-probed query side must recover nearly all of them."""
    times, bins = random_peaks(seed)
    frames = np.round(times).astype(np.int64)
    scaled_frames = np.round(times * factor).astype(np.int64)
    frame_map = dict(zip(frames.tolist(), scaled_frames.tolist(), strict=True))

    catalog = triplet_hashes(make_peaks(frames, bins), fanout=3, **GEOMETRY)
    same_side = triplet_hashes(make_peaks(scaled_frames, bins), fanout=3, **GEOMETRY)
    query = triplet_hashes(make_peaks(scaled_frames, bins), fanout=6, multiprobe=True, **GEOMETRY)
    expected = keyed_by_anchor(catalog, frame_map)
    assert len(expected & keyed_by_anchor(same_side)) >= 0.7 * len(expected)
    assert len(expected & keyed_by_anchor(query)) >= 0.85 * len(expected)


@given(seed=st.integers(0, 2**32 - 1), shift=st.integers(-40, 40), fanout=st.integers(2, 6))
def test_pitch_translation_keeps_every_key(seed: int, shift: int, fanout: int) -> None:
    times, _ = random_peaks(seed)
    frames = np.round(times).astype(np.int64)
    # sixteenth bins are exact in float32, so the differences are exact too
    bins = np.random.default_rng(seed).integers(50 * 16, 170 * 16, len(frames)) / 16.0
    base = triplet_hashes(make_peaks(frames, bins), fanout=fanout, **GEOMETRY)
    moved = triplet_hashes(make_peaks(frames, bins + shift), fanout=fanout, **GEOMETRY)
    assert len(base) > 0
    assert np.array_equal(base.keys, moved.keys)
    np.testing.assert_allclose(moved.anchor_bin, base.anchor_bin + shift)
    assert np.array_equal(base.span_frames, moved.span_frames)


@given(seed=st.integers(0, 2**32 - 1), shift=st.floats(-12.0, 12.0))
def test_fractional_pitch_translation_keeps_nearly_every_key(seed: int, shift: float) -> None:
    times, bins = random_peaks(seed)
    frames = np.round(times).astype(np.int64)
    base = triplet_hashes(make_peaks(frames, bins), fanout=3, **GEOMETRY)
    moved = triplet_hashes(make_peaks(frames, bins + shift), fanout=3, **GEOMETRY)
    assert len(moved) == len(base)
    assert np.mean(base.keys == moved.keys) >= 0.98


@given(seed=st.integers(0, 2**32 - 1), speed=st.floats(0.75, 1.33))
def test_resampling_changes_tempo_and_pitch_together(seed: int, speed: float) -> None:
    """A speed change scales time by 1/speed and moves pitch by log2(speed) octaves."""
    times, bins = random_peaks(seed, gap=(20, 60))
    frames = np.round(times).astype(np.int64)
    fast_frames = np.round(times / speed).astype(np.int64)
    fast_bins = bins + 36 * np.log2(speed)
    frame_map = dict(zip(frames.tolist(), fast_frames.tolist(), strict=True))
    catalog = triplet_hashes(make_peaks(frames, bins), fanout=3, **GEOMETRY)
    query = triplet_hashes(
        make_peaks(fast_frames, fast_bins), fanout=6, multiprobe=True, **GEOMETRY
    )
    expected = keyed_by_anchor(catalog, frame_map)
    assert len(expected & keyed_by_anchor(query)) >= 0.85 * len(expected)


@given(seed=st.integers(0, 2**32 - 1))
def test_catalog_keys_are_a_subset_of_query_keys(seed: int) -> None:
    """The query side pairs more partners and probes neighbour cells; it never loses a key."""
    times, bins = random_peaks(seed, gap=(2, 12))
    peaks = make_peaks(np.round(times), bins)
    catalog = triplet_hashes(peaks, fanout=3, **GEOMETRY)
    query = triplet_hashes(peaks, fanout=6, multiprobe=True, **GEOMETRY)
    assert keyed_by_anchor(catalog) <= keyed_by_anchor(query)


@given(seed=st.integers(0, 2**32 - 1), multiprobe=st.booleans())
def test_keys_fit_the_key_width(seed: int, multiprobe: bool) -> None:
    rng = np.random.default_rng(seed)
    frames = np.sort(rng.choice(5000, 300, replace=False))
    bins = rng.uniform(0, 215, 300)
    hashes = triplet_hashes(make_peaks(frames, bins), fanout=4, multiprobe=multiprobe, **GEOMETRY)
    assert hashes.keys.dtype == np.uint32
    assert np.all(hashes.keys < (1 << KEY_BITS))
    assert len(hashes.anchor_frame) == len(hashes.anchor_bin) == len(hashes.span_frames)
    assert len(hashes) == len(hashes.keys)


def test_partners_respect_the_time_and_frequency_limits() -> None:
    frames = np.array([0, 10, 20, 500, 510, 520])
    bins = np.array([100.0, 101.0, 102.0, 100.0, 180.0, 101.0])
    hashes = triplet_hashes(
        make_peaks(frames, bins),
        fanout=3,
        max_dt_frames=50,
        max_df_bins=48,
        ratio_levels=24,
        df_quant_bins=2,
    )
    # only (0, 10, 20) is close enough in time; 510 is too far away in frequency for 500
    assert hashes.anchor_frame.tolist() == [0]
    assert hashes.span_frames.tolist() == [20]


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_peaks_give_no_hashes(n: int) -> None:
    hashes = triplet_hashes(make_peaks(np.arange(n) * 10, np.full(n, 100.0)), fanout=3, **GEOMETRY)
    assert len(hashes) == 0
    assert hashes.keys.dtype == np.uint32


def test_simultaneous_peaks_do_not_form_triplets() -> None:
    hashes = triplet_hashes(
        make_peaks(np.zeros(10, int), np.linspace(50, 150, 10)), fanout=3, **GEOMETRY
    )
    assert len(hashes) == 0


@given(
    work_id=st.integers(0, MAX_WORK_ID),
    frames=st.lists(st.integers(0, MAX_FRAME), min_size=1, max_size=50),
    data=st.data(),
)
def test_entry_ids_round_trip(work_id: int, frames: list[int], data: st.DataObject) -> None:
    n = len(frames)
    quarter_bins = data.draw(st.lists(st.integers(0, 1023), min_size=n, max_size=n))
    spans = data.draw(st.lists(st.integers(0, MAX_SPAN), min_size=n, max_size=n))
    hashes = TripletHashes(
        keys=np.zeros(n, np.uint32),
        anchor_frame=np.array(frames, np.uint32),
        anchor_bin=(np.array(quarter_bins) / 4.0).astype(np.float32),
        span_frames=np.array(spans, np.uint32),
    )
    ids = pack_entry_ids(work_id, hashes)
    assert ids.dtype == np.int64
    assert np.all(ids >= 0)  # FAISS reserves negative ids
    work, frame, bin_, span = unpack_entry_ids(ids)
    assert np.all(work == work_id)
    assert frame.tolist() == frames
    assert (bin_ * 4).astype(int).tolist() == quarter_bins
    assert span.tolist() == spans


def test_entry_ids_saturate_instead_of_overflowing() -> None:
    hashes = TripletHashes(
        keys=np.zeros(2, np.uint32),
        anchor_frame=np.array([MAX_FRAME + 1000, 5], np.uint32),
        anchor_bin=np.array([300.0, -2.0], np.float32),
        span_frames=np.array([MAX_SPAN + 7, 3], np.uint32),
    )
    work, frame, bin_, span = unpack_entry_ids(pack_entry_ids(7, hashes))
    assert work.tolist() == [7, 7]
    assert frame.tolist() == [MAX_FRAME, 5]
    assert bin_.tolist() == [255.75, 0.0]
    assert span.tolist() == [MAX_SPAN, 3]


@pytest.mark.parametrize("work_id", [-1, MAX_WORK_ID + 1])
def test_entry_ids_reject_out_of_range_work(work_id: int) -> None:
    hashes = TripletHashes(
        np.zeros(1, np.uint32),
        np.zeros(1, np.uint32),
        np.zeros(1, np.float32),
        np.zeros(1, np.uint32),
    )
    with pytest.raises(ValueError):
        pack_entry_ids(work_id, hashes)


@given(keys=st.lists(st.integers(0, 2**32 - 1), max_size=40))
def test_keys_to_codes_are_little_endian_bytes(keys: list[int]) -> None:
    codes = keys_to_codes(np.array(keys, dtype=np.uint32))
    assert codes.dtype == np.uint8
    assert codes.shape == (len(keys), 4)
    assert codes.flags["C_CONTIGUOUS"]
    back = [int.from_bytes(bytes(row), "little") for row in codes]
    assert back == keys


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).integers(0, 40, 5_000).astype(np.uint32),  # many ties
        np.random.default_rng(1).integers(0, 1 << 26, 100_000),  # four-peak buckets
        np.random.default_rng(2).integers(0, 1 << 31, 1_000).astype(np.int64),  # the top
        np.array([(1 << 31) - 1, 0, (1 << 31) - 1, 0]),
        np.array([7]),
        np.zeros(0, dtype=np.int64),
        np.array([3, -1, 3, 0]),  # negative: numpy's own
        np.array([1 << 31, 2, 1 << 31], dtype=np.uint64),  # too large: numpy's own
        np.array([0.5, 0.25, 0.5]),  # not integers: numpy's own
        np.array([True, False, True]),
    ],
)
def test_stable_argsort_is_numpy_s_stable_argsort(values: np.ndarray) -> None:
    order = stable_argsort(values)
    expected = np.argsort(values, kind="stable")
    assert order.dtype == expected.dtype and np.array_equal(order, expected)
