#!/usr/bin/env bash
# The identity study's adversarial fine-tunes (research/identity/README.md):
# the long run's model, whose likelihood-only epochs washed out the shipped
# model's texture, trained on with the PatchGAN term of the shipped recipe
# (two scales) at a given weight, on one core, for a given time. Rerunning
# the same command resumes.
#
#   bash research/identity/adversarial_run.sh [WEIGHT] [MINUTES]
#   1.0 and 60 (the default): runs/identity-adversarial; else
#   runs/identity-adversarial-wWEIGHT
set -euo pipefail
cd "$(dirname "$0")/../.."
weight=${1:-1.0} minutes=${2:-60}
out=runs/identity-adversarial
[ "$weight" = "1.0" ] || out=runs/identity-adversarial-w$weight
[ -f runs/identity-long/model.keras ] || bash research/identity/long_run.sh
taskset -c 1 cvae train --initial-model runs/identity-long/model.keras \
    --data ../shared/faces/utkface/train --data runs/celeba-train-aligned.npy \
    --validation-split 0.05 --epochs 3 --batch-size 32 --learning-rate 1e-4 \
    --warmup-steps 200 --time-limit "$minutes" --seed 0 --no-tensorboard \
    --adversarial-weight "$weight" --adversarial-start-step 0 --discriminator-scales 2 \
    --out "$out"
