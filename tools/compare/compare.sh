#!/usr/bin/env bash
# Side-by-side: brats-seg vs OpenVINO (and ONNX Runtime) on the same synthetic network
# and input, in one session, rounds alternating so machine noise hits every engine.
#
#   tools/compare/compare.sh                         # 3 rounds x 3 runs, 128^3, 2 threads
#   tools/compare/compare.sh --rounds 2 --runs 2 --no-ort
#   tools/compare/compare.sh --no-bench              # only the output agreement
#
# Each round: `brats-seg bench --synthetic`, then run_peer.py --engine openvino, then
# --engine onnxruntime; each invocation loads, warms up once and times --runs passes.
# `uptime` is recorded before the first round, after every round and at the end.
# Then the output check: `brats-seg infer --synthetic` and the peers on the same 128^3
# synth_input .npy, max |diff| of the softmax. Results in out/session-<UTC time>/,
# table printed by summarize.py (also written to summary.txt / summary.json there).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
ROUNDS=3 RUNS=3 SIZE=128 THREADS=2 SEED=1
ORT=1 AGREE=1 BENCH=1 BUILD=1 KEEP=0 QUIET=60 QUIET_ROUNDS=0 MAPPED=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --size) SIZE="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --no-ort) ORT=0; shift ;;
    --no-agree) AGREE=0; shift ;;
    --no-bench) BENCH=0; shift ;;
    --no-build) BUILD=0; shift ;;
    --keep-outputs) KEEP=1; shift ;;
    --quiet-wait) QUIET="$2"; shift 2 ;;
    --quiet-rounds) QUIET_ROUNDS="$2"; shift 2 ;;
    --mapped) MAPPED=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; echo "options: --rounds N --runs N --size S --threads T --no-ort --no-agree --no-bench --no-build --keep-outputs --quiet-wait SECONDS (0: never wait) --quiet-rounds N (stop once N rounds were quiet for every engine; --rounds is then the upper bound) --mapped (brats-seg reads a weight file written by synth-weights, memory-mapped, instead of --synthetic)"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

PY="$HERE/.venv/bin/python"
BIN="$ROOT/target/release/brats-seg"

# 1. environment: the venv (pinned), the Rust binary, the ONNX model, the input.
if [ ! -x "$PY" ]; then
  echo "== creating $HERE/.venv from requirements.txt"
  python3.11 -m venv "$HERE/.venv"
  "$HERE/.venv/bin/pip" install -q -r "$HERE/requirements.txt"
fi
if [ "$BUILD" = 1 ]; then
  echo "== cargo build --release"
  if ! (cd "$ROOT" && cargo build --release -q 2>&1 | tail -20); then
    [ -x "$BIN" ] || { echo "cargo build failed and there is no $BIN" >&2; exit 1; }
    echo "WARNING: cargo build failed; using the existing $BIN" >&2
  fi
fi
[ -x "$BIN" ] || { echo "no $BIN (run cargo build --release)" >&2; exit 1; }
"$PY" "$HERE/build_onnx.py" --size "$SIZE" --seed "$SEED" >/dev/null
INPUT="$("$PY" -c "import sys; sys.path.insert(0, '$HERE'); import run_peer; print(run_peer.ensure_input($SIZE, $SEED))")"

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
D="$HERE/out/session-$STAMP"
mkdir -p "$D"
# Snapshot the binary: others rebuild target/release in the same tree, and a session
# must time one build throughout (a rebuild mid-session once changed our figures).
cp "$BIN" "$D/brats-seg"
BIN_MTIME="$(date -u -r "$BIN" +%Y-%m-%dT%H:%M:%SZ)"
BIN="$D/brats-seg"
BIN_SHA="$(sha256sum "$BIN" | cut -c1-16)"
# How brats-seg gets its weights: generated in memory (--synthetic), or --mapped: the same
# synthetic weights written once by `brats-seg synth-weights` and memory-mapped by the engine.
WEIGHTS=(--synthetic --seed "$SEED")
if [ "$MAPPED" = 1 ]; then
  WFILE="$HERE/out/synthetic-seed$SEED.bsw"
  "$BIN" synth-weights --seed "$SEED" -o "$D/weights.tmp" > /dev/null
  if [ ! -f "$WFILE" ] || ! cmp -s "$D/weights.tmp" "$WFILE"; then mv "$D/weights.tmp" "$WFILE"; else rm -f "$D/weights.tmp"; fi
  WEIGHTS=(--weights "$WFILE")
