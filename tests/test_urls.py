"""urls.Owners: one table of first URL segments, and the root catch-all that leaves them alone."""

from __future__ import annotations

import re

import pytest

from portico.errors import SettingsError
from portico.urls import PAGE, PORTICO, PROXIED, Owners, first_segment


def test_portico_and_the_page_own_their_segments() -> None:
    with_page, without = Owners(page=True), Owners(page=False)
    assert with_page.owner("api") == PORTICO and with_page.owner("notebooks") == PAGE and with_page.owner("") == PAGE
    assert without.owner("notebooks") is None and without.owner("metrics") == PORTICO


def test_a_claim_on_an_owned_segment_says_whose_it_is() -> None:
    owners = Owners(page=True)
    owners.claim("lab", PROXIED, "proxied server lab")
    assert owners.owner("lab") == PROXIED
    with pytest.raises(SettingsError, match="proxied server api: /api is Portico's own URL space"):
        owners.claim("api", PROXIED, "proxied server api")
    with pytest.raises(SettingsError, match="/lab is a proxied server's URL space"):
        owners.claim("lab", PROXIED, "another lab")


def test_the_free_tail_matches_only_unowned_first_segments() -> None:
    owners = Owners(page=False)
    owners.claim("lab", PROXIED, "lab")
    tail = re.compile(owners.free_tail()[len("{tail:") : -1])
    for free in ("hello", "hello/x", "apis", "labx/y", "_apix"):
        assert tail.fullmatch(free), free
    for owned in ("api", "api/kernels", "lab", "lab/", "metrics"):
        assert not tail.fullmatch(owned), owned


def test_first_segment() -> None:
    assert first_segment("/a/b/") == "a" and first_segment("") == "" and first_segment("x") == "x"
