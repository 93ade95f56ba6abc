"""A catalog split into shard groups, screened by scatter-gather on Dask (audiodup.sharded):
the same verdicts as one process, new works routed to their group, and bounded waits when
workers die (a lost worker's group is screened elsewhere, no worker left is a clear error)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import CATALOG_DIR, chance_music

from audiodup import Catalog
from audiodup.errors import CatalogError, ClusterDataLostError, ClusterError
from audiodup.results import TIMING_FIELDS, to_jsonable
from audiodup.settings import DEFAULT_SETTINGS, Settings
from audiodup.store import split_by_group
from audiodup.synth import synthesize_work

distributed = pytest.importorskip("distributed")

from audiodup import dask_client  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
UPLOADS = ROOT / "fixtures" / "audio" / "uploads"
SR = 22050
N_GROUPS = 3
# altered copies (speed, stretch, pitch, excerpt, codec) and unrelated music
POSITIVES = [
    "speed_1.15_work_05.ogg",
    "stretch_0.80_work_01.ogg",
    "pitch_-3_work_03.ogg",
    "pitch_+2.5_work_04.ogg",
    "excerpt_15s_work_00.ogg",
    "nightcore_work_03.ogg",
    "mp3_work_02.mp3",
]
TIMING = set(TIMING_FIELDS)


def _write(path: Path, samples: np.ndarray) -> Path:
    sf.write(path, samples.astype(np.float32), SR)
    return path


@pytest.fixture(scope="module")
def chance_uploads(tmp_path_factory) -> list[Path]:
    """Music that is in no catalog work: two unrelated pieces, a medley of short pieces of two
    more, and a short excerpt of another."""
    return chance_music(tmp_path_factory.mktemp("chance"), (9101, 9102, 9103), SR)


@pytest.fixture(scope="module")
def two_work_medley(tmp_path_factory) -> Path:
    """30 s of catalog work 01, then 10 s of work 04 (from its 5th second)."""
    first, sr = sf.read(CATALOG_DIR / "work_01.ogg", dtype="float32")
    second, _ = sf.read(CATALOG_DIR / "work_04.ogg", dtype="float32")
    parts = [first.reshape(len(first), -1).mean(1)[: 30 * sr]]
    parts.append(second.reshape(len(second), -1).mean(1)[5 * sr : 15 * sr])
    path = tmp_path_factory.mktemp("medley") / "work_01_then_04.wav"
    sf.write(path, np.concatenate(parts), sr)
    return path


@pytest.fixture(scope="module")
def split_catalog(pristine_catalog_dir: Path, tmp_path_factory) -> Path:
    """The fixture catalog plus three synthetic works, split into three shard groups."""
    root = tmp_path_factory.mktemp("split") / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    extra = tmp_path_factory.mktemp("extra")
    for seed in (301, 302, 303):
        _write(extra / f"synthetic_{seed}.wav", synthesize_work(seed, 40.0, SR))
    with Catalog.open(root, create=False) as catalog:
        catalog.add_paths([extra])
        catalog.store.split_shards(N_GROUPS)
    return root


@contextlib.contextmanager
def _local_client(processes: bool):
    """A client of a LocalCluster of 2 one-thread workers, processes or threads."""
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def threaded_client():
    with _local_client(processes=False) as client:
        yield client


def _document(verdict) -> dict:
    return {k: v for k, v in to_jsonable(verdict).items() if k not in TIMING}


def _evidence(evidence) -> dict:
    """What an Evidence record decides with, comparable with ==."""
    return {
        "n_works": evidence.n_works,
        "hashes": [
            (w, f.false_match_probability, f.evidence.main_inliers, f.evidence.lines)
            for w, f in evidence.hashes.items()
        ],
        "chroma": [
            (f.evidence.work_id, f.evidence.similarity, f.false_match_probability)
            for f in evidence.chroma
        ],
        "peaks": [
            (w, p.probability, p.checks_tried, p.check.matched_peaks, p.chroma is not None)
            for w, p in evidence.peaks.items()
        ],
    }


# -- store: shard groups ---------------------------------------------------------------------------
def test_split_by_group_keeps_order_and_leaves_out_empty_groups():
    assert split_by_group([5, 1, 3, 4, 7], 0) == [[5, 1, 3, 4, 7]]
    assert split_by_group([5, 1, 3, 4, 7], 3) == [[3], [1, 4, 7], [5]]
    assert split_by_group([], 3) == []


def test_every_shard_holds_one_group_and_new_works_are_routed(catalog_copy: Path, tmp_path):
    with Catalog.open(catalog_copy, create=False) as catalog:
        catalog.store.split_shards(N_GROUPS)
        assert catalog.store.shard_groups() == N_GROUPS
        before = catalog.store.group_shards(N_GROUPS)
        _write(tmp_path / "new_a.wav", synthesize_work(401, 30.0, SR))
        _write(tmp_path / "new_b.wav", synthesize_work(402, 30.0, SR))
        added = catalog.add_paths([tmp_path])
        after = catalog.store.group_shards(N_GROUPS)
        rows = catalog.store.db.execute("SELECT work_id, shard_id FROM works").fetchall()
        verdict = catalog.screen(tmp_path / "new_a.wav")
    shard_of = dict(rows)
    for group, shards in after.items():
        members = [w for w, s in shard_of.items() if s in shards]
        assert members and all(w % N_GROUPS == group for w in members)
    for result in added:  # each new work in a new shard of its own group
        assert shard_of[result.work_id] in after[result.work_id % N_GROUPS]
        assert shard_of[result.work_id] not in before.get(result.work_id % N_GROUPS, [])
    assert verdict.verdict == "duplicate"
    assert verdict.matches[0].work_id == added[0].work_id


def test_compaction_stays_within_groups(catalog_copy: Path, tmp_path):
    settings = dataclasses.replace(DEFAULT_SETTINGS, max_shards=2)
    with Catalog.open(catalog_copy, create=False, settings=settings) as catalog:
        catalog.store.split_shards(2)
        for seed in (501, 502, 503):
            folder = tmp_path / str(seed)
            folder.mkdir()
            _write(folder / "w.wav", synthesize_work(seed, 25.0, SR))
            catalog.add_paths([folder])
        groups = catalog.store.group_shards(2)
        rows = catalog.store.db.execute("SELECT work_id, shard_id FROM works").fetchall()
        assert catalog.verify() == []
    # works 7 and 9 made group 1 three shards: compacted to two, within the group
    assert all(len(shards) <= 2 for shards in groups.values())
    for work_id, shard_id in rows:
        assert shard_id in groups[work_id % 2]


def test_a_catalog_not_split_is_refused_on_dask(catalog: Catalog, threaded_client):
    from audiodup.sharded import ShardedScreening

    with (
        ShardedScreening(catalog.store, catalog.settings, threaded_client) as sharded,
        pytest.raises(Exception, match="index shard --groups"),
    ):
        sharded.match_fingerprint(catalog.fingerprint(1))


def test_index_shard_command_splits_and_joins(catalog_copy: Path, monkeypatch, capsys):
    from cli_runner import run_main

    code, out, _ = run_main(
        ["index", "shard", "--db", str(catalog_copy), "--groups", "4"], monkeypatch, capsys
    )
    assert code == 0 and "6 works in 4 shard groups (4 shards)" in out
    code, out, _ = run_main(
        ["index", "shard", "--db", str(catalog_copy), "--groups", "0"], monkeypatch, capsys
    )
    assert code == 0 and "6 works joined into one shard group (1 shards)" in out


def test_an_unreachable_scheduler_is_one_clear_error(split_catalog: Path):
    from audiodup.sharded import ShardedScreening

    address = f"tcp://127.0.0.1:{_free_port()}"
    with (
        Catalog.open(split_catalog, create=False) as catalog,
        pytest.raises(ClusterError, match="cannot reach the Dask scheduler"),
    ):
        ShardedScreening(catalog.store, catalog.settings, address, no_workers_s=2)


def test_split_shards_refuses_a_negative_count(catalog_copy: Path):
    from audiodup.errors import CatalogError

    with Catalog.open(catalog_copy, create=False) as catalog, pytest.raises(CatalogError):
        catalog.store.split_shards(-1)


# -- identical verdicts ----------------------------------------------------------------------------
def test_sharded_verdicts_are_those_of_one_process(
    split_catalog: Path, chance_uploads: list[Path], threaded_client
):
    from audiodup.sharded import ShardedScreening

    uploads = [UPLOADS / name for name in POSITIVES] + chance_uploads
    with Catalog.open(split_catalog, create=False) as catalog:
        alone = [_document(catalog.screen(path)) for path in uploads]
        with ShardedScreening(catalog.store, catalog.settings, threaded_client) as sharded:
            catalog.screen_with(sharded.match_fingerprint)
            spread = [_document(catalog.screen(path)) for path in uploads]
    assert spread == alone
    verdicts = [d["verdict"] for d in alone]
    assert verdicts[: len(POSITIVES)] == ["duplicate"] * len(POSITIVES)
    assert "duplicate" not in verdicts[len(POSITIVES) :]


def test_a_copy_found_on_a_further_look_is_found_the_same_sharded(
    split_catalog: Path, threaded_client, tmp_path: Path
):
    """A 2x cut-and-splice copy that the upload as it is misses is a duplicate on the slowed
    look (audiodup.screening.gather_looks); the sharded catalog takes the same looks."""
    from test_screening import splice_stretch

    from audiodup.audio import load_audio
    from audiodup.sharded import ShardedScreening

    with Catalog.open(split_catalog, create=False) as catalog:
        rate = catalog.settings.sample_rate_hz
        original = load_audio(CATALOG_DIR / "work_00.ogg", catalog.settings)
        copy = tmp_path / "splice_2x_work_00.wav"
        sf.write(copy, splice_stretch(original.samples, rate, 2.0), rate)
        alone = _document(catalog.screen(copy))
        with ShardedScreening(catalog.store, catalog.settings, threaded_client) as sharded:
            catalog.screen_with(sharded.match_fingerprint)
            spread = _document(catalog.screen(copy))
    assert spread == alone
    assert alone["verdict"] == "duplicate"
    assert alone["matches"][0]["tempo_ratio"] == pytest.approx(2.0, rel=0.02)


def test_every_round_gives_the_evidence_of_one_process(
    split_catalog: Path, chance_uploads: list[Path], threaded_client
):
    """No hash line is decisive here, so every query runs all four rounds (chroma search,
    alignment and peak checks) against the one-process pipeline."""
    from audiodup import screening
    from audiodup.audio import load_audio
    from audiodup.fingerprint import fingerprint_audio
    from audiodup.sharded import ShardedScreening

    settings = dataclasses.replace(DEFAULT_SETTINGS, duplicate_max_fmp=0.0)
    uploads = [UPLOADS / name for name in POSITIVES] + chance_uploads
    with Catalog.open(split_catalog, create=False, settings=settings) as catalog:
        sharded = ShardedScreening(catalog.store, settings, threaded_client)
        ran_peaks = 0
        for path in uploads:
            query = fingerprint_audio(load_audio(path, settings), settings, query=True)
            alone = screening.gather_evidence(query, catalog.indexes(), settings, catalog.store)
            spread = sharded.gather_evidence(query)
            assert _evidence(spread) == _evidence(alone), path.name
            ran_peaks += bool(alone.peaks)
    assert ran_peaks >= len(POSITIVES)


@pytest.mark.parametrize("sampled", [False, True])
def test_a_work_screened_without_itself_gives_the_evidence_of_one_process(
    split_catalog: Path, threaded_client, sampled: bool
):
    """A rescan screens each work against the rest of the catalog: every group leaves the work
    out of its look-ups, chroma hits and votes, and the client counts one work fewer, as one
    process does (``LoadedIndexes.without``), with a whole and with a sampled look-up."""
    from audiodup import screening
    from audiodup.sharded import ShardedScreening

    settings = DEFAULT_SETTINGS
    if sampled:
        settings = dataclasses.replace(
            settings, max_query_hits=300, whole_lookup_max_entries=0, min_sampled_support=1
        )
    with Catalog.open(split_catalog, create=False, settings=settings) as catalog:
        sharded = ShardedScreening(catalog.store, settings, threaded_client)
        indexes = catalog.indexes()
        n_live = int(indexes.live.sum())
        for work in catalog.works():
            query = catalog.fingerprint(work.work_id)
            rest = indexes.without([work.work_id])
            alone = screening.gather_evidence(query, rest, settings, catalog.store)
            spread = sharded.gather_evidence(query, without=(work.work_id,))
            assert _evidence(spread) == _evidence(alone), work.path
            assert alone.n_works == n_live - 1
            assert work.work_id not in {*alone.hashes, *alone.peaks}
            assert work.work_id not in {f.evidence.work_id for f in alone.chroma}
            whole = sharded.match_fingerprint(query, without=(work.work_id,))
            assert work.work_id not in {m.work_id for m in whole}


def test_a_work_added_while_screening_is_found_in_its_group(
    catalog_copy: Path, tmp_path, threaded_client
):
    from audiodup.sharded import ShardedScreening

    new = _write(tmp_path / "new.wav", synthesize_work(601, 30.0, SR))
    with Catalog.open(catalog_copy, create=False) as catalog:
        catalog.store.split_shards(2)
        with ShardedScreening(catalog.store, catalog.settings, threaded_client) as sharded:
            catalog.screen_with(sharded.match_fingerprint)
            assert catalog.screen(new).verdict == "clean"
            (added,) = catalog.add_paths([new])
            found = catalog.screen(new)
    assert found.verdict == "duplicate"
    assert found.matches[0].work_id == added.work_id


# -- separate scheduler and worker processes ------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _dask_command(*args: str) -> list[str]:
    # the dask CLI of this interpreter's environment
    return [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]]


class _Cluster:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1 (no nanny: a killed worker
    stays dead)."""

    def __init__(self, n_workers: int, log_dir: Path):
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        port = self.address.rsplit(":", 1)[1]
        self.procs.append(
            self._start("scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard")
        )
        self.workers = [
            self._start(
                "worker", self.address, "--nthreads", "1", "--no-dashboard", "--no-nanny", name=i
            )
            for i in range(n_workers)
        ]
        self.procs.extend(self.workers)
        with distributed.Client(self.address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(n_workers, timeout=120)

    def _start(self, kind: str, *args: str, name: int = 0) -> subprocess.Popen:
        log = open(self.log_dir / f"{kind}-{name}.log", "wb")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(
            _dask_command(kind, *args), stdout=log, stderr=subprocess.STDOUT, env=_env()
        )

    def kill_workers(self) -> None:
        for proc in self.workers:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=60)


