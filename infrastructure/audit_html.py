"""The printable case history (案卷): an export rendered as one self-contained HTML page in
Chinese, for inspectors to print or save as PDF from a browser.

It shows the stream, every event (type, actor and role, when it occurred and when it was
recorded, its position in the log, its fields), marks late records and events that happened
past a deadline, and prints the verification result, the log checkpoint and the document's
digest and seal, so a paper copy can be matched to its JSON file and re-checked.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from html import escape
from typing import Any

CHINA = timezone(timedelta(hours=8))
LATE_RECORD_SECONDS = 3600  # recorded more than an hour after it occurred: a late entry (补录)

STREAM_LABELS = {
    "Person": "服务对象档案",
    "Pairing": "结对帮扶",
    "Helper": "帮扶人员",
    "VolunteerGroup": "志愿服务队",
    "OrgUnit": "行政区划",
    "EmergencyReport": "应急救助报告",
    "VisitTask": "探访任务",
    "VisitLog": "走访日志",
    "ResponderRoster": "应急值守名册",
    "HelperClaims": "认领记录",
}

EVENT_LABELS = {
    "Person.Registered": "登记入档",
    "Person.RiskTagAdded": "增加风险标签",
    "Person.RiskTagRemoved": "移除风险标签",
    "Person.GuardianAssigned": "确定监护人",
    "Person.CareAgreementSigned": "签订委托照护责任确认书",
    "Person.PairingJoined": "纳入结对",
    "Person.PairingLeft": "退出结对",
    "Person.LeftProgramme": "退出关爱服务",
    "Person.ReturnedToProgramme": "恢复关爱服务",
    "Pairing.Formed": "建立结对",
    "Pairing.HelperAdded": "增加帮扶人",
    "Pairing.HelperRemoved": "移除帮扶人",
    "Pairing.PersonAdded": "增加服务对象",
    "Pairing.PersonRemoved": "移除服务对象",
    "Pairing.CadenceChanged": "调整探访频次",
    "Pairing.Ended": "结束结对",
    "Helper.Registered": "登记帮扶人员",
    "Helper.CapacityChanged": "调整帮扶上限",
    "Helper.JoinedGroup": "加入服务队",
    "Helper.LeftGroup": "退出服务队",
    "Helper.PairingAssigned": "分配结对",
    "Helper.PairingReleased": "解除结对",
    "Helper.Deactivated": "停用",
    "VolunteerGroup.Formed": "成立服务队",
    "VolunteerGroup.MemberAdded": "增加队员",
    "VolunteerGroup.MemberRemoved": "移除队员",
    "VolunteerGroup.Disbanded": "解散服务队",
    "OrgUnit.Registered": "登记行政区划",
    "OrgUnit.Renamed": "更名",
    "EmergencyReport.Reported": "报告险情",
    "EmergencyReport.Routed": "派送响应人员",
    "EmergencyReport.Acknowledged": "响应人员接单",
    "EmergencyReport.ActionRecorded": "记录处置措施",
    "EmergencyReport.Escalated": "逐级上报",
    "EmergencyReport.Resolved": "处置完毕",
    "EmergencyReport.Reopened": "重新打开",
    "EmergencyReport.Closed": "结案",
    "EmergencyReport.LinkedAsDuplicate": "标记为重复报告",
    "VisitTask.Scheduled": "排定探访",
    "VisitTask.Claimed": "认领探访",
    "VisitTask.Assigned": "指派探访",
    "VisitTask.ClaimReleased": "放弃认领",
    "VisitTask.ClaimExpired": "认领过期",
    "VisitTask.Completed": "完成探访",
    "VisitTask.Missed": "未按期探访",
    "VisitTask.Cancelled": "取消探访",
    "VisitLog.Recorded": "记录走访",
    "VisitLog.EmergencyFlagged": "走访发现险情",
    "ResponderRoster.SetUp": "建立值守名册",
    "ResponderRoster.ResponderAdded": "增加响应人员",
    "ResponderRoster.ResponderRemoved": "移除响应人员",
    "ResponderRoster.ShiftsChanged": "调整值班",
    "ResponderRoster.AckDeadlinesChanged": "调整响应时限",
    "HelperClaims.Opened": "开始认领记录",
    "HelperClaims.Taken": "认领",
    "HelperClaims.Settled": "认领结清",
}

ROLE_LABELS = {
    "volunteer": "志愿者",
    "village_cadre": "村干部",
    "child_director": "儿童主任",
    "township_responder": "乡镇响应人员",
    "township_supervisor": "乡镇督导员",
    "county_responder": "县级响应人员",
    "county_supervisor": "县级督导员",
    "auditor": "审计员",
    "administrator": "管理员",
    "system": "系统",
}

FAILURE_LABELS = {
    "payload-changed": "内容被改动",
    "row-deleted": "记录被删除",
    "row-inserted": "记录被插入（无链条目）",
    "order-changed": "顺序被改动",
    "chain-broken": "链条断裂",
    "checkpoint-mismatch": "与校验点不符",
    "wrong-key": "密钥不符",
}

STYLE = """
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", sans-serif;
       margin: 2em auto; max-width: 62em; color: #111; font-size: 11pt; }
