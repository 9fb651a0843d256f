"""The contents API (/api/contents) and raw files (/files/), over the root directory."""
