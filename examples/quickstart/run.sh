#!/usr/bin/env bash
# The quickstart through the control plane: `llmos up`, then four jobs with `llmos submit --wait`.
set -euo pipefail
cd "$(dirname "$0")"
export LLMOS_HOME="${LLMOS_HOME:-/tmp/llmos-quickstart-cp}"
llmos up --port 0 > "$LLMOS_HOME.up.log" 2>&1 &
UP=$!
trap 'kill $UP' EXIT
for _ in $(seq 100); do [ -f "$LLMOS_HOME/config" ] && break; sleep 0.2; done
llmos submit pretrain.yaml --wait
llmos submit eval-before.yaml --wait
llmos submit finetune.yaml --wait
llmos submit eval-after.yaml --wait
llmos models
llmos model show small-pre
llmos model show adder
