"""The versioned output contract (audiodup/schema.py, audiodup/schemas/): every JSON document
the command line prints or writes, made by the real commands on the bundled fixtures, is valid
against its shipped schema; the schemas are valid, closed and described; a drifted document
is rejected; the exit code of a batch shows a duplicate and an unreadable file together."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import tomllib
from dataclasses import replace
from fnmatch import fnmatch
from pathlib import Path
from typing import get_args

import pytest
from click.testing import Result
from jsonschema import Draft202012Validator, ValidationError
from typer.testing import CliRunner

import audiodup.rescan.run
from audiodup import Catalog, Verdict
from audiodup.cli import app
from audiodup.rescan import WorkScan
from audiodup.results import TIMING_FIELDS, Signal
from audiodup.schema import (
    DOCUMENTS,
    SCHEMA_VERSION,
    SCHEMAS,
    load_schema,
    problems,
    schema_text,
    validate,
)

ROOT = Path(__file__).resolve().parents[1]
UPLOADS_DIR = ROOT / "fixtures" / "audio" / "uploads"
DUPLICATE = UPLOADS_DIR / "stretch_0.80_work_01.ogg"
CLEAN = UPLOADS_DIR / "unrelated_a.ogg"
EXIT_DUPLICATE, EXIT_ERROR, EXIT_SUSPECT = 1, 2, 4  # the documented flags (README: Exit codes)


def run(*args) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_valid(document, kind: str) -> None:
    assert problems(document, kind) == [], json.dumps(document, indent=1)[:2000]
    validate(document, kind)  # the public entry point agrees


@pytest.fixture(scope="module")
def db(pristine_catalog_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the six-work fixture catalog for this module."""
    root = tmp_path_factory.mktemp("schemas") / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    return root


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file named like audio that no decoder reads."""
    path = tmp_path_factory.mktemp("corrupt") / "corrupt.ogg"
    path.write_bytes(b"OggS" + b"\x00not really ogg" * 64)
    return path


@pytest.fixture(scope="module")
def screened(db: Path, corrupt: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``screen --json`` and ``screen --out FILE.json`` of a duplicate, a corrupt file, an
    unrelated upload and a missing file: exit codes and both documents."""
    missing = corrupt.parent / "missing.wav"
    inputs = [DUPLICATE, corrupt, CLEAN, missing]
    printed = run("screen", "--db", db, "--json", *inputs)
    out = tmp_path_factory.mktemp("out") / "screen.json"
    written = run("screen", "--db", db, "--out", out, *inputs)
    return {
        "inputs": [str(p) for p in inputs],
        "code": printed.exit_code,
        "stderr": printed.stderr,
        "document": json.loads(printed.stdout),
        "out_code": written.exit_code,
        "out_document": json.loads(out.read_text(encoding="utf-8")),
        "out_stdout": written.stdout,
        "out_stderr": written.stderr,
    }


# -- the schemas themselves ------------------------------------------------------------------
@pytest.mark.parametrize("name", SCHEMAS)
def test_each_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/{name}.schema.json")
    assert schema["description"]


@pytest.mark.parametrize("kind", DOCUMENTS)
def test_each_document_schema_requires_the_one_schema_version(kind: str) -> None:
    schema = load_schema(kind)
    assert "schema_version" in schema["required"]
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION


