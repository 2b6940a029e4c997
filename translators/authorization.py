"""Authorization (2.0.1 functional block C): Authorize, ClearCache, and the idToken ⇄ idTag rules."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Generator
from typing import Any

from translators import iso15118
from translators.bridge import Context, Disposition, Request
from translators.rpc import PropertyConstraintViolation

# OCPP 1.6 §7.17 IdToken: CiString20.
MAX_ID_TAG = 20


def to_id_tag(ctx: Context, id_token: dict[str, Any], field: str = "idToken.idToken") -> str:
    """The 1.6 idTag for a 2.0.1 idToken, remembering its type; never a silent truncation."""
    token = id_token["idToken"]
    if len(token) > MAX_ID_TAG:
        if ctx.config.long_id_token != "alias":
            raise PropertyConstraintViolation(
                f"{field}: {len(token)} characters, the legacy CSMS accepts at most {MAX_ID_TAG}",
                {"field": field},
            )
        alias = alias_for(token)
        if ctx.state.aliases.get(alias) != token:
            ctx.state.on_alias(alias, token)
            ctx.touch()
        token = alias
    if ctx.state.token_types.get(token) != id_token["type"]:
        ctx.state.on_token_seen(token, id_token["type"])
        ctx.touch()
    return token


def alias_for(id_token: str) -> str:
    """A deterministic 20-character idTag standing for a longer 2.0.1 idToken (same on every proxy)."""
    digest = hashlib.sha256(id_token.encode()).digest()
    return "~" + base64.b32encode(digest).decode()[: MAX_ID_TAG - 1]


def to_id_token(ctx: Context, id_tag: str) -> dict[str, Any]:
    """The 2.0.1 idToken for a 1.6 idTag (an alias back to the token it stands for), with the type the
    station last showed for it, else the default."""
    token = ctx.state.aliases.get(id_tag, id_tag)
    return {"idToken": token, "type": ctx.state.token_types.get(id_tag, ctx.config.default_id_token_type)}


def to_id_token_info(id_tag_info: dict[str, Any]) -> dict[str, Any]:
    """1.6 IdTagInfo → 2.0.1 IdTokenInfoType (OCPP 2.0.1 status set is a superset of 1.6's)."""
    info: dict[str, Any] = {"status": id_tag_info["status"]}
    if "expiryDate" in id_tag_info:
        info["cacheExpiryDateTime"] = id_tag_info["expiryDate"]
    if "parentIdTag" in id_tag_info:
        # 1.6 parentIdTag has no type; 2.0.1 groupIdToken requires one: a group id is CSMS-issued.
        info["groupIdToken"] = {"idToken": id_tag_info["parentIdTag"], "type": "Central"}
    return info


def authorize(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    if "certificate" in payload or "iso15118CertificateHashData" in payload:
        # OCA PnC application note §5: a Plug & Charge authorization SHALL NOT use the regular Authorize.req.
        return (yield from iso15118.authorize(ctx, payload))
    id_tag = to_id_tag(ctx, payload["idToken"])
    answer = yield Request("Authorize", {"idTag": id_tag})
    return {"idTokenInfo": to_id_token_info(answer["idTagInfo"])}


def clear_cache(ctx: Context, payload: dict[str, Any]) -> Generator[Request, Any, dict[str, Any]]:
    answer = yield Request("ClearCache", {})
    return {"status": answer["status"]}


CHARGER_CALLS = {
    "Authorize": Disposition(
        "translated",
        ("Authorize", "DataTransfer (Plug & Charge, with certificate data)"),
        authorize,
        lossy=(
            "idToken.type is not sent (remembered per station for the legacy's RemoteStartTransaction)",
            "an idToken over 20 characters is refused (PropertyConstraintViolation), or with --long-id-token alias "
            "sent as a deterministic 20-character alias, remembered per station and turned back on the way down",
            "parentIdTag becomes groupIdToken of type Central",
        ),
    ),
}
LEGACY_CALLS = {
    "ClearCache": Disposition("translated", ("ClearCache",), clear_cache, lossy=("statusInfo is dropped",)),
}
