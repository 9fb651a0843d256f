"""Portico's MCP tools, on the official SDK's MCPServer (imported only once /mcp is first asked).

They call Portico's own parts (Kernels, Executions, the notebooks in root_dir), not its HTTP API:
    list_kernelspecs, list_kernels, start_kernel, interrupt_kernel, restart_kernel, stop_kernel
    run_code          on a kernel, or one-shot on a fresh one from the warm pool
    list_notebooks, read_notebook, run_cell     notebooks in root_dir; a cell's outputs are saved
                                                into its notebook, as running it in a notebook does
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import nbformat
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent

from .. import __version__
from ..errors import BadRequest, NotFound, PorticoError
from ..kernels.requests import start_request
from ..paths import confine
from .execution import Execution

if TYPE_CHECKING:
    from ..kernels.manager import Kernels
    from ..settings import Settings
    from .execution import Executions

F = TypeVar("F", bound=Callable[..., Any])
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
IMAGES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def build(settings: Settings, kernels: Kernels, executions: Executions) -> MCPServer:
    server = MCPServer(
        "portico",
        instructions=(
            "Runs code on Jupyter kernels. run_code without a kernel_id runs it on a fresh kernel that is "
            "shut down afterwards; start_kernel gives a kernel that keeps its state between runs."
        ),
        version=__version__,
    )
    Tools(settings, kernels, executions).register(server)
    return server


class Tools:
    def __init__(self, settings: Settings, kernels: Kernels, executions: Executions) -> None:
        self.settings = settings
        self.kernels = kernels
        self.executions = executions
        self.notebook_kernels: dict[str, str] = {}  # notebook path -> the kernel run_cell uses for it

    def register(self, server: MCPServer) -> None:
        def tool(description: str) -> Callable[[F], F]:
            """server.tool, with Portico's errors (no such kernel, a bad path) told to the agent as they are."""

            def register(fn: F) -> F:
                @functools.wraps(fn)
                async def told(*args: Any, **kwargs: Any) -> Any:
                    try:
                        result = fn(*args, **kwargs)
                        return await result if inspect.isawaitable(result) else result
                    except PorticoError as e:
                        raise ToolError(e.message) from None

                server.tool(description=description)(told)
                return fn

            return register

        @tool(description="The installed kernelspecs (languages), and the default one.")
        def list_kernelspecs() -> dict[str, Any]:
            specs = self.kernels.specs.all()
            return {"default": specs["default"], "kernelspecs": sorted(specs["kernelspecs"])}

        @tool(description="The running kernels: id, kernelspec name, execution state.")
        def list_kernels() -> list[dict[str, Any]]:
            return [k.model() for k in self.kernels.kernels.values()]

        @tool(description="Start a kernel that keeps its state between run_code calls; returns its id.")
        async def start_kernel(kernel_name: str | None = None) -> dict[str, Any]:
            kernel = await self.kernels.start(start_request(self.settings, kernel_name))
            return kernel.model()

        @tool(description="Interrupt what a kernel is running (KeyboardInterrupt).")
        async def interrupt_kernel(kernel_id: str) -> str:
            await self.kernels.interrupt(kernel_id)
            return f"Kernel {kernel_id} interrupted."

        @tool(description="Restart a kernel: its variables are lost.")
        async def restart_kernel(kernel_id: str) -> str:
            await self.kernels.restart(kernel_id)
            return f"Kernel {kernel_id} restarted."

        @tool(description="Shut a kernel down.")
        async def stop_kernel(kernel_id: str) -> str:
            await self.kernels.shutdown(kernel_id)
            return f"Kernel {kernel_id} shut down."

        @tool(
            description=(
                "Run code. With kernel_id, on that kernel (its state is kept); without, on a fresh kernel that is "
                "shut down afterwards. Returns its output: text, images, and the error with its traceback."
            )
        )
        async def run_code(code: str, kernel_id: str | None = None, timeout: float | None = None) -> CallToolResult:
            execution = await self._run(code, kernel_id, timeout)
            return result_of(execution)

        @tool(description="The notebooks (.ipynb) under a directory of the server's root directory.")
        def list_notebooks(path: str = "") -> list[str]:
            root = Path(self.settings.root_dir)
            base = self._file(path)
            found = sorted(
                str(p.relative_to(root)) for p in base.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
            )
            return found[:1000]

        @tool(description="A notebook's cells: index, type, source, and the outputs' text.")
        def read_notebook(path: str) -> list[dict[str, Any]]:
            nb = self._notebook(path)
            return [
                {
                    "index": i,
                    "cell_type": cell.cell_type,
                    "source": cell.source,
                    **(
                        {"outputs": [_output_text(o) for o in cell.get("outputs", [])]}
                        if cell.cell_type == "code"
                        else {}
                    ),
                }
                for i, cell in enumerate(nb.cells)
            ]

        @tool(
            description=(
                "Run one code cell of a notebook (by index) on the notebook's kernel, started on first use, and save "
                "its outputs into the notebook. Returns its output."
            )
        )
        async def run_cell(path: str, index: int, timeout: float | None = None) -> CallToolResult:
            nb = self._notebook(path)
            if not 0 <= index < len(nb.cells) or nb.cells[index].cell_type != "code":
                raise BadRequest(f"Cell {index} of {path} is not a code cell (the notebook has {len(nb.cells)} cells).")
            kernel_id = self.notebook_kernels.get(path)
            if kernel_id not in self.kernels.kernels:
                name = (nb.metadata.get("kernelspec") or {}).get("name")
                kernel = await self.kernels.start(start_request(self.settings, name, path))
                kernel_id = self.notebook_kernels[path] = kernel.id
            execution = await self._run(nb.cells[index].source, kernel_id, timeout)
            nb = self._notebook(path)  # as it is now: saved with only this cell changed
            if index < len(nb.cells) and nb.cells[index].cell_type == "code":
                nb.cells[index].outputs = [nbformat.from_dict(o) for o in execution.nb_outputs()]  # type: ignore[no-untyped-call]
                nb.cells[index].execution_count = execution.execution_count
                await asyncio.to_thread(nbformat.write, nb, str(self._file(path)))
            return result_of(execution)

    async def _run(self, code: str, kernel_id: str | None, timeout: float | None) -> Execution:
        one_shot = kernel_id is None
        if kernel_id is None:
            kernel_id = (await self.kernels.start(start_request(self.settings))).id
            timeout = timeout or self.settings.one_shot_timeout or None
        try:
            execution = self.executions.submit(kernel_id, code, timeout=timeout, allow_stdin=False)
            await execution.done.wait()
            return execution
        finally:
            if one_shot:
                await self.kernels.shutdown(kernel_id, "shut down after its one-shot run")

    def _file(self, path: str) -> Path:
        return confine(Path(self.settings.root_dir).resolve(), path, hidden=self.settings.contents_allow_hidden)

    def _notebook(self, path: str) -> Any:
        file = self._file(path)
        if file.suffix != ".ipynb" or not file.is_file():
            raise NotFound(f"No notebook at {path}.")
        return nbformat.read(str(file), as_version=4)  # type: ignore[no-untyped-call]


