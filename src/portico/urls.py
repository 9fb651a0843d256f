"""Who owns which URL: the first path segment under base_url, in one table.

    ""              the browser page's launcher (when the page is on)
    notebooks, login, logout, _page       the browser page's
    api, kernelspecs, metrics, files      Portico's own (REST API, kernelspec resources, downloads)
    proxy, server-proxy                   Portico's own (the process proxy's port routes and API)
    public, _api                          Portico's own (the notebook API's static files and descriptions)
    NAME                                  a proxied server's, claimed at start-up
    anything else                         free: a notebook API mounted at the root serves it

Every feature that mounts routes under a first segment it does not own by this table
claims it here, and a clash is a SettingsError that says whose the segment is.  A claim
nobody asked for by name (a proxy plugin found through its entry point) gives way: what
the user configured takes the segment, and the claim's owner is told why it lost it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

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
        self.yielding: dict[str, Callable[[str], None]] = {}  # segment -> told it lost it, and to whom
        if page:
            self.table.update({segment: PAGE for segment in ("", *PAGE_SEGMENTS)})

    def owner(self, segment: str) -> str | None:
        return self.table.get(segment)

    def claim(self, segment: str, owner: str, what: str, gives_way: Callable[[str], None] | None = None) -> None:
        """Take a segment for `what` (named in the error) or say whose it already is.  With
        gives_way, the claim yields to a later one (which calls it with the later claimant)."""
        if segment in self.yielding:
            self.give_way(segment, what)
        taken = self.table.get(segment)
        if taken is not None:
            raise SettingsError(f"{what}: /{segment} is {taken} URL space; choose another")
        self.table[segment] = owner
        if gives_way is not None:
            self.yielding[segment] = gives_way

    def gives_way(self, segment: str) -> bool:
        return segment in self.yielding

    def give_way(self, segment: str, to: str) -> None:
        """A yielding claim's segment is free again, for `to`; its owner is told."""
        self.yielding.pop(segment)(to)
        del self.table[segment]

    def free_tail(self) -> str:
        """An aiohttp path pattern for a tail whose first segment nobody owns (a root catch-all)."""
        owned = sorted(re.escape(s) for s in self.table)
        return r"{tail:(?!(?:" + "|".join(owned) + r")(?:/|$)).*}"
