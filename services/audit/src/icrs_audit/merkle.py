"""RFC 9162 Merkle tree hashing, proof planning and proof verification.

Stored nodes are hashes of perfect, aligned subtrees. ``Node`` ``(level, index)`` names the
hash of leaves ``[index * 2**level, (index + 1) * 2**level)``; level 0 holds the leaf hashes.
Any tree hash, and every element of an inclusion or consistency proof, is the right fold of a
few such nodes, so a store needs only these nodes and can fetch all of a proof's in one query.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias

Node: TypeAlias = tuple[int, int]
Plan: TypeAlias = list[list[Node]]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two below ``n`` (``n >= 2``), where RFC 9162 splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(start: int, end: int) -> list[Node]:
    """The nodes whose right fold is MTH(D[start:end]), largest first.

    MTH splits a range of n leaves after its largest power of two below n, so the range
    decomposes into perfect subtrees of sizes given by the bits of n, high to low. They are
    aligned, hence stored, when ``start`` is a multiple of the highest power of two <= n:
    true of every range RFC 9162's PATH and SUBPROOF recurse into. Other ranges raise
    ValueError. An empty range gives ``[]``.
    """
    if start < 0 or end < start:
        raise ValueError(f"bad range [{start}, {end})")
    if start == end:
        return []
    if start % (1 << ((end - start).bit_length() - 1)):
        raise ValueError(f"range [{start}, {end}) is not a union of aligned subtrees")
    nodes: list[Node] = []
    while start < end:
        level = (end - start).bit_length() - 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """``node(h0, node(h1, ... node(hn-1, hn)))``; no hashes give the empty tree's."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def frontier_nodes(size: int) -> list[Node]:
    """The perfect subtrees covering ``[0, size)``: what an appender keeps to go on."""
    return range_nodes(0, size)


def root_plan(size: int) -> list[Node]:
    return range_nodes(0, size)


class Frontier:
    """The right edge of a tree being appended to."""

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def from_hashes(cls, size: int, hashes: Sequence[bytes]) -> Frontier:
        """Resume from the hashes of ``frontier_nodes(size)``, in that order."""
        expected = len(frontier_nodes(size))
        if len(hashes) != expected:
            raise ValueError(f"a tree of {size} leaves has {expected} frontier hashes")
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("frontier hashes must be SHA-256 digests")
        frontier = cls()
        frontier._size = size
        frontier._hashes = list(hashes)
        return frontier

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        """Add a leaf hash; returns the nodes it completes, from the leaf itself upwards."""
        if len(leaf) != HASH_SIZE:
            raise ValueError("a leaf hash must be a SHA-256 digest")
        index = self._size
        level = 0
        acc = leaf
        done: list[tuple[Node, bytes]] = [((0, index), leaf)]
        while index & 1:
            acc = node_hash(self._hashes.pop(), acc)
            index >>= 1
            level += 1
            done.append(((level, index), acc))
        self._hashes.append(acc)
        self._size += 1
        return done

    def root(self) -> bytes:
        return fold(self._hashes)


def root_from_leaf_hashes(hashes: Iterable[bytes]) -> bytes:
    """MTH of a stream of leaf hashes, in O(log n) memory."""
    frontier = Frontier()
    for h in hashes:
        frontier.append(h)
    return frontier.root()


def inclusion_plan(index: int, size: int) -> Plan:
    """Nodes for each element of PATH(index, D[size]) (RFC 9162 §2.1.3.1), leaf side first.

    Only the sibling touching the tree's right edge may take more than one node, so the plan
    holds O(log size) nodes in all.
    """
    if not 0 <= index < size:
        raise ValueError(f"no leaf {index} in a tree of {size}")
    start, end = 0, size
    plan: Plan = []
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            plan.append(range_nodes(mid, end))
            end = mid
        else:
            plan.append(range_nodes(start, mid))
            start = mid
    plan.reverse()
    return plan


def consistency_plan(first: int, second: int) -> Plan:
    """Nodes for each element of PROOF(first, D[second]) (RFC 9162 §2.1.4.1), deepest first.

    Needs ``0 < first <= second``; equal sizes give the empty proof. As with inclusion, only
    the element touching the right edge may take several nodes: O(log second) in all.
    """
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from {first} to {second}")
    start, end = 0, second
    whole = True  # SUBPROOF's b: still on the left edge, where MTH(D[0:first]) is known
    plan: Plan = []
    while first != end:
        mid = start + _split(end - start)
        if first <= mid:
            plan.append(range_nodes(mid, end))
            end = mid
        else:
            plan.append(range_nodes(start, mid))
            start = mid
            whole = False
    if not whole:
        plan.append(range_nodes(start, end))
    plan.reverse()
    return plan


def plan_nodes(plan: Iterable[Sequence[Node]]) -> list[Node]:
    """Every node a plan reads, once each."""
    return list(dict.fromkeys(node for element in plan for node in element))


def assemble(plan: Iterable[Sequence[Node]], hashes: Mapping[Node, bytes]) -> list[bytes]:
    """The proof for ``plan`` from the stored hashes; KeyError names a node the store lacks."""
    return [fold([hashes[node] for node in element]) for element in plan]


def _digests(*values: bytes) -> bool:
    return all(len(v) == HASH_SIZE for v in values)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2, with every hash required to be 32 bytes."""
    if not 0 <= index < size or not _digests(leaf, root, *proof):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2, with every hash required to be 32 bytes.

    Equal sizes need an empty proof and equal roots, compared as given. A proof from the
    empty tree (``first == 0``) is refused whatever the second size: the RFC defines none,
    and any tree extends the empty one, so such a check would prove nothing.
    """
    if not 0 < first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if not proof or not _digests(first_root, second_root, *proof):
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root
