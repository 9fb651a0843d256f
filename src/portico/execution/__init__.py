"""Code over plain HTTP: executions as objects, their routes, and the MCP endpoint."""
