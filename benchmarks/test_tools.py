"""The analysis tools that follow a full run say what is missing in one line, with no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _run_tool(module: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m benchmarks.<module> args`` from the repository, ``env`` added."""
    return subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line a tool exits 2 with, asserting there is nothing else."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("tool", ["calibrate", "chroma_index"])
def test_a_tool_without_a_benchmark_cache_fails_in_one_line(tool: str, tmp_path: Path) -> None:
    proc = _run_tool(tool, "--data", str(tmp_path / "empty"))
    assert "python -m benchmarks run" in _one_error_line(proc)


@pytest.mark.parametrize("corpus", ["tuning", "heldout"])
def test_scaling_queries_without_the_corpus_fail_in_one_line(corpus: str, tmp_path: Path) -> None:
    proc = _run_tool(
        "scaling_prints",
        *("queries", "--corpus", corpus, "--work", str(tmp_path / "q")),
        AUDIODUP_BENCH_DATA=str(tmp_path / "empty"),
    )
    line = _one_error_line(proc)
    assert f"python -m benchmarks run --corpus {corpus}" in line
    assert str(tmp_path / "empty" / ("heldout" if corpus == "heldout" else "")) in line


def test_a_scaling_report_without_a_run_fails_in_one_line(tmp_path: Path) -> None:
    proc = _run_tool("scaling_prints", "report", "--work", str(tmp_path / "never-run"))
    assert "scaling_prints run" in _one_error_line(proc)


@pytest.mark.parametrize("problem", ["work is a file", "corrupt manifest"])
def test_scaling_queries_with_bad_input_fail_in_one_line(problem: str, tmp_path: Path) -> None:
    work = tmp_path / "q"
    if problem == "work is a file":
        work.write_bytes(b"")
    else:
        (tmp_path / "heldout").mkdir()
        (tmp_path / "heldout" / "corpus.json").write_text("{not json")
    proc = _run_tool(
        "scaling_prints",
        *("queries", "--corpus", "heldout", "--work", str(work)),
        AUDIODUP_BENCH_DATA=str(tmp_path),
    )
    assert "python -m benchmarks run" not in _one_error_line(proc)


@pytest.mark.parametrize("tool", ["lookup_stages", "channel_ranks"])
def test_a_lost_copy_tool_reads_the_held_out_corpus_when_asked(tool: str, tmp_path: Path) -> None:
    import pickle

    inputs = [tmp_path / name for name in ("catalog", "q.pkl", "screen.jsonl")]
    for path, content in zip(inputs, (b"", pickle.dumps([]), b""), strict=True):
        path.write_bytes(content)
    (tmp_path / "corpus.json").write_text('{"tracks": []}')  # the tuning corpus's, not read
    args = [str(p) for p in inputs[: 2 if tool == "lookup_stages" else 3]]
    proc = _run_tool(tool, *args, "--corpus", "heldout", AUDIODUP_BENCH_DATA=str(tmp_path))
    assert str(tmp_path / "heldout" / "corpus.json") in _one_error_line(proc)


@pytest.mark.parametrize("args", [[], ["--help"], ["{tmp}/no-catalog", "{tmp}/no.pkl"]])
def test_lookup_stages_answers_usage_and_missing_files_without_a_traceback(
    args: list[str], tmp_path: Path
) -> None:
    proc = _run_tool("lookup_stages", *[a.format(tmp=tmp_path) for a in args])
    assert "Traceback" not in proc.stderr + proc.stdout
    if args == ["--help"]:
        assert proc.returncode == 0 and "catalog" in proc.stdout
    elif args:
        assert _one_error_line(proc) == f"error: {tmp_path}/no-catalog does not exist"
    else:
        assert proc.returncode == 2 and "required" in proc.stderr


@pytest.mark.parametrize("content", [b"", b"\xd0 not a pickle"])
def test_lookup_stages_says_an_unreadable_query_file_in_one_line(
    content: bytes, tmp_path: Path
) -> None:
    queries = tmp_path / "queries.pkl"
    queries.write_bytes(content)
    line = _one_error_line(_run_tool("lookup_stages", str(tmp_path), str(queries)))
    assert line.startswith("error: cannot read the queries")


