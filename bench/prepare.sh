#!/usr/bin/env bash
# Installs what `just bench` measures with, when missing: nginx and wrk from Debian's
# packages, and the latest litellm[proxy] from PyPI in its own git-ignored venv.
# Nothing here is fatal: the bench falls back to a Python upstream / load generator
# and marks the LiteLLM rows as skipped.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.bench/litellm-venv"
uv="${UV:-$root/.tools/bin/uv}"

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ] || ! command -v wrk >/dev/null; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null && sudo_cmd="sudo -n"
  if command -v apt-get >/dev/null && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo_cmd" ]; }; then
    echo "==> installing nginx-light and wrk from Debian's packages (apt-get)" >&2
    if ! { $sudo_cmd apt-get update -qq && \
           DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq nginx-light wrk; } >/dev/null; then
      echo "==> apt-get failed: the bench falls back to its Python upstream and load generator" >&2
    fi
  else
    echo "==> nginx/wrk missing and apt-get unavailable (or not root):" \
         "the bench falls back to its Python upstream and load generator" >&2
  fi
fi

if [ ! -x "$venv/bin/litellm" ] || [ "${LITELLM_UPGRADE:-0}" = "1" ]; then
  echo "==> installing the latest litellm[proxy] from PyPI into .bench/litellm-venv" >&2
  mkdir -p "$root/.bench"
  if ! { [ -x "$venv/bin/python" ] || "$uv" venv -q "$venv" --python 3.11; } \
     || ! "$uv" pip install -q -U --python "$venv/bin/python" "litellm[proxy]"; then
    echo "==> could not install LiteLLM: its rows will be marked skipped" >&2
  fi
fi
if [ -x "$venv/bin/python" ]; then
  echo "==> LiteLLM $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null || echo '?') in .bench/litellm-venv (LITELLM_UPGRADE=1 to update)" >&2
fi
exit 0
