#!/usr/bin/env bash
# The paper's experiment on the real Million Song Dataset: 7digital previews -> log-mels, the
# Taste Profile subset (10,000 songs x 20,000 users, 70/10/20 cold split), WMF, WMF+Regression,
# DCUE, then both result tables (cold-start recommendation AUC; auto-tagging AUC on the Last.fm
# tags). Every path and size is a variable below: set it in the environment or edit it here.
#
#   MSD=/data/msd bash examples/msd.sh
#
# Each step's output is kept in $OUT and a rerun skips the steps whose output is newer than their
# inputs (delete a file to redo its step; `rm $OUT/dcue.*` to retrain DCUE); an interrupted
# `train` continues from its MODEL.last.pt. With several GPUs, `train` runs under torchrun, one
# process per GPU (NGPUS); on one GPU or none, as plain `dcue train`.
#
# On a Slurm cluster, compute the mels on many CPU machines, then the rest on one GPU node
# (msd_melspec.slurm beside this script):
#   export MSD=/data/msd OUT=$PWD/msd-out
#   STOP_AFTER=candidates bash examples/msd.sh                        # which previews (minutes)
#   jid=$(sbatch --parsable --array=0-31 examples/msd_melspec.slurm)  # 32 shards of the mels
#   mid=$(sbatch --parsable --dependency=afterok:$jid examples/msd_melspec.slurm)   # merge them
#   sbatch --dependency=afterok:$mid --gres=gpu:4 --cpus-per-task=16 examples/msd.sh
# Submitted as an array job itself (sbatch --array=0-31 examples/msd.sh), this script computes its
# task's shard of the mels and stops; run it once more without --array: it merges and goes on.
set -euo pipefail

# --- inputs: where your copy of the MSD files lies ------------------------------------------------
MSD=${MSD:-/data/msd}
TRIPLETS=${TRIPLETS:-$MSD/train_triplets.txt}            # Echo Nest Taste Profile (48 M rows; .gz works)
UNIQUE_TRACKS=${UNIQUE_TRACKS:-$MSD/unique_tracks.txt}    # track_id<SEP>song_id<SEP>artist<SEP>title
SID_MISMATCHES=${SID_MISMATCHES-$MSD/sid_mismatches.txt} # Taste Profile songs matched to a wrong track (empty: none)
PREVIEWS=${PREVIEWS:-$MSD/7digital}                       # the 30 s previews, named TR<track id>.mp3, any depth
LASTFM_TAGS=${LASTFM_TAGS:-$MSD/lastfm_tags.db}           # the Last.fm dataset's tags (SQLite; or a tags TSV)
# --- outputs and sizes ------------------------------------------------------------------------------
OUT=${OUT:-msd-out}
SONGS=${SONGS:-10000}          # the paper's subset: the most played songs (with a usable preview) ...
USERS=${USERS:-20000}          # ... and the most active users of them
CANDIDATES=${CANDIDATES:-$((SONGS + SONGS / 10))}  # previews to compute: the most played (0: every preview)
SEED=${SEED:-0}
JOBS=${JOBS:-}                 # melspec worker processes (empty: every core this job may use)
SHARDS=${SHARDS:-}             # array jobs: the number of shards (empty: the array's size)
FACTORS=${FACTORS:-100}        # WMF latent dimensions
TRAIN=${TRAIN:-1}              # 0: no train/embed: score and autotag popularity and WMF only
EPOCHS=${EPOCHS:-}             # empty: dcue train's default
BATCH_SIZE=${BATCH_SIZE:-}     # per process; empty: dcue train's default (on GPUs try 256 with LR 0.5)
LR=${LR:-}                     # empty: dcue train's default
TRAIN_ARGS=${TRAIN_ARGS:-}     # more `dcue train` options, split on spaces, e.g. "--compile"
# DCUE's own options (after the others): song-grouped batches, the recipe measured in the README
DCUE_ARGS=${DCUE_ARGS---batch-size 2048 --listeners-per-song 32}  # set empty for none
ARTISTS=${ARTISTS:-1}          # 1: also DCUE with the artist (from UNIQUE_TRACKS), semi-cold songs scored apart; 0: not
AUTOTAG_ARGS=${AUTOTAG_ARGS:-} # more `dcue autotag` options, e.g. "--epochs 50"
NGPUS=${NGPUS:-auto}           # processes for train; auto: the GPUs torch sees (CUDA_VISIBLE_DEVICES)
STOP_AFTER=${STOP_AFTER:-}     # candidates, melspec, subset or wmf: stop after that step
DCUE=${DCUE:-dcue}             # the dcue command (e.g. "python -m dcue_cli")
PYTHON=${PYTHON:-python}       # the Python that has torch (counts the GPUs)
TORCHRUN=${TORCHRUN:-torchrun}

