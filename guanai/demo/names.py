"""Name and place data for the demo county, and small generators drawing from it.

Everything here is invented but shaped like the real thing: surnames weighted by their
frequency (with the Yi, Hani and Dai surnames common in southern Yunnan), given names typical
of each generation, village names built like those of the Ailao mountains, mobile numbers,
and resident ID numbers with a valid GB 11643 check character.
"""

from __future__ import annotations

import random
from datetime import date

COUNTY_CODE = "530429"  # under Yuxi (5304); no real county holds this code
COUNTY_NAME = "云岭县"

# (name, kind): kind picks the code range the statistics bureau uses: 0xx subdistrict, 1xx town, 2xx township.
TOWNSHIPS: list[tuple[str, str]] = [
    ("龙潭镇", "town"),
    ("青龙镇", "town"),
    ("新街镇", "town"),
    ("羊街乡", "township"),
    ("白石乡", "township"),
    ("大河乡", "township"),
    ("松林乡", "township"),
    ("清水河乡", "township"),
    ("者竜乡", "township"),
    ("哈播乡", "township"),
    ("曼来镇", "town"),
    ("咪依乡", "township"),
]

VILLAGE_HEADS = [
    "大箐",
    "小箐",
    "上寨",
    "下寨",
    "新寨",
    "老寨",
    "李家",
    "张家",
    "杨柳",
    "松树",
    "麻栗",
    "白泥",
    "龙潭",
    "石门",
    "青树",
    "大平",
    "小河",
    "中和",
    "团结",
    "勐里",
    "者么",
    "嘎洒",
    "倮倮",
    "阿哈",
    "梁子",
    "岔河",
    "坡头",
    "沙坝",
    "水井",
    "核桃",
    "茶山",
    "竹园",
    "马鹿",
    "羊岔",
    "黄草",
    "红土",
    "打磨",
    "芭蕉",
    "甘蔗",
    "邦迈",
    "普洱",
    "咪哩",
    "罗马",
    "都贵",
    "垤玛",
    "洼垤",
    "埃拉",
    "桃园",
]
VILLAGE_TAILS = ["村", "村", "村", "寨村", "坪村", "箐村", "冲村", "凹村", "哨村", "营村", "河村", "坝村"]

# Surname and approximate share (per mille) among rural Yunnan people.
SURNAMES: list[tuple[str, float]] = [
    ("李", 95),
    ("王", 60),
    ("张", 58),
    ("杨", 55),
    ("刘", 40),
    ("陈", 38),
    ("赵", 22),
    ("罗", 22),
    ("普", 18),
    ("白", 16),
    ("马", 15),
    ("黄", 15),
    ("周", 14),
    ("吴", 13),
    ("高", 12),
    ("何", 12),
    ("朱", 10),
    ("郭", 9),
    ("孙", 9),
    ("徐", 9),
    ("段", 8),
    ("施", 7),
    ("龙", 7),
    ("钱", 6),
    ("胡", 9),
    ("林", 6),
    ("郑", 6),
    ("梁", 6),
    ("谢", 5),
    ("宋", 5),
    ("唐", 5),
    ("许", 5),
    ("韩", 4),
    ("冯", 4),
    ("邓", 4),
    ("曹", 4),
    ("彭", 4),
    ("曾", 4),
    ("田", 4),
    ("董", 4),
    ("袁", 4),
    ("潘", 4),
    ("刀", 4),
    ("蒋", 3),
    ("蔡", 3),
    ("余", 3),
    ("杜", 3),
    ("叶", 3),
    ("苏", 3),
    ("魏", 3),
    ("丁", 3),
    ("鲁", 3),
    ("起", 2),
    ("字", 2),
    ("沈", 2),
    ("姚", 2),
    ("卢", 2),
    ("钟", 2),
    ("熊", 2),
    ("石", 2),
    ("方", 2),
    ("毛", 1),
    ("陶", 1),
    ("雷", 1),
    ("侯", 1),
    ("孔", 1),
    ("邱", 1),
    ("范", 1),
    ("金", 1),
    ("姜", 1),
]
_SURNAME_LIST = [s for s, _ in SURNAMES]
_SURNAME_WEIGHTS = [w for _, w in SURNAMES]

