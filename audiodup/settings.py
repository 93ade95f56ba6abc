"""Every tunable of the pipeline, in one frozen object.

The fields split in two. The *recipe* fields (``RECIPE_FIELDS``) shape what a catalog stores:
the decoded audio, the spectral front end, peaks, catalog-side hashes, chroma and segment vectors.
The recipe id (``Settings.recipe``) is derived from a hash of them, of the structural constants
the code fixes (bit layouts, storage precisions) and of ``RECIPE_FORMAT``, so no change to them
can slip past it; a catalog refuses to open under another recipe. Every other field is a
run-time setting (query-side search, thresholds, calibration priors, index and resource limits):
changing it never changes the id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

# Bump when the code changes what the same recipe fields produce (a new filter, another
# resampler...): the derived id then changes with it.
RECIPE_FORMAT = 1

# Structural constants: layouts the code fixes, so they are not settings. The feature modules
# take them from here and they are part of the hashed recipe material.
PEAK_BIN_STEPS = 16  # stored peak frequencies are in 1/16 of a log bin
CHROMA_LEVELS = 15  # stored chroma is quantised to 5 bits; alignment needs no more
HASH_KEY_BITS = (5, 7)  # hash key: tempo-ratio cell, then each of the two frequency differences
ENTRY_ID_BITS = (25, 18, 10, 10)  # hash entry id: work, anchor frame, anchor quarter bin, span
RECIPE_STRUCTURE = {
    "peak_bin_steps": PEAK_BIN_STEPS,
    "chroma_levels": CHROMA_LEVELS,
    "hash_key_bits": HASH_KEY_BITS,
    "entry_id_bits": ENTRY_ID_BITS,
    "resampler": "soxr HQ",  # audio.py: decoded audio is resampled to sample_rate_hz by soxr
}

# Catalogs made before the id was derived store this literal id; their settings JSON holds the
# recipe fields of that time. Fields added since take these values (the constants of that time).
LEGACY_RECIPES = {"audiodup-fp-2": {"chroma_coeffs": (7, 6)}}


MIN_HIT_BUDGET, MAX_HIT_BUDGET = 10_000, 100_000_000  # an operator's max_query_hits


@dataclass(frozen=True)
class Settings:
    # ---- recipe fields (RECIPE_FIELDS): they shape what a catalog stores ----
    # audio
    sample_rate_hz: int = 11025
    # a longer file is fingerprinted from its first max_duration_s only (and normalisation sees
    # only that part), so the cap shapes stored fingerprints
    max_duration_s: float = 20 * 60.0
    # spectral front end
    n_fft: int = 2048
    hop_length: int = 256
    bins_per_octave: int = 36
    fmin_hz: float = 65.4  # C2
    n_octaves: int = 6

    # spectral peaks
    peak_time_radius: int = 6  # frames each side
    peak_freq_radius: int = 4  # log bins each side
    peaks_per_second: float = 7.0  # stored (catalog) density

    # peak-triplet hashes (the key layout is shared by catalog and queries)
    hash_fanout: int = 2  # next peaks paired with each anchor (catalog side)
    hash_max_dt_s: float = 4.0
    hash_max_df_bins: int = 48
    ratio_levels: int = 24
    df_quant_bins: int = 1

    # chroma and segment vectors
    chroma_fps: float = 5.0
    segment_s: float = 10.0
    segment_hop_s: float = 2.5
    segment_steps: int = 20
    # pitch-class x time low-frequency 2-D FFT magnitudes kept (vector dimension: their product)
    chroma_coeffs: tuple[int, int] = (7, 6)

    # ---- run-time fields: never change the recipe id ----
    # audio admission: a file is refused or not, its fingerprint does not change
    min_duration_s: float = 3.0
    silence_rms: float = 1e-4
    # a stereo upload's difference (what its mix cancels) is screened too: "auto" from the
    # first to the end of the last window of difference_window_s where it is at least
    # difference_min_level of the mix's RMS (from 60 Hz up) and its octave-band energies
    # correlate with the mix's below difference_max_correlation (audiodup.stereo); "always"
    # all of it, for every stereo upload; "never" none. Measured in benchmarks/STEREO.md
    stereo_difference: Literal["auto", "always", "never"] = "auto"
    difference_window_s: float = 30.0
    difference_min_level: float = 0.1
    difference_max_correlation: float = 0.3
    # a stereo upload's channels are each screened alone too: "auto" from the first to the end
    # of the last window of difference_window_s where their octave-band energies correlate
    # below channels_max_correlation (one channel is not the other's music: a copy in one ear,
    # loud noise or other music in the other, which the mix and the difference both drown);
    # "always" all of both, for every stereo upload; "never" neither. A file of 3 or more
    # channels (5.1, 7.1, quad) is screened the same way: each channel where it does not follow
    # the sum of the others (stereo_channels), and the difference of each pair of its first 8
    # channels where it stands apart from their mean (stereo_difference)
    stereo_channels: Literal["auto", "always", "never"] = "auto"
    channels_max_correlation: float = 0.3

    # query side: queries hash at several densities (a sped-up upload packs more music into each
    # second), with a wider fan-out that tolerates extra or missing peaks
    query_peak_densities: tuple[float, ...] = (9.0, 16.0)
    query_hash_fanout: int = 5
    # when the upload as it is gives no duplicate, it is looked at again played this many times
    # slower (2.0) or faster (0.5): analysed with a hop that many times shorter (longer), so a
    # 2x stretch's peaks are picked with the stored peaks' neighbourhoods and time precision
    # (screening.gather_looks). Measured (benchmarks/hard/RESULTS.md): tempo 2.00 [sox] (WSOLA)
    # 0.805 -> 0.956, [rb-r2] 0.903 -> 0.991, speed 0.50 0.965 -> 1.000; 0 duplicates among the
    # 784 negatives of that run
    query_view_scales: tuple[float, ...] = (0.5, 2.0)
    # an excerpt starts anywhere within a stored frame, and a few seconds hold too few stored
    # triplets to lose many: of 20-26 stored keys inside 12 benchmark excerpts of 4 s, the
    # query kept 12-24 at the best of 8 frame phases, 4-15 at the worst. An upload shorter
    # than short_query_max_s is also looked at from 1/4, 2/4 and 3/4 of a hop in
    short_query_max_s: float = 9.0
    short_query_phases: int = 4
    # a weak copy's few surviving peaks also depend on where the frames fall: an upload shorter
    # than half_hop_max_s is looked at half a hop in too, as it is and at each of
    # half_hop_scales, after the other looks. Measured (benchmarks/SCALING.md, session 42):
    # hard copies 608 -> 611 of 616 at 113 works, 602 -> 604 at 10^5, held-out 500 -> 503 of
    # 517, no negative flagged; a clean clip's search CPU x1.5 (113 works) to x1.7 (10^5).
    # Longer uploads would pay x2 for 10 instead of 8 of 24 weak 40-s copies inside 4 minutes
    half_hop_max_s: float = 150.0
    half_hop_scales: tuple[float, ...] = (1.0, 2.0)
    query_segment_hop_s: float = 1.0
    # the look as it is also aligns each chroma candidate over the whole tempo range (not only
    # around the scale its best segment matched at), so a reverberated or spliced copy's guided
    # peak check starts at its tempo (screening.swept_chroma, swept_leads); ~25 ms of CPU per
    # candidate. Measured (benchmarks/hard/RESULTS.md, round 2): slowed + reverb 0.965 -> 0.973,
    # tempo 2.00 [sox] 0.973 -> 0.982, [ffmpeg] 0.991 -> 1.000; 0 duplicates on 490 negatives
    chroma_sweep_all_tempos: bool = True
    tempo_ratio_min: float = 0.5
    tempo_ratio_max: float = 2.0
    chroma_scale_step: float = 1.07
    chroma_candidates: int = 8
    # an upload shorter than chroma_short_max_s also sweeps the candidates ranked after those,
    # up to chroma_short_candidates, and the best sweeps lead peak checks of their own
    # (screening.extra_chroma_candidates): a short upload's few segments rank its work less
    # surely (held-out 2x copies of 60-s cuts: 11th-15th), and its alignments cost little.
    # Measured: benchmarks/OTHER_TOOLS.md, session 59
    chroma_short_max_s: float = 150.0
    chroma_short_candidates: int = 16

    # FAISS: how segment vectors are indexed, not what they are (shards of another factory still
    # hold the same vectors and are searched alike)
    # "{nlist}" is filled per shard so lists hold about chroma_vectors_per_list vectors (at least
    # chroma_min_lists lists); shards with too few vectors to train that many lists (FAISS wants
    # 39 per list) are searched exhaustively, 8-bit scalar quantised
    chroma_index_factory: str = "IVF{nlist},SQ8"
    chroma_vectors_per_list: int = 40
    chroma_min_lists: int = 64
    # and at most this many: training costs vectors x lists (a shard compacted from 10^5 works,
    # 8 M vectors, would train 131,072 lists); past the cap the lists grow with the shard
    # instead (benchmarks/SCALING.md). 4,096 -> 16,384 (session 30), probing the same share of
    # them: at 10^5 works in one shard 597 -> 600 of 616 hard copies found, search CPU 1.005x;
    # at 10^4 608 -> 606, 1.03x; a 10^5 shard's rebuild +200 CPU-s of training
    chroma_max_lists: int = 16384
    # lists probed per query vector: chroma_nprobe, or this share of a shard's lists when that is
    # more (24 up to 4,096 lists, 96 of 16,384): a copy's nearest segments lie among as large a
    # share of a finer shard's lists
    chroma_nprobe: int = 24
    chroma_probed_share: float = 24 / 4096
    # one query's searches are small: OpenMP start-up costs more than it saves (measured ~50 ms
    # per call on 2 busy cores); run uploads in parallel processes instead
    faiss_threads: int = 1
    max_shards: int = 8

    # matching and verdicts
    candidate_works: int = 30
    min_candidate_support: int = 4  # aligned hits in a work's best coarse cell
    # the same when the hit budget dropped keys: the look-up is then a sample that only ranks
    # the works, each candidate is verified on all of its hits (screening.verified_candidates)
    min_sampled_support: int = 2
    # query keys hitting more entries than this are skipped as uninformative (stop words)
    min_bucket_cap: int = 100
    bucket_cap_per_mean: float = 200.0
    # at most this many hits per query: the most common keys go first (bounds latency at scale)
    max_query_hits: int = 300_000
    # ... in a catalog of more hash entries than this (about 1,500 works): a smaller one is
    # looked up whole, as voting every hit (a 4-min upload at 113 works: 0.2-1.7 M per look)
    # costs no more than verifying a sample's 30 candidates from their stored fingerprints, and
    # its chance model counts every work's hits (benchmarks/CPU.md, 2026-12-01)
    whole_lookup_max_entries: int = 2_000_000
    # a sampled look-up's candidates miss a hard copy's work when the budget left it too few hits
    # to rank (a slowed and reverberated copy at 10^4 works: 64 of 141,348 sampled hits): the
    # works most of the query's chroma segments find are verified on all their hits as well
    # (screening.chroma_voted_candidates; none in a catalog looked up whole)
    chroma_voted_works: int = 8
    # ... then as many voted by twice the query's chroma segment vectors (one added between each
    # two of the search's own): at 10^5 works in one shard 88 -> 92 of 110 hard copies found
    # (benchmarks/SCALING.md)
    chroma_vote_density: int = 2
    # ... and as many whose segments those vectors find along one line in time, among their
    # chroma_vote_neighbours nearest (match.chroma_voted_works): a copy's vectors find
    # its work at one offset, a chance neighbour anywhere. At 10^5 works, the hard copies whose
    # work is among the voted: 51 -> 67 of 110 (benchmarks/SCALING.md, session 8); at least 8
    chroma_vote_neighbours: int = 64
    # ... and the works whose best (tempo, pitch, offset) cell holds most of the query's four-peak
    # hits (audiodup.quads), from the rarest keys until quad_budget entries: at 10^5 works in one
    # shard 92 -> 106 of 110 hard copies found (benchmarks/SCALING.md); 0 turns the channel off
    quad_voted_works: int = 8
    quad_budget: int = 300_000
    # ... each work ranked by its best cell over this many grids, each a 1/n cell further along
    # tempo, pitch and offset (quads.quad_cells): a copy at the edge of a cell of one grid
    # falls inside one of another. 1 -> 3 at 10^5 works: 574 -> 578 of 616 hard copies found
    # (603 of 616 at 10^4, 600 before), 0 of 50 negatives flagged, a look's four-peak votes
    # about +25 CPU-ms (benchmarks/SCALING.md, session 24); 1: one grid
    quad_cell_grids: int = 3
    # the first chroma-voted works that are no chroma candidate are aligned at their vote's
    # scale to lead guided peak checks of their own (screening.voted_lead_works): a copy that
    # leaves no hash line (a 2x stretch) is found by its peaks only. At 10^5 works 580 -> 587 of
    # 616 hard copies, a negative's search +11 % CPU (benchmarks/SCALING.md, session 9). 0 turns
    # it off, and so does chroma_voted_works 0 (no votes)
    chroma_voted_leads: int = 8
    duplicate_max_fmp: float = 1e-6
    suspect_max_fmp: float = 1e-3
    # material many works hold (a stock sample or loop) names none of them: the hits of a line
    # or check that this many other works' lines or checks of one look also hold, over at most
    # this share of the upload (a line) or of the check's window, are a stretch of such
    # material; a line or check with fewer than duplicate_min_hashes hits (duplicate_min_peaks
    # peaks) off the stretches is no evidence (screening.shared_lines, peakcheck.shared_material)
    shared_material_works: int = 2
    shared_material_max_span: float = 0.5
    # ... counted per recording: works whose stored fingerprints line up with a duplicate's
    # certainty over at least this share of the longer are copies of one recording the
    # catalog holds (uploads it recorded), and hold their material once (screening.one_recording)
    one_recording_share: float = 0.5
    min_coverage_s: float = 3.0
    duplicate_min_hashes: int = 8
    # chance-match priors, measured on the Debian corpus (background fits per query may only
    # raise them): mean excess of a chance line over the minimum of 3 hashes
    chance_excess_base: float = 0.11
    chance_excess_per_vote: float = 0.0001
    # the share of a hash line's false-match budget paid for the rarest line given its work's
    # hits, the rest for the most inliers on a line (verdict.hash_false_match_probability)
    hash_own_tail_share: float = 0.01
    # chroma: each alignment's chance sample is the best similarity per chance_block_s of
    # reference (other blocks of the candidates, verdict.chroma_false_match_probability); its
    # spread is widened by 1 + chance_fit_margin / sqrt(blocks) for the error of a fit to a few
    # dozen blocks (simulated: calibrated down to 1e-3 from 16 blocks, tests/test_verdict.py);
    # with fewer than chance_min_blocks blocks the prior mean and std of a work's best chance
    # similarity apply
    chance_chroma_mean: float = 0.40
    chance_chroma_std: float = 0.10
    chance_block_s: float = 30.0
    chance_min_blocks: int = 16
    chance_fit_margin: float = 3.0
    chroma_min_similarity: float = 0.65

    # guided peak check of weak hash lines and chroma alignments (peakcheck.py)
    peak_check_time_tol_frames: int = 2
    peak_check_bin_tol: int = 1
    # weak hash lines and chroma alignments can be a few % off in tempo: a coarse sweep over
    # +-span (log tempo), then the fine step around the best coarse tempo and around the guess
    peak_check_tempo_span: float = 0.05
    peak_check_coarse_tempo_step: float = 0.006
    peak_check_coarse_peaks: int = 200
    # a check goes on to the fine sweep only when the coarse sweep's best cell holds this share
    # of its peaks (a third of peak_check_min_rate, which the whole check must clear): on the
    # 666 scaling queries every check that confirmed a recording had >= 0.19 at 113 works, 0.225
    # at 10^4 and 0.2 at 10^5, and 77-84 % of the others stop here (benchmarks/SCALING.md,
    # session 32)
    peak_check_coarse_min_rate: float = 0.1
    peak_check_tempo_step: float = 0.002
    peak_check_offset_span_s: float = 1.0
    peak_check_max_peaks: int = 600
    # upload peaks checked per second of reference time, over the stored density: a slowed copy
    # spreads each reference second over more upload seconds, so checking its densest selection
    # would mostly count peaks that have no stored counterpart
    peak_check_density_factor: float = 1.5
    peak_check_null_shift_s: tuple[float, float] = (3.0, 30.0)
    peak_check_null_shifts: int = 24  # each side
    peak_check_min_ratio: float = 3.0  # coincidences over the shifted-offset chance rate
    peak_check_min_rate: float = 0.3  # coincidences over upload peaks checked
    peak_check_chance_inflation: float = 2.0
    # onsets of the coinciding peaks (peakcheck.matched_onsets) a check needs to confirm a
    # recording: a held tone aligned with a note a work holds coincides on dozens of peaks but
    # starts once (benchmarks/SCALING.md, session 36)
    peak_check_min_onsets: int = 4
    peak_check_hash_candidates: int = 2  # strongest non-decisive hash lines checked
    # best look-up candidates whose fullest coarse cell leads a check (peakcheck.cell_alignment)
    peak_check_cell_leads: int = 2
    # after a sampled look-up, other works verified on all their hits whose fullest cell of
    # them holds the most (at least peak_check_min_inliers) lead a check too (screening.cell_leads)
    peak_check_full_cell_leads: int = 2
    # after a sampled look-up, the fullest cells of the first four-peak votes (of
    # quad_voted_works) lead a check of a work no other guess checks (quads.cell_lead,
    # screening.quad_leads). 1 -> 8 at 10^5 works: 601 -> 602 of 616 hard copies found, search
    # CPU 1.01x with the chance checks given up after their coarse sweep (1.04x, the negatives
    # 1.09x, without: benchmarks/SCALING.md, session 32)
    peak_check_quad_leads: int = 8
    peak_check_min_inliers: int = 4
    peak_check_min_chroma: float = 0.5
    duplicate_min_peaks: int = 16

    # rescan relations: a work is a copy of another when at least this share of its duration is
    # explained by it; less is an excerpt (medley, compilation, mix). Above 1/2, so a work made
    # of two halves is never a copy of both. Measured: on the real-music planted catalog
    # (fixtures/audio/real) full altered copies 0.91-0.99, a copy trimmed to 30 of 40 s 0.76
    # (its source's share), medley and compilation parts 0.30-0.51; on the benchmark's 6,707
    # detected altered copies of 60-s excerpts (results.jsonl at 112ec5b) 97.1 % reach 0.6
    # (98.7 % reach 0.5); the misses are extreme (speed 0.50: 59 %, tempo 0.50: 79 %) and fall
    # to contains_excerpt_of, listed but never counted as copies
    copy_min_share: float = 0.6

    def to_json(self) -> str:
        """Every field, and the derived ``recipe`` id for readers of the JSON."""
        return json.dumps({**asdict(self), "recipe": self.recipe}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """Inverse of :meth:`to_json`. Unknown keys (``recipe``, fields of other versions) are
        ignored and missing fields take their defaults."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in json.loads(text).items() if k in known}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def recipe_fields(self) -> dict:
        """The recipe fields and their values, canonical (floats as floats, tuples as lists)."""
        return {name: _canonical(name, getattr(self, name)) for name in RECIPE_FIELDS}

    @property
    def recipe(self) -> str:
        """The fingerprint recipe id, derived from the recipe fields (see :func:`recipe_id`)."""
        return recipe_id(self.recipe_fields())

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate_hz / self.hop_length

    def without_further_looks(self) -> Settings:
        """These settings with screening taking only the look at an upload as it is (no
        slowed / sped-up look, no other frame phases), its chroma aligned only around its
        candidates' scales: ``audiodup screen --quick``."""
        return replace(
            self,
            query_view_scales=(),
            short_query_phases=1,
            half_hop_scales=(),
            chroma_sweep_all_tempos=False,
        )

    @property
    def screens_stereo_parts(self) -> bool:
        """Whether a stereo upload's difference or channels may be screened beside its mix (the
        decoder then keeps the difference, from which the channels come), or a multichannel
        upload's channels and their differences (the decoder then keeps the channels)."""
        return self.stereo_difference != "never" or self.stereo_channels != "never"

    def mix_only(self) -> Settings:
        """These settings screening nothing of a stereo upload but its mix."""
        return replace(self, stereo_difference="never", stereo_channels="never")

    def with_hit_budget(self, hits: int | None) -> Settings:
        """These settings with ``max_query_hits`` = ``hits`` (None: unchanged): ``audiodup
        screen --hit-budget``, the service's ``hit_budget``. It binds in a catalog of more than
        ``whole_lookup_max_entries``, where a larger budget finds more hard copies for more CPU
        (benchmarks/SCALING.md, hit budget section); the chance model weighs the works by the
        share of hits kept, whatever the budget."""
        if hits is None:
            return self
        if not MIN_HIT_BUDGET <= hits <= MAX_HIT_BUDGET:
            raise ValueError(f"the hit budget must be {MIN_HIT_BUDGET:,} to {MAX_HIT_BUDGET:,}")
        return replace(self, max_query_hits=hits)

    @property
    def bins_per_semitone(self) -> int:
        return self.bins_per_octave // 12