MELSPEC_LIST=$OUT/melspec.list # the previews to compute, one path a line
MELS=$OUT/mels.h5
PARTS=$OUT/mels.parts          # an array job's shards: part-K-of-N.h5
mkdir -p "$OUT"
log() { printf '\n== %s\n' "$*" >&2; }
die() { echo "msd.sh: $*" >&2; exit 1; }
need() { [ -e "$1" ] || die "$1 does not exist: set $2 (or MSD) to your copy"; }
stop_after() { if [ "$STOP_AFTER" = "$1" ]; then echo "stopped after $1 (STOP_AFTER)" >&2; exit 0; fi; }
cat_any() { case $1 in *.gz) gzip -dc "$1" ;; *) cat "$1" ;; esac; }
# fresh OUTPUT INPUT...: true when OUTPUT exists and is newer than every INPUT.
fresh() {
  local out=$1; shift
  [ -e "$out" ] || return 1
  for input in "$@"; do [ "$input" -nt "$out" ] && return 1; done
  return 0
}

need "$TRIPLETS" TRIPLETS
need "$UNIQUE_TRACKS" UNIQUE_TRACKS
exclude=()
if [ -n "$SID_MISMATCHES" ]; then need "$SID_MISMATCHES" SID_MISMATCHES; exclude=(--exclude "$SID_MISMATCHES"); fi