# Characters of given names by generation and sex.
GIVEN: dict[tuple[str, str], str] = {
    ("old", "male"): "国德明华福贵荣有文忠正富发祥学志兴顺开云春金才昌成光玉林寿贤清",
    ("old", "female"): "秀英兰珍芬玉凤桂琼翠梅花美芳萍珠菊仙慧淑素春莲香云彩娣",
    ("mid", "male"): "伟军勇强刚涛斌海波辉建平磊杰峰鹏超俊飞林斌东红卫忠明云亮",
    ("mid", "female"): "丽红艳燕敏静娟霞婷玲芳琴梅慧华萍晶莉雪丹颖倩蓉",
    ("young", "male"): "浩宇轩子俊博梓睿泽航晨一铭皓然宸逸辰嘉昊煜天佑安诚瑞",
    ("young", "female"): "欣怡雨涵萱思佳梦诗语可馨悦彤婉琪若依子桐妍菲瑶雅汐晴",
}

WORK_PLACES = [
    ("广东省深圳市", 14),
    ("广东省东莞市", 12),
    ("广东省广州市", 9),
    ("广东省佛山市", 7),
    ("广东省中山市", 4),
    ("浙江省宁波市", 7),
    ("浙江省义乌市", 5),
    ("浙江省杭州市", 4),
    ("上海市", 7),
    ("江苏省苏州市", 5),
    ("福建省晋江市", 4),
    ("云南省昆明市", 14),
    ("云南省玉溪市", 6),
    ("云南省蒙自市", 2),
]
_WORK_LIST = [w for w, _ in WORK_PLACES]
_WORK_WEIGHTS = [w for _, w in WORK_PLACES]

_MOBILE_PREFIXES = [
    "133",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "157",
    "158",
    "159",
    "177",
    "180",
    "181",
    "182",
    "183",
    "187",
    "188",
    "189",
    "199",
]


def surname(rng: random.Random) -> str:
    return rng.choices(_SURNAME_LIST, _SURNAME_WEIGHTS)[0]


def given_name(rng: random.Random, generation: str, sex: str) -> str:
    chars = GIVEN[(generation, sex)]
    # One-character given names were commoner among the old; children mostly have two.
    single = {"old": 0.35, "mid": 0.25, "young": 0.12}[generation]
    if rng.random() < single:
        return rng.choice(chars)
    return rng.choice(chars) + rng.choice(chars)


def full_name(rng: random.Random, generation: str, sex: str, family: str | None = None) -> str:
    return (family or surname(rng)) + given_name(rng, generation, sex)


def generation_of(birth_year: int) -> str:
    return "old" if birth_year < 1966 else "mid" if birth_year < 2000 else "young"


def work_place(rng: random.Random) -> str:
    return rng.choices(_WORK_LIST, _WORK_WEIGHTS)[0]


def mobile(rng: random.Random) -> str:
    return rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def village_names(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    """``count`` village names not in ``taken`` (which is updated): unique across the county."""
    names: list[str] = []
    while len(names) < count:
        name = rng.choice(VILLAGE_HEADS) + rng.choice(VILLAGE_TAILS)
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def id_number(rng: random.Random, region: str, birth: date, sex: str, taken: set[str]) -> str:
    """A resident ID number (GB 11643): region, birth date, sequence (odd for men), check character."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    while True:
        seq = rng.randrange(500) * 2 + (1 if sex == "male" else 0)
        body = f"{region}{birth:%Y%m%d}{seq:03d}"
        number = body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]
        if number not in taken:
            taken.add(number)
            return number
