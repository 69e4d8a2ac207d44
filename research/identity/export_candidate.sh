#!/usr/bin/env bash
# A study run's chosen state made into a complete model, as the shipped one
# is made (saved_models/README.md): exported with its LiteRT files, given a
# second stage, a codec table and an anomaly threshold. One core.
#
#   bash research/identity/export_candidate.sh RUN_DIR CHECKPOINT OUT_DIR
#   e.g. runs/identity-adversarial 1 runs/identity-adversarial-export
set -euo pipefail
cd "$(dirname "$0")/../.."
run=$1 checkpoint=$2 out=$3
mkdir -p "$out"
taskset -c 1 cvae export "$run" --checkpoint "$checkpoint" -o "$out/first-stage.keras" --force
taskset -c 1 cvae second-stage --model "$out/first-stage.keras" \
    --data ../shared/faces/utkface/train --data runs/celeba-train-aligned.npy \
    -o "$out/cvae-faces.keras" --force
taskset -c 1 cvae calibrate --model "$out/cvae-faces.keras" --data ../shared/faces/utkface/train --force
taskset -c 1 cvae calibrate-score --model "$out/cvae-faces.keras" \
    --data ../shared/faces/utkface/train --force
