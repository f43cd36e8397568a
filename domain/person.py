"""Person: one left-behind elder or child on the registry (一人一档).

Registered in a village of the org tree; carries risk tags, the family contacts the practice
requires (a child's parents, guardian and entrusted-care agreement; an elder's absent
children), the pairings that cover them, and whether they are still in the programme.
"""

from __future__ import annotations

import copy
from datetime import date, datetime
from typing import Any
from uuid import UUID

from domain.base import ERASED, CareAggregate, ClosedError, CommandMeta, ErasedError, InvariantError, Personal
from domain.org_unit import OrgUnit
from domain.vocabulary import CHILD_ONLY_TAGS, ELDER_ONLY_TAGS, OrgLevel, PersonKind, RiskTag, Sex

ELDER_MIN_AGE = 60
MAX_AGE = 120  # older than anyone alive: a typing error, not a person
ADULT_AGE = 18
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


class PersonError(InvariantError):
    """A person's record would be inconsistent."""


class PersonInactiveError(ClosedError):
    """The person has left the programme."""


# Sealed with the person's own key; what each field reads as after erasure. A guardian that was
# named stays a (redacted) guardian, so counts of children with a guardian do not change.
ERASED_GUARDIAN: dict[str, Any] = {"name": ERASED, "relation": ERASED}
REGISTRATION_ERASED: dict[str, Any] = {
    "name": ERASED,
    "id_number": ERASED,
    "household": ERASED,
    "guardian": ERASED_GUARDIAN,
    "parents": [],
    "absent_children": [],
}


def age_on(birth_date: date, day: date) -> int:
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def id_number_problem(id_number: str) -> str | None:
    """Why an 18-character resident ID number (GB 11643) is invalid, or None if it is valid."""
    # isascii(): str.isdigit() also accepts full-width and superscript digits.
    if len(id_number) != 18 or not (id_number[:17].isascii() and id_number[:17].isdigit()):
        return "an ID number has 17 digits and a check character"
    check = _ID_CHECK[sum(int(c) * w for c, w in zip(id_number[:17], _ID_WEIGHTS, strict=True)) % 11]
    if id_number[17].upper() != check:
        return "the ID number's check character does not match"
    return None


