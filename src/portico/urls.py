"""Who owns which URL: the first path segment under base_url, in one table.

    ""              the browser page's launcher (when the page is on)
    notebooks, login, logout, _page       the browser page's
    api, kernelspecs, metrics, files      Portico's own (REST API, kernelspec resources, downloads)
    proxy, server-proxy                   Portico's own (the process proxy's port routes and API)
    public, _api                          Portico's own (the notebook API's static files and descriptions)
    NAME                                  a proxied server's, claimed at start-up
    anything else                         free: a notebook API mounted at the root serves it

Every feature that mounts routes under a first segment it does not own by this table
claims it here, and a clash is a SettingsError that says whose the segment is.
"""

from __future__ import annotations

import re

from .errors import SettingsError

PORTICO = "Portico's own"
PAGE = "the browser page's"
PROXIED = "a proxied server's"
FIXED = {
    segment: PORTICO
    for segment in ("api", "kernelspecs", "metrics", "files", "proxy", "server-proxy", "public", "_api")
}
PAGE_SEGMENTS = ("notebooks", "login", "logout", "_page")


def first_segment(path: str) -> str:
    return path.strip("/").split("/")[0]


class Owners:
    def __init__(self, *, page: bool) -> None:
        self.table = dict(FIXED)
        if page:
            self.table.update({segment: PAGE for segment in ("", *PAGE_SEGMENTS)})

    def owner(self, segment: str) -> str | None:
        return self.table.get(segment)

    def claim(self, segment: str, owner: str, what: str) -> None:
        """Take a segment for `what` (named in the error) or say whose it already is."""
        taken = self.table.get(segment)
        if taken is not None:
            raise SettingsError(f"{what}: /{segment} is {taken} URL space; choose another")
        self.table[segment] = owner

    def free_tail(self) -> str:
        """An aiohttp path pattern for a tail whose first segment nobody owns (a root catch-all)."""
        owned = sorted(re.escape(s) for s in self.table)
        return r"{tail:(?!(?:" + "|".join(owned) + r")(?:/|$)).*}"
