"""Realistic complaint texts by category, as 12345 agents and grid workers write them."""

from __future__ import annotations

import random

PLACES = ("小区门口", "菜市场旁", "公交站附近", "学校后门", "十字路口", "轻轨站出口", "步行街",
          "农贸市场", "老街巷子里", "滨江路边", "商场停车场", "医院对面")  # fmt: skip

TEMPLATES: dict[str, tuple[str, ...]] = {
    "C0104": ("{street}{place}人行道上的井盖不见了，晚上很危险，请尽快处理。",
              "{place}有个井盖丢失，已经有老人差点摔倒。"),
    "C0201": ("{street}{place}的路灯已经坏了好几天，晚上一片漆黑。",
              "{place}一排路灯都不亮，走夜路很不安全。"),
    "C0202": ("{street}{place}红绿灯不亮了，车辆乱成一团。",),
    "C0205": ("{street}{place}路面有个大坑，下雨天积水，车辆经过溅人一身。",),
    "C0301": ("{place}垃圾桶被撞坏了，垃圾散落一地。",),
    "C0401": ("{street}{place}的行道树被大风刮断，挡住了半边路。",),
    "E0101": ("{street}{place}堆了很多生活垃圾，几天没人清运，气味难闻。",
              "{place}有人乱倒垃圾，苍蝇很多。"),
    "E0102": ("{place}有渣土车偷倒建筑垃圾。",),
    "E0201": ("{street}{place}墙上贴满了小广告，影响市容。",),
    "E0301": ("{street}{place}工地晚上十一点还在施工，噪音太大没法睡觉。",),
    "E0302": ("{place}工地没有围挡洒水，扬尘很大。",),
    "E0303": ("{street}{place}有人在楼顶违法搭建彩钢棚。",),
    "E0401": ("{street}{place}每天早上都有人占道摆摊卖菜，堵得车过不去。",
              "{place}流动摊贩占用人行道经营。"),
    "E0402": ("{place}餐馆把桌子摆到店外人行道上经营。",),
    "E0403": ("{street}{place}车辆乱停乱放，堵住了消防通道。",),
    "E0404": ("{place}共享单车堆成山，把盲道都占了。",),
    "E0501": ("{street}{place}下雨后严重积水，水已经淹过脚踝。",
              "{place}道路积水很深，车辆熄火。"),
    "E0502": ("{street}{place}路面突然塌陷了一个洞，请马上派人！",),
    "E0503": ("{street}{place}闻到很浓的煤气味，怀疑燃气泄漏。",),
    "E0505": ("{place}自来水管爆了，水一直往外冒。",),
}  # fmt: skip
# Relative frequency: hotlines get far more dumping and vending than road collapses.
FREQUENCY = {"E0101": 12, "E0401": 10, "E0403": 9, "C0201": 8, "E0301": 7, "E0201": 6,
             "C0205": 5, "E0501": 5, "C0104": 4, "E0404": 4, "E0402": 4, "E0302": 3,
             "C0301": 3, "C0401": 2, "E0102": 2, "E0303": 2, "C0202": 2, "E0505": 1,
             "E0502": 0.5, "E0503": 0.5}  # fmt: skip
# Answers to the catalogue's extra questions, where a category asks them.
ATTRIBUTES: dict[str, dict[str, str]] = {"C0104": {"cover_type": "unknown"}}
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"


def complaint(street: str, rng: random.Random) -> tuple[str, str]:
    """A (category code, description) pair."""
    codes = list(FREQUENCY)
    code = rng.choices(codes, weights=[FREQUENCY[c] for c in codes], k=1)[0]
    text = rng.choice(TEMPLATES[code]).format(street=street, place=rng.choice(PLACES))
    return code, text


def caller(rng: random.Random) -> tuple[str, str]:
    """A made-up caller's name and mobile number."""
    name = rng.choice(SURNAMES) + rng.choice(("先生", "女士"))
    phone = "1" + rng.choice("3578") + "".join(rng.choice("0123456789") for _ in range(9))
    return name, phone
