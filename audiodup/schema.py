"""The versioned output contract: every JSON document audiodup writes carries
``schema_version`` (:data:`SCHEMA_VERSION`), and a JSON Schema (draft 2020-12) shipped in
``audiodup/schemas/`` describes each kind of document.

=================  ==================================================  ==========================
document           written by                                          schema file
=================  ==================================================  ==========================
``screen``         ``screen --json``, ``screen --out FILE.json``       ``screen.schema.json``
``rescan``         ``rescan --out FILE.json``                          ``rescan.schema.json``
``index-list``     ``index list --json``                               ``index-list.schema.json``
``index-uploads``  ``index uploads --json``                            ``index-uploads.schema.json``
``index-stats``    ``index stats --json``                              ``index-stats.schema.json``
``decisions``      ``GET /v1/reviews/export?format=json`` (serve)      ``decisions.schema.json``
=================  ==================================================  ==========================

``match.schema.json`` (one match and its sections) is shared by ``screen`` and ``rescan``.
The schemas' ``$id`` values are names, not addresses: nothing is fetched from the network,
:func:`registry` resolves every ``$ref`` from the files in the package.

Example::

    from audiodup.schema import validate
    validate(json.loads(text), "screen")  # raises jsonschema.ValidationError on drift

``jsonschema`` is imported only by the functions that need it, so writing JSON costs nothing.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from jsonschema.protocols import Validator
    from referencing import Registry

# Bump on every change of a document's shape: the minor number when fields are added, the
# major number when a field is removed, renamed or changes its meaning. The schema files hold
# the same value as their "schema_version" const (tests/test_schemas.py checks it).
# 1.1: the upload ledger (owners in matches, index uploads); 2.0: rescan's typed links,
# clusters of uploads (original_upload_id, caveats) and the uploader ranking over uploads;
# 3.0: search_s no longer holds index loading (index_load_s), CPU seconds of each screening
# stage, tempo_drift in matches, the review decisions export; 3.1: the screen summary's
# partly_screened; 3.2: rescan's partly_scanned (a list and its summary count); 3.3: matches'
# matched_onsets; 3.4: matches' signal (the mix or the stereo difference); 3.5: matches'
# matched_on_shared_material; 3.6: signal's left_channel and right_channel; 3.7: rescan's
# review_decisions; 3.8: signal's channel_1 to channel_64 and difference_1_2 to difference_7_8
SCHEMA_VERSION = "3.8"

DocumentKind = Literal[
    "screen", "rescan", "index-list", "index-uploads", "index-stats", "decisions"
]
DOCUMENTS: tuple[DocumentKind, ...] = (
    "screen",
    "rescan",
    "index-list",
    "index-uploads",
    "index-stats",
    "decisions",
)
SCHEMAS: tuple[str, ...] = (*DOCUMENTS, "match")  # every file in audiodup/schemas/


def schema_text(name: str) -> str:
    """The text of the schema file ``<name>.schema.json`` (``name`` from :data:`SCHEMAS`)."""
    if name not in SCHEMAS:
        raise ValueError(f"no schema {name!r}; the schemas are {', '.join(SCHEMAS)}")
    return (files(__package__) / "schemas" / f"{name}.schema.json").read_text(encoding="utf-8")


def load_schema(name: str) -> dict:
    """The schema ``name`` as a fresh dict (callers may change it)."""
    return json.loads(schema_text(name))


@cache
def registry() -> Registry:
    """Every shipped schema under its ``$id``, so cross-file ``$ref`` resolve offline."""
    from referencing import Registry, Resource

    resources = []
    for name in SCHEMAS:
        resource = Resource.from_contents(load_schema(name))
        resources.append((resource.id(), resource))
    return Registry().with_resources(resources)


def validator(kind: str) -> Validator:
    """A draft 2020-12 validator for the document ``kind`` (or the shared ``match``)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(kind), registry=registry())


def validate(document, kind: str) -> None:
    """Raise ``jsonschema.ValidationError`` (the most relevant one) unless ``document``, a
    parsed JSON value, is a valid ``kind`` document of this :data:`SCHEMA_VERSION`."""
    from jsonschema.exceptions import best_match

    error = best_match(validator(kind).iter_errors(document))
    if error is not None:
        raise error


def problems(document, kind: str) -> list[str]:
    """Every way ``document`` departs from the schema of ``kind``, one line each (empty when
    it is valid): ``<JSON path>: <message>``."""
    return [
        f"{error.json_path}: {error.message}"
        for error in sorted(validator(kind).iter_errors(document), key=lambda e: e.json_path)
    ]
