"""A notebook's annotated cells -> HTTP routes (Jupyter Kernel Gateway's notebook-http conventions).

    # GET /hello/:name            an endpoint cell (cells with the same verb and path are joined)
    # ResponseInfo GET /hello/:name   prints {"status": ..., "headers": {...}} for that endpoint
    # GET /slow timeout=5         options after the path: timeout (seconds) for this route
    # GET /a any other words      text after the path that is not name=value: a comment, ignored
                                  as Kernel Gateway ignores it, with a start-up warning naming the cell
    any other code cell           a seed cell: run in every kernel of the pool before it serves

The comment prefix is the kernel language's ('#' for Python).  Kernel Gateway's swagger
variant is read too: a markdown cell holding a Swagger 2 or OpenAPI 3 document, and code
cells annotated `# operationId: name` / `# ResponseInfo operationId: name`.  Everything
wrong with a notebook is a SettingsError naming the file, the cell and the problem.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from ..errors import SettingsError
from ..kernels.seed import Seed

VERBS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
COMMENT_PREFIXES = {
    "python": "#",
    "r": "#",
    "julia": "#",
    "ruby": "#",
    "perl": "#",
    "bash": "#",
    "sh": "#",
    "powershell": "#",
    "scala": "//",
    "java": "//",
    "javascript": "//",
    "typescript": "//",
    "go": "//",
    "rust": "//",
    "c": "//",
    "c++": "//",
    "cpp": "//",
    "csharp": "//",
    "c#": "//",
    "kotlin": "//",
    "swift": "//",
    "groovy": "//",
    "sql": "--",
    "haskell": "--",
    "lua": "--",
    "matlab": "%",
    "octave": "%",
    "erlang": "%",
    "prolog": "%",
    "fortran": "!",
}
PARAM = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")
TEMPLATE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
SAFE_IN_PATH = "/:@!$&'()*+,;=-._~"
OPTIONS = ("timeout",)
OPTION_LIKE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*=")  # what is held to Portico's option rules

log = logging.getLogger("portico")


@dataclass(frozen=True)
class Route:
    verb: str
    path: str  # as annotated, with :name parameters
    code: str
    response_code: str | None = None
    timeout: float | None = None
    operation: dict[str, Any] = field(default_factory=dict)  # from a swagger document, if any

    @property
    def params(self) -> list[str]:
        return PARAM.findall(self.path)

    @property
    def template(self) -> str:
        """The path as OpenAPI writes it: /hello/{name}."""
        return PARAM.sub(r"{\1}", self.path)

    @property
    def rank(self) -> int:
        """Kernel Gateway's order: routes without parameters first, then the deepest first parameter."""
        index = self.path.find(":")
        return sys.maxsize if index < 0 else self.path.count("/", 0, index) - 1

    @cached_property  # matched against every request's path: compiled once
    def pattern(self) -> re.Pattern[str]:
        """Matches the raw (still percent-encoded) request path; a parameter is one segment's text."""
        out, last = [], 0
        for m in PARAM.finditer(self.path):
            out.append(re.escape(quote(self.path[last : m.start()], safe=SAFE_IN_PATH)))
            out.append(f"(?P<{m.group(1)}>[^/]+)")
            last = m.end()
        out.append(re.escape(quote(self.path[last:], safe=SAFE_IN_PATH)))
        return re.compile("".join(out))


@dataclass(frozen=True)
class NotebookApi:
    path: Path
    kernel_name: str
    language: str
    title: str
    routes: tuple[Route, ...]  # in matching order
    seed: Seed
    document: dict[str, Any] | None = None  # the swagger variant's own document
    source: bytes = b""


def comment_prefixes(overrides: list[str]) -> dict[str, str]:
    prefixes = dict(COMMENT_PREFIXES)
    for entry in overrides:
        language, sep, prefix = entry.partition("=")
        if not sep or not language.strip() or not prefix.strip():
            raise SettingsError(f"option notebook_comment_prefixes: {entry!r} is not LANGUAGE=PREFIX (e.g. scala=//)")
        prefixes[language.strip().lower()] = prefix.strip()
    return prefixes


