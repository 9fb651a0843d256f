"""The notebook HTTP API: annotated notebook cells served as HTTP routes."""