class Person(CareAggregate):
    kind: PersonKind
    name: str
    sex: Sex
    birth_date: date
    id_number: str | None
    household: str
    village_id: UUID
    org_path: list[UUID]
    risk_tags: list[str]
    guardian: dict[str, Any] | None
    parents: list[dict[str, Any]]
    absent_children: list[dict[str, Any]]
    care_agreement_signed_on: date | None
    active: bool
    left_reason: str | None
    pairing_ids: list[UUID]
    erased: bool

    def __init__(self) -> None:
        """State is set by each event's ``apply``; the annotations above document it."""

    class Registered(CareAggregate.Created):
        kind: str
        name: str
        sex: str
        birth_date: date
        id_number: str | None
        household: str
        village_id: UUID
        org_path: list[UUID]
        risk_tags: list[str]
        guardian: dict[str, Any] | None
        parents: list[dict[str, Any]]
        absent_children: list[dict[str, Any]]
        care_agreement_signed_on: date | None

        personal = Personal(REGISTRATION_ERASED, owner="originator_id")

        def apply(self, p: Person) -> None:
            p.erased = False
            p.kind = PersonKind(self.kind)
            p.name = self.name
            p.sex = Sex(self.sex)
            p.birth_date = self.birth_date
            p.id_number = self.id_number
            p.household = self.household
            p.village_id = self.village_id
            p.org_path = list(self.org_path)
            p.risk_tags = list(self.risk_tags)
            p.guardian = self.guardian
            p.parents = list(self.parents)
            p.absent_children = list(self.absent_children)
            p.care_agreement_signed_on = self.care_agreement_signed_on
            p.active = True
            p.left_reason = None
            p.pairing_ids = []

    class RiskTagAdded(CareAggregate.Event):
        tag: str

        def apply(self, p: Person) -> None:
            p.risk_tags = [*p.risk_tags, self.tag]

    class RiskTagRemoved(CareAggregate.Event):
        tag: str

        def apply(self, p: Person) -> None:
            p.risk_tags = [t for t in p.risk_tags if t != self.tag]

    class GuardianAssigned(CareAggregate.Event):
        guardian: dict[str, Any]

        personal = Personal({"guardian": ERASED_GUARDIAN}, owner="originator_id")

        def apply(self, p: Person) -> None:
            p.guardian = self.guardian

    class CareAgreementSigned(CareAggregate.Event):
        """The parents signed the entrusted-care responsibility agreement (委托照护责任确认书)."""

        signed_on: date

        def apply(self, p: Person) -> None:
            p.care_agreement_signed_on = self.signed_on

    class PairingJoined(CareAggregate.Event):
        pairing_id: UUID

        def apply(self, p: Person) -> None:
            p.pairing_ids = [*p.pairing_ids, self.pairing_id]

    class PairingLeft(CareAggregate.Event):
        pairing_id: UUID

        def apply(self, p: Person) -> None:
            p.pairing_ids = [i for i in p.pairing_ids if i != self.pairing_id]

    class LeftProgramme(CareAggregate.Event):
        reason: str  # free text about the person

        personal = Personal({"reason": ERASED}, owner="originator_id")

        def apply(self, p: Person) -> None:
            p.active = False
            p.left_reason = self.reason

    class ReturnedToProgramme(CareAggregate.Event):
        def apply(self, p: Person) -> None:
            p.active = True
            p.left_reason = None

    class RegistrationCorrected(CareAggregate.Event):
        """Details of the registration corrected (the county's 台账 imported again with changes):
        ``changed`` names the fields that changed, which take the values given; the others are
        None. Risk tags, guardian, agreement and leaving have events of their own."""

        changed: list[str]
        name: str | None
        sex: str | None
        birth_date: date | None
        household: str | None

        personal = Personal({"name": ERASED, "household": ERASED}, owner="originator_id")

        def apply(self, p: Person) -> None:
            if "name" in self.changed and self.name is not None:
                p.name = self.name
            if "sex" in self.changed and self.sex is not None:
                p.sex = Sex(self.sex)
            if "birth_date" in self.changed and self.birth_date is not None:
                p.birth_date = self.birth_date
            if "household" in self.changed and self.household is not None:
                p.household = self.household

    class Erased(CareAggregate.Event):
        """The person's key was destroyed with this event: their personal data reads as erased
        everywhere. ``reason`` is the administrator's, not about the person; who and when are
        the event's actor and times."""

        reason: str

        def apply(self, p: Person) -> None:
            for field, value in REGISTRATION_ERASED.items():
                if getattr(p, field):
                    setattr(p, field, copy.deepcopy(value))
            if p.left_reason:
                p.left_reason = ERASED
            p.active = False
            p.erased = True

    @classmethod
    def register(
        cls,
        *,
        id: UUID,
        kind: PersonKind,
        name: str,
        sex: Sex,
        birth_date: date,
        id_number: str | None,
        household: str,
        village: OrgUnit,
        risk_tags: list[RiskTag],
        guardian: dict[str, Any] | None,
        parents: list[dict[str, Any]],
        absent_children: list[dict[str, Any]],
        care_agreement_signed_on: date | None,
        meta: CommandMeta,
    ) -> Person:
        if not name.strip():
            raise PersonError("a name is required", field="name")
        if village.level != OrgLevel.VILLAGE:
            raise PersonError(f"a person is registered in a village, not a {village.level}", field="village_id")
        today = meta.occurred_at.date()
        if birth_date > today:
            raise PersonError("the birth date is in the future", field="birth_date")
        age = age_on(birth_date, today)
        if age > MAX_AGE:
            raise PersonError(f"a birth date {age} years ago is not plausible (at most {MAX_AGE})", field="birth_date")
        if kind == PersonKind.ELDER and age < ELDER_MIN_AGE:
            raise PersonError(
                f"a left-behind elder is aged {ELDER_MIN_AGE} or more (this one is {age})", field="birth_date"
            )
        if kind == PersonKind.CHILD and age >= ADULT_AGE:
            raise PersonError(f"a left-behind child is a minor (this one is {age})", field="birth_date")
        if id_number is not None and (problem := id_number_problem(id_number)):
            raise PersonError(problem, field="id_number")
        _check_tags(kind, risk_tags)
        if kind == PersonKind.ELDER and (guardian or parents or care_agreement_signed_on):
            field = "guardian" if guardian else "parents" if parents else "care_agreement_signed_on"
            raise PersonError("guardian, parents and care agreement are recorded for children only", field=field)
        if kind == PersonKind.CHILD and absent_children:
            raise PersonError("absent children are recorded for elders only", field="absent_children")
        if care_agreement_signed_on and care_agreement_signed_on > today:
            raise PersonError("the agreement cannot be signed in the future", field="care_agreement_signed_on")
        return cls._create(
            cls.Registered,
            id=id,
            kind=kind.value,
            name=name.strip(),
            sex=sex.value,
            birth_date=birth_date,
            id_number=id_number.upper() if id_number else None,
            household=household,
            village_id=village.id,
            org_path=list(village.path),
            risk_tags=sorted({t.value for t in risk_tags}),
            guardian=guardian,
            parents=parents,
            absent_children=absent_children,
            care_agreement_signed_on=care_agreement_signed_on,
            **meta.fields(),
        )

    def correct_registration(
        self, *, name: str, sex: Sex, birth_date: date, household: str, meta: CommandMeta
    ) -> list[str]:
        """Correct what was registered; nothing changed, nothing recorded. Returns the fields changed."""
        self.check_not_erased()
        if not name.strip():
            raise PersonError("a name is required", field="name")
        age = age_on(birth_date, meta.occurred_at.date())
        if birth_date > meta.occurred_at.date() or age > MAX_AGE:
            raise PersonError("the birth date is not plausible", field="birth_date")
        if self.kind == PersonKind.ELDER and age < ELDER_MIN_AGE:
            raise PersonError(
                f"a left-behind elder is aged {ELDER_MIN_AGE} or more (this one is {age})", field="birth_date"
            )
        if self.kind == PersonKind.CHILD and age >= ADULT_AGE and self.birth_date != birth_date:
            raise PersonError(f"a left-behind child is a minor (this one is {age})", field="birth_date")
        new = {"name": name.strip(), "sex": sex, "birth_date": birth_date, "household": household}
        changed = [f for f, v in new.items() if getattr(self, f) != v]
        if changed:
            self._trigger(
                self.RegistrationCorrected,
                meta,
                changed=changed,
                name=new["name"] if "name" in changed else None,
                sex=sex.value if "sex" in changed else None,
                birth_date=birth_date if "birth_date" in changed else None,
                household=household if "household" in changed else None,
            )
        return changed

    def check_not_erased(self, field: str | None = None) -> None:
        if getattr(self, "erased", False):
            raise ErasedError(f"person {self.id} was erased", field=field)

    def _check_active(self) -> None:
        self.check_not_erased()
        if not self.active:
            # Not the reason they left: it is personal data, and an error travels to places a record does not.
            raise PersonInactiveError("this person has left the programme")

    def add_risk_tag(self, tag: RiskTag, meta: CommandMeta) -> None:
        self._check_active()
        _check_tags(self.kind, [tag], field="tag")
        if tag.value not in self.risk_tags:
            self._trigger(self.RiskTagAdded, meta, tag=tag.value)

    def remove_risk_tag(self, tag: RiskTag, meta: CommandMeta) -> None:
        self._check_active()
        if tag.value in self.risk_tags:
            self._trigger(self.RiskTagRemoved, meta, tag=tag.value)

    def assign_guardian(self, guardian: dict[str, Any], meta: CommandMeta) -> None:
        self._check_active()
        if self.kind != PersonKind.CHILD:
            raise PersonError("a guardian is recorded for children only", field="guardian")
        self._trigger(self.GuardianAssigned, meta, guardian=guardian)

    def sign_care_agreement(self, signed_on: date, meta: CommandMeta) -> None:
        self._check_active()
        if self.kind != PersonKind.CHILD:
            raise PersonError("the entrusted-care agreement is for children only", field="signed_on")
        if signed_on > meta.occurred_at.date():
            raise PersonError("the agreement cannot be signed in the future", field="signed_on")
        self._trigger(self.CareAgreementSigned, meta, signed_on=signed_on)

    def join_pairing(self, pairing_id: UUID, meta: CommandMeta) -> None:
        self._check_active()
        if pairing_id not in self.pairing_ids:
            self._trigger(self.PairingJoined, meta, pairing_id=pairing_id)

    def leave_pairing(self, pairing_id: UUID, meta: CommandMeta) -> None:
        if pairing_id in self.pairing_ids:
            self._trigger(self.PairingLeft, meta, pairing_id=pairing_id)

    def leave_programme(self, reason: str, meta: CommandMeta) -> None:
        """The caller ends or leaves the person's pairings first (see Pairing.drop_person)."""
        self._check_active()
        if not reason.strip():
            raise PersonError("a reason is required", field="reason")
        self._trigger(self.LeftProgramme, meta, reason=reason.strip())

    def return_to_programme(self, meta: CommandMeta) -> None:
        self.check_not_erased()
        if self.active:
            raise PersonError("this person is already in the programme")
        self._trigger(self.ReturnedToProgramme, meta)

    def erase(self, reason: str, meta: CommandMeta) -> None:
        """Erase the person's personal data (crypto-shredding: the key is destroyed with the
        event). The caller first drops them from their pairings, as leaving does. Erasing an
        erased person changes nothing."""
        if self.erased:
            return
        if not reason.strip():
            raise PersonError("a reason is required", field="reason")
        if self.pairing_ids:
            raise PersonError("the person is still in pairings; remove them first", field="reason")
        self._trigger(self.Erased, meta, reason=reason.strip())

    def age_on(self, when: datetime) -> int:
        return age_on(self.birth_date, when.date())


def _check_tags(kind: PersonKind, tags: list[RiskTag], field: str | None = None) -> None:
    """``field`` names a single-tag input; otherwise the offending index of ``risk_tags``."""
    for i, tag in enumerate(tags):
        if kind == PersonKind.ELDER and tag in CHILD_ONLY_TAGS:
            raise PersonError(f"'{tag}' applies to children only", field=field or f"risk_tags[{i}]")
        if kind == PersonKind.CHILD and tag in ELDER_ONLY_TAGS:
            raise PersonError(f"'{tag}' applies to elders only", field=field or f"risk_tags[{i}]")
