"""Run by test_projection_worker: apply one batch and die (os._exit) before it commits."""

from __future__ import annotations

import os
import sys
from typing import Any

from sqlalchemy import Connection

from infrastructure.bootstrap import build_services
from infrastructure.projections.invoice_status import InvoiceStatusProjection
from infrastructure.settings import Settings


class DiesMidBatch(InvoiceStatusProjection):
    def apply_batch(self, conn: Connection, items: Any) -> Any:
        super().apply_batch(conn, items)  # the view rows are written, not yet committed
        sys.stdout.write(f"applied {len(items)} uncommitted\n")
        sys.stdout.flush()
        os._exit(9)


if __name__ == "__main__":
    services = build_services(Settings(database_url=sys.argv[1], projection_batch_size=50))
    worker = services.worker("invoice_status")
    worker.projection = DiesMidBatch()
    worker.process_batch()
