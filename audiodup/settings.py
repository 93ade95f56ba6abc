"""Every tunable of the pipeline, in one frozen object.

``RECIPE`` names the fingerprint recipe: any change to a field that alters fingerprints must bump
it, and a catalog refuses to mix recipes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

RECIPE = "audiodup-fp-2"


@dataclass(frozen=True)
class Settings:
    # audio
    sample_rate_hz: int = 11025
    max_duration_s: float = 20 * 60.0
    min_duration_s: float = 3.0
    silence_rms: float = 1e-4

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
    # queries hash at several densities: a sped-up upload packs more music into each second
    query_peak_densities: tuple[float, ...] = (9.0, 16.0)

    # peak-triplet hashes
    hash_fanout: int = 2  # next peaks paired with each anchor (catalog side)
    query_hash_fanout: int = 5  # wider on the query side: tolerates extra or missing peaks
    hash_max_dt_s: float = 4.0
    hash_max_df_bins: int = 48
    ratio_levels: int = 24
    df_quant_bins: int = 1

    # chroma
    chroma_fps: float = 5.0
    segment_s: float = 10.0
    segment_hop_s: float = 2.5
    segment_steps: int = 20
    query_segment_hop_s: float = 1.0
    tempo_ratio_min: float = 0.5
    tempo_ratio_max: float = 2.0
    chroma_scale_step: float = 1.07
    chroma_candidates: int = 8

    # FAISS
    # "{nlist}" is filled per shard so lists hold about chroma_vectors_per_list vectors (at least
    # chroma_min_lists lists); shards with too few vectors to train that many lists (FAISS wants
    # 39 per list) are searched exhaustively, 8-bit scalar quantised
    chroma_index_factory: str = "IVF{nlist},SQ8"
    chroma_vectors_per_list: int = 40
    chroma_min_lists: int = 64
    chroma_nprobe: int = 24
    # one query's searches are small: OpenMP start-up costs more than it saves (measured ~50 ms
    # per call on 2 busy cores); run uploads in parallel processes instead
    faiss_threads: int = 1
    max_shards: int = 8

    # matching and verdicts
    candidate_works: int = 30
    min_candidate_support: int = 4  # aligned hits in a work's best coarse cell
    # query keys hitting more entries than this are skipped as uninformative (stop words)
    min_bucket_cap: int = 100
    bucket_cap_per_mean: float = 200.0
    # at most this many hits per query: the most common keys go first (bounds latency at scale)
    max_query_hits: int = 300_000
    duplicate_max_fmp: float = 1e-6
    suspect_max_fmp: float = 1e-3
    min_coverage_s: float = 3.0
    duplicate_min_hashes: int = 8
    # chance-match priors, measured on the Debian corpus (background fits per query may only
    # raise them): mean excess of a chance line over the minimum of 3 hashes
    chance_excess_base: float = 0.11
    chance_excess_per_vote: float = 0.0001
    chance_chroma_mean: float = 0.40
    chance_chroma_std: float = 0.10
    chroma_min_similarity: float = 0.65

    # guided peak check of weak hash lines and chroma alignments (peakcheck.py)
    peak_check_time_tol_frames: int = 2
    peak_check_bin_tol: int = 1
    # weak hash lines and chroma alignments can be a few % off in tempo: a coarse sweep over
    # +-span (log tempo), then the fine step around the best coarse tempo and around the guess
    peak_check_tempo_span: float = 0.05
    peak_check_coarse_tempo_step: float = 0.006
    peak_check_coarse_peaks: int = 200
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
    peak_check_hash_candidates: int = 2  # strongest non-decisive hash lines checked
    peak_check_min_inliers: int = 4
    peak_check_min_chroma: float = 0.5
    duplicate_min_peaks: int = 16

    recipe: str = RECIPE

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in json.loads(text).items() if k in known}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate_hz / self.hop_length


DEFAULT_SETTINGS = Settings()
