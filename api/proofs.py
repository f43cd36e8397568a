"""/audit checkpoints and proofs (RFC 9162): what an outside party checks with the standalone
verifier (``infrastructure/verifier.py``) and the log's public key. Auditors and administrators
read them; a stream's proofs follow the stream's scope (they carry its stored events)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, get
from litestar.params import FromPath, QueryParameter

from api.dependencies import AuditTrail
from api.problems import ProblemError
from infrastructure.audit import NoSuchStreamError
from infrastructure.merkle import ProofError

Size = Annotated[
    int | None, QueryParameter(ge=0, le=2**62, description="a checkpoint's tree size (default: the latest)")
]


def _proof_or_problem(call: Any, field: str) -> Any:
    try:
        return call()
    except NoSuchStreamError as e:
        raise ProblemError(404, "not-found", "Not found", str(e)) from None
    except ProofError as e:
        raise ProblemError(
            422,
            "validation-error",
            "Invalid request",
            str(e),
            errors=[{"field": field, "reason": str(e), "in": "query"}],
        ) from None


class ProofsController(Controller):
    path = "/audit"
    tags = ["audit"]

    @get("/checkpoints/latest", sync_to_thread=True)
    def latest(self, audit: AuditTrail) -> dict[str, Any]:
        """The newest signed checkpoint (origin, suite, tree size, root, time, signature,
        witnesses); one is signed first when the log grew since the last."""
        return audit.latest_checkpoint()

    @get("/public-key", sync_to_thread=True)
    def public_key(self, audit: AuditTrail) -> dict[str, Any]:
        """The key checkpoints are signed with (Ed25519 or SM2, per the store's suite)."""
        return audit.public_key()

    @get("/proofs/consistency", sync_to_thread=True)
    def consistency(
        self,
        audit: AuditTrail,
        from_: Annotated[int, QueryParameter(name="from", ge=0, le=2**62, description="the older checkpoint's size")],
        to: Size = None,
    ) -> dict[str, Any]:
        """Proof that the tree of ``to`` leaves (default: the latest checkpoint) extends the tree
        of ``from`` leaves, with both signed checkpoints."""
        return _proof_or_problem(lambda: audit.consistency(from_, to), "from" if to is None else "to")

    @get("/streams/{stream_id:uuid}/proofs", sync_to_thread=True)
    def stream_proofs(self, audit: AuditTrail, stream_id: FromPath[UUID], size: Size = None) -> dict[str, Any]:
        """Each event of a case history with its leaf (stored bytes, recorded time) and its
        inclusion proof against the checkpoint of ``size`` leaves (default: the latest)."""
        return _proof_or_problem(lambda: audit.stream_proofs(stream_id, size=size), "size")
