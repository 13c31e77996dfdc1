#!/usr/bin/env bash
# The COIL-20 runs behind the tables of docs/objects.md and edge/models/OBJECTS.md (issue 17):
# upright images (fixed 2026-12-01), every encoder, 1 and 3-5 teaching views, 1- and 5-shot, any other
# view and >= 45 degrees. One JSON per run under OUT (default out/views); runs already there are skipped.
#   showsay data coil20 --npz ../shared/data/coil20/coil20_objects_01_10.npz --out out/data/coil20
#   showsay data fsdd --root ../shared/data/fsdd --out out/data/fsdd.csv
#   nice -n 5 bash tools/coil_views_runs.sh [old|product|transposed|scenes]...
# (image-only grids of view counts and spacings: tools/view_grid.py, much faster: no speech)
set -u
# One BLAS thread: on a small shared CPU, OpenBLAS's threads turned a 0.5 ms match into 60-190 ms (the numbers are the same).
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
OUT=${OUT:-out/views}
IMAGES=${IMAGES:-out/data/coil20/coil20.csv}
SPEECH=${SPEECH:-out/data/fsdd.csv}
SHOWSAY=${SHOWSAY:-.venv/bin/showsay}
mkdir -p "$OUT"

run() {  # run NAME ARGS...: one bench run into OUT/NAME.json
  local name=$1; shift
  [ -s "$OUT/$name.json" ] && return 0
  echo "== $name: $*"
  "$SHOWSAY" bench --speech "$SPEECH" --ways 10 --episodes 400 --queries 10 --seed 0 --quiet --json "$OUT/$name.json" "$@" | tail -3
}

for set in "${@:-old product}"; do
  case $set in
  old)  # the protocol of the tables measured on transposed images: DTW speech as heard, nearest utterance; distance-only column.
    # Not pixels: cosine over pixels is blind to transposing every image alike (the same permutation of
    # every vector), so the pixels rows of the old tables hold for upright images as they are.
    for enc in objects digits; do for k in 1 5; do for g in 1 9; do
      run "old-$enc-k$k-g$g" --images "$IMAGES" --image-encoder $enc --shots $k --min-view-gap $g --speech-encoder dtw --dtw-warp 0 --word-best-of 1
    done; done; done ;;
  transposed)  # the same on a transposed copy (out/data/coil20T): does the harness reproduce the old numbers?
    for g in 1 9; do
      run "transposed-objects-k1-g$g" --images out/data/coil20T/coil20.csv --image-encoder objects --shots 1 --min-view-gap $g --speech-encoder dtw --dtw-warp 0 --word-best-of 1
    done ;;
  product)  # the product's speech default (speech 'default' fused with DTW at 0.5) and the config's ranking;
    # 1, 3 and 5 teaching views 10 degrees apart (3 and 5 for the objects encoder, 5 for the others)
    for enc in objects pixels digits; do for k in 1 5; do for g in 9 1; do
      views="1 5"; [ $enc = objects ] && views="1 3 5"
      for v in $views; do
        run "product-$enc-k$k-g$g-v$v" --images "$IMAGES" --image-encoder $enc --shots $k --min-view-gap $g \
          --speech-encoder default --fuse-dtw 0.5 --teach-views $v --teach-view-step 2
      done
    done; done; done ;;
  scenes)  # the scene-level bench (10-object scenes on photographs), --min-view-gap 1 as in the first scene table
    for finder in oracle contours; do
      sc="$SHOWSAY scenes --images $IMAGES --finders '' --speech $SPEECH --bench-finder $finder --ways 10 --shots 1 --episodes 200 --queries 10 --min-view-gap 1 --image-encoder objects"
      [ -s "$OUT/scenes-old-$finder.json" ] || { echo "== scenes-old-$finder"; eval "$sc --speech-encoder dtw --json $OUT/scenes-old-$finder.json" | tail -2; }
      for v in 1 3 5; do
        [ -s "$OUT/scenes-product-$finder-v$v.json" ] || { echo "== scenes-product-$finder-v$v"; eval "$sc --speech-encoder default --teach-views $v --teach-view-step 2 --json $OUT/scenes-product-$finder-v$v.json" | tail -2; }
      done
    done ;;
  esac
done
