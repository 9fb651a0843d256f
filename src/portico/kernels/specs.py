"""Kernelspec discovery and resources, through jupyter_client's KernelSpecManager."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from ..errors import NotFound
from ..paths import confine

RESOURCE_FILES = ("kernel.js", "kernel.css")


class Specs:
    def __init__(self, base_url: str, default_name: str) -> None:
        self.manager = KernelSpecManager()
        self.base_url = base_url
        self.default_name = default_name

    def all(self) -> dict[str, Any]:
        specs = self.manager.get_all_specs()
        return {
            "default": self.default_name,
            "kernelspecs": {name: self._model(name, s["spec"], s["resource_dir"]) for name, s in specs.items()},
        }

    def one(self, name: str) -> dict[str, Any]:
        spec = self.get(name)
        return self._model(name, spec.to_dict(), spec.resource_dir)

    def get(self, name: str) -> Any:
        try:
            return self.manager.get_kernel_spec(name)
        except NoSuchKernel:
            known = ", ".join(sorted(self.manager.find_kernel_specs())) or "none"
            raise NotFound(f"No such kernelspec: {name!r}; installed: {known}.", "No Such Kernel") from None

    def resource(self, name: str, filename: str) -> Path:
        """The path of a kernelspec's resource file: a plain file name inside its directory."""
        directory = Path(self.get(name).resource_dir).resolve()
        path = confine(directory, filename, field="resource") if "/" not in filename else None
        if path is None or path.parent != directory or not path.is_file():
            raise NotFound(f"Kernelspec {name!r} has no resource {filename!r}.")
        return path

    def _model(self, name: str, spec: dict[str, Any], resource_dir: str) -> dict[str, Any]:
        resources = {}
        directory = Path(resource_dir)
        url = f"{self.base_url}kernelspecs/{name}/"
        for filename in RESOURCE_FILES:
            if (directory / filename).is_file():
                resources[filename] = url + filename
        for logo in sorted(directory.glob("logo-*")):
            resources[logo.stem] = url + logo.name
        return {"name": name, "spec": spec, "resources": resources}
