"""RFC 9162 (Certificate Transparency v2) Merkle tree over the ledger's events.

leaf hash = SHA-256(0x00 || leaf bytes); node = SHA-256(0x01 || left || right); the empty tree
is SHA-256(""). Proofs and their verification follow RFC 9162 sections 2.1.3 and 2.1.4.
Functions take leaf *hashes*, which the sealing projection stores, so roots and proofs never
reread events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    level = list(leaves)
    # Bottom-up: pair neighbours; an odd last node is carried up unchanged, which yields the
    # same tree as the recursive definition (left subtrees are always perfect).
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the audit path of leaf `index` in the tree of `leaves`."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf {index} is not in a tree of size {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), root(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), root(leaves[:k])]


def consistency_proof(first: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]): that the tree of size `first` is a prefix of the tree of `leaves`."""
    n = len(leaves)
    if not 0 < first <= n:
        raise ValueError(f"no consistency proof from size {first} to {n}")
    return _subproof(first, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root(leaves[:k])]


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2."""
    if first > second or first == 0:
        return False
    if first == second:
        return not proof and first_root == second_root
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first root starts the path
        path.insert(0, first_root)
    if not path:
        return False
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
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


class Tree:
    """All levels of the tree built once (an odd last node is carried up unchanged, which is
    the RFC 9162 shape), so each inclusion proof costs O(log n) instead of O(n).

    Leaves may also be replaced or appended (`update`): only the paths above them are
    recomputed, so a tree whose leaves change (the stream heads) stays O(log n) per change."""

    def __init__(self, leaves: Sequence[bytes] = ()) -> None:
        self.levels = [list(leaves)]
        while len(self.levels[-1]) > 1:
            level = self.levels[-1]
            nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            self.levels.append(nxt)

    def update(self, changes: Mapping[int, bytes]) -> None:
        """Set leaf `i` to `changes[i]`; an index equal to the size appends (indices past the
        end must follow on without gaps). Each changed path is recomputed once."""
        leaves = self.levels[0]
        for i in sorted(changes):
            if i < len(leaves):
                leaves[i] = changes[i]
            elif i == len(leaves):
                leaves.append(changes[i])
            else:
                raise ValueError(f"leaf {i} would leave a gap after {len(leaves)} leaves")
        dirty = set(changes)
        depth = 1
        while len(self.levels[depth - 1]) > 1:
            below = self.levels[depth - 1]
            if depth == len(self.levels):
                self.levels.append([])
            level = self.levels[depth]
            parents = sorted({i >> 1 for i in dirty})
            for p in parents:
                left = below[2 * p]
                h = node_hash(left, below[2 * p + 1]) if 2 * p + 1 < len(below) else left
                if p < len(level):
                    level[p] = h
                else:
                    level.append(h)
            dirty = set(parents)
            depth += 1

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def root(self) -> bytes:
        return self.levels[-1][0] if self.size else hashlib.sha256(b"").digest()

    def inclusion_proof(self, index: int) -> list[bytes]:
        if not 0 <= index < self.size:
            raise ValueError(f"leaf {index} is not in a tree of size {self.size}")
        proof, i = [], index
        for level in self.levels[:-1]:
            sibling = i ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            i //= 2
        return proof


class Frontier:
    """The right edge of the tree as its perfect subtrees, largest first: appending a leaf and
    computing the root are O(log n), so checkpoints need not reread the leaves.

    For n = 2^a + r (r > 0) RFC 9162 splits at 2^a: the root is node(P1, root(rest)), which is
    the fold of the perfect subtrees from the right."""

    def __init__(self, subtrees: Sequence[tuple[int, bytes]] = ()) -> None:
        self.subtrees = list(subtrees)  # (size, hash), sizes strictly decreasing powers of 2

    @property
    def size(self) -> int:
        return sum(s for s, _ in self.subtrees)

    def append(self, leaf: bytes) -> None:
        self.subtrees.append((1, leaf))
        while len(self.subtrees) > 1 and self.subtrees[-1][0] == self.subtrees[-2][0]:
            (size, right), (_, left) = self.subtrees.pop(), self.subtrees.pop()
            self.subtrees.append((size * 2, node_hash(left, right)))

    def extend(self, leaves: Iterable[bytes]) -> None:
        """`append` of each leaf in turn, with the edge held as two local lists meanwhile
        (the checkpoint proofs append a thousand leaves at a time; tests hold it equal)."""
        sizes = [s for s, _ in self.subtrees]
        hashes = [h for _, h in self.subtrees]
        sha256 = hashlib.sha256
        for leaf in leaves:
            size, h = 1, leaf
            while sizes and sizes[-1] == size:
                sizes.pop()
                h = sha256(b"\x01" + hashes.pop() + h).digest()
                size *= 2
            sizes.append(size)
            hashes.append(h)
        self.subtrees = list(zip(sizes, hashes, strict=True))

    def root(self) -> bytes:
        if not self.subtrees:
            return hashlib.sha256(b"").digest()
        acc = self.subtrees[-1][1]
        for _, h in reversed(self.subtrees[:-1]):
            acc = node_hash(h, acc)
        return acc


class _Extension:
    """The tree of size n seen as the perfect subtrees of its first m leaves (a frontier) plus
    the leaves appended since: enough to compute PROOF(m, D[n]) without the older leaves."""

    def __init__(self, old: Sequence[tuple[int, bytes]], new: Sequence[bytes]) -> None:
        self.blocks: dict[tuple[int, int], bytes] = {}
        start = 0
        for size, h in old:
            self.blocks[(start, start + size)] = h
            start += size
        self.m, self.new = start, list(new)

    def mth(self, lo: int, hi: int) -> bytes:
        if (lo, hi) in self.blocks:
            return self.blocks[(lo, hi)]
        if lo >= self.m:
            return root(self.new[lo - self.m : hi - self.m])
        if hi <= self.m:  # inside one perfect subtree: never asked for by RFC 9162 proofs
            raise ValueError(f"the frontier does not hold the subtree [{lo}, {hi})")
        k = _split(hi - lo)
        return node_hash(self.mth(lo, lo + k), self.mth(lo + k, hi))

    def subproof(self, m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if complete else [self.mth(lo, hi)]
        k = _split(n)
        if m <= k:
            return [*self.subproof(m, lo, lo + k, complete), self.mth(lo + k, hi)]
        return [*self.subproof(m - k, lo + k, hi, False), self.mth(lo, lo + k)]


def consistency_proof_from(old: Sequence[tuple[int, bytes]], new: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[m + len(new)]) from the tree of size m given only as its frontier's perfect
    subtrees (largest first) and the leaves appended since (RFC 9162 2.1.4.1). The subtrees
    a proof needs from the old tree are exactly those of its frontier."""
    ext = _Extension(old, new)
    if ext.m == 0:
        raise ValueError("no consistency proof from the empty tree")
    return ext.subproof(ext.m, 0, ext.m + len(new), True)
