from django.conf import settings


def base_url() -> str:
    return settings.CLOUD["PUBLIC_URL"] + "/compute"


def links(kind: str, ident, *, base: str | None = None) -> list[dict]:
    """The ``self`` and ``bookmark`` links of a resource; ``base`` is ``base_url()`` when not given (a view
    that writes many links reads it once)."""
    base = base_url() if base is None else base
    return [{"rel": "self", "href": f"{base}/v2.1/{kind}/{ident}"}, bookmark(kind, ident, base=base)]


def bookmark(kind: str, ident, *, base: str | None = None) -> dict:
    base = base_url() if base is None else base
    return {"rel": "bookmark", "href": f"{base}/{kind}/{ident}"}


def collection_next(kind: str, marker, limit: int, request) -> list[dict]:
    query = request.GET.copy()
    query["marker"] = str(marker)
    query["limit"] = str(limit)
    return [{"rel": "next", "href": f"{base_url()}/v2.1/{kind}?{query.urlencode()}"}]
