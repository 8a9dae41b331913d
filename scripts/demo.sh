#!/usr/bin/env bash
# The README's first command: `mahnwerk demo`, eight simulated weeks on built-in defaults
# (the shipped rules, templates and sample invoices) with no external server: reminders go
# to an SMTP server on loopback, scripted customers' replies come from a local Maildir.
# Needs only python3 (>= 3.11): _env.sh makes .venv and installs mahnwerk on first use.
# Arguments go to `mahnwerk demo` (--weeks N, --dir DIR, --thread INVOICE).
source "$(dirname "$0")/_env.sh"
exec mahnwerk demo "$@"