@pytest.mark.parametrize("content", [b"", b"\xd0 not a pickle"])
def test_channel_ranks_says_what_is_missing_or_unreadable_in_one_line(
    content: bytes, tmp_path: Path
) -> None:
    screen = tmp_path / "screen.jsonl"
    screen.write_text("")
    missing = _run_tool("channel_ranks", str(tmp_path / "no"), str(screen), str(screen))
    assert _one_error_line(missing) == f"error: {tmp_path}/no does not exist"
    queries = tmp_path / "queries.pkl"
    queries.write_bytes(content)
    unreadable = _run_tool("channel_ranks", str(tmp_path), str(queries), str(screen))
    assert _one_error_line(unreadable).startswith("error: cannot read the queries")


@pytest.mark.parametrize(
    "screen", ["{not json", "5", '{"query_id": "x", "role": "positive"}', "[1, 2]\n7"]
)
def test_channel_ranks_says_a_screening_it_cannot_read_in_one_line(
    screen: str, tmp_path: Path
) -> None:
    import pickle

    (tmp_path / "corpus.json").write_text(json.dumps({"tracks": []}))
    queries = tmp_path / "queries.pkl"
    queries.write_bytes(pickle.dumps([]))
    screening = tmp_path / "screen.jsonl"
    screening.write_text(screen)
    proc = _run_tool(
        "channel_ranks",
        str(tmp_path),
        str(queries),
        str(screening),
        AUDIODUP_BENCH_DATA=str(tmp_path),
    )
    assert _one_error_line(proc).startswith("error: cannot read the screening")


def test_channel_ranks_sums_up_each_lost_copy_over_its_looks() -> None:
    from benchmarks.channel_ranks import summary

    def look(query_id, hash_rank, quad_rank, verified, fused):
        return {
            "query_id": query_id,
            "hash_rank": hash_rank,
            "chroma_rank": None,
            "quad_rank": quad_rank,
            "verified": verified,
            "fused": fused,
        }

    rows = [
        look("a", 40, None, False, False),
        look("a", 3, 900, True, False),
        look("b", None, None, False, False),
        look("c", 120, 60, False, True),
    ]
    assert summary(rows) == {
        "lost": 3,
        "verified_on_some_look": 1,
        "fused_on_some_look": 1,
        "best_rank": {"a": 3, "b": None, "c": 60},
    }


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["split"], "cpu-uploads"),
        (["compare", "{tmp}"], "holds no audiodup/ package"),
        (["same-samples", "{tmp}"], "holds no audiodup/ package"),
    ],
)
def test_decode_cost_says_what_is_missing_in_one_line(
    args: list[str], said: str, tmp_path: Path
) -> None:
    """Without the uploads, or given a folder that is not a checkout (whose PYTHONPATH would let
    the child import this checkout and compare it with itself), one line and exit 2."""
    argv = [a.format(tmp=tmp_path) for a in args]
    proc = _run_tool("decode_cost", *argv, AUDIODUP_BENCH_DATA=str(tmp_path / "empty"))
    assert said in _one_error_line(proc)


def test_same_verdicts_counts_entries_that_differ_in_any_field(tmp_path) -> None:
    from benchmarks.same_verdicts import compare

    def line(role: str, label: str, fmp: float) -> str:
        entry = {"verdict": label, "matches": [{"false_match_probability": fmp}]}
        return json.dumps({"variant": "v", "role": role, "verdict": entry}) + "\n"

    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(line("positive", "duplicate", 1e-9) + line("negative", "clean", 0.5))
    second.write_text(line("positive", "duplicate", 1e-9) + line("negative", "clean", 0.5))
    assert "2 queries, 0 differ" in compare(first, second)
    second.write_text(line("positive", "duplicate", 2e-9) + line("negative", "clean", 0.5))
    assert "2 queries, 1 differ" in compare(first, second)
    second.write_text(line("positive", "duplicate", 1e-9))
    assert "not the same queries" in compare(first, second)


def test_the_scale_tools_measure_a_small_catalog(tmp_path: Path) -> None:
    """screening_memory (memory per upload, chroma search both ways) and rescan_per_work run
    end to end and report what they measured."""
    from audiodup import Catalog

    works = sorted((REPO / "fixtures" / "audio" / "catalog").iterdir())[:2]
    with Catalog.open(tmp_path / "catalog") as catalog:
        catalog.add_paths(works)

    def tool(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, check=True
        )
        return proc.stdout

    verdicts = tmp_path / "verdicts.jsonl"
    out = tool("benchmarks.screening_memory", "screen", str(tmp_path / "catalog"), str(works[0]))
    assert out.startswith("loaded") and "RssAnon" in out and "ru_maxrss" in out
    tool(
        "benchmarks.screening_memory", "screen", str(tmp_path / "catalog"), str(works[0]),
        "--out", str(verdicts),
    )  # fmt: skip
    assert json.loads(verdicts.read_text())["verdict"] == "duplicate"
    out = tool("benchmarks.screening_memory", "chroma-io", str(tmp_path / "catalog"), "--repeats=1")
    assert "same hits: True" in out
    out = tool("benchmarks.rescan_per_work", str(tmp_path / "catalog"), "--sample", "2")
    assert "2 works screened" in out and "stored_fingerprint': 2" in out