def result_of(execution: Execution) -> CallToolResult:
    """An execution as MCP content: streams and text results as text, images as images, the
    error with its traceback (without terminal colours); is_error when it did not end ok."""
    content: list[ContentBlock] = []
    for output in execution.nb_outputs():
        kind = output["output_type"]
        if kind == "stream":
            content.append(TextContent(type="text", text=output["text"]))
        elif kind == "error":
            trace = ANSI.sub("", "\n".join(output["traceback"])) or f"{output['ename']}: {output['evalue']}"
            content.append(TextContent(type="text", text=trace))
        elif kind in ("execute_result", "display_data"):
            data = output["data"]
            image = next((mime for mime in IMAGES if mime in data), None)
            if image is not None:
                content.append(ImageContent(type="image", data=str(data[image]).strip(), mime_type=image))
            elif "text/plain" in data:
                content.append(TextContent(type="text", text=str(data["text/plain"])))
    if execution.timed_out:
        content.append(TextContent(type="text", text=f"(timed out after {execution.timeout:g} s)"))
    if execution.failure:
        content.append(TextContent(type="text", text=execution.failure))
    if not content:
        content.append(TextContent(type="text", text="(no output)"))
    return CallToolResult(content=content, is_error=execution.status != "ok")


def _output_text(output: dict[str, Any]) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return str(output.get("text", ""))
    if kind == "error":
        return f"{output.get('ename')}: {output.get('evalue')}"
    data = output.get("data") or {}
    if any(mime in data for mime in IMAGES):
        return "[image]"
    return str(data.get("text/plain", ""))
