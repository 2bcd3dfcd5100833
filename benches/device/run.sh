#!/usr/bin/env bash
# One prepared run on a lent GPU (see benches/README.md): run from the checkout after ../shared/device/pack.sh,
# through `bash .device/remote.sh 'bash benches/device/run.sh'`. Writes everything under $OUT (or ./device-out)
# as it goes, so a run stopped at its time limit still returns what it measured; prints a summary last.
# PART=profile|memory|half|bench|torch|test|all (default all) runs one part; PROFILES (model:flags with @ for spaces),
# BENCH_FILTER and TESTS narrow the parts.
set -uo pipefail
# $OUT takes back at most 8 files: everything is written to a work folder and packed into one archive after
# each part.
final=${OUT:-./device-out}; out=/tmp/sitsgpu-device-out; mkdir -p "$out" "$final"
part=${PART:-all}
step() { echo "== $*"; tar czf "$final/results.tgz" -C "$out" . 2>/dev/null; }

if [ "$part" = all ] || [ "$part" = profile ]; then
  sitsgpu info > "$out/info.txt" 2>&1
  default_profiles='utae:--config@small@--train utae:--config@small utae:--config@paper@--train@--steps@2@--warmup@1
    utae:--config@paper@--steps@2@--warmup@1 pse_ltae:--train pse_ltae: pse_tae:--train pse_gru:--train
    pse_tempcnn:--train'
  for spec in ${PROFILES:-$default_profiles}; do
    spec=${spec//@/ }
    model=${spec%%:*}; flags=${spec#*:}
    tag=$(echo "$model $flags" | tr -cs 'a-z0-9' '_' | sed 's/_$//')
    step "profile $model $flags"
    timeout 120 sitsgpu profile --model $model $flags > "$out/profile_$tag.txt" 2>&1
    sed -n 1,3p "$out/profile_$tag.txt"
  done
  step "profile utae paper train, naga's runtime checks on (SITSGPU_TRUSTED_SHADERS=0)"
  SITSGPU_TRUSTED_SHADERS=0 timeout 120 sitsgpu profile --model utae --config paper --train --steps 2 --warmup 1 \
    > "$out/profile_checked_utae_paper_train.txt" 2>&1
  sed -n 3p "$out/profile_checked_utae_paper_train.txt"
  for every in ${SUBMIT_EVERY_LIST:-32 128}; do
    step "submission every $every launches"
    for cfg in small paper; do
      SITSGPU_SUBMIT_EVERY=$every timeout 120 sitsgpu profile --model utae --config $cfg --train --steps 3 --warmup 1 \
        > "$out/profile_submit${every}_utae_${cfg}_train.txt" 2>&1
      sed -n 3p "$out/profile_submit${every}_utae_${cfg}_train.txt"
    done
  done
fi
if [ "$part" = all ] || [ "$part" = memory ]; then
  # Issue "fit a consumer GPU": the paper shapes' peaks (pool live / held, JSON "memory"), training step and
  # evaluation forward, and PyTorch beside them when a checkout of VSainteuf/utae-paps was carried along
  # (UTAE_PAPS, default .device/utae-paps: copy it there, an ignored path, and name it in the run's `carry`).
  for mode in "--train" ""; do
    tag=$([ -n "$mode" ] && echo train || echo eval)
    step "memory: utae paper B 4 T 61 128² $tag"
    timeout 180 sitsgpu profile --model utae --config paper $mode --batch_size 4 --dates 61 --size 128 \
      --steps 1 --warmup 1 --json > "$out/memory_utae_b4t61_$tag.json" 2>&1
    grep -A4 '"memory"' "$out/memory_utae_b4t61_$tag.json" | tr -d ' \n'; echo
  done
  paps=${UTAE_PAPS:-.device/utae-paps}
  if [ -d "$paps/src" ]; then
    step "memory: PyTorch, same shapes, with and without the dummy forward"
    for nd in "" --no-dummy; do
      timeout 180 python3 benches/device/torch_memory.py --utae-paps "$paps" --model utae --batch 4 --dates 61 \
        --size 128 $nd 2>&1 | tail -1
    done | tee "$out/memory_torch_b4t61.jsonl"
    # U-TAE + PaPs at the same shapes; PSE + L-TAE (train.py's B 128, T 24, 64 pixels) when a checkout of
    # VSainteuf/lightweight-temporal-attention-pytorch was carried too (LTAE, default .device/ltae).
    ltae=${LTAE:-.device/ltae}
    models=utae,uconvlstm,buconvlstm,convlstm,convgru,fpn,unet3d,utae_paps
    ltae_args=()
    if [ -d "$ltae/models" ]; then models=$models,pse_ltae@128x24x64; ltae_args=(--ltae "$ltae"); fi
    step "memory: the table, every model, B 4 T 6 128² (PSE + L-TAE: B 128 T 24 S 64)"
    timeout 600 python3 benches/device/memory_table.py --sitsgpu sitsgpu --utae-paps "$paps" \
      ${ltae_args[@]+"${ltae_args[@]}"} --models "$models" --batch 4 --dates 6 --size 128 \
      > "$out/memory_table.md" 2>&1; cat "$out/memory_table.md"
  fi
fi
if [ "$part" = all ] || [ "$part" = half ]; then
  # Issue "faster than PyTorch at its best": --precision mixed's products on the cooperative-matrix path
  # (turned on here: SITSGPU_COOPERATIVE_MATRIX=1) beside the f16 tiles, fp32 and mixed steps beside
  # PyTorch strict / default / autocast on the issue's shapes (U-TAE paper B 4 T 40 128², no dummy forward).
  export SITSGPU_COOPERATIVE_MATRIX=1
  step "half: info (the product path and its self-test)"
  sitsgpu info > "$out/info_coop.txt" 2>&1; tail -5 "$out/info_coop.txt"
  step "half: unit tests of the products (every path the adapter has, against the CPU)"
  timeout 120 unit-lib-sitsgpu half_matmul > "$out/test_half_matmul.txt" 2>&1; echo "exit $?"
  grep -E "test result|FAILED|panicked|half-precision" "$out/test_half_matmul.txt" | head -5
  step "half: unit tests of the convolutions (unfolded onto every product path, against the CPU)"
  timeout 120 unit-lib-sitsgpu conv2d::mixed > "$out/test_conv2d_mixed.txt" 2>&1; echo "exit $?"
  grep -E "test result|FAILED|panicked" "$out/test_conv2d_mixed.txt" | head -5
  step "half: bench matmul_half (4096³ target: ≥ 100 TFLOP/s on the cooperative path)"
  SITSGPU_BENCH_QUICK=1 timeout 240 ops --bench matmul_half > "$out/bench_matmul_half.txt" 2>&1
  grep -E "^matmul_half|thrpt" "$out/bench_matmul_half.txt" | paste - - | sed -E 's/ +/ /g' | cut -c1-160
  step "half: bench conv2d_half (U-TAE's convolutions: fp32, rounded, unfolded onto f16 tiles / tensor cores)"
  SITSGPU_BENCH_QUICK=1 SITSGPU_BENCH_FRAMES=32 timeout 180 ops --bench conv2d_half > "$out/bench_conv2d_half.txt" 2>&1
  grep -E "^conv2d_half|thrpt" "$out/bench_conv2d_half.txt" | paste - - | sed -E 's/ +/ /g' | cut -c1-160
  # The convolutions unfolded into memory first, against the default (inside the cooperative tiles: the
  # mixed rows below; `info` says whether the device's check let it).
  sitsgpu info 2>&1 | grep -E "half-precision convolutions|disagree"
  for mode in "--train" ""; do
    tag=$([ -n "$mode" ] && echo train || echo eval)
    step "half: sitsgpu utae paper B 4 T 40 128² $tag mixed, SITSGPU_CONV_UNFOLDING=copy"
    SITSGPU_CONV_UNFOLDING=copy timeout 120 sitsgpu profile --model utae --config paper $mode \
      --batch_size 4 --dates 40 --size 128 --precision mixed --steps 3 --warmup 1 \
      > "$out/half_utae_b4t40_${tag}_mixed_copy.txt" 2>&1
    sed -n 2,4p "$out/half_utae_b4t40_${tag}_mixed_copy.txt"
  done
  for prec in fp32 mixed; do
    for mode in "--train" ""; do
      tag=$([ -n "$mode" ] && echo train || echo eval)
      step "half: sitsgpu utae paper B 4 T 40 128² $tag $prec"
      timeout 120 sitsgpu profile --model utae --config paper $mode --batch_size 4 --dates 40 --size 128 \
        --precision $prec --steps 3 --warmup 1 > "$out/half_utae_b4t40_${tag}_$prec.txt" 2>&1
      sed -n 2,4p "$out/half_utae_b4t40_${tag}_$prec.txt"
    done
    step "half: sitsgpu pse_ltae B 128 train $prec"
    timeout 120 sitsgpu profile --model pse_ltae --train --precision $prec --steps 3 --warmup 1 \
      > "$out/half_pse_ltae_train_$prec.txt" 2>&1; sed -n 3,4p "$out/half_pse_ltae_train_$prec.txt"
  done
  for prec in fp32 mixed; do
    step "half: bench pse, precision $prec (parcels/s; the issue's targets: train ≥ 13,447, inference ≥ 60,000)"
    SITSGPU_BENCH_PRECISION=$prec SITSGPU_BENCH_QUICK=1 timeout 150 pse --bench > "$out/bench_pse_$prec.txt" 2>&1
    grep -E "^pse|thrpt" "$out/bench_pse_$prec.txt" | paste - - | sed -E 's/ +/ /g' | cut -c1-160
  done
  step "half: mixed-precision model tests with the device's product path"
  timeout 180 mixed_precision > "$out/test_mixed_precision.txt" 2>&1; echo "exit $?"
  grep -E "test result|FAILED|panicked" "$out/test_mixed_precision.txt" | head -5
  paps=${UTAE_PAPS:-.device/utae-paps}
  if [ -d "$paps/src" ]; then
    step "half: PyTorch U-TAE B 4 T 40 128² (no dummy forward): strict, default, autocast fp16 / bf16"
    for flags in --strict "" "--amp fp16" "--amp bf16"; do
      timeout 180 python3 benches/device/torch_memory.py --utae-paps "$paps" --model utae --batch 4 --dates 40 \
        --size 128 --no-dummy --time 10 $flags 2>&1 | tail -1
    done | tee "$out/half_torch_utae_b4t40.jsonl"
  fi
  unset SITSGPU_COOPERATIVE_MATRIX
fi
if [ "$part" = all ] || [ "$part" = torch ]; then
  step "pytorch reference"
  timeout 120 python3 benches/device/torch_ref.py > "$out/torch_ref.jsonl" 2>&1; tail -3 "$out/torch_ref.jsonl"
fi
if [ "$part" = all ] || [ "$part" = bench ]; then
  step "ops benches (quick)"
  SITSGPU_BENCH_QUICK=1 timeout 240 ops --bench "${BENCH_FILTER:-}" > "$out/bench_ops.txt" 2>&1
  SITSGPU_BENCH_QUICK=1 timeout 120 utae --bench > "$out/bench_utae.txt" 2>&1
  cat "$out/bench_ops.txt" "$out/bench_utae.txt" | grep -E "^(matmul|conv2d|attention|adam|memory|utae)|thrpt" | paste - - | \
    sed -E 's/ +/ /g' | cut -c1-200 > "$out/bench_ops_summary.txt"
fi
if [ "$part" = all ] || [ "$part" = test ]; then
  for t in ${TESTS:-gpu_parity engine profile pytorch_parity}; do
    step "test $t"
    timeout 180 $t > "$out/test_$t.txt" 2>&1; echo "exit $?"; grep -E "test result|FAILED|panicked" "$out/test_$t.txt" | head -5
  done
  step "test gpu_parity with naga's runtime checks on"
  SITSGPU_TRUSTED_SHADERS=0 timeout 180 gpu_parity > "$out/test_gpu_parity_checked.txt" 2>&1; echo "exit $?"
  grep -E "test result|FAILED|panicked" "$out/test_gpu_parity_checked.txt" | head -5
fi
step "summary"
cp "$out/info.txt" "$final/" 2>/dev/null
for f in "$out"/profile_*.txt; do echo "$(basename "$f"): $(sed -n 3p "$f" | cut -c1-150)"; done
[ -f "$out/bench_ops_summary.txt" ] && cat "$out/bench_ops_summary.txt" | cut -c1-160
