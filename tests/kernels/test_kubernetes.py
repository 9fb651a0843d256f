"""Kubernetes without a cluster: the deployment's manifests, and the pod the kubernetes
provisioner's launcher renders for a kernel that Portico starts (docs/kubernetes.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

DOCS = Path(__file__).parents[2] / "docs" / "kubernetes"

RENDER = """
import asyncio, json, sys
from portico.kernels import remote
from portico.kernels.manager import KernelManager
from portico.settings import Settings
from portico.environment import inherited, without_secrets

async def main():
    settings = Settings(token=sys.argv[2])
    km = KernelManager(kernel_name="python_k8s", kernel_id=sys.argv[1], transport_encryption="required")
    await remote.prepare("portico-kubernetes-provisioner")
    env = {**without_secrets(inherited(settings.kernel_env_inherit), settings.token), "KERNEL_USERNAME": "jovyan"}
    cmd, kw = await km._async_pre_start_kernel(env=env)
    print(json.dumps({"cmd": cmd, "env": kw["env"], "provisioner": type(km.provisioner).__module__}))

asyncio.run(main())
"""


def manifests() -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all((DOCS / "portico.yaml").read_text()))
    return {d["kind"]: d for d in docs}


def test_the_deployment_runs_portico_with_the_rights_the_provisioner_needs() -> None:
    objects = manifests()
    assert set(objects) >= {"Namespace", "ServiceAccount", "Role", "RoleBinding", "Secret", "Deployment", "Service"}
    rules = {r: set(rule["verbs"]) for rule in objects["Role"]["rules"] for r in rule["resources"]}
    assert rules["pods"] >= {"get", "list", "create", "delete"}  # what k8s.py and launch_kubernetes.py call
    binding = objects["RoleBinding"]
    assert binding["roleRef"]["name"] == objects["Role"]["metadata"]["name"]
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == binding["subjects"][0]["name"] == objects["ServiceAccount"]["metadata"]["name"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["PORTICO_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == objects["Secret"]["metadata"]["name"]
    assert env["GP_RESPONSE_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["GP_NAMESPACE"]["value"] == objects["Namespace"]["metadata"]["name"]


def test_a_kernel_pod_is_rendered_with_its_image_and_labels_and_none_of_portico_s_secrets(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    subprocess.run(
        [sys.executable, "-m", "gateway_provisioners.cli.k8s_specapp", "install", "--prefix", str(prefix),
         "--kernel-name", "python_k8s", "--image-name", "portico-kernel:latest"],
        check=True, capture_output=True,
    )  # fmt: skip
    kubeconfig = tmp_path / "kubeconfig"  # parsed, never contacted: --pod-template renders without the API
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
        "GP_USE_INCLUSTER_CONFIG": "False",
        "KUBECONFIG": str(kubeconfig),
        "GP_RESPONSE_IP": "127.0.0.1",
        "GP_NAMESPACE": "portico",
        "PORTICO_LOG_LEVEL": "info",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
    }
    kid, token = str(uuid.uuid4()), "tok-" + uuid.uuid4().hex
    done = subprocess.run([sys.executable, "-c", RENDER, kid, token], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    launch = json.loads(done.stdout.strip().splitlines()[-1])
    assert launch["provisioner"] == "portico.kernels.pods"  # the stock spec starts through Portico's
    out = tmp_path / "pod.yaml"
    cmd = [sys.executable, *launch["cmd"][1:], "--pod-template", str(out)]
    rendered = subprocess.run(cmd, capture_output=True, text=True, env=launch["env"])
    assert rendered.returncode == 0, rendered.stderr
    pod = yaml.safe_load(out.read_text())
    assert pod["metadata"]["labels"]["kernel_id"] == kid and pod["metadata"]["namespace"] == "portico"
    container = pod["spec"]["containers"][0]
    assert container["image"] == "portico-kernel:latest"
    names = {e["name"]: e.get("value") for e in container["env"]}
    assert names["KERNEL_ID"] == kid and names["TRANSPORT_ENCRYPTION"] == "required"
    assert names["RESPONSE_ADDRESS"].startswith("127.0.0.1:")
    text = out.read_text()
    assert "PORTICO_" not in text and "s3cr3t" not in text and token not in text
