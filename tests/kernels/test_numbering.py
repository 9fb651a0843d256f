"""Holes in a kernel's message numbers: what counts as iopub lost before it reached Portico."""

from __future__ import annotations

from portico.kernels.relay import NUMBERING_SLACK, Numbering


def header(n: int, session: str = "abc-def_4242") -> bytes:
    return b'{"msg_id": "%s_%d", "msg_type": "stream"}' % (session.encode(), n)


def test_consecutive_numbers_lose_nothing() -> None:
    numbering = Numbering()
    assert [numbering.lost_before(header(n)) for n in range(1, 50)] == [0] * 49


def test_a_hole_is_counted_less_the_replies_seen_meanwhile() -> None:
    numbering = Numbering()
    numbering.lost_before(header(10))
    numbering.others += 2  # an execute_reply and a kernel_info_reply, on shell
    assert numbering.lost_before(header(10 + 3 + 100)) == 100


def test_small_holes_are_not_losses() -> None:
    """Replies on shell can arrive after the iopub message that follows them."""
    numbering = Numbering()
    numbering.lost_before(header(1))
    assert numbering.lost_before(header(2 + NUMBERING_SLACK)) == 0


def test_a_new_session_starts_afresh_and_foreign_ids_are_ignored() -> None:
    numbering = Numbering()
    numbering.lost_before(header(500))
    assert numbering.lost_before(header(1, session="restarted_77")) == 0
    assert numbering.lost_before(b'{"msg_id": "9f6c1d2e", "msg_type": "status"}') == 0
    assert numbering.lost_before(header(2, session="restarted_77")) == 0
