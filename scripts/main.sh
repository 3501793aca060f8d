#!/usr/bin/env bash
# Fresh machine: set up and run the main job on the embedded default configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/cfmimo train --out results/train "$@"
