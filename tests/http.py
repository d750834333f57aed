"""An API user of a fresh project, talking HTTP to the live server like any client would."""

import requests

from portal.auth.context import RequestContext
from portal.models import Role
from tests.factories import MembershipFactory


class ApiUser:
    """A member of a fresh project, talking HTTP to the live server."""

    def __init__(self, base_url: str, role: str = Role.MEMBER):
        self.membership = MembershipFactory(role=role)
        self.session = requests.Session()
        self.session.auth = (self.membership.user.username, "secret")
        self.session.headers["OpenStack-API-Version"] = "compute 2.47"
        self.base = base_url.rstrip("/")
        self.ctx = RequestContext(user=self.membership.user, project=self.membership.project, role=role)

    def url(self, path: str) -> str:
        return f"{self.base}/compute/v2.1{path}"

    def get(self, path, **kw):
        return self.session.get(self.url(path), timeout=10, **kw)

    def post(self, path, body, **kw):
        return self.session.post(self.url(path), json=body, timeout=10, **kw)

    def delete(self, path, **kw):
        return self.session.delete(self.url(path), timeout=10, **kw)

    def server(self, server_id) -> dict:
        response = self.get(f"/servers/{server_id}")
        return response.json().get("server") if response.status_code == 200 else {"status": "GONE"}
