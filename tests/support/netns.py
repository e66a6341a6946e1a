"""Network namespaces of the icmp tests' own: their loopback answering,
ignoring or dropping echoes, with sysctls and iptables rules of their own,
and checks run inside them as root or as nobody."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import os
import pickle
import shutil
import subprocess
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

from tests.support.checks import check_from
from tests.support.net import sockets_to

if TYPE_CHECKING:
    from probed.model import Result

T = TypeVar("T")

NOBODY = 65534
ICMP_TABLES = ("icmp", "icmp6", "raw", "raw6")  # the datagram and raw sockets of /proc/net
_CLONE_NEWNET = 0x40000000


def namespaces_usable() -> str | None:
    """Why the tests cannot make network namespaces here; None when they can."""
    if os.geteuid() != 0:
        return "network namespaces of the tests' own need root"
    if shutil.which("ip") is None:
        return "ip (iproute2) is not installed: scripts/install-test-deps.sh"
    return None


@contextlib.contextmanager
def netns(sysctls: dict[str, str], rules: tuple[tuple[str, ...], ...] = ()) -> Iterator[str]:
    """A network namespace of its own with its loopback up (127.0.0.1 and ::1),
    these sysctls (per namespace: ping_group_range, echo_ignore_all) and these
    iptables/ip6tables rules; yields its name, deletes it afterwards."""
    name = f"probed-test-{os.getpid()}-{next(_NAMESPACES)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        for key, value in sysctls.items():
            subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", f"{key}={value}"], check=True)
        for rule in rules:
            subprocess.run(["ip", "netns", "exec", name, *rule], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


_NAMESPACES = itertools.count()


def in_netns(name: str, work: Callable[[], T], user: int | None = None) -> T:
    """work() in a forked child that entered namespace `name` (and became
    uid/gid `user` with no groups and no capabilities, when given); its return
    value, or the child's traceback as an AssertionError."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: never back into pytest
        os.close(read)
        try:
            with open(f"/run/netns/{name}") as namespace:
                if ctypes.CDLL(None, use_errno=True).setns(namespace.fileno(), _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            if user is not None:
                os.setgroups([])
                os.setresgid(user, user, user)
                os.setresuid(user, user, user)  # drops every capability
            answer: tuple[bool, Any] = (True, work())
        except BaseException:
            answer = (False, traceback.format_exc())
        with os.fdopen(write, "wb") as out:
            pickle.dump(answer, out)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as given:
        data = given.read()
    os.waitpid(child, 0)
    ok, value = pickle.loads(data)
    if not ok:
        raise AssertionError(f"in namespace {name}:\n{value}")
    return cast(T, value)


def icmp_runs(options: dict[str, Any], runs: int = 1) -> tuple[list[Result], int]:
    """Run an icmp check `runs` times (created here, so in the caller's
    namespace and privileges): the results, and this process's ICMP sockets left."""
    from probed.runner import run_once

    async def go() -> list[Result]:
        check = check_from(options)
        try:
            return [await run_once(check) for _ in range(runs)]
        finally:
            await check.close()

    results = asyncio.run(go())
    return results, sockets_to(None, ICMP_TABLES)
