#!/usr/bin/env bash
# Runs a fairjax config on every host of a Cloud TPU VM pod slice, from this checkout.
#   launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [extra flags...]
# e.g. launch/tpu_pod.sh my-v5e-32 us-west4-a configs/default.py gs://my-bucket/runs/default
#
# FAIRJAX_DRY_RUN=1 launch/tpu_pod.sh ... prints the commands it would run (the copy to every worker, and
# the command each worker runs) and runs none of them.
set -euo pipefail
run() {
  if [[ "${FAIRJAX_DRY_RUN:-0}" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}
if [ $# -lt 4 ]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [extra flags...]" >&2
  exit 2
fi
tpu=$1 zone=$2 config=$3 workdir=$4
shift 4
root=$(cd "$(dirname "$0")/.." && pwd)
# The same code on every worker: copy this checkout (without its git history) to each of them.
run tar -C "$root" --exclude=.git -czf /tmp/fairjax_src.tgz .
run gcloud compute tpus tpu-vm scp /tmp/fairjax_src.tgz "$tpu":~/ --zone "$zone" --worker=all
# Each worker: unpack, install, and run the same command; JAX finds the other workers itself.
worker="set -e
  mkdir -p fairjax && tar -C fairjax -xzf fairjax_src.tgz
  cd fairjax && python3 -m pip install -q -e '.[tpu]'
  python3 -m fairjax.main --config=$config --workdir=$workdir $*"
run gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command "$worker"