# Every field that shapes what a catalog stores, for any input file. A new field belongs here or
# in the run-time part; tests/test_settings.py fails until one of them lists it.
RECIPE_FIELDS = (
    "sample_rate_hz",
    "max_duration_s",
    "n_fft",
    "hop_length",
    "bins_per_octave",
    "fmin_hz",
    "n_octaves",
    "peak_time_radius",
    "peak_freq_radius",
    "peaks_per_second",
    "hash_fanout",
    "hash_max_dt_s",
    "hash_max_df_bins",
    "ratio_levels",
    "df_quant_bins",
    "chroma_fps",
    "segment_s",
    "segment_hop_s",
    "segment_steps",
    "chroma_coeffs",
)
# Recipe fields that shape only what the index makes of a stored fingerprint (hash keys, chroma
# segment vectors), not the fingerprint (peaks, chroma frames): a catalog that differs from a
# recipe only in them holds that recipe's fingerprints, and its index is made again from them
# with no audio ('audiodup index upgrade', :func:`rekeyable`)
INDEX_ONLY_FIELDS = (
    "hash_fanout",
    "hash_max_dt_s",
    "hash_max_df_bins",
    "ratio_levels",
    "df_quant_bins",
    "segment_s",
    "segment_hop_s",
    "segment_steps",
    "chroma_coeffs",
)
RUN_TIME_FIELDS = tuple(f.name for f in fields(Settings) if f.name not in RECIPE_FIELDS)
_FIELD_TYPES = {f.name: f.type for f in fields(Settings)}