@pytest.fixture
def process_cluster(tmp_path):
    cluster = None
    try:
        cluster = _Cluster(2, tmp_path)
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audiodup", *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )


def test_cli_screens_on_separate_scheduler_and_workers(
    split_catalog: Path, chance_uploads: list[Path], process_cluster
):
    uploads = [str(UPLOADS / name) for name in POSITIVES[:3]] + [str(chance_uploads[2])]
    alone = _cli("screen", "--json", "--db", str(split_catalog), *uploads)
    spread = _cli(
        "screen", "--json", "--db", str(split_catalog), "--dask", process_cluster.address, *uploads
    )
    assert spread.returncode == alone.returncode == 1, spread.stderr
    documents = [json.loads(run.stdout) for run in (alone, spread)]
    for document in documents:
        document["results"] = [
            {k: v for k, v in r.items() if k not in TIMING} for r in document["results"]
        ]
    assert documents[1] == documents[0]


def test_no_worker_left_is_a_clear_error_not_a_hang(split_catalog: Path, process_cluster):
    from audiodup.sharded import ShardedScreening

    with Catalog.open(split_catalog, create=False) as catalog:
        query = catalog.fingerprint(1)
        with ShardedScreening(
            catalog.store, catalog.settings, process_cluster.address, no_workers_s=3
        ) as sharded:
            assert sharded.match_fingerprint(query)  # the work itself
            process_cluster.kill_workers()
            outcome = _in_thread(lambda: sharded.match_fingerprint(query))
    assert isinstance(outcome, ClusterError), outcome
    assert "no workers" in str(outcome)


