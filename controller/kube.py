"""The few Kubernetes API calls the controller makes itself (Kopf does the
watching): read and set a Deployment's replicas through its scale subresource,
patch a WorkerPool's status (or drop a finalizer from it) and post Events.
Built from the credentials Kopf logged in with, so it works in a pod (service
account) and from a kubeconfig alike."""

from __future__ import annotations

import base64
import datetime
import os
import socket
import ssl
import tempfile
from typing import Any

import httpx
import kopf


class KubeError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"{status_code}: {message}")
        self.status_code = status_code


class KubeApi:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self._http = client

    @classmethod
    def from_connection(cls, info: kopf.ConnectionInfo) -> KubeApi:
        headers = {}
        auth = None
        if info.token:
            headers["authorization"] = f"Bearer {info.token}"
        elif info.username and info.password:
            auth = httpx.BasicAuth(info.username, info.password)
        client = httpx.AsyncClient(
            base_url=info.server, headers=headers, auth=auth, verify=_ssl_context(info), timeout=10
        )
        return cls(client)

    async def close(self) -> None:
        await self._http.aclose()

    @staticmethod
    def _scale_path(namespace: str, deployment: str) -> str:
        return f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}/scale"

    async def get_scale(self, namespace: str, deployment: str) -> int:
        body = await self._request("GET", self._scale_path(namespace, deployment))
        return int(body.get("spec", {}).get("replicas", 0))

    async def set_scale(self, namespace: str, deployment: str, replicas: int) -> None:
        await self._request(
            "PATCH",
            self._scale_path(namespace, deployment),
            json={"spec": {"replicas": replicas}},
            headers={"content-type": "application/merge-patch+json"},
        )

    async def patch_status(self, namespace: str, pool: str, status: dict[str, Any]) -> None:
        await self._request(
            "PATCH",
            f"/apis/faas.dev/v1alpha1/namespaces/{namespace}/workerpools/{pool}/status",
            json={"status": status},
            headers={"content-type": "application/merge-patch+json"},
        )

    async def drop_finalizer(self, body: dict[str, Any], finalizer: str) -> None:
        """Remove one finalizer from a WorkerPool (the list is replaced as a whole,
        so the patch carries the resourceVersion: a concurrent change makes it 409)."""
        metadata = body.get("metadata") or {}
        kept = [f for f in metadata.get("finalizers") or [] if f != finalizer]
        await self._request(
            "PATCH",
            f"/apis/faas.dev/v1alpha1/namespaces/{metadata['namespace']}/workerpools/{metadata['name']}",
            json={
                "metadata": {
                    "finalizers": kept or None,
                    "resourceVersion": metadata.get("resourceVersion"),
                }
            },
            headers={"content-type": "application/merge-patch+json"},
        )

    async def create_event(self, body: Any, type_: str, reason: str, message: str) -> None:
        """A core/v1 Event about `body` (what `kubectl describe` shows)."""
        metadata = body.get("metadata") or {}
        namespace = metadata.get("namespace", "default")
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await self._request(
            "POST",
            f"/api/v1/namespaces/{namespace}/events",
            json={
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "generateName": f"{metadata.get('name', 'faas')}.",
                    "namespace": namespace,
                },
                "involvedObject": {
                    "apiVersion": body.get("apiVersion"),
                    "kind": body.get("kind"),
                    "name": metadata.get("name"),
                    "namespace": namespace,
                    "uid": metadata.get("uid"),
                },
                "type": type_,
                "reason": reason,
                "message": message[:1024],
                "source": {"component": "faas-controller"},
                "reportingComponent": "faas-controller",
                "reportingInstance": socket.gethostname(),
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            },
        )

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise KubeError(0, f"API unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise KubeError(response.status_code, response.text[:256])
        return response.json()


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if info.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if info.ca_path:
        context.load_verify_locations(cafile=info.ca_path)
    if info.ca_data:
        context.load_verify_locations(cadata=_pem(info.ca_data))
    certificate = info.certificate_path or _private_file(info.certificate_data)
    key = info.private_key_path or _private_file(info.private_key_data)
    if certificate and key:
        context.load_cert_chain(certificate, key)
    return context


def _pem(data: bytes | str) -> str:
    text = data.decode() if isinstance(data, bytes) else data
    return text if "-----BEGIN" in text else base64.b64decode(text).decode()


def _private_file(data: bytes | str | None) -> str | None:
    """ssl wants files for client certificates: write inline ones to a private one."""
    if not data:
        return None
    fd, path = tempfile.mkstemp(prefix="faas-kube-", suffix=".pem")
    with os.fdopen(fd, "w") as handle:
        handle.write(_pem(data))
    return path
