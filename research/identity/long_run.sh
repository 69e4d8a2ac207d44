#!/usr/bin/env bash
# The identity study's long run (research/identity/README.md): the
# face-weighted candidate trained on, on one core, for 10 epochs with a
# cosine schedule. Rerunning the same command resumes from the last finished
# epoch (the run directory is runs/identity-long).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f runs/identity-face-weight-2/model.keras ] || bash research/identity/train_candidates.sh 20
taskset -c 1 cvae train --initial-model runs/identity-face-weight-2/model.keras \
    --data ../shared/faces/utkface/train --data runs/celeba-train-aligned.npy \
    --validation-split 0.05 --epochs 10 --batch-size 32 --learning-rate 1e-4 \
    --lr-schedule cosine --warmup-steps 200 --seed 0 --no-tensorboard \
    --out runs/identity-long
