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
