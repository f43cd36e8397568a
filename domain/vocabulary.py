"""The closed vocabularies of the practice (domain.md), as string enums.

Values are stable identifiers stored in events and sent over the API; Chinese labels are for
display and exports. ``labelled`` gives an enum its labels: they are listed beside the codes in
the enum's docstring, which becomes its description in the OpenAPI document, and a label sent
where its code belongs is answered with the code to send (``label_codes``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import TypeVar

E = TypeVar("E", bound=StrEnum)

# Every labelled vocabulary, and its labels by code.
LABELS: dict[type[StrEnum], dict[str, str]] = {}
# (vocabulary, code) by label, in the order of LABELS: what ``label_codes`` answers.
_CODES_BY_LABEL: dict[str, list[tuple[str, str]]] = {}


def labelled(labels: Mapping[str, str]) -> Callable[[type[E]], type[E]]:
    """Attach Chinese labels (one per member, checked) to a vocabulary enum."""

    def attach(cls: type[E]) -> type[E]:
        codes = {m.value for m in cls}
        if set(labels) != codes:
            raise ValueError(f"{cls.__name__}: labels for {sorted(set(labels) ^ codes)} missing or unknown")
        LABELS[cls] = dict(labels)
        for code, text in labels.items():
            _CODES_BY_LABEL.setdefault(text, []).append((cls.__name__, code))
        listed = "; ".join(f"`{m.value}` {labels[m.value]}" for m in cls)
        head = (cls.__doc__ or "").strip()
        cls.__doc__ = f"{head}\n\nCodes and their labels: {listed}." if head else f"Codes and their labels: {listed}."
        return cls

    return attach


def label_codes(label: str) -> list[tuple[str, str]]:
    """(vocabulary, code) of every code whose label is ``label`` (a client sent the label)."""
    # Looked up, not searched: every refused enum value of a request comes here (100 us a search).
    return list(_CODES_BY_LABEL.get(label.strip(), ()))


@labelled({"county": "县", "township": "乡镇/街道", "village": "村/社区"})
class OrgLevel(StrEnum):
    COUNTY = "county"  # 县
    TOWNSHIP = "township"  # 乡镇/街道
    VILLAGE = "village"  # 村/社区


# The parent level each level must hang under; a county is a root.
PARENT_LEVEL: dict[OrgLevel, OrgLevel | None] = {
    OrgLevel.COUNTY: None,
    OrgLevel.TOWNSHIP: OrgLevel.COUNTY,
    OrgLevel.VILLAGE: OrgLevel.TOWNSHIP,
}


@labelled({"elder": "农村留守老年人", "child": "农村留守儿童"})
class PersonKind(StrEnum):
    ELDER = "elder"  # 农村留守老年人
    CHILD = "child"  # 农村留守儿童


@labelled({"male": "男", "female": "女"})
class Sex(StrEnum):
    MALE = "male"
    FEMALE = "female"


class RiskTag(StrEnum):
    ADVANCED_AGE = "advanced_age"  # 高龄 (80+)
    DISABLED = "disabled"  # 失能
    SEMI_DISABLED = "semi_disabled"  # 半失能
    LIVING_ALONE = "living_alone"  # 独居
    EMPTY_NEST = "empty_nest"  # 空巢
    ECONOMIC_HARDSHIP = "economic_hardship"  # 经济困难
    DIBAO = "dibao"  # 低保
    TEKUN = "tekun"  # 特困
    CHILD_IN_DIFFICULTY = "child_in_difficulty"  # 困境儿童
    DE_FACTO_UNSUPPORTED = "de_facto_unsupported"  # 事实无人抚养儿童


RISK_TAG_LABELS: dict[RiskTag, str] = {  # labelled below, once defined
    RiskTag.ADVANCED_AGE: "高龄",
    RiskTag.DISABLED: "失能",
    RiskTag.SEMI_DISABLED: "半失能",
    RiskTag.LIVING_ALONE: "独居",
    RiskTag.EMPTY_NEST: "空巢",
    RiskTag.ECONOMIC_HARDSHIP: "经济困难",
    RiskTag.DIBAO: "低保",
    RiskTag.TEKUN: "特困",
    RiskTag.CHILD_IN_DIFFICULTY: "困境儿童",
    RiskTag.DE_FACTO_UNSUPPORTED: "事实无人抚养儿童",
}

labelled({tag.value: label for tag, label in RISK_TAG_LABELS.items()})(RiskTag)

# Tags that only make sense for one kind of person.
CHILD_ONLY_TAGS = frozenset({RiskTag.CHILD_IN_DIFFICULTY, RiskTag.DE_FACTO_UNSUPPORTED})
ELDER_ONLY_TAGS = frozenset({RiskTag.ADVANCED_AGE, RiskTag.EMPTY_NEST})


@labelled(
    {
        "volunteer": "志愿者",
        "village_cadre": "村干部",
        "child_director": "儿童主任",
        "child_supervisor": "儿童督导员",
        "teacher": "教师",
        "family_doctor": "家庭医生",
        "police": "民警",
        "social_worker": "社工",
        "assisting_cadre": "帮扶干部",
        "caring_mother": "爱心妈妈",
        "peer_elder": "老老互助",
    }
)
class HelperRole(StrEnum):
    VOLUNTEER = "volunteer"  # 志愿者
    VILLAGE_CADRE = "village_cadre"  # 村干部
    CHILD_DIRECTOR = "child_director"  # 儿童主任
    CHILD_SUPERVISOR = "child_supervisor"  # 儿童督导员
    TEACHER = "teacher"  # 教师
    FAMILY_DOCTOR = "family_doctor"  # 家庭医生
    POLICE = "police"  # 民警
    SOCIAL_WORKER = "social_worker"  # 社工
    ASSISTING_CADRE = "assisting_cadre"  # 帮扶干部
    CARING_MOTHER = "caring_mother"  # 爱心妈妈
    PEER_ELDER = "peer_elder"  # 老老互助


@labelled({"one_to_one": "一对一", "one_to_many": "一对N", "many_to_one": "N对一"})
class PairingShape(StrEnum):
    ONE_TO_ONE = "one_to_one"  # 一对一
    ONE_TO_MANY = "one_to_many"  # 一对N
    MANY_TO_ONE = "many_to_one"  # N对一


@labelled(
    {
        "weekly": "每周",
        "fortnightly": "每两周",
        "half_monthly": "每半月",
        "monthly": "每月",
        "half_yearly": "每半年",
        "yearly": "每年",
    }
)
class Cadence(StrEnum):
    """How often the pairing's helpers must look in on each person."""

    WEEKLY = "weekly"
    FORTNIGHTLY = "fortnightly"
    HALF_MONTHLY = "half_monthly"
    MONTHLY = "monthly"
    HALF_YEARLY = "half_yearly"
    YEARLY = "yearly"


