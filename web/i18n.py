"""The web client's words: one catalogue, Chinese first, English second.

Every string a person reads on a page goes through ``t(key)`` (templates get ``t`` bound to the
request's language). The language is Chinese unless the ``guanai_lang`` cookie says English;
``?lang=en`` or ``?lang=zh`` on any page sets that cookie (``web/pages.py``). A key missing from
the catalogue is a defect: ``tests/test_web_i18n.py`` checks every key the templates and
scripts use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from web.ops_messages import MESSAGES as OPS_MESSAGES

LANGS = ("zh", "en")
DEFAULT_LANG = "zh"
LANG_COOKIE = "guanai_lang"

# key: (Chinese, English). Keys group by screen; enum labels are "<enum>.<value>".
MESSAGES: dict[str, tuple[str, str]] = {
    # the frame
    "app.name": ("关爱", "Guanai"),
    "app.tagline": ("农村留守老人和儿童关爱服务", "Care for left-behind elders and children"),
    "nav.label": ("主导航", "Main navigation"),
    "nav.visits": ("我的走访", "My visits"),
    "nav.people": ("我的服务对象", "My people"),
    "nav.console": ("应急值守", "Emergency console"),
    "nav.home": ("首页", "Home"),
    "nav.sign_out": ("退出", "Sign out"),
    "lang.switch": ("English", "中文"),
    "lang.switch_label": ("切换语言", "Switch language"),
    "skip.main": ("跳到正文", "Skip to content"),
    "header.signed_in_as": ("当前身份", "Signed in as"),
    "footer.offline": ("当前离线：显示的是已保存的内容", "Offline: showing what was saved"),
    "common.loading": ("加载中…", "Loading…"),
    "common.save": ("保存", "Save"),
    "common.cancel": ("取消", "Cancel"),
    "common.close": ("关闭", "Close"),
    "common.back": ("返回", "Back"),
    "common.none": ("暂无", "None"),
    "common.yes": ("是", "Yes"),
    "common.no": ("否", "No"),
    "common.error": ("出错了", "Something went wrong"),
    "common.retry": ("重试", "Retry"),
    # sign-in
    "signin.title": ("登录", "Sign in"),
    "signin.username": ("账号", "Account"),
    "signin.password": ("密码", "Password"),
    "signin.submit": ("登录", "Sign in"),
    "js.signin.failed": ("账号或密码不正确", "Account or password not accepted"),
    "js.signin.unavailable": ("暂时无法登录，请稍后再试", "Signing in is not possible just now; try again shortly"),
    "signin.hint": ("账号由县民政局管理员发放", "Accounts are issued by the county civil-affairs administrator"),
    "signin.expired": ("登录已过期，请重新登录", "Your session has ended; please sign in again"),
    # error pages
    "error.not_found.title": ("找不到该页面", "Page not found"),
    "error.not_found.body": (
        "没有这个页面，或者您无权查看。",
        "There is no such page, or it is not yours to see.",
    ),
    "error.forbidden.title": ("无权访问", "Not allowed"),
    "error.forbidden.body": (
        "您的角色不能使用此页面。",
        "Your role may not use this page.",
    ),
    "error.home": ("回到首页", "Back to the start page"),
    "home.title": ("首页", "Home"),
    "home.body": ("请从上方菜单选择要做的事。", "Choose what to do from the menu above."),
    # volunteer: my visits
    "visits.title": ("我的走访", "My visits"),
    "visits.intro": ("本周和下周要做的探访。", "The visits due this week and next."),
    "visits.none": ("这两周没有探访任务。", "No visits due these two weeks."),
    "visits.due": ("截止 {date}", "Due by {date}"),
    "visits.window": ("{start} 至 {end}", "{start} to {end}"),
    "visits.claim": ("认领", "Claim"),
    "visits.release": ("放弃认领", "Release"),
    "visits.log": ("记录走访", "Log the visit"),
    "visits.log_unplanned": ("记录计划外走访", "Log an unplanned visit"),
    "visits.held_until": ("认领有效期至 {time}", "Claimed until {time}"),
    "visits.completed_at": ("已于 {time} 走访", "Visited {time}"),
    "visits.status.scheduled": ("待认领", "Open"),
    "visits.status.claimed": ("已认领", "Claimed"),
    "visits.status.mine": ("我已认领", "Claimed by me"),
    "visits.status.completed": ("已完成", "Done"),
    "visits.status.missed": ("已错过", "Missed"),
    "visits.status.cancelled": ("已取消", "Cancelled"),
    "visits.status.late": ("逾期补记", "Logged late"),
    "visits.outbox.title": ("等待发送", "Waiting to be sent"),
    "visits.outbox.none": ("没有等待发送的记录。", "Nothing waiting to be sent."),
    "visits.refused.title": ("服务器未接受", "Not accepted by the server"),
    "visits.people.title": ("我的服务对象", "My people"),
    "kind.elder": ("留守老人", "Left-behind elder"),
    "kind.child": ("留守儿童", "Left-behind child"),
    "cadence.weekly": ("每周", "Weekly"),
    "cadence.fortnightly": ("每两周", "Fortnightly"),
    "cadence.half_monthly": ("每半月", "Half-monthly"),
    "cadence.monthly": ("每月", "Monthly"),
    "cadence.half_yearly": ("每半年", "Half-yearly"),
    "cadence.yearly": ("每年", "Yearly"),
    "mode.home_visit": ("上门入户", "Home visit"),
    "mode.phone_video": ("电话视频", "Phone or video"),
    "mode.remote_monitoring": ("远程监测", "Remote monitoring"),
    # the visit log form
    "log.title": ("走访记录", "Visit log"),
    "log.for": ("服务对象：{name}", "For: {name}"),
    "log.occurred_at": ("走访时间", "When the visit took place"),
    "log.mode": ("走访方式", "How"),
    "log.living_conditions": ("居住条件", "Living conditions"),
    "log.health": ("身体状况", "Health"),
    "log.mood": ("情绪状况", "Mood"),
    "log.safety_risks": ("发现的安全风险", "Safety risks seen"),
    "log.needs": ("需求", "Needs"),
    "log.blood_pressure": ("血压（收缩压/舒张压）", "Blood pressure (systolic/diastolic)"),
    "log.systolic": ("收缩压", "Systolic"),
    "log.diastolic": ("舒张压", "Diastolic"),
    "log.blood_sugar": ("血糖（mmol/L）", "Blood sugar (mmol/L)"),
    "log.services": ("提供的服务", "Services given"),
    "log.service_items": ("服务内容", "What was done"),
    "log.notes": ("情况记录", "Notes"),
    "log.follow_up": ("需要跟进", "Needs follow-up"),
    "log.follow_up_notes": ("跟进事项", "Follow-up notes"),
    "log.help_now": ("需要紧急救助（立即上报险情）", "Needs help now (files an emergency report)"),
    "log.emergency_kind": ("险情类别", "Kind of emergency"),
    "log.emergency_description": ("险情描述", "What is happening"),
    "log.not_given": ("未填写", "Not given"),
    "log.submit": ("保存记录", "Save the log"),
    "living_conditions.good": ("良好", "Good"),
    "living_conditions.adequate": ("一般", "Adequate"),
    "living_conditions.poor": ("较差", "Poor"),
    "living_conditions.unsafe": ("不安全", "Unsafe"),
    "health.well": ("健康", "Well"),
    "health.minor_illness": ("小病", "Minor illness"),
    "health.chronic_stable": ("慢病稳定", "Chronic, stable"),
    "health.ill": ("患病", "Ill"),
    "health.critical": ("病危", "Critical"),
    "mood.good": ("愉快", "Good"),
    "mood.calm": ("平稳", "Calm"),
    "mood.low": ("低落", "Low"),
    "mood.anxious": ("焦虑", "Anxious"),
    "mood.distressed": ("痛苦", "Distressed"),
    "safety_risk.fall": ("跌倒", "Falls"),
    "safety_risk.fire": ("用火用电", "Fire and electricity"),
    "safety_risk.unsafe_housing": ("危房", "Unsafe housing"),
    "safety_risk.no_heating": ("无取暖", "No heating"),
    "safety_risk.food_shortage": ("缺粮缺食", "Short of food"),
    "safety_risk.medication": ("用药问题", "Medication problems"),
    "safety_risk.drowning": ("防溺水", "Drowning"),
    "safety_risk.traffic": ("交通安全", "Traffic"),
    "safety_risk.fraud": ("电信诈骗", "Fraud"),
    "safety_risk.neglect": ("疏于照料", "Neglect"),
    "safety_risk.abuse_suspected": ("疑似遭受侵害", "Suspected abuse"),
    "safety_risk.wandering": ("走失风险", "Wandering"),
    "safety_risk.self_harm": ("自伤风险", "Self-harm"),
    "need.daily_care": ("生活照料", "Daily care"),
    "need.medical_care": ("医疗护理", "Medical care"),
    "need.psychological_support": ("心理支持", "Psychological support"),
    "need.financial_aid": ("经济救助", "Financial aid"),
    "need.schooling": ("就学", "Schooling"),
    "need.legal_help": ("法律帮助", "Legal help"),
    "need.housing_repair": ("住房修缮", "Housing repair"),
    "need.supplies": ("生活物资", "Supplies"),
    "need.family_contact": ("亲情联络", "Family contact"),
    "service.daily_life_care": ("生活照料", "Daily-life care"),
    "service.psychological_comfort": ("心理抚慰", "Psychological comfort"),
    "service.health_care": ("健康保健", "Health care"),
    "service.emergency_help": ("应急救助", "Emergency help"),
    "service.culture_recreation": ("文体娱乐", "Culture and recreation"),
    "service.legal_aid": ("法律援助", "Legal aid"),
    "item.cleaning": ("打扫卫生", "Cleaning"),
    "item.laundry": ("洗衣", "Laundry"),
    "item.cooking": ("做饭", "Cooking"),
    "item.haircut": ("理发", "Haircut"),
    "item.meal_delivery": ("送餐", "Meal delivery"),
    "item.medicine_delivery": ("送药", "Medicine delivery"),
    "item.shopping": ("代购", "Shopping"),
    "item.blood_pressure": ("测血压", "Blood pressure"),
    "item.blood_sugar": ("测血糖", "Blood sugar"),
    "emergency_kind.wandering_or_begging": ("流浪乞讨、走失", "Wandering or begging"),
    "emergency_kind.illegal_harm": ("遭受不法侵害", "Illegal harm"),
    "emergency_kind.critical_illness": ("危重病", "Critical illness"),
    "emergency_kind.mental_health_crisis": ("严重精神障碍发作", "Mental health crisis"),
    "emergency_kind.major_hardship": ("重大困难", "Major hardship"),
    "emergency_kind.other": ("其他", "Other"),
    # messages the visit scripts show
    "js.offline.claim": ("认领需要网络，请在有信号时再试。", "Claiming needs the network; try again when you have signal."),
    "js.claim.taken": ("已被其他志愿者认领（{holder}），有效期至 {until}。", "Already claimed by another volunteer ({holder}) until {until}."),
    "js.claim.taken_by_group": ("已由志愿服务队认领，有效期至 {until}。", "Already claimed by a volunteer group until {until}."),
    "js.claim.limit": ("您认领的任务已达上限，请先完成或放弃一些。", "You hold as many visits as you may; finish or release some first."),
    "js.claim.done": ("认领成功。", "Claimed."),
    "js.release.done": ("已放弃认领。", "Released."),
    "js.log.queued": ("已保存在本机，等有网络时自动发送。", "Saved on this phone; it is sent when the network returns."),
    "js.log.sent": ("走访记录已保存。", "Visit log saved."),
    "js.log.help_filed": ("已上报险情，应急值守人员会收到通知。", "Emergency reported; the responders on duty are alerted."),
    "js.log.for": ("服务对象：{name}", "For: {name}"),
    "js.log.bad_time": ("请填写走访时间。", "Give the time of the visit."),
    "js.outbox.waiting": ("等待发送", "Waiting"),
    "js.outbox.refused": ("未被接受", "Not accepted"),
    "js.outbox.discard": ("放弃这条记录", "Discard this log"),
    "js.outbox.as_unplanned": ("改为计划外走访发送", "Send as an unplanned visit"),
    "js.outbox.retry": ("重新发送", "Send again"),
    "js.outbox.count": ("{n} 条记录等待发送", "{n} logs waiting to be sent"),
    "js.outbox.visited": ("走访于 {time}", "Visited {time}"),
    "js.outbox.confirm_discard": ("确定放弃这条走访记录吗？放弃后无法恢复。", "Discard this visit log? It cannot be recovered."),
    "js.problem.claimed-by-other": ("这次探访已被他人认领，不能用来记录您的走访。", "Someone else holds this visit, so your log cannot complete it."),
    "js.problem.outside-window": ("走访时间不在这次探访的时间范围内。", "The visit time is outside this visit's window."),
    "js.problem.closed": ("这次探访已结束（已完成或已取消）。", "This visit is closed (done or cancelled)."),
    "js.problem.already-exists": ("同一编号下已有不同的记录。", "A different log already exists under this id."),
    "js.problem.not-found": ("找不到这次探访，或您无权查看。", "The visit cannot be found, or is not yours."),
    "js.problem.forbidden": ("您不能执行此操作。", "You may not do this."),
    "js.problem.not-eligible": ("您不是这次探访的帮扶人。", "You are not a helper of this visit."),
    "js.problem.unauthenticated": ("登录已过期，请重新登录后自动发送。", "Your session has ended; sign in again and it will be sent."),
    "js.problem.other": ("服务器未接受：{detail}", "Not accepted: {detail}"),
    "js.error.network": ("网络不通，请稍后再试。", "No network; try again later."),
    # people and timelines
    "people.title": ("我的服务对象", "My people"),
    "people.none": ("目前没有可查看的服务对象。", "No one to show."),
    "people.timeline": ("服务记录", "History"),
    "people.risk_tags": ("风险标签", "Risk tags"),
    "people.born": ("{year} 年生", "Born {year}"),
    "people.status.active": ("在册", "Active"),
    "people.status.left": ("已退出", "Left"),
    "people.status.erased": ("已删除", "Erased"),
    "people.erased": ("[已删除]", "[erased]"),
    "people.timeline.none": ("暂无记录。", "Nothing recorded yet."),
    "people.more": ("更早的记录", "Older entries"),
    "people.recorded_late": ("{time} 补记", "recorded {time}"),
    "people.by": ("{role}", "by {role}"),
    "risk_tag.advanced_age": ("高龄", "Advanced age"),
    "risk_tag.disabled": ("失能", "Disabled"),
    "risk_tag.semi_disabled": ("半失能", "Semi-disabled"),
    "risk_tag.living_alone": ("独居", "Living alone"),
    "risk_tag.empty_nest": ("空巢", "Empty nest"),
    "risk_tag.economic_hardship": ("经济困难", "Economic hardship"),
    "risk_tag.dibao": ("低保", "Minimum living allowance"),
    "risk_tag.tekun": ("特困", "Extreme hardship"),
    "risk_tag.child_in_difficulty": ("困境儿童", "Child in difficulty"),
    "risk_tag.de_facto_unsupported": ("事实无人抚养儿童", "De-facto unsupported child"),
    "tl.person.registered": ("登记入档", "Registered"),
    "tl.person.risk_tag_added": ("增加风险标签", "Risk tag added"),
    "tl.person.risk_tag_removed": ("移除风险标签", "Risk tag removed"),
    "tl.person.guardian_assigned": ("确定监护人", "Guardian assigned"),
    "tl.person.care_agreement_signed": ("签订委托照护责任确认书", "Care agreement signed"),
    "tl.person.pairing_joined": ("纳入结对", "Joined a pairing"),
    "tl.person.pairing_left": ("退出结对", "Left a pairing"),
    "tl.person.left_programme": ("退出关爱服务", "Left the programme"),
    "tl.person.returned_to_programme": ("恢复关爱服务", "Returned to the programme"),
    "tl.person.erased": ("个人信息已删除", "Personal data erased"),
    "tl.pairing.formed": ("建立结对", "Pairing formed"),
    "tl.pairing.helper_added": ("增加帮扶人", "Helper added"),
    "tl.pairing.helper_removed": ("移除帮扶人", "Helper removed"),
    "tl.pairing.person_added": ("增加服务对象", "Person added"),
    "tl.pairing.person_removed": ("移除服务对象", "Person removed"),
    "tl.pairing.cadence_changed": ("调整探访频次", "Visit cadence changed"),
    "tl.pairing.ended": ("结束结对", "Pairing ended"),
    "tl.visit_task.scheduled": ("排定探访", "Visit scheduled"),
    "tl.visit_task.claimed": ("认领探访", "Visit claimed"),
    "tl.visit_task.assigned": ("指派探访", "Visit assigned"),
    "tl.visit_task.claim_released": ("放弃认领", "Claim released"),
    "tl.visit_task.claim_expired": ("认领过期", "Claim lapsed"),
    "tl.visit_task.completed": ("完成探访", "Visit done"),
    "tl.visit_task.missed": ("未按期探访", "Visit missed"),
    "tl.visit_task.cancelled": ("取消探访", "Visit cancelled"),
    "tl.visit_log.recorded": ("记录走访", "Visit logged"),
    "tl.visit_log.emergency_flagged": ("走访发现险情", "Emergency found on a visit"),
    "tl.emergency_report.reported": ("报告险情", "Emergency reported"),
    "tl.emergency_report.routed": ("派送响应人员", "Sent to responders"),
    "tl.emergency_report.acknowledged": ("响应人员接单", "Acknowledged"),
    "tl.emergency_report.action_recorded": ("记录处置措施", "Action recorded"),
    "tl.emergency_report.escalated": ("逐级上报", "Escalated"),
    "tl.emergency_report.resolved": ("处置完毕", "Resolved"),
    "tl.emergency_report.reopened": ("重新打开", "Reopened"),
    "tl.emergency_report.closed": ("结案", "Closed"),
    "tl.emergency_report.linked_as_duplicate": ("标记为重复报告", "Marked as a duplicate"),
    "tl.other": ("其他记录", "Other entry"),
    # roles
    "role.volunteer": ("志愿者", "Volunteer"),
    "role.village_cadre": ("村干部", "Village cadre"),
    "role.child_director": ("儿童主任", "Child director"),
    "role.township_responder": ("乡镇应急值守员", "Township responder"),
    "role.township_supervisor": ("乡镇督导员", "Township supervisor"),
    "role.county_responder": ("县级应急值守员", "County responder"),
    "role.county_supervisor": ("县级督导员", "County supervisor"),
    "role.auditor": ("审计员", "Auditor"),
    "role.administrator": ("管理员", "Administrator"),
    "role.system": ("系统", "System"),
}


MESSAGES.update(OPS_MESSAGES)  # the supervisor's, auditor's and administrator's pages


def translate(key: str, lang: str, /, **values: Any) -> str:
    """The text of ``key`` in ``lang``, with ``{name}`` fields filled from ``values``."""
    pair = MESSAGES.get(key)
    if pair is None:
        return key  # visible on the page, and tests/test_web_i18n.py refuses it
    text = pair[0] if lang != "en" else pair[1]
    return text.format(**values) if values else text


def translator(lang: str) -> Callable[..., str]:
    def t(key: str, /, **values: Any) -> str:
        return translate(key, lang, **values)

    return t


def choose_lang(query: str | None, cookie: str | None) -> str:
    """The page's language: the query's (which the page then keeps in the cookie), else the cookie's."""
    for candidate in (query, cookie):
        if candidate in LANGS:
            return candidate
    return DEFAULT_LANG


def catalogue_for_scripts(lang: str, prefix: str = "js.") -> dict[str, str]:
    """The messages the page's scripts show, in one language, handed over in a JSON data block."""
    return {k: translate(k, lang) for k in MESSAGES if k.startswith(prefix)}