def _votes(work, tq, tr, log_tempo, pitch_bins):
    from audiodup.match import HashVotes

    n = len(work)
    zeros = np.zeros(n)
    return HashVotes(
        work=np.asarray(work, dtype=np.int64),
        query_frame=np.asarray(tq, dtype=np.float64),
        ref_frame=np.asarray(tr, dtype=np.float64),
        query_bin=zeros,
        ref_bin=zeros,
        query_span=zeros,
        ref_span=zeros,
        log_tempo=np.asarray(log_tempo, dtype=np.float64),
        pitch_bins=np.asarray(pitch_bins, dtype=np.float64),
        pattern=np.arange(n, dtype=np.int64),
    )


def test_a_cell_lead_puts_the_check_where_the_copys_hits_agree() -> None:
    from benchmarks.chain_misses import cell_lead

    fps = 43.07
    rng = np.random.default_rng(0)
    # work 1: ten hits of a copy at tempo 0.93, pitch -4.5 bins, the copy's frame 0 at
    # reference frame 2000, their triplet tempos scattered; forty chance hits spread everywhere
    tq = np.concatenate([rng.uniform(0, 2800, 10), rng.uniform(0, 2800, 40)])
    tr = np.concatenate([2000 + 0.93 * tq[:10], rng.uniform(0, 9000, 40)])
    log_tempo = np.concatenate([np.log(0.93) + rng.normal(0, 0.01, 10), rng.uniform(-0.7, 0.7, 40)])
    pitch_bins = np.concatenate([np.full(10, -4.5), rng.uniform(-30, 30, 40)])
    votes = _votes(np.ones(50), tq, tr, log_tempo, pitch_bins)
    lead = cell_lead(votes, 1, fps, 3)
    assert abs(np.log(lead.tempo_ratio / 0.93)) <= 0.05  # within the check's tempo sweep
    assert abs(lead.pitch_bins - (-4.5)) <= 1.5
    # the lead's centre lies on the copy's line, within the check's offset sweep (1 s)
    assert abs(lead.ref_frames(lead.query_centre) - (2000 + 0.93 * lead.query_centre)) < fps
    assert cell_lead(votes, 2, fps, 3) is None  # no hit, no lead


def test_floors_failed_names_each_floor_a_peak_count_misses() -> None:
    from audiodup.settings import DEFAULT_SETTINGS as s
    from benchmarks.chain_misses import floors_failed

    assert floors_failed(191, 600, 20.6, s) == []
    assert floors_failed(133, 574, 15.3, s) == ["rate"]  # 23 % of the peaks checked
    assert floors_failed(59, 599, 22.9, s) == ["ratio", "rate"]
    assert floors_failed(15, 40, 4.0, s) == ["peaks"]


@pytest.mark.parametrize(
    "args",
    [[], ["stages", "{tmp}/no-catalog", "{tmp}/no.json"], ["table", "{tmp}/no.jsonl"]],
)
def test_chain_misses_says_what_is_wrong_in_one_line(args: list[str], tmp_path: Path) -> None:
    _one_error_line(_run_tool("chain_misses", *[a.format(tmp=tmp_path) for a in args]))


def test_the_fusion_adds_a_work_that_two_channels_rank_beyond_what_they_verify() -> None:
    from audiodup.settings import DEFAULT_SETTINGS
    from benchmarks.channel_ranks import FUSED, fused_extra

    cells = [(w, 10.0 - w / 100) for w in range(100, 200)]  # works 100-199
    chroma = list(range(300, 320)) + [150]  # work 150: 51st hash cell, 21st chroma vote
    quads = [(w, 3) for w in range(400, 420)]
    extra = fused_extra(cells, chroma, quads, DEFAULT_SETTINGS)
    assert len(extra) == FUSED and extra[0] == 150
    verified_now = {w for w, _ in cells[:30]} | set(chroma[:8]) | {w for w, _ in quads[:8]}
    assert not verified_now & set(extra)


