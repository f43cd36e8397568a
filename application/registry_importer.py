"""Importing the county's registry sheet (台账): rows checked, then written in batches.

The resident ID number (公民身份号码) is the natural key. It is sealed personal data, so a person
is found by its keyed hash (the store's lookups: ``infrastructure/lookup_hash.py``), kept in ``guanai_lookup`` beside
the digest of the row last imported for them. For every row:

- no one has the number: the person is registered, under an id derived from the hash; a batch of
  new people is saved in one transaction with their lookup rows;
- someone has it and the row is the one imported last time (same digest): nothing is written;
- someone has it and the row differs: their registration is corrected (``Person.RegistrationCorrected``
  saying what changed; risk tags, guardian and agreement by their own events), never a second
  person; registered in another village, or as the other kind: refused, naming the row;
- ``退出原因`` filled in: the person leaves the programme with that reason (as ``POST /persons/{id}/leave``).

People absent from the file are left alone. Every batch commits on its own: a run killed midway
keeps what it committed, and running it again writes only the rest (the finished rows are found
with their digests; a batch cut off committed nothing). A dry run decides every row the same way
and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from application.care import ID_NUMBER, CareApplication
from application.errors import AlreadyExistsError
from application.pairing_import import pair_rows
from application.registry_import import PersonRow, Problem, Sheet, SheetError, find_header, read_rows
from domain.base import CommandMeta, DomainError, ErasedError
from domain.org_unit import OrgUnit
from domain.person import Person
from domain.vocabulary import OrgLevel, RiskTag

BATCH = 500
ROW_DIGEST = "registry_row"  # the lookup kind of a row's digest

# Domain error fields -> the sheet's columns.
FIELD_COLUMNS = {
    "name": "name",
    "id_number": "id_number",
    "birth_date": "birth_date",
    "sex": "sex",
    "village_id": "village",
    "risk_tags": "risk_tags",
    "tag": "risk_tags",
    "guardian": "guardian",
    "parents": "guardian",
    "care_agreement_signed_on": "care_agreement_signed_on",
    "signed_on": "care_agreement_signed_on",
    "reason": "left_reason",
    "household": "household",
    "absent_children": "kind",
}


@dataclass(frozen=True)
class Village:
    id: UUID
    code: str
    name: str
    path: tuple[UUID, ...]


@dataclass
class Outcome:
    total: int = 0  # data rows read
    done: int = 0  # rows decided (written, unchanged or refused)
    created: int = 0
    corrected: int = 0
    unchanged: int = 0
    left: int = 0
    helpers_registered: int = 0
    pairings_formed: int = 0
    pairings_changed: int = 0
    problems: list[Problem] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    sheets: list[str] = field(default_factory=list)
    position: int | None = None  # of the last event written

    @property
    def errors(self) -> int:
        return len({(p.sheet, p.row) for p in self.problems})

    def counts(self) -> dict[str, int]:
        return {
            "total": self.total,
            "done": self.done,
            "created": self.created,
            "corrected": self.corrected,
            "unchanged": self.unchanged,
            "left": self.left,
            "errors": self.errors,
            "helpers_registered": self.helpers_registered,
            "pairings_formed": self.pairings_formed,
            "pairings_changed": self.pairings_changed,
        }


Progress = Callable[[Outcome], None]


def sheets_of(tables: Sequence[tuple[str, list[list[Any]]]]) -> list[Sheet]:
    """The sheets with a header row (a sheet of notes is passed over); none: the first sheet's reason."""
    found: list[Sheet] = []
    first_error: SheetError | None = None
    for name, rows in tables:
        try:
            found.append(find_header(rows, name))
        except SheetError as e:
            if e.missing and len(e.missing) < 3 or first_error is None:
                first_error = first_error if first_error and not e.missing else e
    if not found:
        raise first_error or SheetError("the file has no sheet")
    return found


