#!/usr/bin/env bash
# Install the system binaries the test suite runs for real, when missing:
#   promtool (Debian package prometheus) lints the /metrics exposition;
#   initdb, pg_ctl, pg_basebackup, psql (postgresql) and redis-server start
#   throwaway servers on free ports for the postgres and redis checks;
#   prometheus and haproxy are the real clients of the integration tests;
#   nats-server and mosquitto (with mosquitto_passwd) are the brokers of the
#   nats and mqtt checks' tests; podman with runc builds and runs the
#   container image, and debootstrap makes its stand-in base image;
#   dnsmasq answers the dns check's tests and the peer name of the fleet
#   tests on a port of its own (run by the tests with --no-resolv --no-hosts,
#   never as a service);
#   chromium renders the status page in the browser tests (driven by Playwright's
#   Python package pointed at /usr/bin/chromium: no browser download);
#   the Nagios plugins (monitoring-plugins-basic: check_tcp, check_disk,
#   check_http...) are what the command check's tests run;
#   mariadbd and rabbitmq-server are the throwaway servers of the mysql and
#   amqp checks (started by the tests as their own nodes, never the services);
#   slapd with slapadd (slapd), sshd (openssh-server) with ssh-keygen
#   (openssh-client) and memcached are the throwaway servers of the ldap, ssh
#   and memcached checks: each with a config and data of the test's own, on a
#   free port, never the system's configuration or service;
#   ip (iproute2) and iptables make the icmp check's network namespaces (their
#   own loopback, sysctls and a rule that drops every second echo request),
#   never touching the host's own network or firewall.
set -euo pipefail

packages=()
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || packages+=(postgresql)
command -v psql >/dev/null 2>&1 || packages+=(postgresql-client)
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
command -v haproxy >/dev/null 2>&1 || packages+=(haproxy)
[ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1 || packages+=(nats-server)
command -v mosquitto_passwd >/dev/null 2>&1 || packages+=(mosquitto)
command -v podman >/dev/null 2>&1 || packages+=(podman slirp4netns uidmap fuse-overlayfs)
command -v runc >/dev/null 2>&1 || packages+=(runc)
command -v debootstrap >/dev/null 2>&1 || packages+=(debootstrap)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || packages+=(dnsmasq-base)
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
[ -x /usr/lib/nagios/plugins/check_tcp ] || packages+=(monitoring-plugins-basic)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || packages+=(mariadb-server)
compgen -G "/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server" >/dev/null || packages+=(rabbitmq-server)
[ -x /usr/sbin/slapadd ] || packages+=(slapd)
[ -x /usr/sbin/sshd ] || packages+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || packages+=(openssh-client)
command -v openssl >/dev/null 2>&1 || packages+=(openssl)  # hashes the sshd test user's password
command -v memcached >/dev/null 2>&1 || packages+=(memcached)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || packages+=(iproute2)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || packages+=(iptables)

if ((${#packages[@]} == 0)); then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "installing test dependencies: ${packages[*]}"
# A policy-rc.d that says "no" keeps the packages' own services from starting:
# the tests start throwaway servers of their own and leave shared ones alone.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    trap '$sudo rm -f "$policy"' EXIT
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
