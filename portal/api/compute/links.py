from django.conf import settings


def base_url() -> str:
    return settings.CLOUD["PUBLIC_URL"] + "/compute"


def links(kind: str, ident) -> list[dict]:
    base = base_url()
    return [
        {"rel": "self", "href": f"{base}/v2.1/{kind}/{ident}"},
        {"rel": "bookmark", "href": f"{base}/{kind}/{ident}"},
    ]


def collection_next(kind: str, marker, limit: int, request) -> list[dict]:
    query = request.GET.copy()
    query["marker"] = str(marker)
    query["limit"] = str(limit)
    return [{"rel": "next", "href": f"{base_url()}/v2.1/{kind}?{query.urlencode()}"}]