def test_key_survival_keeps_the_rarest_keys_within_the_budget() -> None:
    from benchmarks.key_survival import KeySizes, key_counts, rarest_within, sizes_of

    sizes = np.array([5, 1, 9, 3, 0, 3])
    usable = sizes > 0
    assert rarest_within(sizes, usable, 100).tolist() == usable.tolist()  # all fit
    assert rarest_within(sizes, usable, 7).tolist() == [False, True, False, True, False, True]
    assert not rarest_within(sizes, usable, 0).any()
    table = key_counts(np.array([7, 3, 7, 7]))
    assert sizes_of(np.array([7, 4, 3]), table).tolist() == [3, 0, 1]
    empty = key_counts(np.zeros(0, np.int64))
    grown = KeySizes(table, empty, key_counts(np.array([3, 3, 4])), empty, 10.0, 100)
    assert grown.triplet_sizes(np.array([7, 4, 3, 9])).tolist() == [3, 10, 21, 0]


def test_key_survival_ranks_a_work_among_the_scaled_sample() -> None:
    from benchmarks.key_survival import rank_at_scale

    others = np.array([9, 5, 5, 3, 1, 1])
    assert rank_at_scale(10, others, 20.0) == 1.0
    assert rank_at_scale(5, others, 20.0) == 1.0 + (1 + 0.5 * 2) * 20  # ties count half
    assert rank_at_scale(0, others, 20.0) is None


def test_key_survival_sums_up_each_variant() -> None:
    from audiodup.settings import DEFAULT_SETTINGS
    from benchmarks.key_survival import summary

    def row(variant, triplet_sampled, quad_sampled, triplet_rank=None, quad_rank=None):
        return {
            "variant": variant,
            "triplet_whole": 20,
            "triplet_sampled": triplet_sampled,
            "quad_whole": 6,
            "quad_sampled": quad_sampled,
            "triplet_rank": triplet_rank,
            "quad_rank": quad_rank,
        }

    top_t, top_q = DEFAULT_SETTINGS.candidate_works, DEFAULT_SETTINGS.quad_voted_works
    rows = [
        row("a", 1, 4, top_t + 5, top_q),  # the four-peak votes propose it
        row("a", 2, 1, top_t + 1, top_q + 1),  # neither channel does
        row("b", 3, 0, top_t, None),
    ]
    out = summary(rows, DEFAULT_SETTINGS)
    assert out["a"] == {
        "copies": 2,
        "triplet_whole": 20.0,
        "triplet_sampled": 1.5,
        "quad_whole": 6.0,
        "quad_sampled": 2.5,
        "reach_share": 0.5,
    }
    assert out["b"]["reach_share"] == 1.0
    without_ranks = [{k: v for k, v in r.items() if not k.endswith("rank")} for r in rows]
    assert summary(without_ranks, DEFAULT_SETTINGS)["a"]["reach_share"] is None


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--set", "no_such_field=1"], "Settings field"),
        (["--set", "ratio_levels=many"], "is not a int"),
        (["--set", "ratio_levels=16", "--sizes-from", "{tmp}"], "no --set with it"),
        (["--sizes-from", "{tmp}/no"], "does not exist"),
        (["--distractors", "0"], "--distractors 1 to 100,000"),
        (["--distractors", "10000000000"], "--distractors 1 to 100,000"),
        (["--works", "-5"], "--works takes 1 or more"),
    ],
)
def test_key_survival_says_what_is_wrong_in_one_line(
    args: list[str], said: str, tmp_path: Path
) -> None:
    import pickle

    (tmp_path / "corpus.json").write_text(json.dumps({"tracks": []}))
    queries = tmp_path / "queries.pkl"
    queries.write_bytes(pickle.dumps([]))
    args = [a.format(tmp=tmp_path) for a in args]
    proc = _run_tool(
        "key_survival", str(tmp_path), str(queries), *args, AUDIODUP_BENCH_DATA=str(tmp_path)
    )
    assert said in _one_error_line(proc)


