#!/bin/bash
# A build's buildpacks, run in the build container by one `docker exec` (each
# exec costs Docker round trips, about 0.1 s here): the workspace made ready,
# then bin/detect, bin/compile and bin/release of each buildpack with the
# stock Heroku API, then the Procfile.
#
#   run_buildpacks.sh MARK INCOMING MODE PACK_DIR...
#
# MODE "first": the first buildpack whose bin/detect succeeds runs (the
# bundled ones, in order); "all": every one must detect, and all run in order
# (a .buildpacks file). What the buildpacks print streams through as it is;
# what the builder must know is said on lines "MARK EVENT ARGS" (MARK is new
# for every build, so no output is read as an event by chance):
#   detected INDEX LABEL          compile of buildpack INDEX begins
#   detect-failed INDEX CODE      ("all": it does not apply to this app)
#   none-detected                 ("first": no buildpack applies)
#   compile-failed INDEX CODE
#   release INDEX CODE BASE64     bin/release's output, when it has one
#   procfile BASE64               the app's Procfile after compile
#   workspace-failed              the source could not be put in place
#   done
# Exit 0 after `done`, 1 after a failure event.
set -uo pipefail
mark=$1 incoming=$2 mode=$3
shift 3
packs=("$@")
BUILD_DIR=/app CACHE_DIR=/cache ENV_DIR=/shipway/env

event() { printf '%s %s\n' "$mark" "$*"; }

# The source was put in the volume under a name of its own before the
# container started; it becomes /workspace/app. What an interrupted build
# left there goes first. A buildpack may have left directories without
# write permission, which rm cannot empty: those are made writable first
# (directories only: files may be hard links into the cache, whose inodes
# must stay as they are; one at a time, before find looks inside, so that
# it can enter the ones below), and a tree that still cannot go fails the build
# rather than being built in place of the new source.
cd /workspace || { event workspace-failed; exit 1; }
for dir in app incoming-* trash-*; do
  [ -e "$dir" ] && [ "$dir" != "$incoming" ] || continue
  find "$dir" -type d ! -perm -u=rwx -exec chmod u+rwx {} \; 2>/dev/null
  rm -rf -- "$dir"
  [ ! -e "$dir" ] || { event workspace-failed; exit 1; }
done
if ! { mv -T -- "$incoming" app && mkdir -p cache; }; then
  event workspace-failed
  exit 1
fi
cd "$BUILD_DIR" || { event workspace-failed; exit 1; }

chosen=() labels=()
for index in "${!packs[@]}"; do
  pack=${packs[$index]}
  if [ "$mode" = first ]; then
    said=$("$pack/bin/detect" "$BUILD_DIR" 2>/dev/null)
    code=$?
    if [ "$code" = 0 ]; then
      chosen=("$index") labels=("$(printf '%s\n' "$said" | tail -n 1)")
      break
    fi
  else
    said=$("$pack/bin/detect" "$BUILD_DIR" 2>&1)
    code=$?
    [ "$code" = 0 ] || { event detect-failed "$index" "$code"; exit 1; }
    chosen+=("$index") labels+=("$(printf '%s\n' "$said" | tail -n 1)")
  fi
done
[ ${#chosen[@]} -gt 0 ] || { event none-detected; exit 1; }

for n in "${!chosen[@]}"; do
  index=${chosen[$n]}
  pack=${packs[$index]}
  event detected "$index" "${labels[$n]}"
  "$pack/bin/compile" "$BUILD_DIR" "$CACHE_DIR" "$ENV_DIR" 2>&1
  code=$?
  [ "$code" = 0 ] || { event compile-failed "$index" "$code"; exit 1; }
  if [ -x "$pack/bin/release" ]; then
    said=$("$pack/bin/release" "$BUILD_DIR" 2>&1)
    code=$?
    event release "$index" "$code" "$(printf '%s' "$said" | base64 -w0)"
    [ "$code" = 0 ] || exit 1
  fi
done

if [ -f "$BUILD_DIR/Procfile" ]; then
  event procfile "$(base64 -w0 <"$BUILD_DIR/Procfile")"
fi
event done
