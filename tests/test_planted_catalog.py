"""The planted catalog of issue #13, made from real music (fixtures/audio/real, Battle for
Wesnoth soundtrack excerpts, GPL-2+): references of two labels, altered copies by two fraud
accounts (one without ``uploaded_at``), a byte-identical re-upload by a third account, a medley
of two references by a fourth, a compilation of three, and two different files with the same
base name in different folders. ``rescan`` must give exactly the planted clusters, link the
medley and the compilation to each source without merging clusters, name every reference as
its cluster's original and rank the fraud accounts first with both labels at 0 copies; and a
rescan started from another working directory must give the same report."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audiodup import Catalog
from audiodup.cli import app
from audiodup.rescan import report_to_dict, rescan

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "fixtures" / "audio" / "real"
MANIFEST = json.loads((REAL / "manifest.json").read_text(encoding="utf-8"))

LABELS = ("label-aurora", "label-boreal")
FRAUD = ("fraud-ring", "fraud-solo")
# relative path: (uploader, uploaded_at, extra metadata)
PLAN = {
    "references/ref1_knolls.ogg": ("label-aurora", "2020-01-10", {"isrc": "QZAUR2000001"}),
    "references/ref2_elvish_theme.ogg": ("label-aurora", "2020-02-10", {"isrc": "QZAUR2000002"}),
    "references/ref3_northerners.ogg": ("label-boreal", "2020-03-10", {"upc": "190000000003"}),
    "references/ref4_loyalists.ogg": ("label-boreal", "2020-04-10", {"upc": "190000000004"}),
    "references/ref5_the_deep_path.ogg": ("label-boreal", "2020-05-10", {}),
    "uploads/fraud-ring/elvish_fast.ogg": ("fraud-ring", "2023-01-01", {}),
    "uploads/fraud-ring/loyal_cut.ogg": ("fraud-ring", "2023-01-02", {}),
    "uploads/fraud-ring/track.ogg": ("fraud-ring", "2023-01-03", {}),
    "uploads/fraud-solo/track.ogg": ("fraud-solo", "2023-06-01", {}),
    "uploads/fraud-solo/northern_slow.ogg": ("fraud-solo", None, {}),  # no uploaded_at
    "uploads/reuploader/elvish_theme.ogg": ("reuploader", "2023-03-03", {}),
    "uploads/dj/medley.ogg": ("dj-medley", "2024-01-01", {}),
    "uploads/compiler/compilation.ogg": ("compiler", "2024-02-01", {}),
}
EXPECTED_CLUSTERS = [
    {"references/ref1_knolls.ogg", "uploads/fraud-ring/track.ogg"},
    {
        "references/ref2_elvish_theme.ogg",
        "uploads/reuploader/elvish_theme.ogg",
        "uploads/fraud-ring/elvish_fast.ogg",
    },
    {"references/ref3_northerners.ogg", "uploads/fraud-solo/northern_slow.ogg"},
    {"references/ref4_loyalists.ogg", "uploads/fraud-ring/loyal_cut.ogg"},
    {"references/ref5_the_deep_path.ogg", "uploads/fraud-solo/track.ogg"},
]
# "ref1" -> "references/ref1_knolls.ogg"
REFERENCE_FILE = {
    Path(e["file"]).name.split("_")[0]: e["file"]
    for e in MANIFEST["files"]
    if e["kind"] == "reference"
}


def metadata_for(relative: str) -> dict:
    uploader, uploaded_at, extra = PLAN[relative]
    entry = next(e for e in MANIFEST["files"] if e["file"] == relative)
    meta = {
        "uploader": uploader,
        "role": "reference" if relative.startswith("references/") else "upload",
        "external_id": f"EXT-{relative.replace('/', '-')}",
        "title": entry.get("title") or Path(relative).stem,
        **extra,
    }
    if uploaded_at:
        meta["uploaded_at"] = uploaded_at
    return meta


@pytest.fixture(scope="module")
def pristine_real(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The planted catalog, added through the ledger from the fixtures folder with relative
    paths (never rescanned; tests copy it)."""
    root = tmp_path_factory.mktemp("real-planted") / "catalog"
    metadata = {str((REAL / rel).resolve()): metadata_for(rel) for rel in PLAN}
    before = Path.cwd()
    os.chdir(REAL)
    try:
        with Catalog.open(root) as catalog:
            references = catalog.add_paths(["references"], metadata=metadata, role="upload")
            uploads = catalog.add_paths(["uploads"], metadata=metadata, role="upload")
    finally:
        os.chdir(before)
    assert [r.status for r in references] == ["added"] * 5, references
    # results name the paths as given (relative to REAL here)
    status = {str((REAL / r.path).resolve().relative_to(REAL)): r.status for r in uploads}
    assert status == {
        rel: "identical" if "reuploader" in rel else "added"
        for rel in PLAN
        if rel.startswith("uploads/")
    }
    return root


def rescanned(pristine: Path, dest: Path, cwd: Path):
    root = shutil.copytree(pristine, dest)
    before = Path.cwd()
    os.chdir(cwd)
    try:
        with Catalog.open(root, create=False) as catalog:
            return rescan(catalog, workers=1)
    finally:
        os.chdir(before)