def test_no_worker_when_the_groups_are_placed_again_is_a_clear_error(
    split_catalog: Path, process_cluster
):
    """Every worker gone when the groups are placed again (as after the catalog changed): the
    tasks wait for a worker and fail as 'no workers', never as distributed's refusal of
    ``allow_other_workers`` without ``workers`` (an internal error before)."""
    from audiodup.sharded import ShardedScreening

    with Catalog.open(split_catalog, create=False) as catalog:
        query = catalog.fingerprint(1)
        with ShardedScreening(
            catalog.store, catalog.settings, process_cluster.address, no_workers_s=3
        ) as sharded:
            assert sharded.match_fingerprint(query)
            process_cluster.kill_workers()
            sharded._key = None  # the catalog as if changed: its groups' homes are read again
            outcome = _in_thread(lambda: sharded.match_fingerprint(query))
    assert isinstance(outcome, ClusterError), outcome
    assert "no workers" in str(outcome)


def _pids(client) -> dict[str, int]:
    """The process id of each worker, by address."""
    return client.run(os.getpid)


def test_a_look_whose_query_holder_is_killed_is_taken_again(
    split_catalog: Path, chance_uploads: list[Path]
):
    """The worker that a look's query was just sent to is killed before the look's rounds
    fetch it: they are cancelled, and the look is taken again with the query sent anew, giving
    the verdict of one process (unrelated music: every round runs, nothing is a duplicate)."""
    from audiodup.fingerprint import Fingerprint
    from audiodup.sharded import ShardedScreening

    upload = chance_uploads[0]
    with (
        _local_client(processes=True) as client,
        Catalog.open(split_catalog, create=False) as catalog,
    ):
        alone = _document(catalog.screen(upload))
        with ShardedScreening(catalog.store, catalog.settings, client) as sharded:
            killed, lost = [], []
            scatter, attempt = sharded._scatter, sharded._attempt

            def scatter_then_kill(data, **options):
                future = scatter(data, **options)
                if isinstance(data, Fingerprint) and not killed:
                    holder = next(iter(client.who_has([future])[future.key]))
                    killed.append(_pids(client)[holder])
                    os.kill(killed[-1], signal.SIGKILL)
                return future

            def counted_attempt(*args, **options):
                try:
                    return attempt(*args, **options)
                except ClusterDataLostError as exc:
                    lost.append(exc)
                    raise

            sharded._scatter, sharded._attempt = scatter_then_kill, counted_attempt
            catalog.screen_with(sharded.match_fingerprint)
            spread = _in_thread(lambda: _document(catalog.screen(upload)))
    assert killed
    assert len(lost) == 1  # the look as it is: cancelled once, then taken again
    assert spread == alone
    assert alone["verdict"] == "clean"


def test_workers_all_replaced_between_screenings_screen_as_before(split_catalog: Path):
    """Every worker killed (their nannies start new ones) after a screening: the catalog totals
    they held are gone, and the next screening sends them anew instead of failing."""
    from audiodup.sharded import ShardedScreening

    upload = UPLOADS / POSITIVES[0]
    with (
        _local_client(processes=True) as client,
        Catalog.open(split_catalog, create=False) as catalog,
    ):
        alone = _document(catalog.screen(upload))
        with ShardedScreening(catalog.store, catalog.settings, client) as sharded:
            catalog.screen_with(sharded.match_fingerprint)
            before = _document(catalog.screen(upload))
            old = _pids(client)
            for pid in old.values():
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 120
            while not (set(_live_pids(client)) - set(old.values())) or len(
                _live_pids(client)
            ) < len(old):
                assert time.monotonic() < deadline, "the killed workers were not restarted"
                time.sleep(0.5)
            after = _in_thread(lambda: _document(catalog.screen(upload)))
    assert before == alone and after == alone
    assert alone["verdict"] == "duplicate"


def _live_pids(client) -> list[int]:
    """The process ids of the workers that answer now (none while they restart)."""
    try:
        return list(client.run(os.getpid, wait=True).values())
    except (OSError, KeyError, ValueError):
        return []


@pytest.mark.parametrize("split", [True, False], ids=["split", "whole"])
def test_rescan_dask_without_workers_stops_with_an_error(
    split: bool, split_catalog: Path, pristine_catalog_dir: Path, tmp_path, process_cluster
):
    """The hang of issue #14: rescan --dask waited forever once every worker had died (a split
    catalog is screened over its groups, a whole one by each worker alone)."""
    root = tmp_path / "catalog"
    shutil.copytree(split_catalog if split else pristine_catalog_dir, root)
    process_cluster.kill_workers()
    run = _cli("rescan", "--db", str(root), "--dask", process_cluster.address, "--timeout", "120")
    assert run.returncode == 2
    assert "no workers" in run.stderr and "Traceback" not in run.stderr


# -- a worker killed during a rescan --------------------------------------------------------------
def _in_thread(call, timeout_s: float = 600.0):
    """``call()``'s result or raised error; the test's own wait is bounded (a hang fails)."""
    box: list = []

    def run():
        try:
            box.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), "no answer: the call hung"
    return box[0]


def _scans(root: Path) -> dict[int, list]:
    """Each screened work's matches (timing aside), from the rescan's stored results."""
    from audiodup.rescan.store import RescanStore

    with Catalog.open(root, create=False) as catalog:
        store = RescanStore(root, catalog.settings)
        try:
            scans = store.results(catalog.works())
        finally:
            store.close()
    return {w: [to_jsonable(m) for m in scan.matches] for w, scan in scans.items()}


def test_a_worker_killed_mid_rescan_is_replaced_or_reported(split_catalog: Path, tmp_path):
    from audiodup.rescan import run_rescan

    alone, spread = tmp_path / "alone", tmp_path / "spread"
    shutil.copytree(split_catalog, alone)
    shutil.copytree(split_catalog, spread)
    with Catalog.open(alone, create=False) as catalog:
        run_rescan(catalog)
    with _local_client(processes=True) as client, Catalog.open(spread, create=False) as catalog:
        pids = client.run(os.getpid)
        killed = []

        def kill_one(done, total, scan):
            if scan is not None and not killed:
                victim = sorted(pids.values())[0]
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        outcome = _in_thread(
            lambda: run_rescan(catalog, dask=client, timeout_s=300, on_progress=kill_one)
        )
    assert killed, "the rescan ended before its first result: " + (
        "".join(traceback.format_exception(outcome))
        if isinstance(outcome, BaseException)
        else repr(outcome)
    )
    if isinstance(outcome, BaseException):
        assert isinstance(outcome, ClusterError), outcome
    else:
        assert outcome.screened == outcome.targets
        assert _scans(spread) == _scans(alone)


