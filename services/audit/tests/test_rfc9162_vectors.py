"""The transparency-dev golden vectors for RFC 9162 proofs, read from the shared test data."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from icrs_audit.merkle import (
    Frontier,
    assemble,
    consistency_plan,
    inclusion_plan,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[3].parent / "shared" / "testdata" / "rfc9162"

# The tree the happy-path vectors were cut from (the Certificate Transparency test leaves).
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]


def _files(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json"))


def _case(path: Path) -> Any:
    return pytest.param(path, id=path.relative_to(VECTORS).as_posix())


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _proof(case: dict[str, Any]) -> list[bytes]:
    return [_b64(p) for p in case["proof"] or []]


def _ct_root(size: int) -> bytes:
    return root_from_leaf_hashes(leaf_hash(data) for data in CT_LEAVES[:size])


def _ct_store() -> dict[tuple[int, int], bytes]:
    frontier = Frontier()
    store: dict[tuple[int, int], bytes] = {}
    for data in CT_LEAVES:
        store.update(frontier.append(leaf_hash(data)))
    return store


def test_the_vectors_are_there() -> None:
    assert len(_files("inclusion")) > 0
    assert len(_files("consistency")) > 0
    happy = [p for p in VECTORS.rglob("*.json") if not _load(p)["wantErr"]]
    assert len(happy) > 0


@pytest.mark.parametrize("path", [_case(p) for p in _files("inclusion")])
def test_inclusion_vector(path: Path) -> None:
    case = _load(path)
    verdict = verify_inclusion(
        _b64(case["leafHash"]),
        case["leafIdx"],
        case["treeSize"],
        _proof(case),
        _b64(case["root"]),
    )
    assert verdict is not case["wantErr"], case["desc"]


@pytest.mark.parametrize("path", [_case(p) for p in _files("consistency")])
def test_consistency_vector(path: Path) -> None:
    case = _load(path)
    verdict = verify_consistency(
        case["size1"],
        case["size2"],
        _b64(case["root1"]),
        _b64(case["root2"]),
        _proof(case),
    )
    assert verdict is not case["wantErr"], case["desc"]


@pytest.mark.parametrize("path", [_case(p) for p in sorted(VECTORS.glob("*/*/happy-path.json"))])
def test_happy_paths_are_the_proofs_we_build(path: Path) -> None:
    case = _load(path)
    store = _ct_store()
    if "leafIdx" in case:
        plan = inclusion_plan(case["leafIdx"], case["treeSize"])
        assert _b64(case["leafHash"]) == leaf_hash(CT_LEAVES[case["leafIdx"]])
        assert _b64(case["root"]) == _ct_root(case["treeSize"])
    else:
        plan = consistency_plan(case["size1"], case["size2"])
        assert _b64(case["root1"]) == _ct_root(case["size1"])
        assert _b64(case["root2"]) == _ct_root(case["size2"])
    assert assemble(plan, store) == _proof(case)