fi
COMMIT="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
DIRTY=false
[ -n "$(cd "$ROOT" && git status --porcelain -- crates src Cargo.toml Cargo.lock 2>/dev/null)" ] && DIRTY=true
printf '{"started": "%s", "size": %s, "threads": %s, "rounds": %s, "runs": %s, "seed": %s, "commit": "%s", "dirty": %s, "binary_mtime": "%s", "binary_sha256_16": "%s", "nproc": %s, "quiet_wait_max_s": %s, "weights": "%s"}\n' \
  "$STAMP" "$SIZE" "$THREADS" "$ROUNDS" "$RUNS" "$SEED" "$COMMIT" "$DIRTY" \
  "$BIN_MTIME" "$BIN_SHA" "$(nproc)" "$QUIET" "${WEIGHTS[*]}" > "$D/meta.json"

up() {  # record the load average
  printf '{"when": "%s", "uptime": "%s"}\n' "$1" "$(uptime | sed 's/^ *//')" >> "$D/uptime.jsonl"
}
record() {  # record ROUND ENGINE LOGFILE: wrap the log's last line (the JSON) into rounds.jsonl
  local json
  json="$(tail -n 1 "$3")"
  case "$json" in \{*) ;; *) echo "no JSON from $2 in round $1, see $3" >&2; return 1 ;; esac
  local proc=null mach=null
  [ -f "$D/r$1-$2.time" ] && proc="$(tail -n 1 "$D/r$1-$2.time")"
  [ -f "$D/r$1-$2.machine" ] && mach="$(cat "$D/r$1-$2.machine")"
  printf '{"round": %s, "engine": "%s", "result": %s, "process": %s, "machine": %s}\n' \
    "$1" "$2" "$json" "$proc" "$mach" >> "$D/rounds.jsonl"
  "$PY" "$HERE/summarize.py" --line "$2" "$json" "$proc" "$mach"
}

HZ="$(getconf CLK_TCK)"
NPROC="$(nproc)"
busy_s() {  # CPU seconds the whole machine has spent busy since boot (all cores, /proc/stat)
  awk -v hz="$HZ" '/^cpu /{printf "%.2f\n", ($2+$3+$4+$7+$8+$9)/hz; exit}' /proc/stat
}
wait_quiet() {  # wait (at most $QUIET s) until the machine was < 15 % busy over 2 s; prints "WAITED FRAC"
  local t0=$SECONDS b0 b1 frac
  while :; do
    b0="$(busy_s)"; sleep 2; b1="$(busy_s)"
    frac="$(awk -v a="$b0" -v b="$b1" -v n="$NPROC" 'BEGIN{printf "%.3f", (b-a)/(2*n)}')"
    if awk -v f="$frac" 'BEGIN{exit !(f < 0.15)}' || [ $((SECONDS - t0)) -ge "$QUIET" ]; then break; fi
  done
  echo "$((SECONDS - t0)) $frac"
}
tm() {  # tm ROUND ENGINE CMD...: run CMD under /usr/bin/time (whole process: user, sys, wall, max RSS),
        # and the machine's busy CPU seconds over the same span (to tell how much was someone else's)
  local r="$1" e="$2" q=(0 null) b0 b1; shift 2
  [ "$QUIET" -gt 0 ] && q=($(wait_quiet))
  b0="$(busy_s)"
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -o "$D/r$r-$e.time" -f '{"user_s": %U, "sys_s": %S, "wall_s": %e, "maxrss_kb": %M}' "$@"
  else
    "$@"
  fi
  b1="$(busy_s)"
  printf '{"machine_busy_s": %s, "nproc": %s, "quiet_waited_s": %s, "busy_frac_before": %s}\n' \
    "$(awk -v a="$b0" -v b="$b1" 'BEGIN{printf "%.2f", b-a}')" "$NPROC" "${q[0]}" "${q[1]}" > "$D/r$r-$e.machine"
}