def test_a_sharded_rescan_takes_the_further_looks_as_one_process(
    split_catalog: Path, threaded_client, tmp_path: Path
):
    """Short excerpts inside a split catalog: the worker that decodes a work makes its further
    looks' fingerprints (``ReadyViews``), the shard groups screen it without itself, and every
    work's stored result is the one-process rescan's; the 4-s excerpt is a duplicate pair."""
    from audiodup.audio import load_audio
    from audiodup.rescan import load_report, run_rescan
    from audiodup.rescan.screen import ReadyViews, work_query, work_query_task

    alone, spread = tmp_path / "alone", tmp_path / "spread"
    shutil.copytree(split_catalog, alone)
    folder = tmp_path / "excerpts"
    folder.mkdir()
    with Catalog.open(alone, create=False) as catalog:
        rate = catalog.settings.sample_rate_hz
        samples = load_audio(CATALOG_DIR / "work_02.ogg", catalog.settings).samples
        for length in (3, 4):
            excerpt = samples[9 * rate : (9 + length) * rate]
            sf.write(folder / f"excerpt{length}_work_02.wav", excerpt, rate)
        added = catalog.add_paths([folder])
        assert [r.status for r in added] == ["added", "added"], added
    shutil.copytree(alone, spread)
    with Catalog.open(alone, create=False) as catalog:
        excerpt = next(w for w in catalog.works() if w.path.endswith("excerpt4_work_02.wav"))
        lazy = work_query(catalog, excerpt.work_id)
        _, ready = work_query_task(str(alone), catalog.settings, excerpt.work_id, excerpt.path)
        assert isinstance(ready.view, ReadyViews) and len(ready.view.prints) >= 3
        for plan, seen in ready.view.prints.items():
            assert seen.to_bytes() == lazy.view(*plan).to_bytes()
        run_rescan(catalog)
        report = load_report(catalog)
    with Catalog.open(spread, create=False) as catalog:
        run_rescan(catalog, dask=threaded_client, timeout_s=300)
    assert _scans(spread) == _scans(alone)
    pairs = {
        tuple(sorted(Path(p).name for p in (q.query_path, q.evidence.path))) for q in report.pairs
    }
    assert ("excerpt4_work_02.wav", "work_02.ogg") in pairs


def test_a_shard_group_reads_its_own_files_ahead(split_catalog: Path, monkeypatch):
    """A worker keeps its shard group open: opening it starts reading the group's index files
    (not the other groups', not the database) into the page cache."""
    import audiodup.store as store_module
    from audiodup.sharded import GroupSpec, ShardGroup

    planned = []
    monkeypatch.setattr(
        store_module, "start_read_ahead", lambda plan, stop, budget=None: planned.append(plan)
    )
    with Catalog.open(split_catalog, create=False) as catalog:
        key = catalog.store.index_key()
        own = catalog.store.group_shards(N_GROUPS)[1]
        assert own
        files = {
            name
            for shard_id, hash_file, chroma_file in catalog.store.db.execute(
                "SELECT shard_id, hash_file, chroma_file FROM shards"
            )
            if shard_id in own
            for name in (hash_file, chroma_file)
        }
    group = ShardGroup(GroupSpec(str(split_catalog), DEFAULT_SETTINGS, 1, N_GROUPS, key))
    try:
        [plan] = planned
        names = [path.name for path, _ in plan]
        assert files <= set(names) and len(names) == 3 * len(own)  # and a four-peak file each
    finally:
        group.store.close()


def test_bounded_wait_gives_up_on_a_task_that_never_ends(threaded_client):
    from audiodup import dask_client

    slow = threaded_client.submit(time.sleep, 30, pure=False)
    with pytest.raises(ClusterError, match="within 1 s"):
        dask_client.gather(threaded_client, [slow], timeout_s=1.0)
    slow.cancel()


@pytest.mark.parametrize("can_deadlock", [True, False])
def test_workers_stop_sampling_their_tasks_where_that_can_deadlock(monkeypatch, can_deadlock):
    """Python 3.11's sys._current_frames() can freeze a worker for good (gh-106883): the
    workers a client of audiodup's meets, and those that join later, stop sampling there."""
    import dask

    monkeypatch.setattr(dask_client, "_SAMPLING_CAN_DEADLOCK", can_deadlock)
    with (
        dask.config.set({"distributed.worker.profile.enabled": True}),
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
    ):
        client, own = dask_client.connect(cluster.scheduler_address)
        try:
            cluster.scale(2)
            client.wait_for_workers(2, timeout=120)
            sampling = client.run(lambda dask_worker: "profile" in dask_worker.periodic_callbacks)
        finally:
            dask_client.close(client)
    assert own and len(sampling) == 2
    assert set(sampling.values()) == {not can_deadlock}


def _sampled(**more) -> Settings:
    """A hit budget small enough to drop most of the test catalog's keys."""
    return dataclasses.replace(
        DEFAULT_SETTINGS, max_query_hits=300, whole_lookup_max_entries=0, **more
    )


def _sampled_queries(catalog: Catalog, uploads: list[Path]):
    """Each upload's query fingerprint, checked to be one whose look-up the hit budget samples."""
    from audiodup import screening
    from audiodup.audio import load_audio
    from audiodup.fingerprint import fingerprint_audio, fingerprint_hashes

    settings, indexes = catalog.settings, catalog.indexes()
    for path in uploads:
        query = fingerprint_audio(load_audio(path, settings), settings, query=True)
        hashes = fingerprint_hashes(query, settings, query=True)
        assert screening.hash_lookup(hashes, indexes, settings).kept_share < 1.0, path.name
        yield path, query


def test_a_sampled_look_up_gives_the_evidence_of_one_process(
    split_catalog: Path, chance_uploads: list[Path], threaded_client
):
    """A hit budget small enough to drop most keys: each group verifies its own top candidates
    on all their hits, the client keeps the global top 3 (fewer than the groups returned) and
    counts only theirs as full, as one process does."""
    from audiodup import screening
    from audiodup.sharded import ShardedScreening

    settings = _sampled(min_sampled_support=1, candidate_works=3)
    uploads = [UPLOADS / name for name in POSITIVES] + chance_uploads
    with Catalog.open(split_catalog, create=False, settings=settings) as catalog:
        sharded = ShardedScreening(catalog.store, settings, threaded_client)
        indexes = catalog.indexes()
        for path, query in _sampled_queries(catalog, uploads):
            alone = screening.gather_evidence(query, indexes, settings, catalog.store)
            spread = sharded.gather_evidence(query)
            assert _evidence(spread) == _evidence(alone), path.name


def test_a_sampled_look_up_verifies_only_the_catalogs_best_candidates(
    split_catalog: Path, chance_uploads: list[Path], threaded_client, monkeypatch
):
    """Over shard groups a sampled look-up verifies the works one process verifies, not every
    group's own top ones: the groups rank theirs, the client keeps the catalog's best and sends
    each to its group to be verified, with the evidence of one process."""
    from audiodup import screening
    from audiodup.sharded import ShardedScreening

    # no other channel verifies works: only the candidates are
    settings = _sampled(
        min_sampled_support=1, candidate_works=2, chroma_voted_works=0, quad_voted_works=0
    )
    verified: list[int] = []
    ranked: list[int] = []
    verify, rank = screening._verified_work, screening.candidate_works

    def counted_verify(*args, **kwargs):
        verified.append(args[2])
        return verify(*args, **kwargs)

    def counted_rank(*args, **kwargs):
        found = rank(*args, **kwargs)
        ranked.append(len(found))
        return found

    monkeypatch.setattr(screening, "_verified_work", counted_verify)
    monkeypatch.setattr(screening, "candidate_works", counted_rank)
    uploads = [UPLOADS / name for name in POSITIVES] + chance_uploads
    ranked_more = 0
    with Catalog.open(split_catalog, create=False, settings=settings) as catalog:
        sharded = ShardedScreening(catalog.store, settings, threaded_client)
        indexes = catalog.indexes()
        for path, query in _sampled_queries(catalog, uploads):
            verified.clear()
            alone = screening.gather_evidence(query, indexes, settings, catalog.store)
            verified_alone = sorted(verified)
            verified.clear()
            ranked.clear()
            spread = sharded.gather_evidence(query)
            assert sorted(verified) == verified_alone, path.name
            assert _evidence(spread) == _evidence(alone), path.name
            # the groups ranked more works than the catalog keeps, and some were verified
            ranked_more += sum(ranked) > settings.candidate_works and bool(verified_alone)
    assert ranked_more > 0


def _ranking_no_work(**more) -> Settings:
    """A hit budget that drops most keys, every sampled cell below its support: only the works
    the other channels propose (chroma votes, four-peak votes) are verified."""
    return _sampled(min_sampled_support=10**9, **more)


