"""The Merkle tree against the RFC 6962/9162 reference vectors: roots for sizes 0-8, every
inclusion and consistency proof among them, and their verification."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.evidence import merkle

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "data/rfc6962-merkle-vectors.json").read_text(
        encoding="utf-8"
    )
)
LEAVES = [merkle.leaf_hash(bytes.fromhex(h)) for h in VECTORS["leaves_hex"]]


@pytest.mark.parametrize("size", range(9))
def test_roots(size: int) -> None:
    assert merkle.root(LEAVES[:size]).hex() == VECTORS["roots_by_size"][str(size)]


@pytest.mark.parametrize(
    "case", VECTORS["inclusion"], ids=lambda c: f"{c['leaf_index']}-of-{c['tree_size']}"
)
def test_inclusion_proofs(case: dict[str, object]) -> None:
    index, size = int(case["leaf_index"]), int(case["tree_size"])  # type: ignore[call-overload]
    proof = merkle.inclusion_proof(index, LEAVES[:size])
    assert [p.hex() for p in proof] == case["proof"]
    root = bytes.fromhex(VECTORS["roots_by_size"][str(size)])
    assert merkle.verify_inclusion(index, size, LEAVES[index], proof, root)
    assert not merkle.verify_inclusion(
        index, size, LEAVES[index - 1 if index else 1] if size > 1 else b"x" * 32, proof, root
    )


@pytest.mark.parametrize(
    "case", VECTORS["consistency"], ids=lambda c: f"{c['first_size']}-to-{c['second_size']}"
)
def test_consistency_proofs(case: dict[str, object]) -> None:
    first, second = int(case["first_size"]), int(case["second_size"])  # type: ignore[call-overload]
    proof = merkle.consistency_proof(first, LEAVES[:second])
    assert [p.hex() for p in proof] == case["proof"]
    roots = VECTORS["roots_by_size"]
    assert merkle.verify_consistency(
        first, second, bytes.fromhex(roots[str(first)]), bytes.fromhex(roots[str(second)]), proof
    )
    if first < second:
        assert not merkle.verify_consistency(
            first,
            second,
            bytes.fromhex(roots[str(second)]),
            bytes.fromhex(roots[str(second)]),
            proof,
        )


@pytest.mark.parametrize("size", range(1, 9))
def test_the_prebuilt_tree_gives_the_same_roots_and_proofs(size: int) -> None:
    tree = merkle.Tree(LEAVES[:size])
    assert tree.root() == merkle.root(LEAVES[:size])
    for index in range(size):
        assert tree.inclusion_proof(index) == merkle.inclusion_proof(index, LEAVES[:size])


def test_the_prebuilt_tree_matches_on_a_larger_tree() -> None:
    leaves = [merkle.leaf_hash(str(i).encode()) for i in range(1000)]
    tree = merkle.Tree(leaves)
    for index in (0, 1, 511, 512, 777, 998, 999):
        assert tree.inclusion_proof(index) == merkle.inclusion_proof(index, leaves)


def test_the_frontier_gives_the_root_of_every_size() -> None:
    leaves = [merkle.leaf_hash(str(i).encode()) for i in range(300)]
    frontier = merkle.Frontier()
    assert frontier.root() == merkle.root([])
    for n, leaf in enumerate(leaves, start=1):
        frontier.append(leaf)
        assert frontier.size == n and frontier.root() == merkle.root(leaves[:n]), n
    restored = merkle.Frontier(frontier.subtrees)
    restored.append(leaves[0])
    assert restored.root() == merkle.root([*leaves, leaves[0]])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 200), st.integers(0, 300))
def test_extending_a_frontier_is_appending_each_leaf(before: int, added: int) -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(before + added)]
    one_by_one = merkle.Frontier()
    for leaf in leaves[:before]:
        one_by_one.append(leaf)
    extended = merkle.Frontier(one_by_one.subtrees)
    for leaf in leaves[before:]:
        one_by_one.append(leaf)
    extended.extend(iter(leaves[before:]))
    assert extended.subtrees == one_by_one.subtrees
    assert extended.root() == merkle.root(leaves)


# ---- the pieces the seal is proven with ------------------------------------------------------


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.data())
def test_a_consistency_proof_from_the_frontier_equals_the_one_from_every_leaf(
    n: int, data: st.DataObject
) -> None:
    m = data.draw(st.integers(1, n))
    leaves = _leaves(n)
    frontier = merkle.Frontier()
    for leaf in leaves[:m]:
        frontier.append(leaf)
    proof = merkle.consistency_proof_from(frontier.subtrees, leaves[m:])
    assert proof == merkle.consistency_proof(m, leaves)
    assert merkle.verify_consistency(m, n, frontier.root(), merkle.root(leaves), proof)


def test_a_consistency_proof_from_a_wrong_frontier_does_not_verify() -> None:
    leaves = _leaves(13)
    frontier = merkle.Frontier()
    for leaf in leaves[:6]:
        frontier.append(leaf)
    good_root = frontier.root()
    forged = [(frontier.subtrees[0][0], merkle.leaf_hash(b"forged")), *frontier.subtrees[1:]]
    proof = merkle.consistency_proof_from(forged, leaves[6:])
    assert not merkle.verify_consistency(6, 13, good_root, merkle.root(leaves), proof)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 200), st.lists(st.tuples(st.integers(0, 400), st.binary(min_size=1))))
def test_a_tree_updated_in_place_equals_one_built_from_scratch(
    n: int, changes: list[tuple[int, bytes]]
) -> None:
    leaves = _leaves(n)
    tree = merkle.Tree(leaves)
    for index, value in changes:
        index = min(index, len(leaves))  # replace one, or append at the end
        h = merkle.leaf_hash(value)
        tree.update({index: h})
        if index == len(leaves):
            leaves.append(h)
        else:
            leaves[index] = h
        assert tree.root() == merkle.root(leaves)
    assert tree.levels == merkle.Tree(leaves).levels
    for index in range(0, len(leaves), 7):
        assert merkle.verify_inclusion(
            index, len(leaves), leaves[index], tree.inclusion_proof(index), tree.root()
        )


def test_a_gap_in_appended_leaves_is_refused() -> None:
    tree = merkle.Tree(_leaves(3))
    with pytest.raises(ValueError, match="gap"):
        tree.update({5: merkle.leaf_hash(b"x")})


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(0, 40), max_size=60), min_size=1, max_size=8))
def test_the_stream_heads_tree_flushed_in_any_steps_is_the_one_built_at_once(
    rounds: list[list[int]],
) -> None:
    """HeadsTree hashes only the changed heads at each flush; its root is always that of the
    tree of every stream's latest head, in the order streams first appeared."""
    from application.evidence.leaf_encoding import head_hash
    from infrastructure.evidence.merkle_log import HeadsTree

    heads, latest, position = HeadsTree(), {}, 0
    for touched in rounds:
        for n in touched:
            position += 1
            sid = str(uuid.UUID(int=n + 1))
            latest[sid] = (latest.get(sid, (0, 0))[0] + 1, position)
            heads.see(sid, latest[sid][0], position, None)
        flushed = heads.flush()
        expected = [head_hash(sid, v, p) for sid, (v, p) in latest.items()]  # first-seen order
        assert flushed.count == len(latest)
        assert flushed.root == merkle.root(expected)
