#!/usr/bin/env bash
# The whole dcue pipeline on the built-in synthetic dataset (`dcue synth`), ending with the
# paper's two result tables. Every step's output is cached in $OUT: a rerun redoes only the
# steps whose inputs changed (delete a file to redo its step). Uses the GPU when there is one.
#
#   bash examples/demo.sh                 # or: make demo
#   OUT=/tmp/demo SONGS=2000 bash examples/demo.sh
set -euo pipefail

OUT=${OUT:-demo-out}
SONGS=${SONGS:-1000}
USERS=${USERS:-2000}
CLIP_SECONDS=${CLIP_SECONDS:-10}
SEED=${SEED:-0}
# Training budgets, a few minutes each on 2 CPU cores. DCUE trains with `dcue train`'s defaults:
# song-grouped batches (32 listeners share each song's crop: the audio network, the whole cost,
# sees 2048 pairs through 84 crops a step), AdamW with a cosine schedule, 12 x 100 steps; on a GPU
# add --stem-channels 16,16, and raise --epochs and --steps-per-epoch only with more songs (twice the
# steps overfit these 700: docs/results.md). The paper's own recipe (--preset paper: batches of 10
# pairs, 20 negatives each, SGD) gets a budget of about as many crops through the network.
TRAIN_ARGS=${TRAIN_ARGS:-}
PAPER_ARGS=${PAPER_ARGS:---epochs 3 --steps-per-epoch 100}
# WMF+Regression keeps the recipe it was measured with (batches of 128 crops, SGD).
REGRESS_ARGS=${REGRESS_ARGS:---steps-per-epoch 30 --epochs 30 --batch-size 128 --optimizer sgd --lr 0.05 --schedule keras --plateau-factor 0.2 --weight-decay 0}
# DCUE with the artist beside the audio (--artists): the recipe above for half the epochs, to keep
# the demo's time (the same-recipe comparison is in docs/results.md); empty: the same recipe.
ARTIST_ARGS=${ARTIST_ARGS---epochs 6}
DCUE=${DCUE:-dcue}

mkdir -p "$OUT"
log() { printf '\n== %s\n' "$*" >&2; }
have() { $DCUE "$1" --help >/dev/null 2>&1; }
# fresh OUTPUT INPUT...: true when OUTPUT exists and is newer than every INPUT.
fresh() {
  local out=$1; shift
  [ -e "$out" ] || return 1
  for input in "$@"; do [ "$input" -nt "$out" ] && return 1; done
  return 0
}

data=$OUT/data
log "1. synth: a miniature Million Song Dataset ($SONGS songs x ${CLIP_SECONDS}s, $USERS users)"
if fresh "$data/truth.h5" "$0"; then echo "cached: $data" >&2; else
  $DCUE synth "$data" --songs "$SONGS" --users "$USERS" --seconds "$CLIP_SECONDS" --seed "$SEED" --overwrite
fi

if have melspec; then
  log "2. melspec: audio -> log-mel HDF5 (keyed by song id through unique_tracks.txt)"
  if fresh "$OUT/mels.h5" "$data/truth.h5"; then echo "cached: $OUT/mels.h5" >&2; else
    $DCUE melspec "$data/audio" --id-map "$data/unique_tracks.txt" -o "$OUT/mels.h5" --overwrite
  fi
  songs_with=(--songs-with "$OUT/mels.h5")
else
  songs_with=()
fi

log "3. subset: songs and users, split 70/10/20 by song (test songs are cold)"
if fresh "$OUT/subset/splits.tsv" "$data/train_triplets.txt" ${songs_with[1]:-}; then echo "cached: $OUT/subset" >&2; else
  $DCUE subset "$data/train_triplets.txt" -o "$OUT/subset" --songs 0 --users 0 --seed "$SEED" "${songs_with[@]}"
fi
plays=$OUT/subset/plays.tsv
splits=$OUT/subset/splits.tsv

models=()
if have wmf; then
  log "4. wmf: WMF on all songs (the paper's upper bound) and on train songs (regression targets)"
  fresh "$OUT/wmf.h5" "$plays" || $DCUE wmf "$plays" --splits "$splits" --fit-on all -o "$OUT/wmf.h5" --seed "$SEED"
  fresh "$OUT/wmf_train.h5" "$plays" || $DCUE wmf "$plays" --splits "$splits" --fit-on train -o "$OUT/wmf_train.h5" --seed "$SEED"
fi

