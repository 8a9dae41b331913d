#!/usr/bin/env bash
# A first look on built-in defaults: the shipped rules, templates and sample
# invoices, in a throw-away state directory; plans (sends nothing).
source "$(dirname "$0")/_env.sh"
AS_OF="${1:-2026-11-25}"
WORK="$(mktemp -d -t mahnwerk-demo.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mw() { mahnwerk --config "$ROOT/rules.yaml" --state-dir "$WORK/state" "$@"; }
echo "== mahnwerk check"
mw check
echo "== mahnwerk import samples (German and international form)"
mw import "$ROOT/samples/invoices-de.csv"
mw import "$ROOT/samples/invoices-en.csv"
echo "== mahnwerk plan --as-of $AS_OF"
mw plan --as-of "$AS_OF"
echo "== the mail one customer would get: mahnwerk preview C-2001 --as-of $AS_OF"
mw preview C-2001 --as-of "$AS_OF" || true
echo "== on a Saturday nothing goes out: mahnwerk plan --as-of 2026-11-28"
mw plan --as-of 2026-11-28
echo "== one invoice's thread: mahnwerk thread INV-2026-1187"
mw thread INV-2026-1187
