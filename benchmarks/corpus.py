"""The real-music corpus: Debian game-music packages, unpacked into a cache outside the repo.

``prepare_corpus`` fetches the .deb files (``apt-get download``) if missing, unpacks them with
``dpkg -x``, keeps music files of at least 20 s (sound effects and jingles are dropped), removes
byte-identical copies, groups related tracks and makes a seeded catalog/negative split. The result
is written as ``corpus.json`` in the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

PACKAGES = (
    "wesnoth-1.16-music",
    "hyperrogue-music",
    "supertux-data",
    "hedgewars-data",
    "freedroidrpg-data",
    "extremetuxracer-data",
    "xmoto-data",
    "lincity-ng-data",
)
# Music the detector was never built or tuned on, only measured on (`--corpus heldout`): the
# folders named `music` of these packages, whose other folders hold ambience loops and effects
# of 20 s or more.
HELDOUT_PACKAGES = (
    "warzone2100-music",
    "flare-game",
    "megaglest-data",
    "scorched3d-data",
    "pink-pony-data",
    "solarwolf",
)
CORPORA = {"tuning": PACKAGES, "heldout": HELDOUT_PACKAGES}
AUDIO_SUFFIXES = {".ogg", ".oga", ".flac", ".wav", ".mp3", ".opus"}
# Folders that hold sound effects, voices and jingles rather than music.
NON_MUSIC_DIRS = {"sounds", "sound_effects", "sfx", "speech", "voices", "voice"}
MIN_DURATION_S = 20.0
NEGATIVE_FRACTION = 0.30
MANIFEST_NAME = "corpus.json"


def cache_dir(data: Path | None = None) -> Path:
    """The benchmark cache: `data`, else $AUDIODUP_BENCH_DATA, else ~/.cache/audiodup-bench."""
    if data is not None:
        return Path(data).expanduser()
    env = os.environ.get("AUDIODUP_BENCH_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "audiodup-bench"


def add_corpus_option(parser) -> None:
    """``--corpus`` of a tool's ``argparse`` parser: whose tracks and queries it reads."""
    parser.add_argument(
        "--corpus",
        choices=sorted(CORPORA),
        default="tuning",
        help="the corpus the detector was tuned on, or the held-out one of `python -m "
        "benchmarks run --corpus heldout`",
    )


def corpus_cache(name: str = "tuning", data: Path | None = None) -> Path:
    """The cache of the corpus ``name``: the held-out corpus, its queries and catalogs live in
    their own folder, ``heldout/``."""
    root = cache_dir(data)
    return root / "heldout" if name == "heldout" else root


def read_manifest(name: str = "tuning") -> dict:
    """The corpus ``name``'s manifest as stored (``corpus.json`` in :func:`corpus_cache`)."""
    return json.loads((corpus_cache(name) / MANIFEST_NAME).read_text())


@dataclass(frozen=True)
class Track:
    """One source recording. ``role`` is ``"catalog"`` (indexed) or ``"negative"``."""

    track_id: str
    package: str
    path: str
    duration_s: float
    samplerate: int
    channels: int
    sha1: str
    group: str
    role: str = "catalog"


@dataclass(frozen=True)
class Corpus:
    tracks: tuple[Track, ...]
    seed: int
    notes: tuple[str, ...] = ()
    name: str = "tuning"  # a key of CORPORA

    @property
    def catalog(self) -> list[Track]:
        return [t for t in self.tracks if t.role == "catalog"]

    @property
    def negatives(self) -> list[Track]:
        return [t for t in self.tracks if t.role == "negative"]

    def by_id(self) -> dict[str, Track]:
        return {t.track_id: t for t in self.tracks}

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "seed": self.seed,
            "notes": list(self.notes),
            "tracks": [dataclasses.asdict(t) for t in self.tracks],
        }

    @staticmethod
    def from_json(d: dict) -> Corpus:
        return Corpus(
            tracks=tuple(Track(**t) for t in d["tracks"]),
            seed=int(d["seed"]),
            notes=tuple(d.get("notes", ())),
            name=d.get("name", "tuning"),
        )


