"""The browser page: launcher, notebook and login."""