def _subschemas(node, where: str = "#"):
    """Every schema object inside ``node`` with its JSON pointer."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _subschemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _subschemas(value, f"{where}/{i}")


# free-form user data (the metadata CSV's own columns): the only open objects
OPEN_OBJECTS = {
    ("index-list", "#/$defs/work/properties/metadata"),
    ("rescan", "#/$defs/member/properties/extra"),  # the user's own columns
    ("index-uploads", "#/$defs/upload/properties/extra"),  # the user's own columns
}


@pytest.mark.parametrize("name", SCHEMAS)
def test_our_objects_are_closed_and_every_field_is_described(name: str) -> None:
    """Strict enough to catch drift: an object of ours accepts no unknown field, and every
    field says what it means."""
    for where, node in _subschemas(load_schema(name)):
        if node.get("type") != "object" or (name, where) in OPEN_OBJECTS:
            continue  # (if/then/else refine fields declared beside them)
        assert node.get("additionalProperties") is False, (name, where)
        assert node.get("properties"), (name, where)
        for field, spec in node["properties"].items():
            assert spec.get("description"), (name, where, field)


def shape_digest() -> str:
    """SHA-256 of every schema without its prose (title, description): what a version means."""

    def shape(node):
        if isinstance(node, dict):
            return {k: shape(v) for k, v in node.items() if k not in ("title", "description")}
        return [shape(v) for v in node] if isinstance(node, list) else node

    text = json.dumps({n: shape(load_schema(n)) for n in SCHEMAS}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# The shape each schema_version stands for. A change of shape (a field added, removed, renamed,
# retyped) must come with a new SCHEMA_VERSION in audiodup/schema.py and its digest here, so no
# consumer sees two shapes under one version. Prose may change freely.
TIMINGS = TIMING_FIELDS
SHAPE_DIGESTS = {
    "1.0": "90db807edc6b45f2173c47c19bbf106bca615fbb6e176336ce3168de78122127",
    "1.1": "9e94bbfea43b78eb9a20be6f67820a6b00c4592b24477b985f7ff206919691ac",
    "2.0": "930f86cbe9a31b8312012f792bef6ece9652693d97d9ab438cb26cd0c2e730ad",
    "2.1": "51825a81b48c37656afb2bb38e0688555959404a652002d8399069f11af8bfa0",
    "3.0": "a473cdc812ac3c1731530abd7caeca259a99a38dfc5e4ecc6a0324d04e1c6138",
    "3.1": "d5f5b6dcdf61f2590e228b3f7aa5686de5d2e1fa5c5cdcfc232309cd371d84a7",
    "3.2": "7fd2350fe9d6c7c7521173ef49e1668e99786c1020eeb65d49a2be3cdf2f32c9",
    "3.3": "f8491e1d88da485aaa3d9cb91239a00bc71308f4bcafae63905e0b13175a4dea",
    "3.4": "c2b99856628fde25a298d70a965215880c7ed10224894211817dbd274255962a",
    "3.5": "d7bbc459f6d38e45e47f6dde9bfcf29855bf489870f284bc309bc9b919ce1aa2",
    "3.6": "6f0189e40c3fce8d79c0325bfa678c2f25b4dce419b2aa7cc77bf8a93e14216c",
    "3.7": "763ed99a3989589c6992848d293ebfd565dd911458bb3df73607e691752bb83c",
    "3.8": "da519b07b2ad43670d25418ebc132368a4c1349a7f5773eae54b8bfbd84c7302",
}


def test_a_change_of_shape_comes_with_a_new_schema_version() -> None:
    assert SHAPE_DIGESTS.get(SCHEMA_VERSION) == shape_digest(), (
        f"the schemas' shape is not the one of version {SCHEMA_VERSION}: bump SCHEMA_VERSION "
        "(audiodup/schema.py and the schemas' schema_version const) and add the new version "
        f"with its digest {shape_digest()} to SHAPE_DIGESTS"
    )


def test_the_schemas_ship_with_the_package() -> None:
    """Every file in audiodup/schemas/ is a known schema, and pyproject.toml's package data
    takes all of them into the wheel."""
    folder = ROOT / "audiodup" / "schemas"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.schema.json" for n in SCHEMAS)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["audiodup"]
    for name in SCHEMAS:
        assert any(fnmatch(f"schemas/{name}.schema.json", p) for p in patterns), name
        assert json.loads(schema_text(name)) == load_schema(name)  # read through the package
    assert any(d.startswith("jsonschema") for d in pyproject["project"]["dependencies"])
    with pytest.raises(ValueError, match="no schema"):
        schema_text("../pyproject")


# -- screen ----------------------------------------------------------------------------------
def test_screen_json_is_valid_with_error_entries_of_the_same_shape(screened: dict) -> None:
    document = screened["document"]
    assert_valid(document, "screen")
    assert document["schema_version"] == SCHEMA_VERSION
    results = document["results"]
    assert [r["path"] for r in results] == screened["inputs"]
    duplicate, corrupt, clean, missing = results
    assert duplicate["verdict"] == "duplicate" and duplicate["error"] is None
    assert clean["verdict"] == "clean" and clean["matches"] == []
    for error in (corrupt, missing):
        assert set(error) == set(duplicate)  # the same shape as a result
        assert error["verdict"] == "error" and error["matches"] == []
        assert error["error"]
    assert missing["error"] == "file not found"
    assert document["summary"] == {
        "uploads": 4,
        "duplicate": 1,
        "suspect": 0,
        "clean": 1,
        "error": 2,
        "partly_screened": 0,
    }
    assert screened["stderr"] == ""  # with --json the errors are in the JSON


def test_a_batch_with_a_duplicate_and_an_unreadable_file_shows_both(screened: dict) -> None:
    """Neither fact hides the other: 1 (duplicate) + 2 (error), with --json and with --out."""
    assert screened["code"] == EXIT_DUPLICATE | EXIT_ERROR == 3
    assert screened["out_code"] == screened["code"]
    assert "duplicate" in screened["out_stdout"]  # the table
    assert len([x for x in screened["out_stderr"].splitlines() if x.startswith("error: ")]) == 2


def test_screen_out_json_is_the_printed_document(screened: dict) -> None:
    assert_valid(screened["out_document"], "screen")

    def untimed(document: dict) -> dict:
        document = copy.deepcopy(document)
        for result in document["results"]:
            for key in TIMINGS:
                result.pop(key)
        return document

    assert untimed(screened["out_document"]) == untimed(screened["document"])


def test_every_verdict_and_flag_together(
    db: Path, corrupt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A suspect (a same-composition match), a duplicate and an error in one batch: exit code 7,
    every entry valid, the summary names all three."""
    with Catalog.open(db, create=False) as catalog:
        duplicate = catalog.screen(DUPLICATE)
    suspect = replace(
        duplicate,
        path="suspect.ogg",
        verdict="suspect",
        matches=(replace(duplicate.matches[0], relation="same_composition", matched_hashes=0),),
    )
    failed = Verdict(path=str(corrupt), verdict=None, error="cannot decode")
    monkeypatch.setattr(
        Catalog, "screen_many", lambda self, paths, **kwargs: [suspect, duplicate, failed]
    )
    result = run("screen", "--db", db, "--json", "a", "b", "c")
    assert result.exit_code == EXIT_DUPLICATE | EXIT_ERROR | EXIT_SUSPECT == 7
    document = json.loads(result.stdout)
    assert_valid(document, "screen")
    assert [r["verdict"] for r in document["results"]] == ["suspect", "duplicate", "error"]
    assert document["summary"]["suspect"] == document["summary"]["error"] == 1

    monkeypatch.setattr(Catalog, "screen_many", lambda self, paths, **kwargs: [suspect])
    assert run("screen", "--db", db, "a").exit_code == EXIT_SUSPECT


