"""The administrator's account pages (账号): the accounts in the reader's scope, opening one (with
the activation slip to print), and on an account's page its role and unit, lock and unlock,
reset (a new slip) and close.

Everything goes through the accounts API's service (the injected ``Accounts``, ``Ops.accounts``) with the
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

from api.access import HELPER_READ, Access
from api.access.rules import ACCOUNT_READ
from api.accounts import AccountCreate, RoleChange, WithReason, mask
from api.auth import Actor
from api.names import with_names
from application.care import CareApplication
from domain.account import GRANTS, Account
from domain.base import DomainError
from projections.accounts import AccountsView
from projections.registry import RegistryView
from projections.supervision import CHINA
from projections.supervision_series import SupervisionSeries
from projections.supervision_view import SupervisionView
from web.frame import PREFIX, page
from web.ops import OPS, Ops

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


def grantable(actor: Actor) -> list[str]:
    """The roles the reader may open accounts for, in the table's order."""
    allowed = GRANTS.get(actor.role, frozenset())
    return [r.value for r in sorted(allowed, key=lambda r: list(type(r)).index(r))]


def units_in_scope(view: SupervisionView, actor: Actor) -> list[dict[str, Any]]:
    """The units beneath the reader's (an administrator's: every county's), in code order."""
    series = SupervisionSeries(view.pool)
    root = actor.org_unit_id
    stack = [view.unit(root)] if root else [view.unit(c["id"]) for c in series.counties()]
    out: list[dict[str, Any]] = []
    while stack:
        unit = stack.pop(0)
        if unit is None:
            continue
        out.append({k: unit[k] for k in ("id", "code", "name", "level")})
        stack[:0] = [view.unit(c["id"]) for c in series.children(unit["id"])]
    return out


def helpers_in_scope(care: CareApplication, registry: RegistryView, access: Access) -> list[dict[str, Any]]:
    """Active helpers the reader may read (a volunteer's account names its helper record)."""
    scope = access.scope_of_lists(HELPER_READ.get(access.actor.role, frozenset()))
    rows, _ = registry.list_helpers(status="active", limit=500, scope=scope)
    return with_names(care, rows)


def form_context(request: Request[Any, Any, Any], ops: Ops) -> dict[str, Any]:
    return {
        "roles": grantable(ops.actor),
        "units": units_in_scope(ops.supervision, ops.actor),
        "helpers": helpers_in_scope(ops.care, ops.registry, ops.access),
        "csrf": request.cookies.get("guanai_csrf", ""),
    }


def slip(request: Request[Any, Any, Any], ops: Ops, account: Account, code: str, why: str) -> Template:
    """The activation slip: the code shown this once, with where and how to sign in."""
    unit = ops.supervision.unit(account.org_unit_id) if account.org_unit_id else None
    base = f"{request.url.scheme}://{request.url.netloc}{PREFIX}/sign-in"
    return page(
        request, "admin/slip.html", account=account, phone=mask(account.phone), code=code, unit=unit, why=why,
        sign_in_url=base, expires=account.activation_expires_at, china=CHINA,
    )  # fmt: skip