# --- 1. candidates: which previews to compute ------------------------------------------------------
# Only the CANDIDATES most played songs that have a preview need mels (SONGS plus a margin for
# previews that fail to decode: step 3 keeps the SONGS most played of those that did), not the
# whole folder of ~1 M previews: some 35 times less work and disk. Every preview of those songs is
# listed (a few songs have several tracks, re-releases): melspec --id-map keeps one per song, the
# first in track-id order that decodes, and lists the others in mels.h5.failures.tsv.
candidates() {
  if [ "$CANDIDATES" = 0 ]; then log "1. candidates: every preview -> $MELSPEC_LIST"
  else log "1. candidates: the $CANDIDATES most played songs with a preview -> $MELSPEC_LIST"; fi
  need "$PREVIEWS" PREVIEWS
  if [ -s "$OUT/previews.txt" ]; then echo "cached: $OUT/previews.txt (rm it if $PREVIEWS changed)" >&2; else
    find "$PREVIEWS" -type f -name 'TR*' | LC_ALL=C sort > "$OUT/previews.txt.tmp"
    mv "$OUT/previews.txt.tmp" "$OUT/previews.txt"
  fi
  local songs=/dev/null all=1
  if [ "$CANDIDATES" != 0 ]; then
    sed 's#.*/##; s#\.[^.]*$##' "$OUT/previews.txt" > "$OUT/previews.ids"
    $DCUE subset "$TRIPLETS" -o "$OUT/candidates" --songs "$CANDIDATES" --users 0 --seed "$SEED" \
      --songs-with "$OUT/previews.ids" --id-map "$UNIQUE_TRACKS" "${exclude[@]}"
    rm -f "$OUT/candidates/plays.tsv"  # every play of those songs: large, and not needed
    songs=$OUT/candidates/splits.tsv all=
  fi
  # wanted songs (item<TAB>split) + track<SEP>song<SEP>... + preview paths -> the paths of their previews
  cat_any "$UNIQUE_TRACKS" | awk -F '<SEP>' -v songs="$songs" -v all="$all" '
    BEGIN { while ((getline line < songs) > 0) { split(line, f, "\t"); want[f[1]] = 1 } }
    NR == FNR { song[$1] = $2; next }
    { t = $0; sub(/.*\//, "", t); sub(/\.[^.]*$/, "", t); s = song[t]
      if (s != "" && (all || s in want)) print }' - "$OUT/previews.txt" \
    > "$MELSPEC_LIST.tmp"
  [ -s "$MELSPEC_LIST.tmp" ] || die "no file in $PREVIEWS is named by a track id of $UNIQUE_TRACKS"
  mv "$MELSPEC_LIST.tmp" "$MELSPEC_LIST"
  echo "$(wc -l < "$MELSPEC_LIST") previews to compute" >&2
}

if [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
  # --- 2. melspec, one task of an array job: shard K of N, tasks numbered 0..N-1 ------------------
  n=${SHARDS:-${SLURM_ARRAY_TASK_COUNT:?is unset: submit with sbatch --array=0-N}}
  k=$((SLURM_ARRAY_TASK_ID + 1))
  [ "$k" -le "$n" ] || die "array task $SLURM_ARRAY_TASK_ID but $n shards: number the tasks 0..$((n - 1))" \
    "(sbatch --array=0-$((n - 1))), or set SHARDS"
  [ -e "$MELSPEC_LIST" ] || die "$MELSPEC_LIST does not exist: run STOP_AFTER=candidates bash examples/msd.sh first"
  mkdir -p "$PARTS"
  log "2. melspec: shard $k/$n of $MELSPEC_LIST"
  $DCUE melspec "$MELSPEC_LIST" --id-map "$UNIQUE_TRACKS" --shard "$k/$n" -o "$PARTS/part-$k-of-$n.h5" ${JOBS:+-j "$JOBS"}
  echo "shard $k/$n done; when every task is done, run this script again without --array" >&2
  exit 0
fi

if fresh "$MELSPEC_LIST" "$TRIPLETS" "$UNIQUE_TRACKS" ${SID_MISMATCHES:+"$SID_MISMATCHES"}; then
  echo "cached: $MELSPEC_LIST" >&2
elif [ -e "$MELSPEC_LIST" ] && { [ -e "$MELS" ] || compgen -G "$PARTS/part-*-of-*.h5" >/dev/null; }; then
  echo "kept: $MELSPEC_LIST (the mels were made from it; rm it to choose the previews again)" >&2
else
  candidates
fi
stop_after candidates

# --- 2. melspec: previews -> log-mels, keyed by song id ---------------------------------------------
if [ -e "$MELS" ]; then
  if fresh "$MELS" "$MELSPEC_LIST"; then echo "cached: $MELS" >&2; else
    log "2. melspec: the previews of $MELSPEC_LIST that $MELS lacks"  # melspec keeps what it has
    $DCUE melspec "$MELSPEC_LIST" --id-map "$UNIQUE_TRACKS" -o "$MELS" ${JOBS:+-j "$JOBS"}
  fi
elif compgen -G "$PARTS/part-*-of-*.h5" >/dev/null; then
  log "2. melspec: merge the shards in $PARTS (delete the folder afterwards to save the space)"
  parts=("$PARTS"/part-*-of-*.h5)
  n=${parts[0]##*-of-}; n=${n%.h5}
  n=${SHARDS:-$n} missing=() files=()
  for ((k = 1; k <= n; k++)); do
    files+=("$PARTS/part-$k-of-$n.h5")
    [ -e "$PARTS/part-$k-of-$n.h5" ] || missing+=("$((k - 1))")
  done
  [ ${#missing[@]} -eq 0 ] || die "the shards of array tasks ${missing[*]} (of 0..$((n - 1))) are missing in" \
    "$PARTS: rerun them (SHARDS=$n sbatch --array=$(IFS=,; echo "${missing[*]}") ...)"
  $DCUE melspec --merge "${files[@]}" -o "$MELS"
else
  log "2. melspec: $(wc -l < "$MELSPEC_LIST") previews -> $MELS (a rerun resumes an interrupted one)"
  $DCUE melspec "$MELSPEC_LIST" --id-map "$UNIQUE_TRACKS" -o "$MELS" ${JOBS:+-j "$JOBS"}
fi
stop_after melspec

# --- 3. subset: the paper's songs and users, the cold split ------------------------------------------
log "3. subset: $SONGS songs with mels (mismatched ones left out) x $USERS users, split 70/10/20"
plays=$OUT/subset/plays.tsv
splits=$OUT/subset/splits.tsv
if fresh "$splits" "$TRIPLETS" "$MELS" ${SID_MISMATCHES:+"$SID_MISMATCHES"}; then echo "cached: $OUT/subset" >&2; else
  $DCUE subset "$TRIPLETS" -o "$OUT/subset" --songs "$SONGS" --users "$USERS" --seed "$SEED" \
    --songs-with "$MELS" --id-map "$UNIQUE_TRACKS" "${exclude[@]}"
fi
stop_after subset

# --- 4. wmf: on all songs (the paper's WMF row, an upper bound) and on train songs (targets) --------
log "4. wmf: on all songs (an upper bound) and on the train songs (WMF+Regression's targets)"
for fit in all train; do
  out=$OUT/wmf_$fit.h5
  if fresh "$out" "$plays" "$splits"; then echo "cached: $out" >&2; else
    $DCUE wmf "$plays" --splits "$splits" --fit-on "$fit" --factors "$FACTORS" --seed "$SEED" -o "$out"
  fi
done
stop_after wmf

# --- 5. train and embed: WMF+Regression and DCUE ----------------------------------------------------
models=()
if [ "$TRAIN" != 0 ]; then
  if [ "$NGPUS" = auto ]; then
    NGPUS=$($PYTHON -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
  fi
  case $NGPUS in '' | *[!0-9]*) die "NGPUS=$NGPUS: give a number of GPUs, or auto" ;; esac
  if [ "$NGPUS" -gt 1 ]; then
    launch=("$TORCHRUN" --standalone --nproc-per-node "$NGPUS" -m dcue_cli)
  else
    read -r -a launch <<< "$DCUE"
  fi
  sizes=(${EPOCHS:+--epochs "$EPOCHS"} ${BATCH_SIZE:+--batch-size "$BATCH_SIZE"} ${LR:+--lr "$LR"})
  read -r -a train_args <<< "$TRAIN_ARGS"
  # train NAME INPUT... -- OPTION...: $OUT/NAME.pt, unless NAME.done is newer than the inputs;
  # continues NAME.last.pt when an earlier run on the same inputs was interrupted.
  train() {
    local name=$1 inputs=() resume=()
    shift
    while [ "$1" != -- ]; do inputs+=("$1"); shift; done
    shift
    if fresh "$OUT/$name.done" "${inputs[@]}"; then echo "cached: $OUT/$name.pt" >&2; return; fi
    if fresh "$OUT/$name.last.pt" "${inputs[@]}"; then resume=(--resume); fi
    echo "+ ${launch[*]} train ... -o $OUT/$name.pt $* ${resume[*]}" >&2
    "${launch[@]}" train "$MELS" "$plays" --splits "$splits" -o "$OUT/$name.pt" --seed "$SEED" "${sizes[@]}" \
      "$@" "${train_args[@]}" "${resume[@]}"
    touch "$OUT/$name.done"
  }
  log "5. train: WMF+Regression (the audio network regresses the train songs' WMF factors)"
  train regress "$MELS" "$plays" "$splits" "$OUT/wmf_train.h5" -- --objective regress --target "$OUT/wmf_train.h5"
  log "5. train: DCUE (hinge loss on cosine relevance; $NGPUS GPUs)"
  read -r -a dcue_args <<< "$DCUE_ARGS"
  train dcue "$MELS" "$plays" "$splits" -- --objective hinge "${dcue_args[@]}"
  if [ "$ARTISTS" != 0 ]; then
    log "5. train: DCUE with the artist beside the audio (--artists: a new song by an artist listeners know)"
    train dcue_artist "$MELS" "$plays" "$splits" "$UNIQUE_TRACKS" -- --objective hinge --artists "$UNIQUE_TRACKS" \
      "${dcue_args[@]}"
  fi

  log "6. embed: every song's vector from its audio, the cold test songs included"
  for pair in dcue:dcue regress:wmf_regression; do
    model=$OUT/${pair%%:*}.pt out=$OUT/${pair#*:}.h5
    if fresh "$out" "$model" "$MELS"; then echo "cached: $out" >&2; else $DCUE embed "$model" "$MELS" -o "$out"; fi
    models+=("$out")
  done
  if [ "$ARTISTS" != 0 ]; then
    if fresh "$OUT/dcue_artist.h5" "$OUT/dcue_artist.pt" "$MELS"; then echo "cached: $OUT/dcue_artist.h5" >&2; else
      $DCUE embed "$OUT/dcue_artist.pt" "$MELS" --artists "$UNIQUE_TRACKS" -o "$OUT/dcue_artist.h5"
    fi
  fi
fi
models+=("$OUT/wmf_all.h5")

# --- 7. the paper's Table 1: cold-start recommendation on the test songs -----------------------------
log "7. score: cold-start AUC on the test songs (Table 1, the paper's figures beside ours)"
plot=()  # the per-user AUC and ROC picture, where matplotlib is installed (pip install 'dcue[plot]')
if $PYTHON -c 'import matplotlib' 2>/dev/null; then plot=(--plot "$OUT/recommendation.png"); fi
$DCUE score "${models[@]}" --popularity --plays "$plays" --splits "$splits" --paper --seed "$SEED" \
  --per-user "$OUT/recommendation.per_user.tsv" "${plot[@]}" --json > "$OUT/recommendation.json"

# --- 7b. semi-cold songs: the test songs whose artist has training songs, and the fully cold rest ---
if [ "$TRAIN" != 0 ] && [ "$ARTISTS" != 0 ]; then
  log "7b. score: semi-cold and fully cold test songs apart (artist-aware DCUE against audio-only DCUE)"
  $DCUE score "$OUT/dcue.h5" "$OUT/dcue_artist.h5" "$OUT/wmf_regression.h5" "$OUT/wmf_all.h5" --popularity \
    --plays "$plays" --splits "$splits" --artists "$UNIQUE_TRACKS" --artist-mean "$OUT/wmf_train.h5" \
    --against "$OUT/dcue.h5" --seed "$SEED" --json > "$OUT/artists.json"
fi

# --- 8. the paper's Table 2: auto-tagging from the item vectors -------------------------------------
if [ -e "$LASTFM_TAGS" ]; then
  log "8. autotag: the 50 most used Last.fm tags of the subset's songs (Table 2)"
  read -r -a autotag_args <<< "$AUTOTAG_ARGS"
  $DCUE autotag "${models[@]}" "$LASTFM_TAGS" --id-map "$UNIQUE_TRACKS" --splits "$splits" --seed "$SEED" \
    --per-tag "$OUT/autotagging.per_tag.tsv" --json "${autotag_args[@]}" > "$OUT/autotagging.json"
else
  echo "skipped autotag: $LASTFM_TAGS does not exist (set LASTFM_TAGS)" >&2
fi

log "results: $OUT/recommendation.json, $OUT/autotagging.json, $OUT/artists.json (tables above); all outputs in $OUT/"