# --------------------------------------------------------------------------- fetching


def fetch_debs(debs: Path, packages: Iterable[str] = PACKAGES, log=print) -> list[Path]:
    """Return one .deb per package in `debs`, running ``apt-get download`` for missing ones."""
    debs.mkdir(parents=True, exist_ok=True)
    found: list[Path] = []
    missing = []
    for pkg in packages:
        hits = sorted(debs.glob(f"{pkg}_*.deb"))
        if hits:
            found.append(hits[-1])
        else:
            missing.append(pkg)
    if missing:
        log(f"downloading {missing} with apt-get download")
        if not any(Path("/var/lib/apt/lists").glob("*Packages*")):
            subprocess.run(["apt-get", "update"], check=True, capture_output=True)
        for pkg in missing:
            subprocess.run(["apt-get", "download", pkg], cwd=debs, check=True, capture_output=True)
            found.append(sorted(debs.glob(f"{pkg}_*.deb"))[-1])
    return found


def unpack(deb: Path, root: Path) -> Path:
    """``dpkg -x`` `deb` into ``root/<package>`` once (a stamp file marks completion)."""
    pkg = deb.name.split("_", 1)[0]
    dest = root / pkg
    stamp = dest / ".unpacked-from"
    if stamp.exists() and stamp.read_text() == deb.name:
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg", "-x", str(deb), str(dest)], check=True)
    stamp.write_text(deb.name)
    return dest


# --------------------------------------------------------------------------- scanning


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _group_stem(name: str) -> str:
    """Name stem shared by related tracks: 'frantic-old', 'forest2', 'airship_remix',
    'track3_enhanced' (a remaster that mixes the original in) -> base."""
    s = name.lower()
    pattern = re.compile(r"[-_ ]?(old|remix|sd|map|theme|enhanced|remastered|extended|\d+)$")
    while True:
        t = pattern.sub("", s)
        if t == s or not t:
            return s
        s = t


def _track_id(package: str, rel: Path, taken: set[str]) -> str:
    base = f"{package.split('-')[0]}__{rel.stem}"
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", base)
    tid, k = base, 2
    while tid in taken:
        tid, k = f"{base}_{k}", k + 1
    taken.add(tid)
    return tid


def scan(
    unpacked: dict[str, Path],
    min_duration_s: float = MIN_DURATION_S,
    *,
    music_dirs_only: bool = False,
) -> list[Track]:
    """Music files of at least `min_duration_s`, byte-identical copies removed. With
    `music_dirs_only`, only files inside a folder named `music`."""
    tracks: list[Track] = []
    seen: set[str] = set()
    ids: set[str] = set()
    for package, root in sorted(unpacked.items()):
        for p in sorted(root.rglob("*")):
            if not p.is_file() or p.suffix.lower() not in AUDIO_SUFFIXES:
                continue
            rel = p.relative_to(root)
            folders = {part.lower() for part in rel.parts[:-1]}
            if NON_MUSIC_DIRS & folders or (music_dirs_only and "music" not in folders):
                continue
            try:
                info = sf.info(str(p))
            except Exception:  # noqa: BLE001 - unreadable files are simply not music for us
                continue
            if info.duration < min_duration_s:
                continue
            digest = _sha1(p)
            if digest in seen:
                continue
            seen.add(digest)
            tracks.append(
                Track(
                    track_id=_track_id(package, rel, ids),
                    package=package,
                    path=str(p),
                    duration_s=float(info.duration),
                    samplerate=int(info.samplerate),
                    channels=int(info.channels),
                    sha1=digest,
                    group=f"{package}:{_group_stem(p.stem)}",
                )
            )
    return tracks


