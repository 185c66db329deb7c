"""Property tests on the proofs the API serves from the stored tree: honest proofs
verify; a flipped bit, a missing or extra node, a wrong index or size does not."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icrs_audit import log, merkle

if TYPE_CHECKING:
    from conftest import Audit

N = 300
PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class Tree:
    """The log's leaves and the root at every size, computed apart from the service."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves = [merkle.leaf_hash(x) for x in leaves]
        frontier = merkle.Frontier()
        self.roots = [merkle.EMPTY_ROOT]
        for h in self.leaves:
            frontier.append(h)
            self.roots.append(frontier.root())


_trees: dict[str, Tree] = {}


async def tree(audit: Audit) -> Tree:
    """Fill the log once per test (straight through the store, in batches)."""
    key = str(audit.settings.database_url)  # a database of its own per test
    if key not in _trees:
        db = audit.app.state.runtime.db
        envelopes = audit.events(N)
        frontier = None
        for start in range(0, N, 64):
            async with db.transaction() as session:
                _, frontier = await log.append(session, envelopes[start : start + 64], frontier)
        _trees[key] = Tree([log.leaf_data(e) for e in envelopes])
    return _trees[key]


def flip(hashes: list[bytes], which: int, bit: int) -> list[bytes]:
    out = list(hashes)
    target = bytearray(out[which])
    target[bit // 8] ^= 1 << (bit % 8)
    out[which] = bytes(target)
    return out


async def inclusion(audit: Audit, index: int, size: int) -> list[bytes]:
    r = await audit.get("/v1/log/proofs/inclusion", index=index, tree_size=size)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["index"], body["tree_size"]) == (index, size)
    return [base64.b64decode(h) for h in body["hashes"]]


async def consistency(audit: Audit, first: int, second: int) -> list[bytes]:
    r = await audit.get("/v1/log/proofs/consistency", first=first, second=second)
    assert r.status_code == 200, r.text
    return [base64.b64decode(h) for h in r.json()["hashes"]]


@PROPERTY
@given(data=st.data())
async def test_inclusion_proofs(audit: Audit, data: st.DataObject) -> None:
    t = await tree(audit)
    size = data.draw(st.integers(1, N), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    leaf, root = t.leaves[index], t.roots[size]
    proof = await inclusion(audit, index, size)
    assert merkle.verify_inclusion(leaf, index, size, proof, root)

    if proof:
        which = data.draw(st.integers(0, len(proof) - 1), label="which")
        bit = data.draw(st.integers(0, 255), label="bit")
        assert not merkle.verify_inclusion(leaf, index, size, flip(proof, which, bit), root)
        assert not merkle.verify_inclusion(
            leaf, index, size, proof[:which] + proof[which + 1 :], root
        )
    extra = data.draw(st.sampled_from(t.leaves), label="extra")
    at = data.draw(st.integers(0, len(proof)), label="at")
    assert not merkle.verify_inclusion(leaf, index, size, [*proof[:at], extra, *proof[at:]], root)

    if size > 1:
        other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index), label="other")
        assert not merkle.verify_inclusion(t.leaves[other], other, size, proof, root)
        assert not merkle.verify_inclusion(leaf, other, size, proof, root)
    wrong = data.draw(st.integers(index + 1, N).filter(lambda s: s != size), label="wrong size")
    # Against the root of the size it claims, a proof verifies only if it is that size's own.
    honest = await inclusion(audit, index, wrong)
    assert merkle.verify_inclusion(leaf, index, wrong, proof, t.roots[wrong]) == (proof == honest)


@PROPERTY
@given(data=st.data())
async def test_consistency_proofs(audit: Audit, data: st.DataObject) -> None:
    t = await tree(audit)
    second = data.draw(st.integers(1, N), label="second")
    first = data.draw(st.integers(1, second), label="first")
    proof = await consistency(audit, first, second)
    roots = t.roots
    assert merkle.verify_consistency(first, second, roots[first], roots[second], proof)
    if first == second:
        return

    which = data.draw(st.integers(0, len(proof) - 1), label="which")
    bit = data.draw(st.integers(0, 255), label="bit")
    bad = flip(proof, which, bit)
    assert not merkle.verify_consistency(first, second, roots[first], roots[second], bad)
    missing = proof[:which] + proof[which + 1 :]
    assert not merkle.verify_consistency(first, second, roots[first], roots[second], missing)
    extra = [*proof, data.draw(st.sampled_from(t.leaves), label="extra")]
    assert not merkle.verify_consistency(first, second, roots[first], roots[second], extra)

    wrong_first = data.draw(
        st.integers(1, second).filter(lambda f: f != first), label="wrong first"
    )
    honest = await consistency(audit, wrong_first, second)
    claimed = merkle.verify_consistency(
        wrong_first, second, roots[wrong_first], roots[second], proof
    )
    assert claimed == (proof == honest)
    wrong_second = data.draw(
        st.integers(first, N).filter(lambda s: s != second), label="wrong second"
    )
    honest = await consistency(audit, first, wrong_second)
    claimed = merkle.verify_consistency(
        first, wrong_second, roots[first], roots[wrong_second], proof
    )
    assert claimed == (proof == honest)
