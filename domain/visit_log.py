"""VisitLog (走访日志): what a visit found and what service was given.

A log is created once, under an id the client chooses (an offline phone makes it before it has
a signal), so sending the same log again changes nothing. It either completes a visit task
(``task_id``; the task's ``Completed`` event is saved in the same transaction) or records an
unplanned visit linked to the pairing. Its ``occurred_at`` is when the visit took place (days
before it was recorded, often); ``visited_at`` repeats it as part of the log's content.

For the emergency work (issue 4): a log with ``raise_emergency`` emits, right after
``VisitLog.Recorded``, the event ``VisitLog.EmergencyFlagged`` (NATS subject
``<prefix>.VisitLog.EmergencyFlagged``) with ``kind`` (an ``EmergencyKind`` value),
``description`` (free text; left out of NATS envelopes), ``person_id``, ``pairing_id``,
``task_id``, ``org_path`` (the person's, root first), and the actor and ``occurred_at`` of the
visit. Its ``originator_id`` is the log id, so a repeated log never flags twice. Free text
lives in ``findings``, ``outcome_notes`` and ``description`` only.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.base import ERASED, CareAggregate, CommandMeta, InvariantError, Personal
from domain.vocabulary import VisitMode, labelled


@labelled({"good": "良好", "adequate": "尚可", "poor": "较差", "unsafe": "不安全"})
class LivingConditions(StrEnum):
    GOOD = "good"
    ADEQUATE = "adequate"
    POOR = "poor"
    UNSAFE = "unsafe"


@labelled({"well": "健康", "minor_illness": "小病", "chronic_stable": "慢性病稳定", "ill": "患病", "critical": "危重"})
class Health(StrEnum):
    WELL = "well"
    MINOR_ILLNESS = "minor_illness"
    CHRONIC_STABLE = "chronic_stable"
    ILL = "ill"
    CRITICAL = "critical"


@labelled({"good": "良好", "calm": "平稳", "low": "低落", "anxious": "焦虑", "distressed": "痛苦"})
class Mood(StrEnum):
    GOOD = "good"
    CALM = "calm"
    LOW = "low"
    ANXIOUS = "anxious"
    DISTRESSED = "distressed"


@labelled(
    {
        "fall": "跌倒",
        "fire": "用火用电",
        "unsafe_housing": "危房",
        "no_heating": "无取暖",
        "food_shortage": "缺粮少食",
        "medication": "用药不当",
        "drowning": "溺水",
        "traffic": "交通安全",
        "fraud": "电信诈骗",
        "neglect": "疏于照料",
        "abuse_suspected": "疑似受虐",
        "wandering": "走失",
        "self_harm": "自伤",
    }
)
class SafetyRisk(StrEnum):
    FALL = "fall"  # 跌倒
    FIRE = "fire"  # 用火用电
    UNSAFE_HOUSING = "unsafe_housing"  # 危房
    NO_HEATING = "no_heating"
    FOOD_SHORTAGE = "food_shortage"
    MEDICATION = "medication"  # missed or wrong medicine
    DROWNING = "drowning"  # children near ponds and rivers (防溺水)
    TRAFFIC = "traffic"
    FRAUD = "fraud"  # telephone fraud aimed at elders
    NEGLECT = "neglect"
    ABUSE_SUSPECTED = "abuse_suspected"
    WANDERING = "wandering"
    SELF_HARM = "self_harm"


@labelled(
    {
        "daily_care": "日常照料",
        "medical_care": "医疗护理",
        "psychological_support": "心理支持",
        "financial_aid": "经济救助",
        "schooling": "就学",
        "legal_help": "法律帮助",
        "housing_repair": "房屋修缮",
        "supplies": "生活物资",
        "family_contact": "亲情联系",
    }
)
class Need(StrEnum):
    DAILY_CARE = "daily_care"
    MEDICAL_CARE = "medical_care"
    PSYCHOLOGICAL_SUPPORT = "psychological_support"
    FINANCIAL_AID = "financial_aid"
    SCHOOLING = "schooling"
    LEGAL_HELP = "legal_help"
    HOUSING_REPAIR = "housing_repair"
    SUPPLIES = "supplies"
    FAMILY_CONTACT = "family_contact"


@labelled(
    {
        "daily_life_care": "生活照料",
        "psychological_comfort": "心理抚慰",
        "health_care": "健康保健",
        "emergency_help": "应急救助",
        "culture_recreation": "文体娱乐",
        "legal_aid": "法律援助",
    }
)
class ServiceCategory(StrEnum):
    DAILY_LIFE_CARE = "daily_life_care"  # 生活照料
    PSYCHOLOGICAL_COMFORT = "psychological_comfort"  # 心理抚慰
    HEALTH_CARE = "health_care"  # 健康保健
    EMERGENCY_HELP = "emergency_help"  # 应急救助
    CULTURE_RECREATION = "culture_recreation"  # 文体娱乐
    LEGAL_AID = "legal_aid"  # 法律援助


@labelled(
    {
        "cleaning": "打扫卫生",
        "laundry": "洗衣",
        "cooking": "做饭",
        "haircut": "理发",
        "meal_delivery": "送餐",
        "medicine_delivery": "送药",
        "shopping": "代购",
        "blood_pressure": "测血压",
        "blood_sugar": "测血糖",
    }
)
class ServiceItem(StrEnum):
    CLEANING = "cleaning"
    LAUNDRY = "laundry"
    COOKING = "cooking"
    HAIRCUT = "haircut"
    MEAL_DELIVERY = "meal_delivery"
    MEDICINE_DELIVERY = "medicine_delivery"
    SHOPPING = "shopping"
    BLOOD_PRESSURE = "blood_pressure"
    BLOOD_SUGAR = "blood_sugar"


ITEM_CATEGORY: dict[ServiceItem, ServiceCategory] = {
    **dict.fromkeys(
        (
            ServiceItem.CLEANING,
            ServiceItem.LAUNDRY,
            ServiceItem.COOKING,
            ServiceItem.HAIRCUT,
            ServiceItem.MEAL_DELIVERY,
            ServiceItem.MEDICINE_DELIVERY,
            ServiceItem.SHOPPING,
        ),
        ServiceCategory.DAILY_LIFE_CARE,
    ),
    ServiceItem.BLOOD_PRESSURE: ServiceCategory.HEALTH_CARE,
    ServiceItem.BLOOD_SUGAR: ServiceCategory.HEALTH_CARE,
}


@labelled(
    {
        "wandering_or_begging": "流浪乞讨",
        "illegal_harm": "遭受不法侵害",
        "critical_illness": "危重病",
        "mental_health_crisis": "严重精神障碍发作",
        "major_hardship": "重大困难",
        "other": "其他",
    }
)
class EmergencyKind(StrEnum):
    """The situations of mandatory reporting (强制报告) in the county plans."""

    WANDERING_OR_BEGGING = "wandering_or_begging"
    ILLEGAL_HARM = "illegal_harm"  # abuse, neglect
    CRITICAL_ILLNESS = "critical_illness"
    MENTAL_HEALTH_CRISIS = "mental_health_crisis"
    MAJOR_HARDSHIP = "major_hardship"
    OTHER = "other"


class VisitLogError(InvariantError):
    """The log contradicts itself."""


CONTENT_FIELDS = (
    "task_id",
    "mode",
    "visited_at",
    "helper_ids",
    "findings",
    "services",
    "service_items",
    "follow_up_needed",
    "outcome_notes",
    "raise_emergency",
    "emergency_kind",
    "description",
)


def log_content(
    *,
    task_id: UUID | None,
    mode: VisitMode,
    visited_at: datetime,
    helper_ids: list[UUID],
    findings: dict[str, Any],
    services: list[ServiceCategory],
    service_items: list[ServiceItem],
    follow_up_needed: bool = False,
    outcome_notes: str = "",
    raise_emergency: bool = False,
    emergency_kind: EmergencyKind | None = None,
    description: str = "",
) -> dict[str, Any]:
    """What the client said, checked and in its stored form: two sends of the same log give
    equal contents, so a repeat is recognised (``CONTENT_FIELDS``). ``description`` describes
    the emergency raised (free text stays in fields the NATS envelope leaves out)."""
    if not helper_ids:
        raise VisitLogError("name at least one helper who went", field="helper_ids")
    if len(set(helper_ids)) != len(helper_ids):
        raise VisitLogError("a helper is named twice", field="helper_ids")
    for n, item in enumerate(service_items):
        if ITEM_CATEGORY[item] not in services:
            raise VisitLogError(
                f"{item.value} is a {ITEM_CATEGORY[item].value} service; list that category too",
                field=f"service_items[{n}]",
            )
    bp = findings.get("blood_pressure")
    if bp and not 30 <= bp["diastolic"] < bp["systolic"] <= 300:
        raise VisitLogError("blood pressure is systolic over diastolic, in mmHg", field="findings.blood_pressure")
    if raise_emergency != (emergency_kind is not None):
        raise VisitLogError(
            "raising an emergency needs its kind, and a kind needs raise_emergency", field="emergency_kind"
        )
    return {
        "task_id": task_id,
        "mode": mode.value,
        "visited_at": visited_at,
        "helper_ids": list(helper_ids),
        "findings": findings,
        "services": [s.value for s in services],
        "service_items": [i.value for i in service_items],
        "follow_up_needed": follow_up_needed,
        "outcome_notes": outcome_notes.strip(),
        "raise_emergency": raise_emergency,
        "emergency_kind": emergency_kind.value if emergency_kind else None,
        "description": description.strip(),
    }


class VisitLog(CareAggregate):
    task_id: UUID | None
    pairing_id: UUID
    person_id: UUID
    org_path: list[UUID]
    mode: VisitMode
    visited_at: datetime
    helper_ids: list[UUID]
    findings: dict[str, Any]
    services: list[str]
    service_items: list[str]
    follow_up_needed: bool
    outcome_notes: str
    raise_emergency: bool
    emergency_kind: str | None
    description: str

    def __init__(self) -> None:
        """State is set by each event's ``apply``; the annotations above document it."""

    class Recorded(CareAggregate.Created):
        task_id: UUID | None
        pairing_id: UUID
        person_id: UUID
        org_path: list[UUID]
        mode: str
        visited_at: datetime
        helper_ids: list[UUID]
        findings: dict[str, Any]
        services: list[str]
        service_items: list[str]
        follow_up_needed: bool
        outcome_notes: str  # what must follow, agreed at the visit
        raise_emergency: bool
        emergency_kind: str | None
        description: str  # of the emergency raised, if any

        # Sealed with the visited person's own key: no key per log.
        personal = Personal(
            {"findings": {}, "outcome_notes": ERASED, "description": ERASED}, subject="person_id", owner="person_id"
        )

        def apply(self, log: VisitLog) -> None:
            for name in (*CONTENT_FIELDS, "pairing_id", "person_id", "org_path"):
                setattr(log, name, getattr(self, name))
            log.mode = VisitMode(self.mode)

    class EmergencyFlagged(CareAggregate.Event):
        kind: str
        description: str
        person_id: UUID
        pairing_id: UUID
        task_id: UUID | None
        org_path: list[UUID]

        personal = Personal({"description": ERASED}, subject="person_id", owner="person_id")

        def apply(self, log: VisitLog) -> None:
            pass  # the log already says so; this event is what the emergency workers follow

    def content(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in CONTENT_FIELDS} | {"mode": self.mode.value}

    @classmethod
    def record(
        cls,
        *,
        id: UUID,
        pairing_id: UUID,
        person_id: UUID,
        org_path: list[UUID],
        meta: CommandMeta,
        **fields: Any,
    ) -> VisitLog:
        """A log of the visit that took place at ``meta.occurred_at``; ``fields`` are
        ``log_content``'s (task_id, mode, helper_ids, findings, services, ...)."""
        content = log_content(visited_at=meta.occurred_at, **fields)
        log = cls._create(
            cls.Recorded,
            id=id,
            pairing_id=pairing_id,
            person_id=person_id,
            org_path=list(org_path),
            **content,
            **meta.fields(),
        )
        if content["raise_emergency"]:
            log._trigger(
                cls.EmergencyFlagged,
                meta,
                kind=content["emergency_kind"],
                description=content["description"],
                person_id=person_id,
                pairing_id=pairing_id,
                task_id=content["task_id"],
                org_path=list(org_path),
            )
        return log
