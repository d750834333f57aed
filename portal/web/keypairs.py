"""Key pairs: the user's own, and importing a public key."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from portal.selectors.keypairs import keypair_get, keypairs_of
from portal.services.keypairs import InvalidKeypair, KeypairExists, keypair_create, keypair_delete
from portal.services.quotas import QuotaExceeded

from .context import page, portal_view
from .forms import KeypairImportForm


@require_http_methods(["GET", "POST"])
@portal_view
def keypair_list(request: HttpRequest) -> HttpResponse:
    ctx = request.ctx
    status = 200
    if request.method == "POST":
        form = KeypairImportForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                keypair_create(
                    project=ctx.project,
                    user=ctx.user,
                    name=data["name"],
                    key_type=data["key_type"],
                    public_key=data["public_key"].strip(),
                )
            except KeypairExists as exc:
                form.add_error("name", str(exc))
            except InvalidKeypair as exc:
                form.add_error("public_key", str(exc))
            except QuotaExceeded as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Key pair {data['name']} imported.")
                return HttpResponseRedirect(reverse("portal:keypairs"))
        status = 400
    else:
        form = KeypairImportForm()
    return page(
        request,
        "portal/keypairs.html",
        {"section": "keypairs", "keypairs": keypairs_of(ctx.user), "form": form},
        status=status,
    )


@require_POST
@portal_view
def keypair_remove(request: HttpRequest, name: str) -> HttpResponse:
    keypair = keypair_get(request.ctx.user, name)
    if keypair is None:
        raise Http404("No such key pair")
    keypair_delete(keypair=keypair)
    messages.success(request, f"Key pair {name} deleted.")
    return HttpResponseRedirect(reverse("portal:keypairs"))