def _canonical(name: str, value):
    """One JSON form per value: ``7`` and ``7.0`` for a float field hash alike."""
    if _FIELD_TYPES.get(name) == "float":
        return float(value)
    if isinstance(value, tuple | list):
        return [_canonical("", v) for v in value]
    return value


def recipe_id(recipe_fields: dict) -> str:
    """``"audiodup-fp-"`` and 12 hex digits of the SHA-256 of the canonical JSON of the recipe
    fields, the structural constants and ``RECIPE_FORMAT``."""
    material = json.dumps(
        {"format": RECIPE_FORMAT, "structure": RECIPE_STRUCTURE, "fields": recipe_fields},
        sort_keys=True,
        separators=(",", ":"),
    )
    return "audiodup-fp-" + hashlib.sha256(material.encode()).hexdigest()[:12]


def stored_recipe_fields(recipe: str, settings_json: str) -> dict:
    """The recipe fields of a catalog from its stored recipe id and settings JSON (as written
    by :meth:`Settings.to_json`); a legacy id fills the fields added since. A field the JSON
    does not hold is left out. Raises ``ValueError`` for JSON that is not an object."""
    stored = json.loads(settings_json)
    if not isinstance(stored, dict):
        raise ValueError("stored settings are not a JSON object")
    stored = {**LEGACY_RECIPES.get(recipe, {}), **stored}
    return {name: _canonical(name, stored[name]) for name in RECIPE_FIELDS if name in stored}


