"""A real Keystone 30.0.0 for the tests: started by the shared tool, driven through its own API.

Users, projects, role assignments, the `placement` service and its endpoints are created over
Keystone's Identity v3 API, as an operator would with `openstack user create` and friends.
Passwords are made up at run time; none is written in the repository.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import MINTED_TOKENS
from tests.deployment.topology import free_port
from tests.openstack_clients import KEYSTONE_TOOLS, ensure_keystone

DOMAIN = "default"


@dataclass
class User:
    id: str
    name: str
    password: str
    project: str | None  # the project name its tokens are scoped to by default


@dataclass
class Keystone:
    run_dir: Path
    port: int = field(default_factory=free_port)
    admin_password: str = field(default_factory=lambda: secrets.token_hex(16))
    _admin_token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

    def _env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PORT": str(self.port),
            "RUN_DIR": str(self.run_dir),
            "ADMIN_PASSWORD": self.admin_password,
            **extra,
        }

    def start(self, fresh: bool = False) -> None:
        ensure_keystone()
        subprocess.run(
            [str(KEYSTONE_TOOLS / "start.sh")],
            env=self._env(FRESH="1" if fresh else "0"),
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=180,
        )
        self._admin_token = None

    def stop(self) -> None:
        subprocess.run([str(KEYSTONE_TOOLS / "stop.sh")], env=self._env(), check=True, timeout=60)

    # -- tokens -------------------------------------------------------------------------

    def token(
        self,
        user: str,
        password: str,
        *,
        project: str | None = None,
        domain: str | None = None,
        system: bool = False,
    ) -> str:
        """A password token: project-, domain- or system-scoped, or unscoped."""
        identity = {
            "methods": ["password"],
            "password": {"user": {"name": user, "domain": {"id": DOMAIN}, "password": password}},
        }
        auth: dict[str, Any] = {"identity": identity}
        if project:
            auth["scope"] = {"project": {"name": project, "domain": {"id": DOMAIN}}}
        elif domain:
            auth["scope"] = {"domain": {"id": domain}}
        elif system:
            auth["scope"] = {"system": {"all": True}}
        response = httpx.post(f"{self.url}/auth/tokens", json={"auth": auth}, timeout=30)
        assert response.status_code == 201, response.text
        token = response.headers["x-subject-token"]
        MINTED_TOKENS.add(token)  # checked absent from every log line at the end of the run
        return token

    def user_token(self, user: User) -> str:
        return self.token(user.name, user.password, project=user.project)

    def revoke(self, token: str) -> None:
        response = self._admin().delete("/auth/tokens", headers={"X-Subject-Token": token})
        assert response.status_code == 204, response.text

    # -- identities -----------------------------------------------------------------------

    def _admin(self) -> httpx.Client:
        if self._admin_token is None:
            self._admin_token = self.token("admin", self.admin_password, project="admin")
        return httpx.Client(
            base_url=self.url, headers={"X-Auth-Token": self._admin_token}, timeout=30
        )

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        with self._admin() as client:
            response = client.request(method, path, json=body)
        assert response.status_code < 300, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    def project(self, name: str) -> str:
        """The project's id, creating it if needed."""
        found = self._call("GET", f"/projects?name={name}")["projects"]
        if found:
            return str(found[0]["id"])
        body = {"project": {"name": name, "domain_id": DOMAIN}}
        return str(self._call("POST", "/projects", body)["project"]["id"])

    def role(self, name: str) -> str:
        found = self._call("GET", f"/roles?name={name}")["roles"]
        return str(found[0]["id"])

    def user(self, prefix: str, project: str | None, roles: list[str]) -> User:
        """A new user with `roles` on `project` (a name; created if needed)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        password = secrets.token_hex(12)
        body = {"user": {"name": name, "password": password, "domain_id": DOMAIN}}
        user_id = str(self._call("POST", "/users", body)["user"]["id"])
        user = User(user_id, name, password, project)
        for role in roles if project else []:
            self.grant(user, role, project)
        return user

    def grant(self, user: User, role: str, project: str | None) -> None:
        project_id = self.project(project or "")
        self._call("PUT", f"/projects/{project_id}/users/{user.id}/roles/{self.role(role)}")

    def revoke_tokens_of(self, user: User) -> None:
        """Every token of the user revoked: what Keystone does when a password is set."""
        self._call("PATCH", f"/users/{user.id}", {"user": {"password": user.password}})

    def grant_on_domain(self, user: User, role: str) -> None:
        self._call("PUT", f"/domains/{DOMAIN}/users/{user.id}/roles/{self.role(role)}")

    def grant_on_system(self, user: User, role: str) -> None:
        self._call("PUT", f"/system/users/{user.id}/roles/{self.role(role)}")

    def register_placement(self, url: str) -> None:
        """The catalog entries an operator creates for Placement, pointing at `url`."""
        existing = self._call("GET", "/services?type=placement")["services"]
        for service in existing:
            self._call("DELETE", f"/services/{service['id']}")
        body = {"service": {"name": "placement", "type": "placement", "enabled": True}}
        service_id = self._call("POST", "/services", body)["service"]["id"]
        for interface in ("public", "internal"):
            endpoint = {
                "service_id": service_id,
                "interface": interface,
                "url": url,
                "region_id": "RegionOne",
            }
            self._call("POST", "/endpoints", {"endpoint": endpoint})