# 2. the timing rounds
if [ "$BENCH" = 1 ]; then
  up "before round 1"
  for r in $(seq 1 "$ROUNDS"); do
    echo "== round $r/$ROUNDS  ($(uptime | sed 's/.*load average/load average/'))"
    tm "$r" ours "$BIN" bench "${WEIGHTS[@]}" --size "$SIZE" --runs "$RUNS" --threads "$THREADS" --json \
      > "$D/r$r-ours.log" 2>&1
    record "$r" ours "$D/r$r-ours.log"
    tm "$r" openvino "$PY" "$HERE/run_peer.py" --engine openvino --size "$SIZE" --seed "$SEED" --runs "$RUNS" \
      --threads "$THREADS" --input "$INPUT" --json > "$D/r$r-openvino.log" 2>&1
    record "$r" openvino "$D/r$r-openvino.log"
    if [ "$ORT" = 1 ]; then
      tm "$r" onnxruntime "$PY" "$HERE/run_peer.py" --engine onnxruntime --size "$SIZE" --seed "$SEED" --runs "$RUNS" \
        --threads "$THREADS" --input "$INPUT" --json > "$D/r$r-onnxruntime.log" 2>&1
      record "$r" onnxruntime "$D/r$r-onnxruntime.log"
    fi
    up "after round $r"
    if [ "$QUIET_ROUNDS" -gt 0 ]; then
      if "$PY" "$HERE/summarize.py" --round-quiet "$D" "$r"; then
        NQ=$((${NQ:-0} + 1)); echo "   (round $r was quiet for every engine: $NQ of $QUIET_ROUNDS)"
      fi
      [ "${NQ:-0}" -ge "$QUIET_ROUNDS" ] && break
    fi
  done
fi

# 3. output agreement on the same input
if [ "$AGREE" = 1 ]; then
  echo "== output agreement at ${SIZE}^3"
  "$BIN" infer "${WEIGHTS[@]}" --threads "$THREADS" --input "$INPUT" --output "$D/out-ours.npy" \
    > "$D/infer-ours.log" 2>&1
  "$PY" "$HERE/run_peer.py" --engine openvino --size "$SIZE" --seed "$SEED" --runs 0 --threads "$THREADS" \
    --input "$INPUT" --save-output "$D/out-openvino.npy" > "$D/infer-openvino.log" 2>&1
  PAIRS=("ours openvino")
  if [ "$ORT" = 1 ]; then
    "$PY" "$HERE/run_peer.py" --engine onnxruntime --size "$SIZE" --seed "$SEED" --runs 0 --threads "$THREADS" \
      --input "$INPUT" --save-output "$D/out-onnxruntime.npy" > "$D/infer-onnxruntime.log" 2>&1
    PAIRS+=("ours onnxruntime" "openvino onnxruntime")
  fi
  # the float64 reference, when tools/reference has made it for this size (seed 1 only)
  REF64="$ROOT/tools/reference/out/$SIZE/softmax.npy"
  REFIN="$ROOT/tools/reference/out/$SIZE/input.npy"
  if [ "$SEED" = 1 ] && [ -f "$REF64" ] && [ -f "$REFIN" ] && "$PY" -c "import numpy as np, sys; \
      sys.exit(0 if np.array_equal(np.load('$REFIN'), np.load('$INPUT')) else 1)"; then
    ln -sf "$REF64" "$D/out-float64.npy"
    PAIRS=("float64 ours" "float64 openvino" "${PAIRS[@]}")
    [ "$ORT" = 1 ] && PAIRS+=("float64 onnxruntime")
  fi
  for p in "${PAIRS[@]}"; do
    set -- $p
    "$PY" "$HERE/agree.py" "$D/out-$1.npy" "$D/out-$2.npy" --pair "$1 vs $2" \
      --input "synth_input(seed $SEED)" >> "$D/agree.jsonl"
  done
  [ "$KEEP" = 1 ] || rm -f "$D"/out-*.npy
fi
[ "$KEEP" = 1 ] || rm -f "$D/brats-seg"
up "end"

echo
"$PY" "$HERE/summarize.py" "$D"
echo
echo "logs and JSON: $D"
