"""The supervisor, auditor and administrator pages, for the app to register (``api/app.py``)."""

from __future__ import annotations

from web.admin import RosterPages
from web.auditor import AuditPages
from web.person import PersonPage
from web.supervisor import SupervisionPages

OPS_PAGES = [SupervisionPages, AuditPages, RosterPages, PersonPage]
