#!/bin/bash
# Checks the AVX-512 conv kernels for accumulator spills: for every block of FMAs in the
# disassembly of the layer benchmark, prints FMAs, zmm stores to the stack (must be 0),
# FMAs with a broadcast memory operand, and separate broadcasts.
cd "$(dirname "$0")/.."
cargo bench -p brats-kernels --bench layers --no-run 2>&1 | grep -E "^error" -A5
B=$(ls -t target/release/deps/layers-* | grep -v '\.d$' | head -1)
objdump -d --no-show-raw-insn $B > /tmp/all.s
for start in $(grep -n "^[0-9a-f]* <.*task_avx512" /tmp/all.s | cut -d: -f1); do
  awk -v s=$start 'NR>=s{print} NR>s && /^$/{exit}' /tmp/all.s > /tmp/t.s
  python3 - <<'PY'
lines=open('/tmp/t.s').read().splitlines()
fma=[i for i,l in enumerate(lines) if 'vfmadd231ps' in l]
blocks=[];s=p=None
for i in fma:
    if s is None: s=p=i; continue
    if i-p>12: blocks.append((s,p)); s=i
    p=i
if s is not None: blocks.append((s,p))
out=[]
for a,b in blocks:
    seg=lines[a:b+1]
    n=sum('vfmadd231ps' in l for l in seg); st=sum(('(%rsp)' in l and 'zmm' in l) for l in seg)
    mb=sum('1to16' in l for l in seg); bc=sum('vbroadcastss' in l for l in seg)
    out.append(f"fma{n}/stack{st}/membcast{mb}/bcast{bc}")
print(' '.join(out))
PY
done