# Nominal length of one cadence period in days (used for due windows and compliance).
CADENCE_DAYS: dict[Cadence, int] = {
    Cadence.WEEKLY: 7,
    Cadence.FORTNIGHTLY: 14,
    Cadence.HALF_MONTHLY: 15,
    Cadence.MONTHLY: 30,
    Cadence.HALF_YEARLY: 182,
    Cadence.YEARLY: 365,
}


@labelled({"home_visit": "上门入户", "phone_video": "电话视频", "remote_monitoring": "远程监测"})
class VisitMode(StrEnum):
    HOME_VISIT = "home_visit"  # 上门入户
    PHONE_VIDEO = "phone_video"  # 电话视频
    REMOTE_MONITORING = "remote_monitoring"  # 远程监测


@labelled(
    {
        "volunteer": "志愿者",
        "village_cadre": "村干部",
        "child_director": "儿童主任",
        "township_responder": "乡镇应急响应人",
        "township_supervisor": "乡镇督导",
        "county_responder": "县级应急响应人",
        "county_supervisor": "县级督导",
        "auditor": "审计",
        "administrator": "管理员",
        "system": "系统",
    }
)
class ActorRole(StrEnum):
    """Roles of people who use the system (carried in tokens and recorded on every event)."""

    VOLUNTEER = "volunteer"
    VILLAGE_CADRE = "village_cadre"
    CHILD_DIRECTOR = "child_director"
    TOWNSHIP_RESPONDER = "township_responder"
    TOWNSHIP_SUPERVISOR = "township_supervisor"
    COUNTY_RESPONDER = "county_responder"
    COUNTY_SUPERVISOR = "county_supervisor"
    AUDITOR = "auditor"
    ADMINISTRATOR = "administrator"
    SYSTEM = "system"  # workers and the demo seeder
