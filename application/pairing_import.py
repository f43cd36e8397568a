"""Helpers and pairings (结对帮扶) from the registry sheet: after its people are in.

A row's 帮扶人 (with 帮扶人电话, 帮扶人身份) are paired with the row's person in the row's 结对方式:

- **一对一**: one pairing per helper and person;
- **一对N**: one pairing per helper, holding every person of the file that names that helper 一对N;
- **N对一**: one pairing per person, holding every helper the row names (四包一 is N对一).

A helper is known by their phone (the keyed hash of it in ``guanai_lookup``, kind ``phone``): a
phone not seen before registers a helper in the person's village. Helpers, pairings and their
ids derive from those keys, so the same sheet again forms nothing new: an existing 一对N pairing
gains the file's persons it lacks, an N对一 pairing the helpers it lacks; nobody is taken out of a
pairing by an import (ending pairings is for the API, with a reason). Every step is a command of
its own: a crash leaves whole pairings, and running the import again does the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING
from uuid import UUID

from application.care import CareApplication
from application.registry_import import HelperCell, PersonRow
from domain.base import CommandMeta, DomainError, derived_id
from domain.pairing import Pairing
from domain.person import Person
from domain.vocabulary import PairingShape, VisitMode

if TYPE_CHECKING:
    from application.registry_importer import Outcome

PHONE = "phone"  # the lookup kind of phone numbers (shared with accounts)


def helper_id_for(app: CareApplication, phone: str) -> UUID:
    return derived_id("helper-phone", app.lookup_hash(PHONE, phone).hex())


def pairing_id_for(shape: PairingShape, key: str) -> UUID:
    return derived_id("imported-pairing", f"{shape.value}:{key}")


def pair_rows(
    app: CareApplication, rows: Sequence[tuple[PersonRow, UUID]], meta: CommandMeta, today: date, out: Outcome
) -> None:
    """Register the helpers and form (or complete) the pairings the rows name."""
    rows = [(r, p) for r, p in rows if r.helpers and r.pairing_shape is not None]
    if not rows:
        return
    helpers = _helpers(app, rows, meta, out)
    one_to_many: dict[UUID, list[tuple[PersonRow, UUID]]] = {}
    for row, person_id in rows:
        ids = [helpers.get(h.phone) for h in row.helpers]
        if any(i is None for i in ids):
            continue  # the helper's registration was refused: the row says why already
        helper_ids = [i for i in ids if i is not None]
        shape = row.pairing_shape
        assert shape is not None
        if shape == PairingShape.ONE_TO_MANY:
            one_to_many.setdefault(helper_ids[0], []).append((row, person_id))
            continue
        key = f"{helper_ids[0]}:{person_id}" if shape == PairingShape.ONE_TO_ONE else str(person_id)
        _pairing(app, shape, pairing_id_for(shape, key), helper_ids, [(row, person_id)], meta, today, out)
    for helper_id, members in one_to_many.items():
        _pairing(
            app,
            PairingShape.ONE_TO_MANY,
            pairing_id_for(PairingShape.ONE_TO_MANY, str(helper_id)),
            [helper_id],
            members,
            meta,
            today,
            out,
        )


def _helpers(
    app: CareApplication, rows: Sequence[tuple[PersonRow, UUID]], meta: CommandMeta, out: Outcome
) -> dict[str, UUID]:
    """phone -> helper id, registering the helpers not known yet (in the first row's village)."""
    first: dict[str, tuple[HelperCell, PersonRow, UUID]] = {}
    for row, person_id in rows:
        for cell in row.helpers:
            first.setdefault(cell.phone, (cell, row, person_id))
    hashes = {phone: app.lookup_hash(PHONE, phone) for phone in first}
    known = app.find_by_lookup(PHONE, list(hashes.values()))
    found: dict[str, UUID] = {}
    for phone, (cell, row, person_id) in first.items():
        if hashes[phone] in known:
            found[phone] = known[hashes[phone]][0]
            continue
        helper_id = helper_id_for(app, phone)
        try:
            village = app.load(Person, person_id).village_id
            with app.recording_lookups([(PHONE, hashes[phone], helper_id, None)]):
                result = app.register_helper(
                    id=helper_id, role=cell.role, name=cell.name, phone=phone, org_unit_id=village, meta=meta
                )
        except DomainError as e:
            out.problems.append(row.problem("helpers", e.detail))
            continue
        found[phone] = helper_id
        out.helpers_registered += 1 if result.created else 0
        _note(out, result.position)
    return found


def _pairing(
    app: CareApplication,
    shape: PairingShape,
    pairing_id: UUID,
    helper_ids: list[UUID],
    members: list[tuple[PersonRow, UUID]],
    meta: CommandMeta,
    today: date,
    out: Outcome,
) -> None:
    first_row = members[0][0]
    try:
        existing = app.load(Pairing, pairing_id)
    except DomainError:
        existing = None
    try:
        if existing is None:
            if shape == PairingShape.ONE_TO_MANY and len(members) < 2:
                out.problems.append(
                    first_row.problem(
                        "pairing_shape", "一对N: no other row names this helper 一对N; write 一对一 for a pair"
                    )
                )
                return
            result = app.form_pairing(
                id=pairing_id,
                shape=shape,
                helper_ids=helper_ids,
                person_ids=[p for _, p in members],
                cadence=first_row.cadence,
                visit_mode=VisitMode.HOME_VISIT,
                starts_on=first_row.pairing_start or today,
                meta=meta,
            )
            out.pairings_formed += 1 if result.created else 0
            _note(out, result.position)
            return
        if existing.ended:
            out.problems.append(
                first_row.problem("pairing_shape", "this pairing has ended: form a new one through the API")
            )
            return
        for row, person_id in members:
            if person_id not in existing.person_ids and shape == PairingShape.ONE_TO_MANY:
                _note(out, app.add_pairing_person(pairing_id, person_id, meta).position)
                out.pairings_changed += 1
        for helper_id in helper_ids:
            if helper_id not in existing.helper_ids and shape == PairingShape.MANY_TO_ONE:
                _note(out, app.add_pairing_helper(pairing_id, helper_id, meta).position)
                out.pairings_changed += 1
    except DomainError as e:
        for row, _ in members:
            out.problems.append(row.problem("helpers", e.detail))


def _note(out: Outcome, position: int | None) -> None:
    if position is not None and (out.position is None or position > out.position):
        out.position = position
