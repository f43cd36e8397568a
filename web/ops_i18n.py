"""Which language a page is read in, and its words: Chinese unless the reader chose English
(``?lang=en``, remembered in the ``guanai_lang`` cookie)."""

from __future__ import annotations

from typing import Any

from litestar import Request

from web.ops_messages import MESSAGES

LANGS = ("zh", "en")


class Words:
    """``w("sv.title")``: the text of a key in one language; ``{n}``-style fields filled from kwargs."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGS else "zh"
        self.index = LANGS.index(self.lang)

    def __call__(self, key: str, **fields: Any) -> str:
        pair = MESSAGES.get(key)
        text = pair[self.index] if pair else key
        return text.format(**fields) if fields else text


def words_for(request: Request[Any, Any, Any]) -> Words:
    lang = request.query_params.get("lang") or request.cookies.get("guanai_lang") or "zh"
    return Words(lang)
