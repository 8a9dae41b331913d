#!/usr/bin/env bash
# Every test: lint, format check, types, then pytest. Installs what it needs.
source "$(dirname "$0")/_env.sh"
# The SMTP tests make a TLS certificate with the openssl command.
command -v openssl >/dev/null || apt_install openssl
# The IMAP tests run a real Dovecot on loopback (/usr/sbin is not on every user's PATH).
command -v dovecot >/dev/null || [ -x /usr/sbin/dovecot ] || apt_install dovecot-imapd
# systemd/mahnwerk.service is checked with systemd-analyze (verify, security).
command -v systemd-analyze >/dev/null || apt_install systemd
echo "== ruff check"; ruff check .
echo "== ruff format --check"; ruff format --check .
echo "== mypy"; mypy
echo "== pytest"; python -m pytest "$@"