def test_key_survival_of_a_small_catalog_matches_its_own_key_sizes(tmp_path: Path) -> None:
    """Grown to its own size the estimate is the catalog's real triplet sizes, so the supports
    equal those from ``--sizes-from`` itself; a copy keeps hits in its work, an unrelated
    upload is no positive and gives no row."""
    import pickle

    from audiodup import Catalog
    from audiodup.audio import load_audio
    from audiodup.fingerprint import fingerprint_audio
    from benchmarks.queries import Query

    fixtures = REPO / "fixtures" / "audio"
    works = sorted((fixtures / "catalog").iterdir())[:4]
    with Catalog.open(tmp_path / "catalog") as catalog:
        catalog.add_paths(works)
    tracks = [{"track_id": w.stem, "path": str(w)} for w in works]
    (tmp_path / "corpus.json").write_text(json.dumps({"tracks": tracks}))
    prepared = []
    for name, track, role in [
        ("stretch_1.25_work_02.ogg", "work_02", "positive"),
        ("pitch_-3_work_03.ogg", "work_03", "positive"),
        ("unrelated_a.ogg", "unrelated_a", "negative"),
    ]:
        path = fixtures / "uploads" / name
        query = Query(name, track, role, name, "test", str(path), 0, 1, 0, 0, 0, 0, True)
        prepared.append((query, fingerprint_audio(load_audio(path), query=True)))
    queries = tmp_path / "queries.pkl"
    queries.write_bytes(pickle.dumps(prepared))

    def rows(*extra: str) -> list[dict]:
        proc = _run_tool(
            "key_survival",
            str(tmp_path / "catalog"),
            str(queries),
            *extra,
            AUDIODUP_BENCH_DATA=str(tmp_path),
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return [json.loads(line) for line in proc.stdout.splitlines()]

    unusable = _run_tool(
        "key_survival",
        str(tmp_path / "catalog"),
        str(queries),
        "--set",
        "ratio_levels=100",  # more levels than a key's bits hold
        AUDIODUP_BENCH_DATA=str(tmp_path),
    )
    assert "this recipe cannot make keys" in _one_error_line(unusable)
    estimated = rows("--works", "4", "--distractors", "1")
    real = rows("--sizes-from", str(tmp_path / "catalog"))
    assert [r["query_id"] for r in estimated[:-1]] == [q.query_id for q, _ in prepared[:2]]
    assert "summary" in estimated[-1] and "summary" in real[-1]
    for mine, theirs in zip(estimated[:-1], real[:-1], strict=True):
        assert mine["triplet_whole"] >= 8 and mine["quad_whole"] >= 1
        assert mine["triplet_sampled"] == mine["triplet_whole"]  # 4 works: nothing sampled away
        for name in ("triplet_whole", "triplet_sampled", "quad_whole"):
            assert mine[name] == theirs[name], name


def test_compaction_growth_measures_a_growth_under_each_plan(tmp_path: Path) -> None:
    import audiodup.store as store_module
    from audiodup import Catalog
    from benchmarks.compaction_growth import grow, plans, report

    with Catalog.open(tmp_path / "source") as catalog:
        catalog.add_paths(sorted((REPO / "fixtures" / "audio" / "catalog").iterdir())[:4])
    rows = []
    for plan in plans():
        row = grow(tmp_path / "source", tmp_path / plan, plan, works=40, batch=2)
        assert (row["works_before"], row["works"]) == (4, 40)
        assert sum(row["shard_works"]) == 40 and len(row["shard_works"]) <= row["max_shards"]
        assert row["merges"] >= 1 and row["rewritten_per_work_added"] > 0
        assert row["verify_problems"] == [] and row["unindexed_works"] == 0
        # two holds of the writer lock per merge (plan, swap), at least: the last plan finds none
        assert 0 < row["merge_lock_max_s"] <= row["merge_lock_total_s"]
        rows.append(row)
    # the store's own plan and writer are back in place
    assert store_module.shards_to_merge is plans()["tiered"]
    for method in ("_merge", "_due_merge", "_put_merged"):  # the measurement undone
        assert getattr(store_module.CatalogStore, method).__name__ == method
    table = report(rows, "cmd")
    assert "| tiered | 2 | 4 -> 40 |" in table and "| all-but-largest | 2 | 4 -> 40 |" in table
    missing = _run_tool("compaction_growth", "--source-catalog", str(tmp_path / "none"))
    assert "is not a catalog" in _one_error_line(missing)
    unknown = _run_tool(
        "compaction_growth", "--source-catalog", str(tmp_path / "source"), "--plans", "fifo"
    )
    assert "unknown plan 'fifo'" in _one_error_line(unknown)
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "catalog.sqlite").write_bytes(b"not a database" * 300)
    damaged = _run_tool(
        "compaction_growth", "--source-catalog", str(tmp_path / "damaged"), "--work",
        str(tmp_path / "scratch"),
    )  # fmt: skip
    assert "damaged" in _one_error_line(damaged)