@pytest.mark.parametrize(("voted", "neighbours"), [(8, 64), (1, 128)])
def test_chroma_voted_works_are_verified_in_their_groups_as_in_one_process(
    split_catalog: Path,
    chance_uploads: list[Path],
    two_work_medley: Path,
    threaded_client,
    voted: int,
    neighbours: int,
):
    """A sampled look-up that ranks no work: only the chroma-voted works are verified, each by
    the group that holds it, and the client adds them in vote order as one process does, with
    8 works per vote and with 1. With 1, the votes along a line in time add a work the other
    votes lack: the medley's second, shorter work (with 8 the others already hold every work of
    this small catalog): among each vector's 128 nearest segments over the 9 works' shards,
    not among the 64 nearest."""
    from audiodup import match, screening
    from audiodup.audio import load_audio
    from audiodup.fingerprint import fingerprint_audio
    from audiodup.sharded import ShardedScreening

    settings = _ranking_no_work(chroma_voted_works=voted, chroma_vote_neighbours=neighbours)
    uploads = [UPLOADS / name for name in POSITIVES] + chance_uploads + [two_work_medley]
    with Catalog.open(split_catalog, create=False, settings=settings) as catalog:
        sharded = ShardedScreening(catalog.store, settings, threaded_client)
        indexes = catalog.indexes()
        verified = line_voted = 0
        for path in uploads:
            query = fingerprint_audio(load_audio(path, settings), settings, query=True)
            alone = screening.gather_evidence(query, indexes, settings, catalog.store)
            spread = sharded.gather_evidence(query)
            assert _evidence(spread) == _evidence(alone), path.name
            verified += len(alone.hashes)
            search = match.search_chroma_segments(
                query, indexes, settings, vote_density=settings.chroma_vote_density
            )
            without_line = dataclasses.replace(search, line_hits=None)
            line_voted += len(
                set(match.chroma_voted_works(search, voted))
                - set(match.chroma_voted_works(without_line, voted))
            )
    assert verified >= len(POSITIVES)
    if voted == 1:
        assert line_voted > 0


@pytest.mark.parametrize("candidates", [0, 2])
def test_voted_works_lead_peak_checks_in_their_groups_as_in_one_process(
    split_catalog: Path, chance_uploads: list[Path], threaded_client, candidates: int
):
    """A sampled look-up with no chroma candidate, or 2: the voted works that are none are
    aligned at their vote's scale in the groups that hold them, in one round with the
    candidates, and lead peak checks (however dissimilar: ``peak_check_min_chroma`` 0) checked
    in their groups: the evidence of one process, the checks tried on each work included."""
    from audiodup import screening
    from audiodup.audio import load_audio
    from audiodup.fingerprint import fingerprint_audio
    from audiodup.match import search_chroma_segments
    from audiodup.sharded import ShardedScreening

    settings = _ranking_no_work(chroma_candidates=candidates, peak_check_min_chroma=0.0)
    with Catalog.open(split_catalog, create=False, settings=settings) as catalog:
        sharded = ShardedScreening(catalog.store, settings, threaded_client)
        indexes = catalog.indexes()
        checked = both = 0
        for path in chance_uploads + [UPLOADS / "stretch_0.80_work_01.ogg"]:
            query = fingerprint_audio(load_audio(path, settings), settings, query=True)
            alone = screening.gather_evidence(query, indexes, settings, catalog.store)
            spread = sharded.gather_evidence(query)
            assert _evidence(spread) == _evidence(alone), path.name
            checked += len(alone.peaks)
            found = screening.verified_candidates(query, indexes, settings, catalog.store)
            search = search_chroma_segments(
                query, indexes, settings, vote_density=settings.chroma_vote_density
            )
            aligned = screening.chroma_candidate_scales(search, settings)
            votes = screening.look_votes(search, found, settings)
            led = screening.voted_lead_works(votes, aligned, settings)
            both += bool(aligned) and bool(led)
    assert checked > 0
    assert (both > 0) == (candidates > 0)


def test_the_groups_deeper_chroma_hits_are_those_of_one_process(
    split_catalog: Path, threaded_client
):
    """A vote search's 64 nearest segments per shard, gathered from the groups side by side in
    shard order, each hit ranked within its own shard's answer: the hits one process finds, so
    the votes along a line in time are the same."""
    from audiodup.sharded import ShardedScreening

    vectors = np.random.default_rng(0).random((30, 42), dtype=np.float32)
    with Catalog.open(split_catalog, create=False) as catalog:
        sharded = ShardedScreening(catalog.store, catalog.settings, threaded_client)
        indexes = catalog.indexes()
        assert len(indexes.chroma_shards) >= N_GROUPS
        one = indexes.search_chroma(vectors, k=64)
        spread = sharded.chroma_hits(sharded._current()[0], vectors, 64)
    for name in ("work_ids", "segment_indexes", "valid", "ranks"):
        assert np.array_equal(getattr(spread, name), getattr(one, name)), name
    assert np.allclose(spread.similarities, one.similarities)


@pytest.mark.parametrize("budget", [300_000, 2_000])
def test_quad_voted_works_are_proposed_and_verified_as_in_one_process(
    split_catalog: Path, chance_uploads: list[Path], threaded_client, budget: int
):
    """A sampled look-up that ranks no work and no chroma vote: only the four-peak channel
    proposes works. Each group looks up its shards within their catalog-wide share of the quad
    budget (a small one keeps only the rarest keys) and the client keeps the best, as one
    process ranks them; the copies are found, the chance uploads stay below duplicate."""
    from audiodup import screening
    from audiodup.audio import load_audio
    from audiodup.fingerprint import fingerprint_audio
    from audiodup.sharded import ShardedScreening
    from audiodup.verdict import decide

    settings = _ranking_no_work(chroma_voted_works=0, quad_voted_works=3, quad_budget=budget)
    with Catalog.open(split_catalog, create=False, settings=settings) as catalog:
        sharded = ShardedScreening(catalog.store, settings, threaded_client)
        indexes = catalog.indexes()
        assert len(indexes.quad_shards) == N_GROUPS
        proposed = 0
        for path in [UPLOADS / name for name in POSITIVES] + chance_uploads:
            query = fingerprint_audio(load_audio(path, settings), settings, query=True)
            proposed += bool(screening.quad_voted_works(query, indexes, settings))
            alone = screening.gather_evidence(query, indexes, settings, catalog.store)
            spread = sharded.gather_evidence(query)
            assert _evidence(spread) == _evidence(alone), path.name
            matches = screening.matches_from_evidence(alone, query, settings, catalog.store)
            if path in chance_uploads:
                assert decide(matches, settings) != "duplicate", path.name
            elif budget == 300_000:
                assert decide(matches, settings) == "duplicate", path.name
        assert proposed >= len(POSITIVES)


def test_quad_leads_check_the_works_one_process_checks(
    split_catalog: Path, chance_uploads: list[Path], threaded_client
):
    """Only the four-peak votes propose works, and only their fullest cells lead checks: the
    groups run the checks one process runs, with the same probabilities and tries."""
    from audiodup import screening
    from audiodup.audio import load_audio
    from audiodup.fingerprint import fingerprint_audio
    from audiodup.sharded import ShardedScreening

    settings = _ranking_no_work(
        chroma_voted_works=0,
        quad_voted_works=3,
        peak_check_quad_leads=3,
        peak_check_hash_candidates=0,
        peak_check_cell_leads=0,
        peak_check_full_cell_leads=0,
        peak_check_min_chroma=2.0,  # a similarity is at most 1
        chroma_sweep_all_tempos=False,
        chroma_voted_leads=0,
    )
    with Catalog.open(split_catalog, create=False, settings=settings) as catalog:
        sharded = ShardedScreening(catalog.store, settings, threaded_client)
        indexes = catalog.indexes()
        checked = 0
        for path in [UPLOADS / name for name in POSITIVES] + chance_uploads:
            query = fingerprint_audio(load_audio(path, settings), settings, query=True)
            alone = screening.gather_evidence(query, indexes, settings, catalog.store)
            assert _evidence(sharded.gather_evidence(query)) == _evidence(alone), path.name
            checked += len(alone.peaks)
        assert checked >= len(POSITIVES)


