"""The administrator's account pages (账号): the accounts in the reader's scope, opening one (with
the activation slip to print), and on an account's page its role and unit, lock and unlock,
reset (a new slip) and close.

Everything goes through the accounts API's service (``api/sessions.py service_of``) with the
API's request Structs, under rules in ``api/access/rules.py`` with the grants of the ``/accounts``
routes; the guard checks a form's ``org_unit_id`` and ``helper_id`` as it checks a JSON body's.
Which roles a reader may grant is the domain's ``GRANTS``. An activation code is shown once, on
the slip answered to the form that opened or reset the account; the page is never cached.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID, uuid4

import msgspec
from litestar import Controller, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, QueryParameter
from litestar.response import Redirect, Template

from api.access import HELPER_READ, access_of, list_scope
from api.accounts import AccountCreate, RoleChange, WithReason, mask
from api.auth import actor_of
from api.common import app_of, meta_for
from api.names import with_names
from api.sessions import service_of
from domain.account import GRANTS, Account
from domain.base import DomainError
from projections.accounts import AccountsView
from projections.supervision import CHINA
from projections.supervision_series import SupervisionSeries
from projections.supervision_view import SupervisionView
from web.frame import PREFIX, page

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
PageNumber = Annotated[int, QueryParameter(name="page", ge=1, le=100_000)]
Status = Annotated[str | None, QueryParameter(pattern="^(pending|active|locked|closed)$")]
PAGE_SIZE = 50
FIELD_LABELS = {"role": "ac.role", "phone": "ac.phone", "org_unit_id": "ac.unit", "display_name": "ac.display_name",
                "helper_id": "ac.helper", "roster_entry": "ac.roster_entry", "reason": "ac.reason"}  # fmt: skip


class FormError(Exception):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['reason']}" for e in errors))
        self.errors = errors


def decode(form: dict[str, str], target: type[Any]) -> Any:
    """The form's non-empty fields into the API's request Struct (same validation, same names)."""
    data = {k: v.strip() for k, v in form.items() if k != "csrf_token" and v.strip()}
    try:
        return msgspec.convert(data, target)
    except msgspec.ValidationError as e:
        text = str(e)
        field = text.rpartition("$.")[2].rstrip("`") if "$." in text else "form"
        raise FormError([{"field": field, "reason": text.partition(" - at")[0]}]) from None


def grantable(request: Request[Any, Any, Any]) -> list[str]:
    """The roles the reader may open accounts for, in the table's order."""
    allowed = GRANTS.get(actor_of(request).role, frozenset())
    return [r.value for r in sorted(allowed, key=lambda r: list(type(r)).index(r))]