def test_merge_contention_screens_while_the_service_s_merger_merges(tmp_path: Path) -> None:
    import soundfile as sf

    from audiodup import Catalog
    from audiodup.synth import synthesize_work
    from benchmarks.merge_contention import report, run

    with Catalog.open(tmp_path / "catalog") as catalog:
        catalog.add_paths(sorted((REPO / "fixtures" / "audio" / "catalog").iterdir())[:2])
        catalog.store.merge_after_commit = False
        sf.write(tmp_path / "small.wav", synthesize_work(961, 8.0, 22050), 22050)
        catalog.add_paths([tmp_path / "small.wav"])
    uploads = sorted((REPO / "fixtures" / "audio" / "uploads").iterdir())[:2]
    merged = run(tmp_path / "catalog", uploads, "merger", 3)
    assert (merged["shards_before"], merged["shards_after"], merged["merges"]) == (2, 1, 1)
    assert merged["merge_s"] > 0 and len(merged["rows"]) == 3
    assert "child process" in merged["merger"]
    idle = run(tmp_path / "catalog", uploads, "none", 2)
    assert (idle["shards_before"], idle["shards_after"], idle["merge_s"]) == (2, 2, None)
    assert [r["verdict"] for r in idle["rows"]] == [r["verdict"] for r in merged["rows"][:2]]
    with Catalog.open(tmp_path / "catalog", create=False) as catalog:  # the source only read
        assert catalog.store.db.execute("SELECT COUNT(*) FROM shards").fetchone()[0] == 2
    table = report([merged, idle])
    assert table.startswith("Over the first") and "| merger | Shard merges" in table
    missing = _run_tool(
        "merge_contention", "run", "--catalog", str(tmp_path / "none"), "--merge", "none",
        "--out", str(tmp_path / "out.json"), str(uploads[0]),
    )  # fmt: skip
    assert "no catalog at" in _one_error_line(missing)
    (tmp_path / "damaged.json").write_bytes(b"\x9d not json")
    damaged = _run_tool("merge_contention", "report", str(tmp_path / "damaged.json"))
    assert "not a run of this tool" in _one_error_line(damaged)


def test_look_stages_times_a_clean_upload_s_look_and_restores_screening(tmp_path: Path) -> None:
    import pickle

    import audiodup.screening as screening
    from audiodup import Catalog
    from audiodup.audio import load_audio
    from audiodup.fingerprint import fingerprint_audio
    from benchmarks.look_stages import STAGES, measure, report
    from benchmarks.queries import Query

    with Catalog.open(tmp_path / "catalog") as catalog:
        catalog.add_paths(sorted((REPO / "fixtures" / "audio" / "catalog").iterdir())[:2])
    upload = REPO / "fixtures" / "audio" / "uploads" / "unrelated_a.ogg"
    query = Query("q", "t", "negative", "none", "none", str(upload), 1, 1, 0, 0, 0, 0, True)
    queries = tmp_path / "queries.pkl"
    queries.write_bytes(pickle.dumps([(query, fingerprint_audio(load_audio(upload), query=True))]))
    result = measure(tmp_path / "catalog", queries, 5)
    assert result["works"] == 2 and result["negatives"] == 1 and result["look_ms"] > 0
    assert result["calls"]["hash_lookup"] == 1 and set(result["stages_ms"]) == set(STAGES)
    assert report(result).startswith("2 works, 1 negatives, one look each:")
    assert all(getattr(screening, name).__name__ == name for name in STAGES)  # restored
    missing = _run_tool("look_stages", str(tmp_path / "none"), str(queries))
    assert "no catalog at" in _one_error_line(missing)
    (tmp_path / "empty.pkl").write_bytes(pickle.dumps([]))
    empty = _run_tool("look_stages", str(tmp_path / "catalog"), str(tmp_path / "empty.pkl"))
    assert "holds no negatives" in _one_error_line(empty)
    (tmp_path / "other.pkl").write_bytes(pickle.dumps({"not": "queries"}))
    other = _run_tool("look_stages", str(tmp_path / "catalog"), str(tmp_path / "other.pkl"))
    assert "is not a query pickle" in _one_error_line(other)
