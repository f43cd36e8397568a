"""The Merkle tree's proofs (RFC 9162) as the store serves them: built from the stored nodes of
complete subtrees only, and checked by the standalone verifier, for every size and leaf of small
trees and both suites. No I/O: the stored nodes are a dict here."""

from __future__ import annotations

import pytest

from infrastructure import merkle, verifier
from infrastructure.suites import GM, INTERNATIONAL, Suite

SUITES = [INTERNATIONAL, GM]


def stored_nodes(suite: Suite, leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    """Every node of every complete subtree, as the tree table keeps them."""
    h = suite.tree_hash
    nodes = {(0, i): leaf for i, leaf in enumerate(leaves)}
    level = 0
    while (1 << (level + 1)) <= len(leaves):
        for i in range(len(leaves) >> (level + 1)):
            nodes[(level + 1, i)] = verifier.node_hash(h, nodes[(level, 2 * i)], nodes[(level, 2 * i + 1)])
        level += 1
    return nodes


def roots(suite: Suite, nodes: dict[tuple[int, int], bytes], ranges: list[tuple[int, int]]) -> list[str]:
    return [merkle.fold(suite.tree_hash, [nodes[p] for p in merkle.pieces(a, b)]).hex() for a, b in ranges]


def leaves_for(suite: Suite, n: int) -> list[bytes]:
    return [verifier.leaf_hash(suite.tree_hash, f"event {i}".encode()) for i in range(n)]


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_the_root_from_stored_pieces_is_rfc_9162_mth_for_every_size(suite: Suite) -> None:
    leaves = leaves_for(suite, 70)
    nodes = stored_nodes(suite, leaves)
    for n in range(1, 71):
        assert roots(suite, nodes, [(0, n)])[0] == verifier.root_of(suite.tree_hash, leaves[:n]).hex()


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_every_inclusion_proof_of_small_trees_verifies_and_no_other_leaf_does(suite: Suite) -> None:
    leaves = leaves_for(suite, 33)
    nodes = stored_nodes(suite, leaves)
    for size in range(1, 34):
        root = verifier.root_of(suite.tree_hash, leaves[:size])
        for index in range(size):
            proof = roots(suite, nodes, merkle.inclusion_ranges(index, size))
            verifier.verify_inclusion(suite.tree_hash, index, size, leaves[index], proof, root)
            if size > 1:
                other = (index + 1) % size
                with pytest.raises(verifier.VerificationError):
                    verifier.verify_inclusion(suite.tree_hash, index, size, leaves[other], proof, root)


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_every_consistency_proof_of_small_trees_verifies(suite: Suite) -> None:
    leaves = leaves_for(suite, 33)
    nodes = stored_nodes(suite, leaves)
    for size in range(1, 34):
        root = verifier.root_of(suite.tree_hash, leaves[:size])
        for old in range(size + 1):
            proof = roots(suite, nodes, merkle.consistency_ranges(old, size))
            old_root = verifier.root_of(suite.tree_hash, leaves[:old])
            verifier.verify_consistency(suite.tree_hash, old, size, old_root, root, proof)


def test_a_proof_at_a_million_leaves_has_at_most_20_hashes_in_under_1_kb() -> None:
    for index, size in ((0, 1_000_000), (999_999, 1_000_000), (524_287, 1_000_000)):
        assert len(merkle.inclusion_ranges(index, size)) <= 20
    assert len(merkle.consistency_ranges(999_000, 1_000_000)) * 32 <= 1024
    assert max(len(merkle.pieces(a, b)) for a, b in merkle.inclusion_ranges(5, 1_000_000)) <= 20


def test_a_changed_history_fails_consistency_with_its_checkpoint() -> None:
    h = INTERNATIONAL.tree_hash
    leaves = leaves_for(INTERNATIONAL, 20)
    forged = list(leaves)
    forged[3] = verifier.leaf_hash(h, b"changed")
    nodes = stored_nodes(INTERNATIONAL, forged)
    proof = roots(INTERNATIONAL, nodes, merkle.consistency_ranges(10, 20))
    with pytest.raises(verifier.VerificationError, match="does not contain the older tree"):
        verifier.verify_consistency(h, 10, 20, verifier.root_of(h, leaves[:10]), verifier.root_of(h, forged), proof)
