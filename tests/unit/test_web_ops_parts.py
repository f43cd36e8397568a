"""Parts of the ops pages that need no server: the SVG charts (numbers, escaping, accessible
names), the weeks of the weekly chart, and how the access guard reads a page's form."""

from __future__ import annotations

import re
from datetime import date
from itertools import pairwise

import pytest

from api.access.guard import _form_object
from api.rosters import AckDeadlines, ResponderIn
from projections.supervision_series import weeks_up_to
from web import charts
from web.admin import FormError, decode


def test_a_stacked_chart_draws_each_value_and_escapes_names() -> None:
    series = [charts.Series("按时", charts.ON_TIME, [3, 0]), charts.Series("未访", charts.MISSED, [1, 2])]
    svg = str(charts.stacked_rows("本期探访情况", "单位", ["<b>濞江</b>", "因远镇"], series, data_label="t"))
    assert "<b>" not in svg and "&lt;b&gt;濞江&lt;/b&gt;" in svg
    assert re.search(r'<svg [^>]*role="img" aria-labelledby="(chart-\d+)"', svg)
    ident = re.search(r'aria-labelledby="(chart-\d+)"', svg).group(1)
    assert f'<figcaption id="{ident}">本期探访情况</figcaption>' in svg
    # one bar per non-zero value, each with its figure; the table repeats every figure
    assert svg.count("<rect") == 3 and "因远镇 未访: 2" in svg
    assert re.findall(r"<td>(\d+)</td>", svg) == ["3", "1", "0", "2"]


def test_columns_scale_to_the_tallest_total() -> None:
    series = [charts.Series("按时", charts.ON_TIME, [4, 2]), charts.Series("补录", charts.LATE, [0, 2])]
    svg = str(charts.stacked_columns("近两周", "周", ["11-23", "11-30"], series, data_label="w"))
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)]
    assert heights[0] == heights[1] + heights[2]  # 4 == 2 + 2: the same scale for every column


def test_the_weekly_chart_covers_whole_weeks_up_to_this_one() -> None:
    weeks = weeks_up_to(date(2026, 12, 3), 8)  # a Thursday
    assert len(weeks) == 8 and weeks[-1].first == date(2026, 11, 30) and weeks[-1].last == date(2026, 12, 6)
    assert all((b.first - a.first).days == 7 for a, b in pairwise(weeks))


def test_the_guard_reads_every_value_of_a_form_field() -> None:
    body = b"org_unit_id=a&helper_id=&org_unit_id=b&name=%E5%BC%A0%E4%B8%89"
    assert _form_object(body) == {"org_unit_id": ["a", "b"], "name": "张三"}


def test_a_page_form_sets_only_the_fields_it_names_and_the_api_struct_checks_them() -> None:
    """Forms are URL-encoded dicts: only the named fields reach the API's own request Struct, so a
    form can never set who acted, versions or positions (the JSON bodies refuse unknown fields)."""
    sent = {"responder_id": "r-1", "name": "值班员", "phone": "13900000000", "tier": "primary",
            "actor_id": "someone-else", "version": "7", "csrf_token": "x"}  # fmt: skip
    responder = decode(sent, {"responder_id": "str", "name": "str", "phone": "str", "tier": "str"}, ResponderIn)
    assert (responder.responder_id, responder.tier) == ("r-1", "primary")
    assert not {"actor_id", "version"} & set(ResponderIn.__struct_fields__)
    with pytest.raises(FormError):
        decode({"critical": "soon"}, {"critical": "int"}, AckDeadlines)
