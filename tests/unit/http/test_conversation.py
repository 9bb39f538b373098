"""One connection's conversation: requests answered one at a time in order, 100 Continue only where it cannot
land inside or before another answer, the reading bound, what follows an upgrade."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pyswoole.http.conversation import Conversation
from pyswoole.http.headers import CONTINUE_RESPONSE
from pyswoole.http.parser import ParseError, RequestParser, Upgraded

GET = b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n"
EXPECT = b"PUT /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"


def conversation(max_queued: int = 1 << 20, allow_upgrade: bool = False) -> Conversation:
    return Conversation(RequestParser(allow_upgrade=allow_upgrade), max_queued)


def path_of(item: object) -> bytes:
    assert type(item) is tuple, item
    return item[0].path


def test_pipelined_requests_are_handed_out_one_at_a_time_in_order() -> None:
    talk = conversation()
    assert talk.receive(GET % 1 + GET % 2 + GET % 3) == b""
    assert path_of(talk.next()) == b"/1"
    assert talk.next() is None  # the first is being answered
    talk.answered()
    assert path_of(talk.next()) == b"/2"
    talk.answered()
    assert path_of(talk.next()) == b"/3"
    talk.answered()
    assert talk.next() is None


@given(st.lists(st.integers(min_value=1, max_value=200), max_size=10))
def test_requests_come_out_whole_and_in_order_however_the_bytes_are_cut(cuts: list[int]) -> None:
    data = b"".join(GET % i for i in range(5)) + b"POST /body HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
    talk = conversation()
    bounds = [0, *sorted(cut % len(data) for cut in cuts), len(data)]
    paths = []
    for start, stop in zip(bounds, bounds[1:], strict=False):
        talk.receive(data[start:stop])
        while (item := talk.next()) is not None:
            paths.append(path_of(item))
            if path_of(item) == b"/body":
                assert item[1] == b"abc"  # type: ignore[index]
            talk.answered()
    assert paths == [b"/%d" % i for i in range(5)] + [b"/body"]


def test_100_continue_goes_at_once_when_nothing_is_being_answered() -> None:
    talk = conversation()
    assert talk.receive(EXPECT) == CONTINUE_RESPONSE
    assert talk.receive(b"data") == b""
    assert path_of(talk.next()) == b"/upload"
    assert talk.answered() == b""


def test_100_continue_waits_for_the_answer_being_given() -> None:
    talk = conversation()
    talk.receive(GET % 1)
    talk.next()
    assert talk.receive(EXPECT) == b""
    assert talk.answered() == CONTINUE_RESPONSE


def test_100_continue_waits_for_a_request_that_ended_in_the_same_read() -> None:
    talk = conversation()
    assert talk.receive(GET % 1 + EXPECT) == b""  # the 100 would come before the answer to /1
    assert path_of(talk.next()) == b"/1"
    assert talk.answered() == CONTINUE_RESPONSE
    talk.receive(b"data")
    assert path_of(talk.next()) == b"/upload"


def test_no_100_continue_once_the_client_sent_the_body_without_waiting() -> None:
    talk = conversation()
    talk.receive(GET % 1)
    talk.next()
    talk.receive(EXPECT + b"da")
    talk.receive(b"ta")
    assert talk.answered() == b""  # a 100 now would land before the answer to /upload
    assert path_of(talk.next()) == b"/upload"
    assert talk.answered() == b""


def test_a_parse_error_comes_after_the_requests_before_it() -> None:
    talk = conversation()
    talk.receive(GET % 1 + b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n")
    assert path_of(talk.next()) == b"/1"
    talk.answered()
    error = talk.next()
    assert type(error) is ParseError and error.status == 400


def test_reading_should_stop_when_too_many_requests_or_bytes_wait() -> None:
    talk = conversation()
    talk.receive(GET % 0)
    talk.next()
    talk.receive(b"".join(GET % i for i in range(64)))
    assert not talk.over_limit
    talk.receive(GET % 64)
    assert talk.over_limit
    talk.answered()
    talk.next()
    assert not talk.over_limit
    small = conversation(max_queued=10)
    small.receive(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world")
    assert small.over_limit
    small.next()
    assert not small.over_limit


def test_awaiting_head_only_while_nothing_is_answered_waits_or_arrives() -> None:
    talk = conversation()
    assert talk.awaiting_head
    talk.receive(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\na")
    assert not talk.awaiting_head  # a body is arriving
    talk.receive(b"b")
    assert not talk.awaiting_head  # a request waits
    talk.next()
    assert not talk.awaiting_head  # it is being answered
    talk.answered()
    assert talk.awaiting_head
    talk.receive(b"GET / HT")
    assert talk.awaiting_head  # a header that started is still owed


def test_bytes_after_an_upgrade_wait_for_it_to_be_decided() -> None:
    talk = conversation(allow_upgrade=True)
    upgrade = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    talk.receive(upgrade + b"frame1")
    talk.receive(b"frame2")
    assert path_of(talk.next()) == b"/ws"
    talk.answered()
    assert type(talk.next()) is Upgraded
    assert talk.upgraded_bytes() == b"frame1frame2"
    assert talk.upgraded_bytes() == b""