read -r -a train_args <<<"$TRAIN_ARGS"
read -r -a regress_args <<<"$REGRESS_ARGS"
read -r -a paper_args <<<"$PAPER_ARGS"
read -r -a artist_args <<<"$ARTIST_ARGS"
if have train && have embed && [ -e "$OUT/mels.h5" ]; then
  log "5. train: WMF+Regression (audio -> WMF item factors)"
  fresh "$OUT/regress.pt" "$OUT/mels.h5" "$OUT/wmf_train.h5" || \
    $DCUE train "$OUT/mels.h5" "$plays" --splits "$splits" --objective regress --target "$OUT/wmf_train.h5" \
      -o "$OUT/regress.pt" --seed "$SEED" "${regress_args[@]}"
  log "6. train: the deep content-user embedding model (hinge loss, cosine relevance)"
  fresh "$OUT/dcue.pt" "$OUT/mels.h5" "$plays" || \
    $DCUE train "$OUT/mels.h5" "$plays" --splits "$splits" -o "$OUT/dcue.pt" --seed "$SEED" "${train_args[@]}"
  log "6b. train: the same model with the paper's recipe (--preset paper)"
  fresh "$OUT/dcue_paper.pt" "$OUT/mels.h5" "$plays" || \
    $DCUE train "$OUT/mels.h5" "$plays" --splits "$splits" -o "$OUT/dcue_paper.pt" --seed "$SEED" --preset paper \
      "${paper_args[@]}"
  log "6c. train: DCUE with the artist (the item tower adds the song's artist to what it hears)"
  fresh "$OUT/dcue_artist.pt" "$OUT/mels.h5" "$plays" "$data/unique_tracks.txt" || \
    $DCUE train "$OUT/mels.h5" "$plays" --splits "$splits" -o "$OUT/dcue_artist.pt" --seed "$SEED" \
      --artists "$data/unique_tracks.txt" "${train_args[@]}" "${artist_args[@]}"
  log "7. embed: item vectors for every song from its audio (cold songs included)"
  fresh "$OUT/wmf_regression.h5" "$OUT/regress.pt" || $DCUE embed "$OUT/regress.pt" "$OUT/mels.h5" -o "$OUT/wmf_regression.h5"
  fresh "$OUT/dcue.h5" "$OUT/dcue.pt" || $DCUE embed "$OUT/dcue.pt" "$OUT/mels.h5" -o "$OUT/dcue.h5"
  fresh "$OUT/dcue_paper.h5" "$OUT/dcue_paper.pt" || $DCUE embed "$OUT/dcue_paper.pt" "$OUT/mels.h5" -o "$OUT/dcue_paper.h5"
  fresh "$OUT/dcue_artist.h5" "$OUT/dcue_artist.pt" || \
    $DCUE embed "$OUT/dcue_artist.pt" "$OUT/mels.h5" --artists "$data/unique_tracks.txt" -o "$OUT/dcue_artist.h5"
  models+=("$OUT/dcue.h5" "$OUT/dcue_paper.h5" "$OUT/wmf_regression.h5")
  if have refit; then
    log "7a. refit: DCUE's users fitted again on its fixed item vectors (top-k directions, logistic)"
    fresh "$OUT/dcue_refit.h5" "$OUT/dcue.h5" "$plays" || \
      $DCUE refit "$OUT/dcue.h5" "$plays" --splits "$splits" -o "$OUT/dcue_refit.h5"
    models+=("$OUT/dcue_refit.h5")
  fi
fi
[ -e "$OUT/wmf.h5" ] && models+=("$OUT/wmf.h5")
# The reachable ceiling: every song's true style, each user's taste fitted to their training
# plays (benchmarks/reachable_ceiling.py): the reference of E_fit.
ceiling=$(dirname "$0")/../benchmarks/reachable_ceiling.py
if [ ${#models[@]} -gt 0 ] && [ -e "$ceiling" ]; then
  log "7b. the reachable ceiling: true styles, tastes fitted to the training plays"
  fresh "$OUT/fitted_ceiling.h5" "$data/truth.h5" "$plays" || \
    python "$ceiling" "$data/truth.h5" "$plays" "$splits" -o "$OUT/fitted_ceiling.h5" >&2
fi
reference=("$data/truth.h5")
[ -e "$OUT/fitted_ceiling.h5" ] && reference+=("$OUT/fitted_ceiling.h5")

if have score && [ ${#models[@]} -gt 0 ]; then
  log "8. score: cold-start recommendation on the test songs (the paper's Table 1)"
  plot=()  # the per-user AUC distributions and ROC curves, where matplotlib is installed
  python -c 'import matplotlib' 2>/dev/null && plot=(--plot "$OUT/recommendation.png")
  $DCUE score "${models[@]}" "${reference[@]}" --popularity --plays "$plays" --splits "$splits" \
    --paper --json "${plot[@]}" > "$OUT/recommendation.json"
  echo "(truth.h5: the content ceiling, the generator's own style and tastes; WMF saw the test songs: an upper bound)" >&2
  efficiency=$(dirname "$0")/../benchmarks/cold_start_efficiency.py  # E and G of each model
  if [ -e "$efficiency" ]; then python "$efficiency" "$OUT/recommendation.json" >&2; fi
fi
if have score && [ -e "$OUT/dcue_artist.h5" ]; then
  log "8b. score: semi-cold test songs (their artist has training songs) and fully cold ones, apart"
  $DCUE score "$OUT/dcue.h5" "$OUT/dcue_artist.h5" "$OUT/wmf_regression.h5" "$OUT/wmf.h5" --popularity \
    --plays "$plays" --splits "$splits" --artists "$data/unique_tracks.txt" --artist-mean "$OUT/wmf_train.h5" \
    --against "$OUT/dcue.h5" --json > "$OUT/artists.json"
fi
if have autotag && [ ${#models[@]} -gt 0 ]; then
  log "9. autotag: the 50 most used tags from each model's item vectors (the paper's Table 2)"
  $DCUE autotag "${models[@]}" "$data/tags.tsv" --splits "$splits" --json > "$OUT/autotagging.json"
fi

log "outputs in $OUT/"
ls -1 "$OUT" >&2
