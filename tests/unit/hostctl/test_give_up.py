"""The give-up policy of `agents` / `sessions`: when to stop waiting after a failed attempt."""

from __future__ import annotations

import asyncssh
import pytest

from hostctl.give_up import GiveUpPolicy, refused_grace


@pytest.mark.parametrize("exc", [
    asyncssh.HostKeyNotVerifiable("host key is not trusted"),
    asyncssh.PermissionDenied("permission denied"),
    asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "prohibited"),
])
def test_a_definitive_failure_gives_up_at_once(exc: Exception) -> None:
    """Wrong host key, our key refused, the socket refused: no retry changes the answer."""
    assert GiveUpPolicy(grace=2.0).after_failure(exc, now=100.0) == 100.0


def test_refused_connections_give_up_a_grace_after_the_first_refusal() -> None:
    """Every refusal of an unbroken run points at the same moment: the first one + the grace."""
    policy = GiveUpPolicy(grace=2.0)
    times = (10.0, 10.2, 10.6, 11.4)
    assert [policy.after_failure(ConnectionRefusedError(), now=t) for t in times] == [12.0] * 4


def test_another_failure_ends_a_run_of_refusals_and_waits_for_the_deadline() -> None:
    """A timeout is no early answer, and the next refusal starts a new grace."""
    policy = GiveUpPolicy(grace=2.0)
    assert policy.after_failure(ConnectionRefusedError(), now=10.0) == 12.0
    assert policy.after_failure(TimeoutError(), now=11.0) is None
    assert policy.after_failure(OSError("no route to host"), now=11.5) is None
    assert policy.after_failure(ConnectionRefusedError(), now=13.0) == 15.0


@pytest.mark.parametrize(("timeout", "grace"), [(10.0, 2.0), (60.0, 2.0), (2.0, 1.0), (0.5, 0.25)])
def test_the_grace_is_two_seconds_and_at_most_half_the_deadline(timeout: float, grace: float) -> None:
    """So the early answer always comes before the deadline's."""
    assert refused_grace(timeout) == grace
