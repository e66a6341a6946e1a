"""No bind password, ssh password or key passphrase in any output of probed check or probed serve,
against real slapd, sshd and memcached, with wrong and right secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from probed.report import FORMATS
from tests.support.net import free_port
from tests.support.probed import run_probed, serving
from tests.support.servers import PASSWORD
from tests.support.servers.memcached import MemcachedServer
from tests.support.servers.slapd import LDAP_USER, SlapdServer
from tests.support.servers.sshd import KEY_PASSPHRASE, SSH_USER, SshdServer

pytest.importorskip("asyncssh", reason="the ssh extra is not installed: pip install 'probed[ssh]'")

WRONG = "Wr0ng-s3cret-value"
SECRETS = [PASSWORD, KEY_PASSPHRASE, WRONG]


@pytest.fixture
def servers(
    slapd: SlapdServer, sshd: SshdServer, memcached_with_login: MemcachedServer
) -> tuple[SlapdServer, SshdServer, MemcachedServer]:
    """The three servers, each with the user `probe` who logs in with PASSWORD."""
    return slapd, sshd, memcached_with_login


def config(tmp_path: Path, servers: tuple[SlapdServer, SshdServer, MemcachedServer], port: int) -> str:
    slapd, sshd, memcached = servers
    secret_file = tmp_path / "password"
    secret_file.write_text(PASSWORD + "\n")
    ssh = {"type": "ssh", "host": "127.0.0.1", "port": sshd.port, "username": SSH_USER}
    known = {"known_hosts": str(sshd.known_hosts())}
    checks = {
        "ldap-ok": {"type": "ldap", "url": f"ldap://127.0.0.1:{slapd.port}", "username": LDAP_USER,
                    "password_file": str(secret_file)},
        "ldap-wrong": {"type": "ldap", "url": f"ldap://127.0.0.1:{slapd.port}", "username": LDAP_USER,
                       "password": WRONG},
        "ssh-ok": {**ssh, **known, "password_file": str(secret_file), "command": "echo fine"},
        "ssh-echo": {**ssh, **known, "password": PASSWORD, "command": f"printf 'said %s' '{PASSWORD}'; exit 2"},
        "ssh-wrong": {**ssh, **known, "password": WRONG},
        "ssh-untrusted": {**ssh, "known_hosts": str(sshd.known_hosts(sshd.other_key)), "password": PASSWORD},
        "ssh-key": {**ssh, **known, "key_file": str(sshd.encrypted_user_key), "passphrase": KEY_PASSPHRASE},
        "ssh-key-wrong": {**ssh, **known, "key_file": str(sshd.encrypted_user_key), "passphrase": WRONG},
        "memcached-ok": {"type": "memcached", "host": "127.0.0.1", "port": memcached.port, "username": "probe",
                         "password": PASSWORD, "write_test": True},
        "memcached-wrong": {"type": "memcached", "host": "127.0.0.1", "port": memcached.port, "username": "probe",
                            "password": WRONG},
    }  # fmt: skip
    path = tmp_path / "probed.yaml"
    document = {"server": {"listen": f"127.0.0.1:{port}"}, "defaults": {"interval": "4s", "timeout": "3s"}}
    path.write_text(yaml.safe_dump({**document, "checks": checks}))
    return str(path)


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked in {where}"


def test_no_secret_in_check_outputs(tmp_path: Path, servers: tuple[SlapdServer, SshdServer, MemcachedServer]) -> None:
    path = config(tmp_path, servers, free_port())
    for output in FORMATS:
        done = run_probed("check", "--config", path, "--output", output)
        assert done.returncode == 1, done.stderr
        assert_no_secret(f"probed check -o {output}", done.stdout + done.stderr)
    report = json.loads(run_probed("check", "--config", path, "--output", "json").stdout)
    statuses = {name: runs[0]["status"] for name, runs in report["checks"].items()}
    assert statuses == {
        "ldap-ok": "pass",
        "ldap-wrong": "fail",
        "ssh-ok": "pass",
        "ssh-echo": "fail",
        "ssh-wrong": "fail",
        "ssh-untrusted": "fail",
        "ssh-key": "pass",
        "ssh-key-wrong": "fail",
        "memcached-ok": "pass",
        "memcached-wrong": "fail",
    }, report
    assert report["checks"]["ssh-echo"][0]["output"] == "said ***"  # the server echoing a secret: masked


def test_no_secret_in_serve_answers_metrics_or_logs(
    tmp_path: Path, servers: tuple[SlapdServer, SshdServer, MemcachedServer]
) -> None:
    path = config(tmp_path, servers, free_port())
    with serving(path, "--log-level", "debug", until="ran") as served:
        assert served.get("/health")[0] == 503  # the failures are really there
        answers = served.answers()
        assert "probed_ldap_bind_seconds" in answers["/metrics"]
        for where, text in answers.items():
            assert_no_secret(where, text)
    assert_no_secret("serve logs", served.out + served.err)
