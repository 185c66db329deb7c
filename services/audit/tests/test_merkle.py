"""The Merkle tree module against a reference written straight from RFC 9162's definitions."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from icrs_audit.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    Frontier,
    Node,
    assemble,
    consistency_plan,
    fold,
    frontier_nodes,
    inclusion_plan,
    leaf_hash,
    node_hash,
    plan_nodes,
    range_nodes,
    root_from_leaf_hashes,
    root_plan,
    verify_consistency,
    verify_inclusion,
)

MAX = 300
DATA = [f"audit entry {i}".encode() for i in range(MAX + 64)]


# RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1, recursion and all.


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return _sha(b"\x00" + d[0])
    k = _k(n)
    return _sha(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


@functools.cache
def root(size: int) -> bytes:
    return ref_mth(DATA[:size])


@functools.cache
def store(size: int) -> Mapping[Node, bytes]:
    frontier = Frontier()
    nodes: dict[Node, bytes] = {}
    for data in DATA[:size]:
        nodes.update(frontier.append(leaf_hash(data)))
    return nodes


@st.composite
def leaf_in_tree(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX))
    return draw(st.integers(0, size - 1)), size


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    second = draw(st.integers(1, MAX))
    return draw(st.integers(1, second)), second


def inclusion(index: int, size: int) -> list[bytes]:
    return assemble(inclusion_plan(index, size), store(size))


def consistency(first: int, second: int) -> list[bytes]:
    return assemble(consistency_plan(first, second), store(second))


def flip(proof: list[bytes], at: int, bit: int) -> list[bytes]:
    tampered = list(proof)
    element = bytearray(tampered[at])
    element[bit // 8] ^= 1 << (bit % 8)
    tampered[at] = bytes(element)
    return tampered


proof_bits = st.integers(0, HASH_SIZE * 8 - 1)
digests = st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE)


# Hashing and the storage model.


def test_hashes_are_rfc9162() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"x") == _sha(b"\x00x")
    assert node_hash(b"a" * 32, b"b" * 32) == _sha(b"\x01" + b"a" * 32 + b"b" * 32)
    assert root_from_leaf_hashes([]) == EMPTY_ROOT == Frontier().root() == fold([])


def test_frontier_matches_the_reference_at_every_size() -> None:
    frontier = Frontier()
    for size in range(MAX + 1):
        assert frontier.size == size
        assert frontier.root() == root(size)
        assert root_from_leaf_hashes(leaf_hash(d) for d in DATA[:size]) == root(size)
        completed = frontier.append(leaf_hash(DATA[size]))
        grown = size + 1
        levels = [lv for lv in range(grown.bit_length()) if grown % (1 << lv) == 0]
        assert [node for node, _ in completed] == [(lv, (grown >> lv) - 1) for lv in levels]
        for (level, index), digest in completed:
            assert digest == ref_mth(DATA[index << level : (index + 1) << level])


def test_the_store_holds_every_complete_subtree_once() -> None:
    size = 77
    expected = {(lv, i) for lv in range(8) for i in range(size >> lv)}
    assert set(store(size)) == expected
    frontier = Frontier()
    appended = [n for d in DATA[:size] for n, _ in frontier.append(leaf_hash(d))]
    assert len(appended) == len(expected)


@given(st.integers(0, MAX), st.lists(st.binary(max_size=8), max_size=40))
def test_a_frontier_resumes_from_its_stored_nodes(size: int, more: list[bytes]) -> None:
    nodes = frontier_nodes(size)
    assert nodes == root_plan(size)
    resumed = Frontier.from_hashes(size, [store(size)[n] for n in nodes])
    assert resumed.root() == root(size)
    whole = Frontier()
    for data in [*DATA[:size], *more]:
        completed = whole.append(leaf_hash(data))
        if whole.size > size:
            assert resumed.append(leaf_hash(data)) == completed
    assert resumed.root() == whole.root() == ref_mth([*DATA[:size], *more])
    assert resumed.hashes == whole.hashes


def test_range_nodes_fold_to_the_range_hash() -> None:
    nodes = store(64)
    for start in range(64):
        for end in range(start + 1, 65):
            if start % (1 << ((end - start).bit_length() - 1)):
                with pytest.raises(ValueError, match="aligned"):
                    range_nodes(start, end)
                continue
            parts = range_nodes(start, end)
            assert fold([nodes[n] for n in parts]) == ref_mth(DATA[start:end])
            assert all(nodes[n] for n in parts)
    assert range_nodes(5, 5) == []
    with pytest.raises(ValueError, match="range"):
        range_nodes(3, 2)


def test_frontier_refuses_what_it_cannot_hold() -> None:
    with pytest.raises(ValueError, match="frontier hashes"):
        Frontier.from_hashes(3, [EMPTY_ROOT])
    with pytest.raises(ValueError, match="SHA-256"):
        Frontier.from_hashes(1, [b"short"])
    with pytest.raises(ValueError, match="SHA-256"):
        Frontier().append(b"short")


# Proofs built from the store are the RFC's, and verify.


@given(leaf_in_tree())
@settings(max_examples=300)
def test_inclusion_proofs_are_the_rfcs(leaf: tuple[int, int]) -> None:
    index, size = leaf
    plan = inclusion_plan(index, size)
    proof = assemble(plan, store(size))
    assert proof == ref_path(index, DATA[:size])
    assert verify_inclusion(leaf_hash(DATA[index]), index, size, proof, root(size))
    assert len(plan_nodes(plan)) == sum(map(len, plan)) <= 2 * size.bit_length()


@given(two_sizes())
@settings(max_examples=300)
def test_consistency_proofs_are_the_rfcs(sizes: tuple[int, int]) -> None:
    first, second = sizes
    plan = consistency_plan(first, second)
    proof = assemble(plan, store(second))
    assert proof == ref_proof(first, DATA[:second])
    assert verify_consistency(first, second, root(first), root(second), proof)
    assert len(plan_nodes(plan)) == sum(map(len, plan)) <= 2 * second.bit_length() + 1


@pytest.mark.parametrize("size", [3, 1000, 2**20, 2**40 + 12345, 2**62 - 1])
def test_plans_stay_logarithmic(size: int) -> None:
    for index in {0, 1, size // 2, size - 2, size - 1}:
        assert sum(map(len, inclusion_plan(index, size))) <= 2 * size.bit_length()
        first = index + 1
        assert sum(map(len, consistency_plan(first, size))) <= 2 * size.bit_length() + 1


def test_assemble_names_the_missing_node() -> None:
    with pytest.raises(KeyError, match=r"\(0, 6\)"):
        assemble(inclusion_plan(7, 8), {})


# Tampered proofs and claims do not verify.


@given(leaf_in_tree(), st.data())
def test_inclusion_rejects_a_flipped_bit(leaf: tuple[int, int], data: st.DataObject) -> None:
    index, size = leaf
    proof, lh, good = inclusion(index, size), leaf_hash(DATA[index]), root(size)
    bit = data.draw(proof_bits)
    assert not verify_inclusion(lh, index, size, proof, flip([good], 0, bit)[0])
    assert not verify_inclusion(flip([lh], 0, bit)[0], index, size, proof, good)
    assume(proof)
    at = data.draw(st.integers(0, len(proof) - 1))
    assert not verify_inclusion(lh, index, size, flip(proof, at, bit), good)


@given(leaf_in_tree(), st.data())
def test_inclusion_rejects_a_missing_node(leaf: tuple[int, int], data: st.DataObject) -> None:
    index, size = leaf
    proof = inclusion(index, size)
    assume(proof)
    del proof[data.draw(st.integers(0, len(proof) - 1))]
    assert not verify_inclusion(leaf_hash(DATA[index]), index, size, proof, root(size))


@given(leaf_in_tree(), st.data())
def test_inclusion_rejects_an_extra_node(leaf: tuple[int, int], data: st.DataObject) -> None:
    index, size = leaf
    proof = inclusion(index, size)
    extra = data.draw(st.sampled_from([*proof, root(size)]) | digests)
    proof.insert(data.draw(st.integers(0, len(proof))), extra)
    assert not verify_inclusion(leaf_hash(DATA[index]), index, size, proof, root(size))


@given(leaf_in_tree(), st.integers(-2, MAX + 2))
def test_inclusion_rejects_a_wrong_index(leaf: tuple[int, int], other: int) -> None:
    index, size = leaf
    assume(other != index)
    proof = inclusion(index, size)
    assert not verify_inclusion(leaf_hash(DATA[index]), other, size, proof, root(size))
    if 0 <= other < size:
        assert not verify_inclusion(leaf_hash(DATA[other]), other, size, proof, root(size))


@given(leaf_in_tree(), st.integers(-1, MAX))
def test_inclusion_rejects_a_wrong_size(leaf: tuple[int, int], other: int) -> None:
    index, size = leaf
    assume(other != size)
    proof = inclusion(index, size)
    honest = 0 <= index < other and proof == ref_path(index, DATA[:other])
    lh = leaf_hash(DATA[index])
    assert verify_inclusion(lh, index, other, proof, root(max(other, 0))) is honest


@given(two_sizes(), st.data())
def test_consistency_rejects_a_flipped_bit(sizes: tuple[int, int], data: st.DataObject) -> None:
    first, second = sizes
    proof, r1, r2 = consistency(first, second), root(first), root(second)
    bit = data.draw(proof_bits)
    assert not verify_consistency(first, second, flip([r1], 0, bit)[0], r2, proof)
    assert not verify_consistency(first, second, r1, flip([r2], 0, bit)[0], proof)
    assume(proof)
    at = data.draw(st.integers(0, len(proof) - 1))
    assert not verify_consistency(first, second, r1, r2, flip(proof, at, bit))


@given(two_sizes(), st.data())
def test_consistency_rejects_a_missing_node(sizes: tuple[int, int], data: st.DataObject) -> None:
    first, second = sizes
    proof = consistency(first, second)
    assume(proof)
    del proof[data.draw(st.integers(0, len(proof) - 1))]
    assert not verify_consistency(first, second, root(first), root(second), proof)


@given(two_sizes(), st.data())
def test_consistency_rejects_an_extra_node(sizes: tuple[int, int], data: st.DataObject) -> None:
    first, second = sizes
    proof = consistency(first, second)
    extra = data.draw(st.sampled_from([*proof, root(first), root(second)]) | digests)
    proof.insert(data.draw(st.integers(0, len(proof))), extra)
    assert not verify_consistency(first, second, root(first), root(second), proof)


@given(two_sizes(), st.integers(-1, MAX), st.integers(-1, MAX))
def test_consistency_rejects_wrong_sizes(sizes: tuple[int, int], one: int, two: int) -> None:
    first, second = sizes
    assume((one, two) != (first, second))
    proof = consistency(first, second)
    honest = 0 < one <= two and proof == ref_proof(one, DATA[:two])
    r1, r2 = root(max(one, 0)), root(max(two, 0))
    assert verify_consistency(one, two, r1, r2, proof) is honest


def test_a_proof_alone_does_not_bind_the_tree_size() -> None:
    """Per RFC 9162 a proof can hold for two sizes; trust sizes only from a signed tree head."""
    seven = inclusion(4, 7)
    assert verify_inclusion(leaf_hash(DATA[4]), 4, 8, seven, root(7))
    assert verify_consistency(6, 8, root(6), root(7), consistency(6, 7))


# Edge cases.


def test_a_one_leaf_tree() -> None:
    lh = leaf_hash(DATA[0])
    assert inclusion_plan(0, 1) == []
    assert root_plan(1) == [(0, 0)]
    assert root_from_leaf_hashes([lh]) == lh == root(1)
    assert verify_inclusion(lh, 0, 1, [], lh)
    assert not verify_inclusion(lh, 0, 1, [lh], lh)
    assert not verify_inclusion(lh, 0, 1, [], EMPTY_ROOT)


@pytest.mark.parametrize("size", range(1, 65))
def test_the_last_leaf(size: int) -> None:
    proof = inclusion(size - 1, size)
    assert proof == ref_path(size - 1, DATA[:size])
    assert verify_inclusion(leaf_hash(DATA[size - 1]), size - 1, size, proof, root(size))
    assert not verify_inclusion(leaf_hash(DATA[size - 1]), size, size, proof, root(size))


@pytest.mark.parametrize("size", [1, 2, 3, 8, 300])
def test_consistency_with_itself(size: int) -> None:
    assert consistency_plan(size, size) == []
    assert verify_consistency(size, size, root(size), root(size), [])
    assert not verify_consistency(size, size, root(size), root(size - 1), [])
    assert not verify_consistency(size, size, root(size), root(size), [root(size)])


@pytest.mark.parametrize("second", [0, 1, 2, 5, 300])
def test_no_consistency_from_the_empty_tree(second: int) -> None:
    """Refused, as the RFC defines no such proof and every tree extends the empty one."""
    with pytest.raises(ValueError, match="consistency"):
        consistency_plan(0, second)
    for proof in ([], [EMPTY_ROOT], [root(second)]):
        assert not verify_consistency(0, second, EMPTY_ROOT, root(second), proof)


def test_planning_refuses_impossible_requests() -> None:
    for index, size in [(0, 0), (5, 5), (-1, 3), (7, 3)]:
        with pytest.raises(ValueError, match="leaf"):
            inclusion_plan(index, size)
    for first, second in [(3, 2), (-1, 4), (1, 0)]:
        with pytest.raises(ValueError, match="consistency"):
            consistency_plan(first, second)


def test_malformed_claims_are_refused_without_raising() -> None:
    lh, proof, good = leaf_hash(DATA[5]), inclusion(5, 9), root(9)
    for index, size in [(5, 5), (5, 0), (-1, 9), (2**64 - 1, 9), (5, -9)]:
        assert not verify_inclusion(lh, index, size, proof, good)
    assert not verify_inclusion(lh[:31], 5, 9, proof, good)
    assert not verify_inclusion(lh, 5, 9, proof, good + b"\x00")
    assert not verify_inclusion(lh, 5, 9, [*proof[:-1], proof[-1][:31]], good)
    assert not verify_inclusion(lh, 5, 9, [*proof[:-1], b""], good)
    assert not verify_inclusion(lh, 5, 9, [], good)

    cproof, r1, r2 = consistency(5, 9), root(5), root(9)
    for first, second in [(9, 5), (-5, 9), (5, -9), (0, 0)]:
        assert not verify_consistency(first, second, r1, r2, cproof)
    assert not verify_consistency(5, 9, r1[:31], r2, cproof)
    assert not verify_consistency(5, 9, r1, r2 + b"\x00", cproof)
    assert not verify_consistency(5, 9, r1, r2, [*cproof[:-1], b""])
    assert not verify_consistency(5, 9, r1, r2, [])
    assert not verify_consistency(4, 9, root(4), r2, [root(4), *consistency(4, 9)])
