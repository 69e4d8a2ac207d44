#!/usr/bin/env bash
# The identity study's training candidates (research/identity/README.md):
# each fine-tunes the shipped model for the same wall-clock budget on one
# core, on the same data and seed, with one change. Rerunning resumes.
#
#   bash research/identity/train_candidates.sh [MINUTES]   (default 25)
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-25}
common=(--initial-model saved_models/cvae-faces.keras
        --data ../shared/faces/utkface/train --data runs/celeba-train-aligned.npy
        --validation-split 0.05 --epochs 3 --batch-size 32 --learning-rate 1e-4
        --warmup-steps 200 --time-limit "$minutes" --seed 0 --no-tensorboard)
[ -f runs/celeba-train-aligned.npy ] || \
    python scripts/align_dataset.py ../shared/faces/celeba_small -o runs/celeba-train-aligned.npy
taskset -c 1 cvae train "${common[@]}" --out runs/identity-control
taskset -c 1 cvae train "${common[@]}" --face-weight 2 --out runs/identity-face-weight-2
