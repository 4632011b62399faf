"""The log never signs what it cannot prove.

Before a checkpoint of size n is signed, the new root is recomputed from the previous signed
checkpoint's stored frontier (which must give that checkpoint's signed root) and the stored
leaves appended since, and an RFC 9162 consistency proof from the previous checkpoint to the
new root must verify. Any mismatch refuses the signature with `SealBrokenError`, which the
callers turn into an incident (alert, failing /readyz) or a 409.
"""

from __future__ import annotations

from collections.abc import Sequence

from application.service_errors import ApplicationError
from domain.evidence import merkle
from domain.evidence.checkpoint import Checkpoint


class SealBrokenError(ApplicationError):
    """The log cannot prove a checkpoint, or the ledger does not match its seal: nothing is
    signed and no evidence is exported until `fapiao ledger verify` passes again."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"the ledger does not match its seal ({reason}); nothing was signed or exported; "
            "run `fapiao ledger verify`"
        )


def prove_extension(
    previous: Checkpoint | None,
    previous_frontier: Sequence[tuple[int, bytes]],
    new_leaves: Sequence[bytes],
    expected_root: bytes | None = None,
) -> merkle.Frontier:
    """The frontier of the tree after `new_leaves`, proven to extend `previous`.

    `previous_frontier` is the stored frontier at the previous checkpoint's size (empty for
    the first checkpoint); `expected_root` is what the caller computed on its own (the
    sealer's running root), which must agree."""
    start = merkle.Frontier(previous_frontier)
    if previous is not None:
        if start.size != previous.size:
            raise SealBrokenError(
                f"the stored frontier at checkpoint {previous.size} covers {start.size} leaves"
            )
        if start.root() != previous.root:
            raise SealBrokenError(
                f"the stored frontier at checkpoint {previous.size} does not give its signed root"
            )
    elif start.size:
        raise SealBrokenError("a frontier without a checkpoint")
    frontier = merkle.Frontier(start.subtrees)
    frontier.extend(new_leaves)
    new_root = frontier.root()
    if expected_root is not None and expected_root != new_root:
        raise SealBrokenError(
            f"the running root at size {frontier.size} differs from the stored leaves' root"
        )
    if previous is not None and previous.size and new_leaves:
        try:
            proof = merkle.consistency_proof_from(start.subtrees, new_leaves)
        except ValueError as e:
            raise SealBrokenError(f"no consistency proof from {previous.size}: {e}") from None
        if not merkle.verify_consistency(
            previous.size, frontier.size, previous.root, new_root, proof
        ):
            raise SealBrokenError(
                f"the tree of size {frontier.size} is not consistent with checkpoint "
                f"{previous.size}"
            )
    return frontier