def merge_groups(tracks: list[Track], pairs: Iterable[tuple[str, str]]) -> list[Track]:
    """Union the groups of track pairs found to share audio (e.g. by Chromaprint)."""
    parent: dict[str, str] = {t.group: t.group for t in tracks}

    def find(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    by_id = {t.track_id: t for t in tracks}
    for a, b in pairs:
        ga, gb = find(by_id[a].group), find(by_id[b].group)
        if ga != gb:
            parent[max(ga, gb)] = min(ga, gb)
    return [dataclasses.replace(t, group=find(t.group)) for t in tracks]


def split(
    tracks: list[Track], seed: int, negative_fraction: float = NEGATIVE_FRACTION
) -> list[Track]:
    """Seeded split by group, stratified by package: related tracks stay on one side."""
    rng = np.random.default_rng(seed)
    by_pkg: dict[str, dict[str, list[Track]]] = defaultdict(lambda: defaultdict(list))
    for t in tracks:
        by_pkg[t.package][t.group].append(t)
    out: list[Track] = []
    for pkg in sorted(by_pkg):
        groups = sorted(by_pkg[pkg])
        order = rng.permutation(len(groups))
        n_total = sum(len(g) for g in by_pkg[pkg].values())
        target = round(negative_fraction * n_total)
        n_neg = 0
        for i in order:
            members = by_pkg[pkg][groups[i]]
            role = (
                "negative" if n_neg < target and n_neg + len(members) <= target + 1 else "catalog"
            )
            n_neg += len(members) if role == "negative" else 0
            out += [dataclasses.replace(t, role=role) for t in members]
    return sorted(out, key=lambda t: t.track_id)


def prepare_corpus(
    data: Path | None = None,
    seed: int = 0,
    overlap_pairs=None,
    log=print,
    name: str = "tuning",
) -> Corpus:
    """Build (or load) the manifest ``<cache>/corpus.json`` of the corpus ``name`` (a key of
    :data:`CORPORA`).

    `overlap_pairs`, if given, is a callable ``tracks -> [(track_id, track_id), ...]`` naming
    tracks that share audio; their groups are merged before the split.
    """
    root = cache_dir(data)
    manifest = root / MANIFEST_NAME
    if manifest.exists():
        corpus = Corpus.from_json(json.loads(manifest.read_text()))
        same = corpus.seed == seed and corpus.name == name
        if same and all(Path(t.path).exists() for t in corpus.tracks):
            return corpus
    debs = fetch_debs(root / "debs", CORPORA[name], log=log)
    unpacked = {d.name.split("_", 1)[0]: unpack(d, root / "unpacked") for d in debs}
    tracks = scan(unpacked, music_dirs_only=name == "heldout")
    notes: list[str] = []
    if overlap_pairs is not None:
        pairs = list(overlap_pairs(tracks))
        if pairs:
            notes.append(
                "tracks sharing audio (Chromaprint) kept on one side of the split: "
                + ", ".join(f"{a}~{b}" for a, b in pairs)
            )
        tracks = merge_groups(tracks, pairs)
    corpus = Corpus(tracks=tuple(split(tracks, seed)), seed=seed, notes=tuple(notes), name=name)
    manifest.write_text(json.dumps(corpus.to_json(), indent=1))
    return corpus


# --------------------------------------------------------------------------- decoding


def load_mono(path: Path | str, sr: int, cache: Path | None = None) -> np.ndarray:
    """Decode `path` to mono float32 at `sr` (cached as FLAC under `cache` if given)."""
    if cache is not None:
        cached = cache / (hashlib.sha1(str(path).encode()).hexdigest()[:16] + f"_{sr}.flac")
        if cached.exists():
            y, _ = sf.read(str(cached), dtype="float32")
            return y
    y, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    if file_sr != sr:
        y = soxr.resample(y, file_sr, sr).astype(np.float32)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp.flac")
        sf.write(str(tmp), np.clip(y, -1.0, 1.0), sr, subtype="PCM_16")
        tmp.replace(cached)
    return y


def summary(corpus: Corpus) -> dict[str, dict[str, float]]:
    """Per package: tracks, catalog works, negatives and hours."""
    out: dict[str, dict[str, float]] = {}
    for t in corpus.tracks:
        d = out.setdefault(t.package, {"tracks": 0, "catalog": 0, "negative": 0, "hours": 0.0})
        d["tracks"] += 1
        d[t.role] += 1
        d["hours"] += t.duration_s / 3600
    return dict(sorted(out.items()))
