"""A seed notebook: code cells run in every new kernel of its kernelspec (Kernel Gateway's seed_uri)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SettingsError


@dataclass(frozen=True)
class Seed:
    path: str
    kernel_name: str
    cells: tuple[str, ...]
    numbers: tuple[int, ...] = ()  # each cell's number among the notebook's code cells

    @classmethod
    def load(cls, path: str, default_kernel: str) -> Seed:
        import nbformat  # imported when needed: with its validator it costs about a second

        try:
            nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
        except Exception as e:
            raise SettingsError(f"option seed: {path} is not a readable notebook ({e})") from None
        name = nb.metadata.get("kernelspec", {}).get("name") or default_kernel
        code = [(i, c.source) for i, c in enumerate((c for c in nb.cells if c.cell_type == "code"), 1)]
        seeds = [(i, source) for i, source in code if source.strip()]
        return cls(path, name, tuple(s for _, s in seeds), tuple(i for i, _ in seeds))