@pytest.fixture(scope="module")
def report(pristine_real: Path, tmp_path_factory):
    return rescanned(pristine_real, tmp_path_factory.mktemp("real-a") / "catalog", REAL)


def relative(path: str) -> str:
    return str(Path(path).resolve().relative_to(REAL))


def work_of(report, relative_path: str) -> int:
    return next(m.work_id for m in report.linked_uploads if relative(m.path) == relative_path)


# -- the planted clusters --------------------------------------------------------------------
def test_rescan_gives_exactly_the_planted_clusters(report) -> None:
    assert report.works == 12 and report.uploads == 13
    assert report.errors == () and report.fallbacks == () and report.unscanned == ()
    found = [{relative(m.path) for m in c.members} for c in report.clusters]
    assert sorted(found, key=sorted) == sorted(EXPECTED_CLUSTERS, key=sorted)


def test_every_original_is_the_reference_of_its_label(report) -> None:
    for cluster in report.clusters:
        assert cluster.determined and cluster.original_reason == "reference upload"
        (original,) = [m for m in cluster.members if m.relation == "original"]
        assert original.upload_id == cluster.original_upload_id
        assert original.role == "reference" and original.uploader in LABELS
        assert relative(original.path).startswith("references/")
        assert original.external_id == f"EXT-{relative(original.path).replace('/', '-')}"
        others = [m for m in cluster.members if m is not original]
        assert all(m.role == "upload" for m in others)
        assert {m.relation for m in others} <= {"copy_of", "identical"}


def test_the_identical_reupload_is_in_its_cluster_as_identical(report) -> None:
    (member,) = [m for c in report.clusters for m in c.members if m.uploader == "reuploader"]
    assert member.relation == "identical"
    assert relative(member.path) == "uploads/reuploader/elvish_theme.ogg"
    cluster = next(c for c in report.clusters if member in c.members)
    original = next(m for m in cluster.members if m.relation == "original")
    assert member.work_id == original.work_id and original.isrc == "QZAUR2000002"


def test_alterations_relative_to_the_reference_match_the_manifest(report) -> None:
    for entry in (e for e in MANIFEST["files"] if e["kind"] == "altered_copy"):
        work_id = work_of(report, entry["file"])
        cluster = next(c for c in report.clusters if work_id in c.work_ids)
        (alteration,) = [a for a in cluster.alterations if a.work_id == work_id]
        assert alteration.relative_to == work_of(report, REFERENCE_FILE[entry["of"]])
        assert alteration.tempo_ratio == pytest.approx(entry["tempo_ratio"], rel=0.02)
        assert alteration.pitch_shift_semitones == pytest.approx(
            entry["pitch_shift_semitones"], abs=0.25
        )


def test_same_base_name_in_two_folders_keeps_its_own_uploader(report) -> None:
    tracks = {
        relative(m.path): m
        for c in report.clusters
        for m in c.members
        if Path(m.path).name == "track.ogg"
    }
    assert {rel: m.uploader for rel, m in tracks.items()} == {
        "uploads/fraud-ring/track.ogg": "fraud-ring",
        "uploads/fraud-solo/track.ogg": "fraud-solo",
    }
    assert tracks["uploads/fraud-solo/track.ogg"].uploaded_at == "2023-06-01"
    ring, solo = (tracks[f"uploads/{a}/track.ogg"] for a in FRAUD)
    assert ring.work_id != solo.work_id


# -- medley and compilation ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("derived", "sources"),
    [
        ("uploads/dj/medley.ogg", ("ref1", "ref4")),
        ("uploads/compiler/compilation.ogg", ("ref2", "ref3", "ref5")),
    ],
)
def test_medley_and_compilation_are_excerpts_of_each_source_without_merging(
    report, derived: str, sources: tuple[str, ...]
) -> None:
    work_id = work_of(report, derived)
    links = [k for k in report.links if work_id in (k.work_id, k.source_work_id)]
    assert all(k.kind == "contains_excerpt_of" and k.work_id == work_id for k in links)
    assert not any(k.clustered for k in links)
    linked = {k.source_work_id for k in links}
    assert {work_of(report, REFERENCE_FILE[s]) for s in sources} <= linked
    # the other sources are the copies of those references, in the same clusters
    allowed = {
        w
        for c in report.clusters
        for w in c.work_ids
        if any(work_of(report, REFERENCE_FILE[s]) in c.work_ids for s in sources)
    }
    assert linked <= allowed
    assert all(work_id not in c.work_ids for c in report.clusters)
    (upload,) = [m for m in report.linked_uploads if m.work_id == work_id]
    assert upload.relation == "unclustered"


def test_no_link_accuses_without_an_original(report) -> None:
    assert {k.kind for k in report.links} == {"copy_of", "contains_excerpt_of"}
    for link in report.links:
        assert link.direction.endswith("has a reference upload")
        if link.kind == "copy_of":
            assert link.work_share >= 0.6 and link.clustered