def recipe_differences(catalog_fields: dict, settings: Settings) -> list[str]:
    """``"field: catalog value vs this audiodup value"`` for each recipe field that differs."""
    ours = settings.recipe_fields()
    return [
        f"{name}: {_shown(catalog_fields[name]) if name in catalog_fields else 'not recorded'} "
        f"vs {_shown(ours[name])}"
        for name in RECIPE_FIELDS
        if catalog_fields.get(name, object()) != ours[name]
    ]


def _shown(value) -> str:
    return json.dumps(value) if isinstance(value, list) else repr(value)


def recipe_matches(recipe: str, settings_json: str | None, settings: Settings) -> bool:
    """Whether a catalog that stores ``recipe`` (and ``settings_json``) was built with the recipe
    of ``settings``. A legacy id matches when its stored recipe fields are ours and the code's
    structure is still that of its time (``RECIPE_FORMAT`` 1)."""
    if recipe == settings.recipe:
        return True
    if recipe not in LEGACY_RECIPES or settings_json is None or RECIPE_FORMAT != 1:
        return False
    try:
        return recipe_id(stored_recipe_fields(recipe, settings_json)) == settings.recipe
    except ValueError:
        return False


def rekeyable(recipe: str, settings_json: str | None, settings: Settings) -> bool:
    """Whether a catalog of another recipe holds the fingerprints ``settings`` makes, its index
    made with other :data:`INDEX_ONLY_FIELDS`: this code derives its stored id from its stored
    recipe fields (the same structure and format), and with our index-only fields they are our
    recipe's."""
    if settings_json is None or recipe == settings.recipe:
        return False
    try:
        stored = stored_recipe_fields(recipe, settings_json)
    except ValueError:
        return False
    if set(stored) != set(RECIPE_FIELDS) or recipe_id(stored) != recipe:
        return False
    ours = settings.recipe_fields()
    kept = {**stored, **{name: ours[name] for name in INDEX_ONLY_FIELDS}}
    return recipe_id(kept) == settings.recipe


def rekeyed_settings_json(settings_json: str, settings: Settings) -> str:
    """A catalog's stored settings JSON with our index-only fields and recipe id."""
    stored = json.loads(settings_json)
    ours = json.loads(settings.to_json())
    stored.update({name: ours[name] for name in (*INDEX_ONLY_FIELDS, "recipe")})
    return json.dumps(stored, sort_keys=True)


DEFAULT_SETTINGS = Settings()
RECIPE = DEFAULT_SETTINGS.recipe  # the id of the default recipe
