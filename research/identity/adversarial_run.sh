#!/usr/bin/env bash
# The identity study's adversarial fine-tune (research/identity/README.md):
# the long run's model, whose likelihood-only epochs washed out the shipped
# model's texture, trained on with the PatchGAN term of the shipped recipe
# (weight 1, two scales), on one core, for at most an hour. Rerunning the
# same command resumes (the run directory is runs/identity-adversarial).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f runs/identity-long/model.keras ] || bash research/identity/long_run.sh
taskset -c 1 cvae train --initial-model runs/identity-long/model.keras \
    --data ../shared/faces/utkface/train --data runs/celeba-train-aligned.npy \
    --validation-split 0.05 --epochs 3 --batch-size 32 --learning-rate 1e-4 \
    --warmup-steps 200 --time-limit 60 --seed 0 --no-tensorboard \
    --adversarial-weight 1.0 --adversarial-start-step 0 --discriminator-scales 2 \
    --out runs/identity-adversarial