def load(path: str, *, kernel_name: str, installed: dict[str, str], prefixes: dict[str, str]) -> NotebookApi:
    """Read and parse a notebook; installed maps kernelspec names to their languages."""
    file = Path(path).resolve()
    if not file.is_file():
        raise SettingsError(f"notebook {path}: no such file")
    source = file.read_bytes()
    import nbformat  # imported when needed: with its validator it costs about a second

    try:
        nb = nbformat.reads(source.decode("utf-8"), as_version=4)  # type: ignore[no-untyped-call]
    except Exception as e:
        raise SettingsError(f"notebook {path} is not a readable notebook: {str(e).splitlines()[0]}") from None
    spec = nb.metadata.get("kernelspec", {})
    name = kernel_name or spec.get("name") or next(iter(installed), "python3")
    if name not in installed:
        raise SettingsError(
            f"notebook {path} needs kernel {name!r}, which is not installed "
            f"(installed: {', '.join(sorted(installed)) or 'none'}); set notebook_kernel_name"
        )
    language = (
        nb.metadata.get("language_info", {}).get("name") or spec.get("language") or installed[name] or "python"
    ).lower()
    prefix = prefixes.get(language, "#")
    cells = list(enumerate((c.source for c in nb.cells if c.cell_type == "code"), 1))
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    title = str(nb.metadata.get("title") or file.stem)
    parser = SwaggerParser(prefix, markdown, path) if SwaggerParser.applies(prefix, cells) else CellParser(prefix, path)
    routes, seeds = parser.parse(cells)
    if not routes:
        raise SettingsError(
            f"notebook {path} has no endpoints: annotate a code cell's first line, e.g. '{prefix} GET /hello'"
        )
    ordered = tuple(sorted(routes, key=lambda r: r.rank, reverse=True))
    seed = Seed(str(file), name, tuple(s for _, s in seeds), tuple(n for n, _ in seeds))
    return NotebookApi(file, name, language, title, ordered, seed, getattr(parser, "document", None), source)


class CellParser:
    """`# VERB /path [timeout=N]` and `# ResponseInfo VERB /path` annotations."""

    def __init__(self, prefix: str, path: str) -> None:
        p = re.escape(prefix)
        self.file = path
        self.looks_like = re.compile(rf"{p}\s+(ResponseInfo\b|(?:{'|'.join(VERBS)})\s+/)")
        self.annotation = re.compile(rf"{p}\s+(ResponseInfo\s+)?({'|'.join(VERBS)})\s+(/\S*)(.*)")

    def parse(self, cells: list[tuple[int, str]]) -> tuple[list[Route], list[tuple[int, str]]]:
        bodies: dict[tuple[str, str], list[str]] = {}
        responses: dict[tuple[str, str], list[str]] = {}
        timeouts: dict[tuple[str, str], float] = {}
        seeds: list[tuple[int, str]] = []
        for number, source in cells:
            first = source.split("\n", 1)[0]
            if not self.looks_like.match(first):
                if source.strip():
                    seeds.append((number, source))
                continue
            response, verb, path, rest = self._annotation(number, first)
            key = (verb, path)
            (responses if response else bodies).setdefault(key, []).append(source)
            timeout = self._options(number, rest).get("timeout")
            if timeout is not None:
                timeouts[key] = timeout
        routes = []
        for key, parts in bodies.items():
            response_parts = responses.pop(key, None)
            routes.append(
                Route(
                    key[0],
                    key[1],
                    "\n".join(parts),
                    "\n".join(response_parts) if response_parts else None,
                    timeouts.get(key),
                )
            )
        for verb, path in responses:
            raise SettingsError(
                f"notebook {self.file}: a ResponseInfo cell for {verb} {path}, which has no endpoint cell"
            )
        return routes, seeds

    def _annotation(self, number: int, line: str) -> tuple[bool, str, str, str]:
        m = self.annotation.fullmatch(line.rstrip())
        if m is None:
            raise SettingsError(
                f"notebook {self.file}, code cell {number}: cannot parse the annotation "
                f"{line.strip()!r}; expected e.g. '# GET /hello/:name'"
            )
        path = m.group(3)
        stripped = PARAM.sub("", path)
        if ":" in stripped or "{" in path or "//" in path:
            raise SettingsError(
                f"notebook {self.file}, code cell {number}: bad path {path!r}; "
                "parameters are ':name' with a letter or underscore first"
            )
        if len(set(PARAM.findall(path))) != len(PARAM.findall(path)):
            raise SettingsError(f"notebook {self.file}, code cell {number}: a parameter repeats in {path!r}")
        return bool(m.group(1)), m.group(2), path, m.group(4)

    def _options(self, number: int, rest: str) -> dict[str, float]:
        """name=value words are options, checked strictly; any other text is a comment, as in Kernel Gateway."""
        options: dict[str, float] = {}
        words = rest.split()
        comment = [w for w in words if not OPTION_LIKE.match(w)]
        if comment:
            log.warning(
                "notebook %s, code cell %d: ignoring %r after the path in its annotation, as "
                "Kernel Gateway does (options are name=value, e.g. timeout=5)",
                self.file,
                number,
                " ".join(comment),
            )
        for word in words:
            if not OPTION_LIKE.match(word):
                continue
            name, _, value = word.partition("=")
            if name not in OPTIONS:
                raise SettingsError(
                    f"notebook {self.file}, code cell {number}: unknown annotation option "
                    f"{word!r}; known: timeout=SECONDS"
                )
            try:
                options[name] = float(value)
                if options[name] <= 0:
                    raise ValueError
            except ValueError:
                raise SettingsError(
                    f"notebook {self.file}, code cell {number}: timeout must be a "
                    f"positive number of seconds, got {value!r}"
                ) from None
        return options