h1 { font-size: 18pt; text-align: center; margin-bottom: .2em; }
.sub { text-align: center; color: #444; margin-bottom: 1.5em; }
table { border-collapse: collapse; width: 100%; margin: .6em 0 1.2em; }
th, td { border: 1px solid #888; padding: .25em .45em; vertical-align: top; text-align: left; }
th { background: #eee; white-space: nowrap; }
.late { background: #fde8e8; }
.flag { color: #b00; font-weight: bold; }
.ok { color: #060; font-weight: bold; }
.bad { color: #b00; font-weight: bold; }
code, .mono { font-family: "DejaVu Sans Mono", monospace; font-size: 9pt; word-break: break-all; }
.fields { font-size: 9.5pt; color: #333; }
@media print { body { margin: 0; max-width: none; } tr { page-break-inside: avoid; } }
"""


def china_time(value: str | None) -> str:
    if not value:
        return "—"
    t = datetime.fromisoformat(value).astimezone(CHINA)
    return f"{t.year}年{t.month}月{t.day}日 {t:%H:%M:%S}"


def duration(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds >= 86400:
        return f"{seconds / 86400:.1f}天"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}小时"
    return f"{seconds / 60:.0f}分钟"


def _fields(fields: dict[str, Any]) -> str:
    parts = [f"{escape(k)}: {escape(json.dumps(v, ensure_ascii=False))}" for k, v in fields.items()]
    return "<br>".join(parts) or "—"


def _event_row(e: dict[str, Any]) -> str:
    notes = []
    late = e.get("late")
    if late:
        notes.append(
            f'<span class="flag">超时：时限 {china_time(late["deadline"])}，逾期 {duration(late["by_seconds"])}</span>'
        )
    after = e.get("recorded_after_seconds")
    if after is not None and after > LATE_RECORD_SECONDS:
        notes.append(f'<span class="flag">补录：发生后 {duration(after)} 才记录</span>')
    label = EVENT_LABELS.get(e["type"], e["type"])
    role = ROLE_LABELS.get(e.get("actor_role") or "", e.get("actor_role") or "—")
    cls = ' class="late"' if notes else ""
    return (
        f'<tr{cls}><td>{e["position"]}</td><td>{e["version"]}</td><td>{escape(label)}<br><span class="mono">{escape(e["type"])}</span></td>'
        f"<td>{escape(e.get('actor_id') or '—')}<br>{escape(role)}</td><td>{china_time(e.get('occurred_at'))}</td>"
        f'<td>{china_time(e["recorded_at"])}</td><td class="fields">{_fields(e["fields"])}{"<br>" if notes else ""}{"<br>".join(notes)}</td></tr>'
    )


SUITE_LABELS = {"international": "国际算法（SHA-256 / Ed25519）", "gm": "国密算法（SM3 / SM2）"}


def _signed_checkpoint_rows(document: dict[str, Any]) -> str:
    """The signed Merkle tree checkpoint the export's inclusion proofs lead to (issue 18)."""
    cp = (document.get("proofs") or {}).get("checkpoint")
    if not cp:
        return ""
    suite = SUITE_LABELS.get(cp.get("suite", ""), cp.get("suite", ""))
    witnesses = len(cp.get("witnesses") or [])
    return (
        f"<tr><th>签名检查点（默克尔树）</th><td>共 {cp['size']} 条事件，{china_time(cp['time'])}，{escape(suite)}，"
        f"见证签名 {witnesses} 个</td></tr>"
        f'<tr><th>树根哈希</th><td class="mono">{escape(cp["root"])}</td></tr>'
        f'<tr><th>签名公钥编号</th><td class="mono">{escape(cp["key_id"])}</td></tr>'
    )


def render(document: dict[str, Any]) -> str:
    """The HTML page of an export made by ``infrastructure.audit.Audit.export``."""
    stream, check = document["stream"], document["verification"]
    kind = STREAM_LABELS.get(stream["type"], stream["type"])
    by = document["exported_by"]
    if check["ok"]:
        result = (
            f'<span class="ok">通过</span>：本案卷 {check["checked"]} 条记录均与审计链相符，未发现改动、删除或插入。'
        )
    else:
        items = "".join(
            f"<li>位置 {f['position']}：{escape(FAILURE_LABELS.get(f['kind'], f['kind']))}（{escape(f['detail'])}）</li>"
            for f in check["failures"]
        )
        result = f'<span class="bad">未通过</span>：发现 {len(check["failures"])} 处不符：<ul>{items}</ul>'
    cp = check.get("log_checkpoint") or {}
    rows = "".join(_event_row(e) for e in document["events"])
    late_count = sum(1 for e in document["events"] if e.get("late"))
    state = escape(json.dumps(document.get("state"), ensure_ascii=False, indent=1))
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{escape(kind)}案卷 {escape(stream["id"])}</title>
<style>{STYLE}</style></head><body>
<h1>{escape(kind)}案卷</h1>
<div class="sub">导出时间 {china_time(document["exported_at"])} · 导出人 {escape(by["actor_id"])}（{escape(ROLE_LABELS.get(by["actor_role"], by["actor_role"]))}）</div>
<table>
<tr><th>案卷编号</th><td class="mono">{escape(stream["id"])}</td><th>类别</th><td>{escape(kind)}（{escape(stream["type"])}）</td></tr>
<tr><th>记录条数</th><td>{stream["events"]}</td><th>当前版本</th><td>{stream["version"]}</td></tr>
<tr><th>超时事项</th><td colspan="3">{late_count} 条{"（见下表红色标记）" if late_count else ""}</td></tr>
</table>
<h2>完整性校验</h2>
<p>{result}</p>
<table>
<tr><th>审计链校验点</th><td>位置 {cp.get("position", "—")}，{china_time(cp.get("at"))}</td></tr>
<tr><th>校验点摘要</th><td class="mono">{escape(cp.get("digest", "—"))}</td></tr>
<tr><th>密钥指纹</th><td class="mono">{escape(check["key"])}</td></tr>
<tr><th>文档摘要 (SHA-256)</th><td class="mono">{escape(document["digest"])}</td></tr>
<tr><th>系统签章 (HMAC)</th><td class="mono">{escape(document["seal"])}</td></tr>
{_signed_checkpoint_rows(document)}
</table>
<h2>事件记录（按记录顺序）</h2>
<table>
<tr><th>日志位置</th><th>版本</th><th>事项</th><th>经办人 / 角色</th><th>发生时间</th><th>记录时间</th><th>内容</th></tr>
{rows}
</table>
<h2>当前状态</h2>
<pre class="mono">{state}</pre>
<p class="sub">时间均为北京时间。文档摘要为导出内容（JSON，键排序）的 SHA-256；凭 JSON 文件可由本系统复核摘要与签章。
外部单位只需日志公钥即可用独立校验程序（verifier.py）核验 JSON 文件中每条记录的包含证明与签名检查点。</p>
</body></html>
"""