class AccountPages(Controller):
    path = "/accounts"
    dependencies = OPS

    def _list(
        self, request: Request[Any, Any, Any], ops: Ops, status: str | None, page_no: int, **extra: Any
    ) -> Template:
        # The accounts list's scope, also after a refused form (whose rule lists nothing).
        scope = ops.access.scope_of_lists(ACCOUNT_READ.get(ops.actor.role, frozenset()))
        view = AccountsView(ops.supervision.pool)
        rows, total = view.list(scope=scope, status=status, limit=PAGE_SIZE, offset=(page_no - 1) * PAGE_SIZE)
        names = {u["id"]: u["name"] for u in units_in_scope(ops.supervision, ops.actor)}
        for row in rows:
            row["unit_name"] = names.get(row["org_unit_id"], "")
        errors = [{**e, "label": FIELD_LABELS.get(e["field"])} for e in extra.pop("errors", [])]
        return page(
            request, "admin/accounts.html", status=422 if errors else 200, rows=rows, total=total, page_no=page_no,
            pages=max(1, -(-total // PAGE_SIZE)), filter=status, errors=errors, sent=extra.pop("sent", {}),
            **form_context(request, ops), **extra,
        )  # fmt: skip

    @get("/", sync_to_thread=True)
    def accounts(
        self, request: Request[Any, Any, Any], ops: Ops, status: Status = None, page_no: PageNumber = 1
    ) -> Template:
        """The accounts in the reader's scope, and the form to open one."""
        return self._list(request, ops, status, page_no)

    @post("/", sync_to_thread=True)
    def open_account(self, request: Request[Any, Any, Any], ops: Ops, data: Form) -> Template:
        """Open an account; the answer is its activation slip (the code is shown only there)."""
        try:
            body = decode(data, AccountCreate)
            opened = ops.accounts.open(
                id=body.id or uuid4(), role=body.role, org_unit_id=body.org_unit_id, phone=body.phone,
                display_name=body.display_name, helper_id=body.helper_id, roster_entry=body.roster_entry,
                meta=ops.meta_for(None),
            )  # fmt: skip
        except FormError as e:
            return self._list(request, ops, None, 1, errors=e.errors, sent=data)
        except DomainError as e:
            return self._list(
                request, ops, None, 1, errors=[{"field": e.field or "form", "reason": e.detail}], sent=data
            )
        if opened.activation_code is None:  # the same account opened again: no second code
            return self._account(request, ops, opened.account.id)
        return slip(request, ops, opened.account, opened.activation_code, "opened")

    @get("/{account_id:uuid}", sync_to_thread=True)
    def account(self, request: Request[Any, Any, Any], ops: Ops, account_id: FromPath[UUID]) -> Template:
        """One account: who, which role and unit, its state; the forms that change it."""
        return self._account(request, ops, account_id)

    def _account(self, request: Request[Any, Any, Any], ops: Ops, account_id: UUID, **extra: Any) -> Template:
        account = ops.care.load(Account, account_id)
        unit = ops.supervision.unit(account.org_unit_id) if account.org_unit_id else None
        errors = [{**e, "label": FIELD_LABELS.get(e["field"])} for e in extra.pop("errors", [])]
        return page(
            request, "admin/account.html", status=422 if errors else 200, account=account, phone=mask(account.phone),
            unit=unit, errors=errors, saved=request.query_params.get("saved") == "1", **form_context(request, ops),
        )  # fmt: skip

    def _change(self, request: Request[Any, Any, Any], ops: Ops, account_id: UUID, command: Any) -> Template | Redirect:
        try:
            answer = command()
        except FormError as e:
            return self._account(request, ops, account_id, errors=e.errors)
        except DomainError as e:
            return self._account(request, ops, account_id, errors=[{"field": e.field or "form", "reason": e.detail}])
        if isinstance(answer, Template):
            return answer
        return Redirect(f"{PREFIX}/accounts/{account_id}?saved=1", status_code=303)

    @post("/{account_id:uuid}/role", sync_to_thread=True)
    def role(
        self, request: Request[Any, Any, Any], ops: Ops, account_id: FromPath[UUID], data: Form
    ) -> Template | Redirect:
        def command() -> Any:
            body = decode(data, RoleChange)
            return ops.accounts.grant_role(
                account_id, role=body.role, org_unit_id=body.org_unit_id, helper_id=body.helper_id,
                roster_entry=body.roster_entry, meta=ops.meta_for(None),
            )  # fmt: skip

        return self._change(request, ops, account_id, command)

    @post("/{account_id:uuid}/lock", sync_to_thread=True)
    def lock(
        self, request: Request[Any, Any, Any], ops: Ops, account_id: FromPath[UUID], data: Form
    ) -> Template | Redirect:
        return self._change(
            request, ops, account_id,
            lambda: ops.accounts.lock(account_id, decode(data, WithReason).reason, ops.meta_for(None)),
        )  # fmt: skip

    @post("/{account_id:uuid}/unlock", sync_to_thread=True)
    def unlock(
        self, request: Request[Any, Any, Any], ops: Ops, account_id: FromPath[UUID], data: Form
    ) -> Template | Redirect:
        return self._change(request, ops, account_id, lambda: ops.care.unlock_account(account_id, ops.meta_for(None)))

    @post("/{account_id:uuid}/reset", sync_to_thread=True)
    def reset(
        self, request: Request[Any, Any, Any], ops: Ops, account_id: FromPath[UUID], data: Form
    ) -> Template | Redirect:
        def command() -> Template:
            opened = ops.accounts.reset(account_id, decode(data, WithReason).reason, ops.meta_for(None))
            return slip(request, ops, opened.account, opened.activation_code or "", "reset")

        return self._change(request, ops, account_id, command)

    @post("/{account_id:uuid}/close", sync_to_thread=True)
    def close(
        self, request: Request[Any, Any, Any], ops: Ops, account_id: FromPath[UUID], data: Form
    ) -> Template | Redirect:
        return self._change(
            request, ops, account_id,
            lambda: ops.accounts.close(account_id, decode(data, WithReason).reason, ops.meta_for(None)),
        )  # fmt: skip