# -- the uploader ranking --------------------------------------------------------------------
def test_ranking_puts_the_fraud_accounts_first_and_the_labels_at_zero(report) -> None:
    ranks = {u.uploader: u for u in report.uploaders}
    assert [u.uploader for u in report.uploaders[:2]] == list(FRAUD)
    assert (ranks["fraud-ring"].copies, ranks["fraud-ring"].share) == (3, 1.0)
    # the undated copy counts: the reference decides, not the dates
    assert (ranks["fraud-solo"].copies, ranks["fraud-solo"].uploads) == (2, 2)
    assert ranks["reuploader"].copies == 1
    for label in LABELS:
        assert ranks[label].copies == 0 and ranks[label].originals_copied > 0
    for account in ("dj-medley", "compiler"):
        assert (ranks[account].copies, ranks[account].excerpts_used) == (0, 1)
    assert all(u.undetermined == 0 for u in report.uploaders)


# -- where the rescan starts ------------------------------------------------------------------
def comparable(report) -> dict:
    data = report_to_dict(report)
    data.pop("catalog")
    return data


def test_a_rescan_from_another_working_directory_gives_the_same_report(
    report, pristine_real: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = rescanned(pristine_real, tmp_path / "catalog", elsewhere)
    assert other.fallbacks == ()
    assert comparable(other) == comparable(report)


# -- the command line and the reports ---------------------------------------------------------
def test_cli_and_html_report_show_owners_relations_and_the_medley(
    pristine_real: Path, tmp_path: Path
) -> None:
    root = shutil.copytree(pristine_real, tmp_path / "catalog")
    page = tmp_path / "rescan.html"
    result = CliRunner().invoke(app, ["rescan", "--db", str(root), "--out", str(page)])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "5 clusters (0 without a determined original), 5 copy_of" in text
    assert "contains_excerpt_of" in text and "reference upload" in text
    html = page.read_text(encoding="utf-8")
    assert 'id="links"' in html and "owner label-aurora" in html
    assert "nan onsets" not in html and " nan " not in html  # stored nulls read back null
    links = html[html.index('id="links"') : html.index("</table>", html.index('id="links"'))]
    assert links.count("contains_excerpt_of</span>") == sum(
        1
        for k in json.loads(_json_report(root, tmp_path))["links"]
        if k["kind"] == "contains_excerpt_of"
    )
    assert "dj-medley" in links and "QZAUR2000001" in links
    # the medley's and the compilation's own sections: each source once, with picture and sound
    assert "Contains excerpts of 2 sources" in html and "Contains excerpts of 3 sources" in html
    medley = html[html.index("Contains excerpts of 2 sources") :]
    medley = medley[: medley.index("</section>")]
    assert medley.count("<img") == 2 and medley.count("<audio") == 4


def _json_report(root: Path, tmp_path: Path) -> str:
    out = tmp_path / "rescan.json"
    result = CliRunner().invoke(app, ["rescan", "--db", str(root), "--new-only", "--out", str(out)])
    assert result.exit_code == 1, result.output
    return out.read_text(encoding="utf-8")


def test_after_a_rescan_a_match_with_a_copy_names_the_reference(
    pristine_real: Path, tmp_path: Path
) -> None:
    """Screening an upload that matches a known copy: before any rescan the copy's own upload
    names its work; after the rescan found it a copy of a reference, the reference does, says
    why, and stands first among the duplicates."""
    root = shutil.copytree(pristine_real, tmp_path / "catalog")
    upload = REAL / "uploads" / "fraud-ring" / "track.ogg"  # a copy of ref1 (knolls)
    with Catalog.open(root, create=False) as catalog:
        ledger = {u.source_path: u for u in catalog.uploads()}
        copy = ledger[str(upload.resolve())]
        reference = ledger[str((REAL / REFERENCE_FILE["ref1"]).resolve())]
        before = catalog.screen(upload)
        on_copy = next(m for m in before.matches if m.work_id == copy.work_id)
        assert (on_copy.upload_id, on_copy.uploader) == (copy.upload_id, "fraud-ring")
        assert on_copy.identical_content
        rescan(catalog, workers=1)
        after = catalog.screen(upload)
    assert after.verdict == before.verdict == "duplicate"
    on_copy = next(m for m in after.matches if m.work_id == copy.work_id)
    assert (on_copy.upload_id, on_copy.role, on_copy.uploader) == (
        reference.upload_id,
        "reference",
        "label-aurora",
    )
    assert "rescan found work" in on_copy.attribution and on_copy.identical_content
    assert after.matches[0].role == "reference"
    # the medley shares excerpts with references but is no copy: it keeps its own owner
    medley = catalog_owner_of(root, REAL / "uploads" / "dj" / "medley.ogg")
    assert medley == ("dj-medley", "upload")


def catalog_owner_of(root: Path, path: Path) -> tuple[str | None, str | None]:
    """Who names the work of ``path``'s own audio when it is screened."""
    with Catalog.open(root, create=False) as catalog:
        verdict = catalog.screen(path)
    own = next(m for m in verdict.matches if m.identical_content)
    return own.uploader, own.role