# -- the service over the shard groups (serve --dask) ---------------------------------------------
def _served(root: Path, uploads: list[Path], between=None, **config) -> tuple[list, bool]:
    """Each upload's ``/v1/screen`` answer (status, first entry without timings), then
    ``/readyz``'s, from the service on ``root`` with ``config`` (``between()`` called after the
    first upload), and whether the service's catalog loaded its indexes."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from audiodup.service.app import create_app
    from audiodup.service.auth import KeyFile
    from audiodup.service.config import load_config

    key = KeyFile(root / "service" / "keys.json").create(f"pipe{len(config)}", ["screen"])
    app = create_app(load_config(None, {"db": root, **config}, environ={}), open_in_background=True)
    answers = []
    with TestClient(app) as http:
        for upload in uploads:
            response = http.post(
                "/v1/screen",
                files={"file": (upload.name, upload.read_bytes(), "audio/ogg")},
                headers={"Authorization": f"Bearer {key}"},
            )
            body = response.json()
            if response.status_code == 200:
                entry = body["results"][0]
                body = {k: v for k, v in entry.items() if k not in TIMING and "index_load" not in k}
            answers.append((response.status_code, body))
            if between is not None and len(answers) == 1:
                between()
        ready = http.get("/readyz")
        answers.append((ready.status_code, ready.json()))
        catalog = app.state.engine._catalog  # None: never opened
        loaded = catalog is not None and catalog._indexes is not None
    return answers, loaded


def test_the_service_screens_over_the_shard_groups_as_in_one_process(
    split_catalog: Path, chance_uploads: list[Path], threaded_client, tmp_path: Path
):
    """``serve --dask``: the same answers as the service screening the catalog itself, and the
    service process loads no index (a copy, and unrelated music that stays clean)."""
    root = tmp_path / "catalog"
    shutil.copytree(split_catalog, root)
    uploads = [UPLOADS / POSITIVES[0], chance_uploads[0]]
    alone, loaded_alone = _served(root, uploads)
    spread, loaded_spread = _served(root, uploads, dask=threaded_client.scheduler.address)
    assert spread == alone
    assert [status for status, _ in alone] == [200, 200, 200]
    assert [body["verdict"] for _, body in alone[:2]] == ["duplicate", "clean"]
    assert loaded_alone and not loaded_spread


def test_the_service_without_its_cluster_is_not_ready_and_says_so(
    split_catalog: Path, pristine_catalog_dir: Path, tmp_path: Path
):
    """An unreachable scheduler leaves the service up and not ready (503 with a reason, and a
    503 to screen); ``audiodup serve --dask`` refuses a catalog that is not split."""
    pytest.importorskip("fastapi")
    from audiodup.service import server
    from audiodup.service.config import load_config

    root = tmp_path / "catalog"
    shutil.copytree(split_catalog, root)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        nobody = f"tcp://127.0.0.1:{free.getsockname()[1]}"
    answers, loaded = _served(root, [UPLOADS / POSITIVES[0]], dask=nobody, request_timeout_s=5)
    (screened, body), (ready, why) = answers
    assert screened == 503 and body["error"]["code"] == "not_ready", body
    assert ready == 503 and "cannot be opened" in why["error"]["message"]
    assert not loaded
    config = load_config(None, {"db": pristine_catalog_dir, "dask": nobody}, environ={})
    with pytest.raises(CatalogError, match="index shard --groups"):
        server.check(config)


def test_the_service_answers_503_when_its_cluster_loses_every_worker(
    split_catalog: Path, tmp_path: Path, process_cluster
):
    """Separate scheduler and worker processes; every worker killed after the first upload:
    the next upload gets a 503 that says so (retry later), not a verdict and not a hang, and
    ``/readyz`` says the cluster has no workers."""
    root = tmp_path / "catalog"
    shutil.copytree(split_catalog, root)
    upload = UPLOADS / POSITIVES[0]
    answers, _ = _in_thread(
        lambda: _served(
            root, [upload, upload], process_cluster.kill_workers, dask=process_cluster.address
        )
    )
    (first, found), (second, refused), (ready, why) = answers
    assert first == 200 and found["verdict"] == "duplicate"
    assert second == 503, refused
    assert refused["error"]["code"] == "cluster_unavailable"
    assert "no workers" in refused["error"]["message"]
    assert ready == 503 and "has no workers" in why["error"]["message"], why


def test_pictures_of_a_split_catalog_need_no_index_in_the_client(
    split_catalog: Path, threaded_client
):
    """``work_evidence`` (the explain picture's hash and chroma evidence) takes the catalog
    totals from the groups: the same evidence as one process, no index loaded here."""
    from audiodup.audio import load_audio
    from audiodup.fingerprint import fingerprint_audio
    from audiodup.sharded import ShardedScreening

    with Catalog.open(split_catalog, create=False) as alone:
        query = fingerprint_audio(
            load_audio(UPLOADS / POSITIVES[0], alone.settings), alone.settings, query=True
        )
        work_id = alone.screen(UPLOADS / POSITIVES[0]).matches[0].work_id
        expected = alone.work_evidence(query, work_id)
    with (
        Catalog.open(split_catalog, create=False) as catalog,
        ShardedScreening(catalog.store, catalog.settings, threaded_client) as sharded,
    ):
        catalog.screen_with(sharded.match_fingerprint, sharded.totals)
        hashed, chroma = catalog.work_evidence(query, work_id)
        assert catalog._indexes is None
    assert hashed.main_inliers == expected[0].main_inliers >= 8
    assert hashed.tempo_ratio == expected[0].tempo_ratio
    assert chroma.similarity == expected[1].similarity


def test_an_upload_recorded_by_the_service_on_dask_is_found_in_its_group(
    split_catalog: Path, chance_uploads: list[Path], threaded_client, tmp_path: Path
):
    """``POST /v1/uploads`` on ``serve --dask`` records new music as a work of its group; a
    sped-up copy of it screened next is its duplicate, at its tempo, over the groups."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from audiodup.service.app import create_app
    from audiodup.service.auth import KeyFile
    from audiodup.service.config import load_config

    root = tmp_path / "catalog"
    shutil.copytree(split_catalog, root)
    original = chance_uploads[1]
    samples, rate = sf.read(original, dtype="float32")
    mono = samples.reshape(len(samples), -1).mean(axis=1)
    faster = np.interp(np.arange(0, len(mono) - 1, 1.1), np.arange(len(mono)), mono)
    copy = _write(tmp_path / "faster.wav", faster.astype(np.float32))
    key = KeyFile(root / "service" / "keys.json").create("pipe", ["screen"])
    auth = {"Authorization": f"Bearer {key}"}
    config = load_config(None, {"db": root, "dask": threaded_client.scheduler.address}, environ={})
    with TestClient(create_app(config, open_in_background=True)) as http:
        recorded = http.post(
            "/v1/uploads",
            data={"uploader": "label-a", "title": "New"},
            files={"file": (original.name, original.read_bytes(), "audio/ogg")},
            headers={**auth, "Idempotency-Key": "new-1"},
        )
        assert recorded.status_code == 201, recorded.text
        upload = recorded.json()["upload"]
        assert upload["verdict"] == "clean"
        body = {"file": ("faster.wav", copy.read_bytes(), "audio/wav")}
        screened = http.post("/v1/screen", files=body, headers=auth)
    assert screened.status_code == 200, screened.text
    entry = screened.json()["results"][0]
    assert entry["verdict"] == "duplicate"
    assert entry["matches"][0]["work_id"] == upload["work_id"]
    assert entry["matches"][0]["tempo_ratio"] == pytest.approx(1.1, rel=0.02)


def test_an_unreachable_scheduler_answers_503_without_its_address():
    """The service's 503 for a scheduler it cannot reach names no address (the operator's
    network, in the log instead); other cluster errors say what happened."""
    pytest.importorskip("fastapi")
    from audiodup.errors import SchedulerUnreachableError
    from audiodup.service.errors import engine_error

    address = "tcp://10.1.2.3:8786"
    hidden = engine_error(SchedulerUnreachableError(f"cannot reach the Dask scheduler {address}"))
    assert (hidden.status, hidden.code, hidden.headers) == (
        503,
        "cluster_unavailable",
        {"Retry-After": "5"},
    )
    assert "10.1.2.3" not in hidden.message and "cannot be reached" in hidden.message
    shown = engine_error(ClusterError("the Dask cluster has had no workers for 20 s"))
    assert shown.status == 503 and "no workers" in shown.message


@pytest.mark.parametrize(
    ("address", "said"),
    [
        ("garbage", "missing port number"),
        ("http://127.0.0.1:8787", "unknown address scheme 'http'"),  # a dashboard's address
        ("tpc://127.0.0.1:8786", "unknown address scheme 'tpc'"),
    ],
)
def test_an_address_without_a_port_or_of_no_known_scheme_is_one_line_at_once(
    split_catalog: Path, address: str, said: str
):
    """``--dask garbage``, ``--dask http://...``: one error line and exit 2, without a client
    left behind whose finaliser waited 40 s at exit and printed a traceback (a review found
    the unknown schemes so)."""
    upload = str(UPLOADS / POSITIVES[0])
    run = _cli("screen", "--db", str(split_catalog), "--dask", address, upload)
    assert run.returncode == 2
    assert said in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_the_service_answers_503_soon_when_its_scheduler_goes_away(
    split_catalog: Path, tmp_path: Path, process_cluster
):
    """The scheduler killed after the first upload (its workers left running): the next upload
    gets a 503 that names no address once the scheduler has not answered for a quarter of the
    request's time, not the request's own 504."""
    root = tmp_path / "catalog"
    shutil.copytree(split_catalog, root)
    upload = UPLOADS / POSITIVES[0]
    scheduler = process_cluster.procs[0]

    def kill_scheduler() -> None:
        scheduler.send_signal(signal.SIGKILL)
        scheduler.wait(timeout=60)

    answers, _ = _in_thread(
        lambda: _served(
            root,
            [upload, upload],
            kill_scheduler,
            dask=process_cluster.address,
            request_timeout_s=40,
        )
    )
    (first, found), (second, refused), (ready, why) = answers
    assert first == 200 and found["verdict"] == "duplicate"
    assert second == 503, refused
    assert refused["error"]["code"] == "cluster_unavailable"
    assert "127.0.0.1" not in refused["error"]["message"]
    assert ready == 503 and "127.0.0.1" not in why["error"]["message"], why


def test_a_look_during_which_the_catalog_changed_is_taken_again(
    split_catalog: Path, tmp_path: Path, threaded_client, monkeypatch: pytest.MonkeyPatch
):
    """A commit lands after a look read the catalog's index key and before its groups were
    opened (as a merge swapped in by the service's merger can): the groups refuse the
    stale key, and the look is taken again on the catalog as it is then, with the evidence of
    one process on the changed catalog."""
    from audiodup import screening
    from audiodup.audio import load_audio
    from audiodup.fingerprint import fingerprint_audio
    from audiodup.sharded import ShardedScreening

    root = tmp_path / "catalog"
    shutil.copytree(split_catalog, root)
    with Catalog.open(root, create=False) as catalog:
        stale_key = catalog.store.index_key()
        new = _write(tmp_path / "synthetic_304.wav", synthesize_work(304, 40.0, SR))
        assert [r.status for r in catalog.add_paths([new])] == ["added"]
        assert catalog.store.index_key() != stale_key
        sharded = ShardedScreening(catalog.store, catalog.settings, threaded_client)
        keys, real_key = [], catalog.store.index_key
        closing = contextlib.closing(sharded)

        def first_stale() -> tuple:
            keys.append(stale_key if not keys else real_key())
            return keys[-1]

        monkeypatch.setattr(sharded.store, "index_key", first_stale)
        query = fingerprint_audio(load_audio(new, catalog.settings), catalog.settings, query=True)
        with closing:
            spread = sharded.gather_evidence(query)
        monkeypatch.undo()
        alone = screening.gather_evidence(query, catalog.indexes(), catalog.settings, catalog.store)
        assert keys[0] == stale_key and real_key() in keys[1:]
        assert _evidence(spread) == _evidence(alone)
        assert next(iter(alone.hashes)) == catalog.works()[-1].work_id  # the new work itself


# -- a frozen worker, an emptied cluster, workers that cannot see the catalog --------------------
@contextlib.contextmanager
def _frozen(pid: int):
    """Worker process ``pid`` stopped (SIGSTOP: still connected, never answering) for the block."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _timed(call, timeout_s: float = 600.0):
    """``call()``'s result or raised error, and the seconds it took (a hang fails the test)."""
    start = time.monotonic()
    outcome = _in_thread(call, timeout_s)
    return outcome, time.monotonic() - start


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_a_result_held_by_a_frozen_worker_is_given_up_within_the_bound():
    """A task done on a worker that then freezes: fetching its result waited until the
    scheduler dropped the worker (minutes, the report's F1); now it gives up within the
    bound, with the bound's one line."""
    from audiodup import dask_client

    with _local_client(processes=True) as client:
        pids = _pids(client)
        victim = sorted(pids)[0]
        done = client.submit(np.arange, 1000, workers=[victim], pure=False)
        dask_client.gather(client, [done], timeout_s=60)  # done, its data on the victim
        with _frozen(pids[victim]):
            outcome, took = _timed(
                lambda: dask_client.gather(client, [done], timeout_s=2, what="numbers"), 120
            )
    assert isinstance(outcome, ClusterError), outcome
    assert "gave no numbers within 2 s" in str(outcome)
    assert took < 20  # well within 10x the bound


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_a_query_sent_to_a_frozen_worker_is_given_up_within_the_bound(split_catalog: Path):
    """Sending a look's query to a frozen worker waited for the connection's own timeout and
    then said every worker 'went away as it was sent'; now it gives up within the bound and
    says the worker went away or does not answer."""
    from audiodup.sharded import ShardedScreening

    with (
        _local_client(processes=True) as client,
        Catalog.open(split_catalog, create=False) as catalog,
        ShardedScreening(catalog.store, catalog.settings, client, timeout_s=2) as sharded,
    ):
        pids = _pids(client)
        victim = sorted(pids)[0]
        with _frozen(pids[victim]):
            outcome, took = _timed(lambda: sharded._scatter(np.arange(10), workers=[victim]), 120)
    assert isinstance(outcome, ClusterError), outcome
    assert "does not answer" in str(outcome) and "as it was sent" not in str(outcome)
    assert took < 20


def test_threads_waiting_on_an_emptied_cluster_give_up_together(
    split_catalog: Path, process_cluster
):
    """Every worker gone while several threads screen (as a sharded rescan's do): each used to
    wait its own ``no_workers_s``, one after another behind the lock that gathers the catalog
    totals (43-85 s for the documented 20 s, the report's F2); now they give up together."""
    from audiodup.sharded import ShardedScreening

    n_threads, no_workers_s = 12, 2.0
    with Catalog.open(split_catalog, create=False) as catalog:
        query = catalog.fingerprint(1)
        with ShardedScreening(
            catalog.store, catalog.settings, process_cluster.address, no_workers_s=no_workers_s
        ) as sharded:
            assert sharded.match_fingerprint(query)
            process_cluster.kill_workers()
            sharded._key = None  # the totals lost with the workers: each thread gathers them

            def every_thread() -> list:
                boxes: list = [None] * n_threads

                def one(i: int) -> None:
                    try:
                        boxes[i] = sharded.match_fingerprint(query)
                    except BaseException as exc:  # noqa: BLE001 - handed to the test
                        boxes[i] = exc

                threads = [threading.Thread(target=one, args=(i,)) for i in range(n_threads)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                return boxes

            outcomes, took = _timed(every_thread)
    assert all(isinstance(o, ClusterError) and "no workers" in str(o) for o in outcomes), outcomes
    assert took < 10 * no_workers_s  # one after another: n_threads x no_workers_s at least


def _unseen_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalog cannot be opened where tasks run (a worker that does not see its path);
    the client's own catalog, open already, is not touched."""
    import audiodup.rescan.screen as screen_module
    import audiodup.sharded as sharded_module

    def missing(root, *args, **options):
        raise CatalogError(f"no catalog at {root} (run 'audiodup index add' first)")

    class Unseen:
        open = staticmethod(missing)

    monkeypatch.setattr(screen_module, "Catalog", Unseen)
    monkeypatch.setattr(sharded_module, "CatalogStore", missing)
    monkeypatch.setattr(dask_client, "_visible", lambda root: False)


def test_a_catalog_the_workers_see_but_cannot_open_is_named_with_its_cause(tmp_path) -> None:
    """A folder the worker sees, whose catalog it cannot open (damaged, another recipe): the
    cause, not 'they must see it at the same path'."""
    seen = dask_client.catalog_unseen(tmp_path, CatalogError("catalog database is damaged"))
    assert str(seen) == (
        f"the Dask workers cannot open the catalog at {tmp_path}: catalog database is damaged"
    )
    unseen = dask_client.catalog_unseen(tmp_path / "elsewhere", CatalogError("no catalog"))
    assert "same absolute path" in str(unseen) and "no catalog" not in str(unseen)


@pytest.mark.parametrize("split", [True, False], ids=["split", "whole"])
def test_a_rescan_whose_workers_cannot_open_the_catalog_stops_and_stores_nothing(
    split: bool,
    split_catalog: Path,
    pristine_catalog_dir: Path,
    tmp_path: Path,
    threaded_client,
    monkeypatch: pytest.MonkeyPatch,
):
    """Workers that cannot see the catalog: the run stopped 'done' with every work's result a
    note 'no catalog at ...', which a later --new-only run never screened again (the report's
    F7); now it stops with one error saying so, and the next run screens every work."""
    from audiodup.rescan import run_rescan

    root = tmp_path / "catalog"
    shutil.copytree(split_catalog if split else pristine_catalog_dir, root)
    with Catalog.open(root, create=False) as catalog:
        _unseen_catalog(monkeypatch)
        outcome = _in_thread(lambda: run_rescan(catalog, dask=threaded_client, timeout_s=120))
        monkeypatch.undo()
        assert isinstance(outcome, ClusterError), outcome
        assert f"cannot open the catalog at {root}" in str(outcome)
        assert "same absolute path" in str(outcome) and "index add" not in str(outcome)
        assert _scans(root) == {}
        again = run_rescan(catalog, new_only=True)
        assert again.screened == len(catalog.works())


def test_a_rescan_whose_workers_cannot_read_the_audio_decodes_it_here(
    split_catalog: Path, tmp_path: Path, threaded_client, monkeypatch: pytest.MonkeyPatch
):
    """Workers that see the catalog but not the audio files: each work came back screened
    from its stored fingerprint, noted 'file not found', and was kept so for good (a review's
    finding: 68 duplicate and 3 suspect pairs instead of 73 and 0). The files this machine
    reads are now decoded here: the results are those of a rescan in one process, and the
    run says which works it decoded."""
    import audiodup.rescan.screen as screen_module
    from audiodup.errors import AudioDecodeError
    from audiodup.rescan import load_report, run_rescan

    alone, spread = tmp_path / "alone", tmp_path / "spread"
    shutil.copytree(split_catalog, alone)
    shutil.copytree(split_catalog, spread)
    with Catalog.open(alone, create=False) as catalog:
        run_rescan(catalog)
    load = screen_module.load_audio

    def unseen_on_workers(path, settings):
        if dask_client.on_worker():
            raise AudioDecodeError("file not found")
        return load(path, settings)

    monkeypatch.setattr(screen_module, "load_audio", unseen_on_workers)
    with Catalog.open(spread, create=False) as catalog:
        summary = run_rescan(catalog, dask=threaded_client, timeout_s=300)
        ids = sorted(w.work_id for w in catalog.works())
    assert summary.screened == len(ids) and summary.decoded_here == tuple(ids)
    assert _scans(spread) == _scans(alone)
    for root in (alone, spread):
        with Catalog.open(root, create=False) as catalog:
            report = load_report(catalog)
        assert report.fallbacks == () and report.errors == ()


def test_screening_on_workers_that_cannot_open_the_catalog_says_so(
    split_catalog: Path, tmp_path: Path, threaded_client, monkeypatch: pytest.MonkeyPatch
):
    """Not 'no catalog at ... (run index add first)' about a catalog the user has (a copy: no
    worker has its groups open yet)."""
    from audiodup.sharded import ShardedScreening

    root = tmp_path / "catalog"
    shutil.copytree(split_catalog, root)
    with Catalog.open(root, create=False) as catalog:
        query = catalog.fingerprint(1)
        _unseen_catalog(monkeypatch)
        with ShardedScreening(catalog.store, catalog.settings, threaded_client) as sharded:
            outcome = _in_thread(lambda: sharded.match_fingerprint(query))
    assert isinstance(outcome, ClusterError), outcome
    assert "cannot open the catalog" in str(outcome) and "index add" not in str(outcome)


def test_dask_log_lines_stay_off_the_cli_stderr(split_catalog: Path, tmp_path: Path):
    """distributed's own lines ('Couldn't gather 1 keys, rescheduling', 'Failed to reconnect
    to scheduler') reached a command's stderr beside its one error line (the report's F9)."""
    script = (
        "import logging, sys\n"
        "import audiodup.dask_client as dc\n"
        "from audiodup.cli import main\n"
        "def connect(address, timeout_s=30.0):\n"
        "    logging.getLogger('distributed.client').warning(\"Couldn't gather 1 keys\")\n"
        "    logging.getLogger('distributed.client').error('Failed to reconnect')\n"
        "    raise dc.SchedulerUnreachableError('cannot reach the Dask scheduler')\n"
        "dc.connect = connect\n"
        "sys.argv = ['audiodup', *sys.argv[1:]]\n"
        "main()\n"
    )
    root = tmp_path / "catalog"
    shutil.copytree(split_catalog, root)
    upload = str(UPLOADS / POSITIVES[0])
    for command in (
        ["screen", "--db", str(root), "--dask", "tcp://127.0.0.1:8811", upload],
        ["rescan", "--db", str(root), "--dask", "tcp://127.0.0.1:8811"],
    ):
        run = subprocess.run(
            [sys.executable, "-c", script, *command],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=600,
        )
        assert run.returncode == 2, run.stderr
        assert run.stderr.strip().splitlines() == ["error: cannot reach the Dask scheduler"], (
            run.stderr
        )


def test_the_service_writes_dask_log_lines_as_its_own_json_lines():
    """``serve --dask`` writes JSON lines; Dask's records came as raw text among them."""
    pytest.importorskip("fastapi")
    script = (
        "import logging\n"
        "from audiodup.dask_client import quiet_logs\n"
        "from audiodup.service import logs\n"
        "logs.configure('info')\n"
        "quiet_logs(to=logs.ToServiceLog())\n"
        "logging.getLogger('distributed.client').warning(\"Couldn't gather 1 keys\")\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=600
    )
    assert run.returncode == 0, run.stderr
    [line] = run.stderr.strip().splitlines()
    entry = json.loads(line)
    assert (entry["logger"], entry["level"]) == ("distributed.client", "warning")
    assert entry["message"] == "Couldn't gather 1 keys"
