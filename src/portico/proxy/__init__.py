"""The process proxy: named servers started, supervised and proxied (jupyter-server-proxy compatible)."""