def row_digest(app: CareApplication, row: PersonRow, village_id: UUID) -> bytes:
    """Keyed digest of everything a row says: the same row again is known without reading the person."""
    content = {
        "name": row.name,
        "sex": row.sex.value,
        "birth": row.birth_date.isoformat(),
        "kind": row.kind.value,
        "village": str(village_id),
        "tags": sorted(t.value for t in row.risk_tags),
        "guardian": row.guardian,
        "household": row.household,
        "agreement": row.care_agreement_signed_on.isoformat() if row.care_agreement_signed_on else None,
        "left": row.left_reason,
    }  # helpers and pairings are looked at on every import (pairing_import.py): not in the digest
    text = json.dumps(content, ensure_ascii=False, sort_keys=True)
    return app.lookup_hash(ROW_DIGEST, hashlib.sha256(text.encode()).hexdigest())


class RegistryImporter:
    """Imports the rows of a registry sheet under one org unit (the importer's scope)."""

    def __init__(self, app: CareApplication, villages: Sequence[Village], unit: OrgUnit, *, batch: int = BATCH) -> None:
        self.app = app
        self.unit = unit
        self.batch = batch
        self.by_code = {v.code: v for v in villages if unit.id in v.path}
        names: dict[str, list[Village]] = {}
        for v in self.by_code.values():
            names.setdefault(v.name, []).append(v)
        self.by_name = names
        self._units: dict[UUID, OrgUnit] = {}
        self.people: dict[tuple[str, int], UUID] = {}  # (sheet, row) -> the person it is, once in the store

    def run(
        self, sheets: list[Sheet], meta: CommandMeta, *, dry_run: bool, today: date, progress: Progress | None = None
    ) -> Outcome:
        rows, problems = read_rows(sheets, today)
        outcome = Outcome(
            total=sum(len(s.rows) for s in sheets),
            problems=problems,
            ignored_columns=sorted({c for s in sheets for c in s.ignored}),
            sheets=[s.name for s in sheets],
        )
        outcome.done = outcome.errors
        if progress:
            progress(outcome)
        for start in range(0, len(rows), self.batch):
            self._batch(rows[start : start + self.batch], meta, dry_run, outcome)
            if progress:
                progress(outcome)
        if not dry_run:
            pair_rows(
                self.app,
                [(r, self.people[(r.sheet, r.row)]) for r in rows if (r.sheet, r.row) in self.people],
                meta,
                today,
                outcome,
            )
            if progress:
                progress(outcome)
        outcome.problems.sort(key=lambda p: (p.sheet, p.row))
        return outcome

    # ---- one batch -------------------------------------------------------------------------------

    def _village(self, row: PersonRow) -> Village | Problem:
        if row.village_code:
            v = self.by_code.get(row.village_code)
            if v is None:
                return row.problem("village_code", "no village with this code under your unit")
            if row.village and row.village != v.name:
                return row.problem("village", f"the code {v.code} is {v.name}, not this village")
            return v
        candidates = self.by_name.get(row.village or "", [])
        if not candidates:
            return row.problem("village", "no village of this name under your unit")
        if len(candidates) > 1:
            codes = "、".join(c.code for c in candidates)
            return row.problem("village", f"several villages have this name ({codes}): give 行政区划代码")
        return candidates[0]

    def _unit(self, village: Village) -> OrgUnit:
        if village.id not in self._units:
            self._units[village.id] = self.app.load(OrgUnit, village.id)
        return self._units[village.id]

    def _batch(self, rows: list[PersonRow], meta: CommandMeta, dry_run: bool, out: Outcome) -> None:
        hashes = {(r.sheet, r.row): self.app.lookup_hash(ID_NUMBER, r.id_number) for r in rows}
        known = self.app.find_by_lookup(ID_NUMBER, list(hashes.values()))
        new: list[tuple[PersonRow, Person, bytes, bytes]] = []
        changed: list[tuple[PersonRow, UUID, bytes, bytes]] = []
        for row in rows:
            village = self._village(row)
            if isinstance(village, Problem):
                self._refuse(out, [village])
                continue
            digest = row_digest(self.app, row, village.id)
            h = hashes[(row.sheet, row.row)]
            if h in known:
                person_id, last = known[h]
                if last == digest:
                    out.unchanged += 1
                    out.done += 1
                    self.people[(row.sheet, row.row)] = person_id
                else:
                    changed.append((row, person_id, h, digest))
                continue
            try:
                person = self._register(row, village, meta)
            except DomainError as e:
                self._refuse(out, [row.problem(_column(e.field), e.detail)])
                continue
            new.append((row, person, h, digest))
        self._save_new(new, meta, dry_run, out)
        for row, person_id, h, digest in changed:
            self._correct(row, person_id, h, digest, meta, dry_run, out)

    def _register(self, row: PersonRow, village: Village, meta: CommandMeta) -> Person:
        return Person.register(
            id=self.app.person_id_for(row.id_number),
            kind=row.kind,
            name=row.name,
            sex=row.sex,
            birth_date=row.birth_date,
            id_number=row.id_number,
            household=row.household,
            village=self._unit(village),
            risk_tags=row.risk_tags,
            guardian=row.guardian,
            parents=[],
            absent_children=[],
            care_agreement_signed_on=row.care_agreement_signed_on,
            meta=meta,
        )

    def _save_new(
        self, new: list[tuple[PersonRow, Person, bytes, bytes]], meta: CommandMeta, dry_run: bool, out: Outcome
    ) -> None:
        if not new:
            return
        leavers = [(row, person) for row, person, _, _ in new if row.left_reason]
        if dry_run:
            out.created += len(new)
            out.left += len(leavers)
            out.done += len(new)
            return
        lookups = [(ID_NUMBER, h, person.id, digest) for _, person, h, digest in new]
        self.app.prepare_keys(person.id for _, person, _, _ in new)
        try:
            with self.app.recording_lookups(lookups):
                recordings = self.app.save(*(person for _, person, _, _ in new))
            out.created += len(new)
            self.people.update({(row.sheet, row.row): person.id for row, person, _, _ in new})
            self._note_position(out, max((r.notification.id for r in recordings if r.notification.id), default=None))
        except (IntegrityError, ErasedError):
            # Some of them exist after all (another import of the same people got there first, or
            # an erased person's id, taken for good): one by one, where a create repeated answers
            # the one stored and an erased person is named as such.
            for row, person, h, digest in new:
                self._register_one(row, person, h, digest, meta, out)
        out.done += len(new)
        for row, person in leavers:
            try:
                result = self.app.person_leaves_programme(person.id, row.left_reason or "", meta)
                out.left += 1
                self._note_position(out, result.position)
            except DomainError as e:
                out.problems.append(row.problem("left_reason", e.detail))

    def _register_one(
        self, row: PersonRow, person: Person, h: bytes, digest: bytes, meta: CommandMeta, out: Outcome
    ) -> None:
        try:
            with self.app.recording_lookups([(ID_NUMBER, h, person.id, digest)]):
                result = self.app.register_person(
                    id=person.id,
                    kind=row.kind,
                    name=row.name,
                    sex=row.sex,
                    birth_date=row.birth_date,
                    village_id=person.village_id,
                    meta=meta,
                    id_number=row.id_number,
                    household=row.household,
                    risk_tags=row.risk_tags,
                    guardian=row.guardian,
                    care_agreement_signed_on=row.care_agreement_signed_on,
                )
        except (AlreadyExistsError, ErasedError):
            # The id this ID number derives is taken, and no lookup row names it: the person was
            # erased (their lookup row went with their keys). Say so, naming no one.
            out.problems.append(
                row.problem(
                    "id_number",
                    "this ID number's person was erased from the registry: register them again through the API",
                )
            )
            return
        except DomainError as e:
            out.problems.append(row.problem(_column(e.field), e.detail))
            return
        if result.created:
            out.created += 1
        else:
            out.unchanged += 1
        self.people[(row.sheet, row.row)] = person.id
        self._note_position(out, result.position)

    def _correct(
        self, row: PersonRow, person_id: UUID, h: bytes, digest: bytes, meta: CommandMeta, dry_run: bool, out: Outcome
    ) -> None:
        for _attempt in range(self.app.retries + 1):
            try:
                person = self.app.load(Person, person_id)
            except DomainError:
                self._refuse(out, [row.problem(None, "the person this ID number belonged to is gone")])
                return
            village = self._village(row)
            assert not isinstance(village, Problem)
            if person.erased:
                self._refuse(out, [row.problem("id_number", "this person's data was erased from the registry")])
                return
            if person.village_id != village.id:
                self._refuse(
                    out,
                    [
                        row.problem(
                            "village",
                            "already registered in another village: move them there first, or correct the village",
                        )
                    ],
                )
                return
            if person.kind != row.kind:
                self._refuse(out, [row.problem("kind", "already registered as the other kind of person")])
                return
            try:
                wrote = self._decide_corrections(person, row, meta)
            except DomainError as e:
                self._refuse(out, [row.problem(_column(e.field), e.detail)])
                return
            leaves = bool(row.left_reason) and person.active
            if dry_run:
                out.corrected += 1 if wrote else 0
                out.unchanged += 0 if wrote or leaves else 1
                out.left += 1 if leaves else 0
                out.done += 1
                return
            try:
                with self.app.recording_lookups([(ID_NUMBER, h, person_id, digest)]):
                    recordings = self.app.save(person)
            except IntegrityError:
                continue  # changed meanwhile (through the API): decide again on what is stored now
            self._note_position(out, max((r.notification.id for r in recordings if r.notification.id), default=None))
            if leaves:
                try:
                    self._note_position(
                        out, self.app.person_leaves_programme(person_id, row.left_reason or "", meta).position
                    )
                    out.left += 1
                except DomainError as e:
                    out.problems.append(row.problem("left_reason", e.detail))
            self.people[(row.sheet, row.row)] = person_id
            if wrote:
                out.corrected += 1
            elif not leaves:
                out.unchanged += 1  # the row differs from the last import's, not from the record
            out.done += 1
            return
        self._refuse(out, [row.problem(None, "changed by others too often while importing: import it again")])

    def _decide_corrections(self, person: Person, row: PersonRow, meta: CommandMeta) -> bool:
        """Let the person decide the corrections the row asks for; True if any event was triggered."""
        before = len(person.pending_events)
        person.correct_registration(
            name=row.name, sex=row.sex, birth_date=row.birth_date, household=row.household, meta=meta
        )
        wanted = {t.value for t in row.risk_tags}
        if person.active:
            for tag in sorted(set(person.risk_tags) - wanted):
                person.remove_risk_tag(RiskTag(tag), meta)
            for tag in row.risk_tags:
                person.add_risk_tag(tag, meta)
            if row.guardian and _guardian_key(person.guardian) != _guardian_key(row.guardian):
                person.assign_guardian(row.guardian, meta)
            agreement = row.care_agreement_signed_on
            if agreement and agreement != person.care_agreement_signed_on:
                person.sign_care_agreement(agreement, meta)
        return len(person.pending_events) > before

    def _refuse(self, out: Outcome, problems: list[Problem]) -> None:
        out.problems.extend(problems)
        out.done += 1

    @staticmethod
    def _note_position(out: Outcome, position: int | None) -> None:
        if position is not None and (out.position is None or position > out.position):
            out.position = position


def _guardian_key(guardian: dict[str, Any] | None) -> tuple[Any, ...]:
    g = guardian or {}
    return g.get("name"), g.get("relation"), g.get("phone")


def _column(field_name: str | None) -> str | None:
    """The sheet's column of a domain error's field (``risk_tags[1]`` is the risk tags column)."""
    return FIELD_COLUMNS.get(field_name.split("[", 1)[0]) if field_name else None


def villages_of(rows: Sequence[dict[str, Any]]) -> list[Village]:
    """Villages from registry view rows (``reg_org_units``)."""
    return [
        Village(r["id"], r["code"], r["name"], tuple(r["org_path"]))
        for r in rows
        if r["level"] == OrgLevel.VILLAGE.value
    ]
