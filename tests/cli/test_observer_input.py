"""ps:observer takes the node's name and cookie from the replica, which the
app's owner controls; the name is spliced into an Erlang expression run on
the user's machine, so only plain names pass."""
from __future__ import annotations

import click
import pytest

from cli.observer import DIST_PORT, checked_info, erl_argv


def _said(node: str, cookie: str = "C00KIE_abc", port: str = str(DIST_PORT)) -> dict[str, str]:
    return {"node": node, "cookie": cookie, "port": port}


def test_a_plain_node_and_cookie_pass() -> None:
    assert checked_info(_said("counter@10.213.0.66")) == ("counter@10.213.0.66", "C00KIE_abc")


@pytest.mark.parametrize("node", [
    "x@h', os:cmd(\"touch /tmp/pwned\"), '",   # closes the quoted atom in -eval
    "x@h\nhalt().", "no-host-part", "x@", "@h", "x y@h",
])
def test_a_node_name_that_is_not_plain_is_refused(node: str) -> None:
    with pytest.raises(click.ClickException, match="not a plain"):
        checked_info(_said(node))


@pytest.mark.parametrize("cookie", ["-eval", "a b", "a'b", "x" * 256])
def test_a_cookie_that_is_not_plain_is_refused(cookie: str) -> None:
    with pytest.raises(click.ClickException, match="not a plain"):
        checked_info(_said("counter@h", cookie))


def test_no_node_and_no_fixed_port_say_so() -> None:
    with pytest.raises(click.ClickException, match="runs no Erlang node"):
        checked_info(_said("", ""))
    with pytest.raises(click.ClickException, match="fixed distribution port"):
        checked_info(_said("counter@h", port=""))


def test_the_accepted_name_is_the_atom_in_the_expression(tmp_path) -> None:
    argv = erl_argv("counter@10.0.0.2", "C", 4000, tmp_path)
    assert "N = 'counter@10.0.0.2'," in argv[-1]
