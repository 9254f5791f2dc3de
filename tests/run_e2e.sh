#!/usr/bin/env bash
# Runs only the end-to-end scripts (tests/e2e/test_*.sh).
exec bash "$(dirname "$0")/run_all.sh" ""
