"""Building Portico builds its browser page first (scripts/build-page), so a wheel carries it.

The page's build needs Node.js and npm unless the built page is already up to date (a checkout
where scripts/setup ran); an sdist carries the page's sources and builds it, saying so clearly
when Node is missing.  Everything else about the package is in pyproject.toml.
"""

import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithPage(build_py):
    def run(self) -> None:
        # An editable install (scripts/setup) serves the page from the checkout, which
        # scripts/setup builds itself; wheels and sdists build it here.
        if (ROOT / "web" / "src").is_dir() and not getattr(self, "editable_mode", False):
            if subprocess.run(["bash", str(ROOT / "scripts" / "build-page")], cwd=ROOT).returncode != 0:
                sys.exit("error: Portico's browser page could not be built (above: why)")
        super().run()


setup(cmdclass={"build_py": BuildWithPage})