def units_in_scope(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    """The units beneath the reader's (an administrator's: every county's), in code order."""
    pool = request.app.state.read_side.runner.pool
    series, view = SupervisionSeries(pool), SupervisionView(pool)
    root = actor_of(request).org_unit_id
    stack = [view.unit(root)] if root else [view.unit(c["id"]) for c in series.counties()]
    out: list[dict[str, Any]] = []
    while stack:
        unit = stack.pop(0)
        if unit is None:
            continue
        out.append({k: unit[k] for k in ("id", "code", "name", "level")})
        stack[:0] = [view.unit(c["id"]) for c in series.children(unit["id"])]
    return out


def helpers_in_scope(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    """Active helpers the reader may read (a volunteer's account names its helper record)."""
    access = access_of(request)
    scope = access.scope_of_lists(HELPER_READ.get(access.actor.role, frozenset()))
    rows, _ = request.app.state.view.list_helpers(status="active", limit=500, scope=scope)
    return with_names(app_of(request), rows)


def form_context(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return {
        "roles": grantable(request),
        "units": units_in_scope(request),
        "helpers": helpers_in_scope(request),
        "csrf": request.cookies.get("guanai_csrf", ""),
    }


def slip(request: Request[Any, Any, Any], account: Account, code: str, why: str) -> Template:
    """The activation slip: the code shown this once, with where and how to sign in."""
    unit = (
        SupervisionView(request.app.state.read_side.runner.pool).unit(account.org_unit_id)
        if account.org_unit_id
        else None
    )
    base = f"{request.url.scheme}://{request.url.netloc}{PREFIX}/sign-in"
    return page(
        request, "admin/slip.html", account=account, phone=mask(account.phone), code=code, unit=unit, why=why,
        sign_in_url=base, expires=account.activation_expires_at, china=CHINA,
    )  # fmt: skip


class AccountPages(Controller):
    path = "/accounts"

    def _list(self, request: Request[Any, Any, Any], status: str | None, page_no: int, **extra: Any) -> Template:
        view = AccountsView(request.app.state.read_side.runner.pool)
        rows, total = view.list(
            scope=list_scope(request), status=status, limit=PAGE_SIZE, offset=(page_no - 1) * PAGE_SIZE
        )
        names = {u["id"]: u["name"] for u in units_in_scope(request)}
        for row in rows:
            row["unit_name"] = names.get(row["org_unit_id"], "")
        errors = [{**e, "label": FIELD_LABELS.get(e["field"])} for e in extra.pop("errors", [])]
        return page(
            request, "admin/accounts.html", status=422 if errors else 200, rows=rows, total=total, page_no=page_no,
            pages=max(1, -(-total // PAGE_SIZE)), filter=status, errors=errors, sent=extra.pop("sent", {}),
            **form_context(request), **extra,
        )  # fmt: skip

    @get("/", sync_to_thread=True)
    def accounts(self, request: Request[Any, Any, Any], status: Status = None, page_no: PageNumber = 1) -> Template:
        """The accounts in the reader's scope, and the form to open one."""
        return self._list(request, status, page_no)

    @post("/", sync_to_thread=True)
    def open_account(self, request: Request[Any, Any, Any], data: Form) -> Template:
        """Open an account; the answer is its activation slip (the code is shown only there)."""
        try:
            body = decode(data, AccountCreate)
            opened = service_of(request).open(
                id=body.id or uuid4(), role=body.role, org_unit_id=body.org_unit_id, phone=body.phone,
                display_name=body.display_name, helper_id=body.helper_id, roster_entry=body.roster_entry,
                meta=meta_for(request, None),
            )  # fmt: skip
        except FormError as e:
            return self._list(request, None, 1, errors=e.errors, sent=data)
        except DomainError as e:
            return self._list(request, None, 1, errors=[{"field": e.field or "form", "reason": e.detail}], sent=data)
        if opened.activation_code is None:  # the same account opened again: no second code
            return self._account(request, opened.account.id)
        return slip(request, opened.account, opened.activation_code, "opened")

    @get("/{account_id:uuid}", sync_to_thread=True)
    def account(self, request: Request[Any, Any, Any], account_id: FromPath[UUID]) -> Template:
        """One account: who, which role and unit, its state; the forms that change it."""
        return self._account(request, account_id)

    def _account(self, request: Request[Any, Any, Any], account_id: UUID, **extra: Any) -> Template:
        account = app_of(request).load(Account, account_id)
        unit = (
            SupervisionView(request.app.state.read_side.runner.pool).unit(account.org_unit_id)
            if account.org_unit_id
            else None
        )
        errors = [{**e, "label": FIELD_LABELS.get(e["field"])} for e in extra.pop("errors", [])]
        return page(
            request, "admin/account.html", status=422 if errors else 200, account=account, phone=mask(account.phone),
            unit=unit, errors=errors, saved=request.query_params.get("saved") == "1", **form_context(request),
        )  # fmt: skip

    def _change(self, request: Request[Any, Any, Any], account_id: UUID, command: Any) -> Template | Redirect:
        try:
            answer = command()
        except FormError as e:
            return self._account(request, account_id, errors=e.errors)
        except DomainError as e:
            return self._account(request, account_id, errors=[{"field": e.field or "form", "reason": e.detail}])
        if isinstance(answer, Template):
            return answer
        return Redirect(f"{PREFIX}/accounts/{account_id}?saved=1", status_code=303)

    @post("/{account_id:uuid}/role", sync_to_thread=True)
    def role(self, request: Request[Any, Any, Any], account_id: FromPath[UUID], data: Form) -> Template | Redirect:
        def command() -> Any:
            body = decode(data, RoleChange)
            return service_of(request).grant_role(
                account_id, role=body.role, org_unit_id=body.org_unit_id, helper_id=body.helper_id,
                roster_entry=body.roster_entry, meta=meta_for(request, None),
            )  # fmt: skip

        return self._change(request, account_id, command)

    @post("/{account_id:uuid}/lock", sync_to_thread=True)
    def lock(self, request: Request[Any, Any, Any], account_id: FromPath[UUID], data: Form) -> Template | Redirect:
        return self._change(
            request, account_id,
            lambda: service_of(request).lock(account_id, decode(data, WithReason).reason, meta_for(request, None)),
        )  # fmt: skip

    @post("/{account_id:uuid}/unlock", sync_to_thread=True)
    def unlock(self, request: Request[Any, Any, Any], account_id: FromPath[UUID], data: Form) -> Template | Redirect:
        return self._change(
            request, account_id, lambda: app_of(request).unlock_account(account_id, meta_for(request, None))
        )

    @post("/{account_id:uuid}/reset", sync_to_thread=True)
    def reset(self, request: Request[Any, Any, Any], account_id: FromPath[UUID], data: Form) -> Template | Redirect:
        def command() -> Template:
            opened = service_of(request).reset(account_id, decode(data, WithReason).reason, meta_for(request, None))
            return slip(request, opened.account, opened.activation_code or "", "reset")

        return self._change(request, account_id, command)

    @post("/{account_id:uuid}/close", sync_to_thread=True)
    def close(self, request: Request[Any, Any, Any], account_id: FromPath[UUID], data: Form) -> Template | Redirect:
        return self._change(
            request, account_id,
            lambda: service_of(request).close(account_id, decode(data, WithReason).reason, meta_for(request, None)),
        )  # fmt: skip