class SwaggerParser:
    """Kernel Gateway's swagger variant: the routes come from a document in a markdown cell."""

    def __init__(self, prefix: str, markdown: list[str], path: str) -> None:
        p = re.escape(prefix)
        self.file = path
        self.operation = re.compile(rf"{p}\s*operationId:\s*(\S+)\s*$")
        self.response = re.compile(rf"{p}\s*ResponseInfo\s+operationId:\s*(\S+)\s*$")
        documents = [d for d in map(_document_in, markdown) if d is not None]
        if not documents:
            raise SettingsError(
                f"notebook {path}: cells are bound with 'operationId:' but no markdown cell "
                "holds a Swagger or OpenAPI document"
            )
        self.document = documents[0]

    @staticmethod
    def applies(prefix: str, cells: list[tuple[int, str]]) -> bool:
        bound = re.compile(rf"{re.escape(prefix)}\s*(ResponseInfo\s+)?operationId:")
        return any(bound.match(source) for _, source in cells)

    def parse(self, cells: list[tuple[int, str]]) -> tuple[list[Route], list[tuple[int, str]]]:
        bodies: dict[str, list[str]] = {}
        responses: dict[str, list[str]] = {}
        seeds: list[tuple[int, str]] = []
        for number, source in cells:
            first = source.split("\n", 1)[0].rstrip()
            if m := self.response.match(first):
                responses.setdefault(m.group(1), []).append(source)
            elif m := self.operation.match(first):
                bodies.setdefault(m.group(1), []).append(source)
            elif source.strip():
                seeds.append((number, source))
        routes = []
        paths = self.document.get("paths")
        for template, operations in paths.items() if isinstance(paths, dict) else []:
            for verb, op in operations.items() if isinstance(operations, dict) else []:
                op_id = op.get("operationId") if isinstance(op, dict) else None
                if verb.upper() not in VERBS or op_id not in bodies:
                    continue
                path = TEMPLATE.sub(r":\1", str(template))
                response = responses.get(op_id)
                routes.append(
                    Route(
                        verb.upper(),
                        path,
                        "\n".join(bodies.pop(op_id)),
                        "\n".join(response) if response else None,
                        operation=op,
                    )
                )
        if bodies:
            raise SettingsError(
                f"notebook {self.file}: operationId {next(iter(bodies))!r} is bound to a cell "
                "but not declared in the document's paths"
            )
        return routes, seeds


def _document_in(markdown: str) -> dict[str, Any] | None:
    """A Swagger/OpenAPI document in a markdown cell: the whole cell or its first fenced block."""
    text = markdown
    fence = re.search(r"```[^\n]*\n(.*?)```", markdown, re.S)
    if fence:
        text = fence.group(1)
    try:
        doc = json.loads(text)
    except ValueError:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            return None
    if isinstance(doc, dict) and ("swagger" in doc or "openapi" in doc):
        return doc
    return None