# -- index list / stats ----------------------------------------------------------------------
def test_index_list_and_stats_json_are_valid(db: Path) -> None:
    listed = run("index", "list", "--db", db, "--json")
    assert listed.exit_code == 0, listed.output
    works = json.loads(listed.stdout)
    assert_valid(works, "index-list")
    assert works["schema_version"] == SCHEMA_VERSION and len(works["works"]) == 6
    stats = run("index", "stats", "--db", db, "--json")
    assert stats.exit_code == 0, stats.output
    document = json.loads(stats.stdout)
    assert_valid(document, "index-stats")
    assert document["schema_version"] == SCHEMA_VERSION and document["works"] == 6


def test_an_empty_catalog_lists_and_counts_validly(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "empty"):
        pass
    assert_valid(
        json.loads(run("index", "list", "--db", tmp_path / "empty", "--json").stdout), "index-list"
    )
    assert_valid(
        json.loads(run("index", "stats", "--db", tmp_path / "empty", "--json").stdout),
        "index-stats",
    )


# -- rescan ----------------------------------------------------------------------------------
def test_rescan_json_is_valid_and_an_error_shows_beside_the_duplicates(
    pristine_catalog_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fixture works plus a slowed copy of work_01: one duplicate pair. One other work
    cannot be screened at all (its stored fingerprint is unusable, simulated): exit code 3,
    and the error is an entry with its cause under ``error``."""
    root = tmp_path / "catalog"
    shutil.copytree(pristine_catalog_dir, root)
    assert run("index", "add", "--db", root, DUPLICATE).exit_code == 0
    with Catalog.open(root, create=False) as catalog:
        broken = next(w for w in catalog.works() if w.path.endswith("work_04.ogg"))
    real = audiodup.rescan.run.screen_work

    def screen_work(catalog, work_id, *args, **kwargs) -> WorkScan:
        if work_id == broken.work_id:
            return WorkScan(work_id, "stored_fingerprint", error="no usable fingerprint")
        return real(catalog, work_id, *args, **kwargs)

    monkeypatch.setattr(audiodup.rescan.run, "screen_work", screen_work)
    out = tmp_path / "rescan.json"
    result = run("rescan", "--db", root, "--out", out)
    assert result.exit_code == EXIT_DUPLICATE | EXIT_ERROR == 3, result.output
    document = json.loads(out.read_text(encoding="utf-8"))
    assert_valid(document, "rescan")
    assert document["schema_version"] == SCHEMA_VERSION
    assert document["errors"] == [
        {"work_id": broken.work_id, "path": broken.path, "error": "no usable fingerprint"}
    ]
    assert document["summary"]["errors"] == 1
    assert document["summary"]["duplicate_pairs"] == len(document["pairs"]) >= 1
    assert {Path(m["path"]).name for m in document["clusters"][0]["members"]} == {
        "work_01.ogg",
        DUPLICATE.name,
    }

    monkeypatch.setattr(audiodup.rescan.run, "screen_work", real)
    again = run("rescan", "--db", root, "--out", out)  # the same works, all screened now
    assert again.exit_code == EXIT_DUPLICATE, again.output
    document = json.loads(out.read_text(encoding="utf-8"))
    assert_valid(document, "rescan")
    assert document["errors"] == [] and document["summary"]["errors"] == 0


# -- drift is caught -------------------------------------------------------------------------
def drifted(document: dict, change) -> dict:
    document = copy.deepcopy(document)
    change(document)
    return document


def first_match(document: dict) -> dict:
    return document["results"][0]["matches"][0]


SCREEN_DRIFTS = {
    "unknown top-level field": lambda d: d.update(extra=1),
    "no schema_version": lambda d: d.pop("schema_version"),
    "another schema_version": lambda d: d.update(schema_version="0.9"),
    "a bare array": None,
    "unknown field in a result": lambda d: d["results"][0].update(confidence=0.9),
    "a wrong verdict": lambda d: d["results"][0].update(verdict="maybe"),
    "an error without its cause": lambda d: d["results"][1].update(error=None),
    "an error with matches": lambda d: d["results"][1].update(matches=d["results"][0]["matches"]),
    "a verdict with an error": lambda d: d["results"][0].update(error="oops"),
    "the old error shape": lambda d: d["results"].__setitem__(1, {"path": "x", "error": "e"}),
    "unknown field in a match": lambda d: first_match(d).update(owner="label"),
    "a wrong relation": lambda d: first_match(d).update(relation="same_vibe"),
    "a missing match field": lambda d: first_match(d).pop("tempo_ratio"),
    "a probability above 1": lambda d: first_match(d).update(false_match_probability=2.0),
    "a non-finite float (null)": lambda d: first_match(d).update(score=None),
    "unknown field in a section": lambda d: first_match(d)["sections"][0].update(x=1),
    "a wrong role": lambda d: first_match(d).update(role="owner"),
    "an unknown external id": lambda d: first_match(d).update(external_ids={"iswc": "T-1"}),
    "a string upload id": lambda d: first_match(d).update(upload_id="7"),
    "unknown summary count": lambda d: d["summary"].update(maybe=0),
}


@pytest.mark.parametrize("drift", SCREEN_DRIFTS, ids=list(SCREEN_DRIFTS))
def test_a_drifted_screen_document_is_rejected(screened: dict, drift: str) -> None:
    change = SCREEN_DRIFTS[drift]
    document = screened["document"]
    bad = document["results"] if change is None else drifted(document, change)
    assert problems(bad, "screen"), drift
    with pytest.raises(ValidationError):
        validate(bad, "screen")


def test_matches_accept_the_upload_identity_the_ledger_will_add(screened: dict) -> None:
    """upload_id, uploader, role and external_ids are optional properties of a match now."""

    def identify(document: dict) -> None:
        first_match(document).update(
            upload_id=7,
            uploader="label_a",
            role="reference",
            external_ids={"isrc": "BR-ABC-20-00001", "upc": "0123456789012", "external_id": "D-0"},
        )
        document["results"][0]["matches"].append(
            {**first_match(document), "uploader": None, "role": "upload", "external_ids": {}}
        )

    assert_valid(drifted(screened["document"], identify), "screen")


def test_a_match_names_exactly_the_signals_screening_can_hear(screened: dict) -> None:
    """Every signal of :data:`audiodup.results.Signal` validates; no other name does."""

    def heard_in(signal: str):
        return lambda document: first_match(document).update(signal=signal)

    for signal in get_args(Signal):
        assert_valid(drifted(screened["document"], heard_in(signal)), "screen")
    strangers = ("channel_0", "channel_65", "difference_2_1", "difference_3_3", "difference_8_9")
    for stranger in strangers:
        assert problems(drifted(screened["document"], heard_in(stranger)), "screen"), stranger


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("index-list", lambda d: d["works"][0].update(owner="x")),
        ("index-list", lambda d: d["works"][0].update(sha256="not-a-hash")),
        ("index-list", lambda d: d.update(schema_version="1.1")),
        ("index-stats", lambda d: d.update(gpu=True)),
        ("index-stats", lambda d: d.update(works=-1)),
        ("index-stats", lambda d: d.pop("shards")),
    ],
)
def test_a_drifted_index_document_is_rejected(db: Path, kind: str, change) -> None:
    command = kind.split("-")[1]
    document = json.loads(run("index", command, "--db", db, "--json").stdout)
    assert_valid(document, kind)
    assert problems(drifted(document, change), kind)


def test_a_drifted_rescan_document_is_rejected() -> None:
    document = {
        "schema_version": SCHEMA_VERSION,
        "summary": {
            "duplicate_pairs": 0,
            "suspect_pairs": 0,
            "clusters": 0,
            "errors": 1,
            "fallbacks": 0,
            "unscanned": 0,
            "partly_scanned": 0,
        },
        "catalog": "c",
        "works": 1,
        "scanned": 1,
        "unscanned": [],
        "uploads": 1,
        "clusters": [],
        "links": [],
        "linked_uploads": [],
        "pairs": [],
        "suspect_pairs": [],
        "uploaders": [],
        "fallbacks": [],
        "errors": [{"work_id": 1, "path": "a.ogg", "error": "cannot decode"}],
        "partly_scanned": [],
        "review_decisions": [],
    }
    assert_valid(document, "rescan")
    for change in (
        lambda d: d["errors"][0].update(note=d["errors"][0].pop("error")),  # the old shape
        lambda d: d["errors"][0].update(error=""),
        lambda d: d.update(relations=[]),
        lambda d: d.pop("links"),
        lambda d: d["links"].append({"kind": "accused", "work_id": 1}),
        lambda d: d.pop("summary"),
        lambda d: d["summary"].update(errors="1"),
        lambda d: d.pop("partly_scanned"),
        lambda d: d["partly_scanned"].append({"work_id": 1, "path": "a.ogg", "note": "n"}),
    ):
        assert problems(drifted(document, change), "rescan")


def test_the_readme_screen_json_example_is_what_screen_prints(
    catalog_copy: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """The README's ``screen --json`` example, run as it says (its catalog is the fixture
    catalog that "Start here" builds), prints that document but for timings and where the clone
    is; the error entry is for a text file here (the decoder's wording varies)."""
    from cli_runner import run_main

    readme = (ROOT / "README.md").read_text()
    command = "AUDIODUP_FFMPEG=none audiodup screen --db /tmp/audiodup-demo --json"
    start = readme.index("```json\n", readme.index(command)) + len("```json\n")
    shown = json.loads(readme[start : readme.index("\n```", start)])
    not_audio = tmp_path / "hostname"
    not_audio.write_text("a text file\n")
    upload = "fixtures/audio/uploads/stretch_0.80_work_01.ogg"
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("AUDIODUP_FFMPEG", "none")
    argv = ["screen", "--db", str(catalog_copy), "--json", upload, str(not_audio)]
    code, out, _ = run_main(argv, monkeypatch, capsys)
    printed = json.loads(out)
    assert code == 3 and printed["summary"] == shown["summary"]
    assert printed["results"][1]["verdict"] == shown["results"][1]["verdict"] == "error"

    def comparable(entry: dict) -> dict:
        entry = {k: v for k, v in entry.items() if k not in TIMING_FIELDS}
        entry["matches"] = [
            {**m, "path": m["path"].replace("/path/to/audiodup", str(ROOT))}
            for m in entry["matches"]
        ]
        return entry

    assert comparable(printed["results"][0]) == comparable(shown["results"][0])
