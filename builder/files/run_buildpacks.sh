#!/bin/bash
# A build, run in the build container by one `docker exec` (each exec costs
# Docker round trips, about 0.1 s here): the workspace made ready, then
# bin/detect, bin/compile and bin/release of each buildpack with the stock
# Heroku API, then the Procfile, then the slug.
#
#   run_buildpacks.sh MARK INCOMING MODE PACK_DIR...
#
# MODE "first": the first buildpack whose bin/detect succeeds runs (the
# bundled ones, in order); "all": every one must detect, and all run in order
# (a .buildpacks file). The exec's two streams carry different things:
# stdout is the slug and nothing else (the buildpacks never see it), stderr
# is everything the buildpacks print, as it is, and what the builder must
# know, on lines "MARK EVENT ARGS" (MARK is new for every build, so no
# output is read as an event by chance):
#   detected INDEX LABEL          compile of buildpack INDEX begins
#   detect-failed INDEX CODE      ("all": it does not apply to this app)
#   none-detected                 ("first": no buildpack applies)
#   compile-failed INDEX CODE
#   release INDEX CODE BASE64     bin/release's output, when it has one
#   procfile BASE64               the app's Procfile after compile
#   workspace-failed              the source could not be put in place
#   packing                       the slug follows on stdout
#   pack-failed CODE              tar or gzip failed (their words before it)
#   done
# Exit 0 after `done`, 1 after a failure event.
set -uo pipefail
mark=$1 incoming=$2 mode=$3
shift 3
packs=("$@")
BUILD_DIR=/app CACHE_DIR=/cache ENV_DIR=/shipway/env
# The slug's tar options for .slugignore (NUL-separated, from the builder).
SLUG_EXCLUDES=/shipway/slug-excludes
exec 3>&1 1>&2  # fd 3: the slug; the rest of this script and its children: stderr

event() { printf '%s %s\n' "$mark" "$*"; }

# A buildpack's `export` file (in its own folder, written by its compile),
# sourced before the next buildpack runs, as Heroku's multi-buildpack
# builds do: what it exports reaches every later bin/ script. It is sourced
# in a shell of its own and only its exported variables come back, never
# over this script's own (DRIVER_VARS), so it can neither change how this
# script goes on nor stop it; a failing one fails the build.
DRIVER_VARS=" mark incoming mode packs chosen labels index pack said code n names excludes gz 
  BUILD_DIR CACHE_DIR ENV_DIR SLUG_EXCLUDES DRIVER_VARS "
import_export() {
  local pair
  local -a pairs
  mapfile -d '' -t pairs < <(bash -c 'source "$1" >&2 3>&- || exit 1; env -0' \
                                 export "$1"; printf 'status=%d\0' "$?") || return 1
  if [ "${pairs[-1]-}" != "status=0" ]; then
    echo "-----> ${1%/*}/export failed"
    event compile-failed "$index" 1
    exit 1
  fi
  unset 'pairs[-1]'
  for pair in "${pairs[@]}"; do
    case "${pair%%=*}" in
      _|PWD|OLDPWD|SHLVL|BASH_FUNC_*) continue ;;
    esac
    [[ $DRIVER_VARS == *" ${pair%%=*} "* ]] && continue
    [[ "${pair%%=*}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] && export "$pair"
  done
}

# The source was put in the volume under a name of its own; it becomes
# /workspace/app. What an interrupted build left there goes first (read-only
# directories included: see remove_tree.sh), and a tree that cannot go fails
# the build rather than being built in place of the new source.
cd /workspace || { event workspace-failed; exit 1; }
for dir in app incoming-* trash-*; do
  [ -e "$dir" ] && [ "$dir" != "$incoming" ] || continue
  bash /shipway/remove_tree.sh "$dir" || { event workspace-failed; exit 1; }
done
if ! { mv -T -- "$incoming" app && { [ -d cache ] || mkdir cache; }; }; then
  event workspace-failed
  exit 1
fi
cd "$BUILD_DIR" || { event workspace-failed; exit 1; }

chosen=() labels=()
for index in "${!packs[@]}"; do
  pack=${packs[$index]}
  if [ "$mode" = first ]; then
    said=$("$pack/bin/detect" "$BUILD_DIR" 2>/dev/null 3>&-)
    code=$?
    if [ "$code" = 0 ]; then
      chosen=("$index") labels=("${said##*$'\n'}")
      break
    fi
  else
    said=$("$pack/bin/detect" "$BUILD_DIR" 2>&1 3>&-)
    code=$?
    [ "$code" = 0 ] || { event detect-failed "$index" "$code"; exit 1; }
    chosen+=("$index") labels+=("${said##*$'\n'}")
  fi
done
[ ${#chosen[@]} -gt 0 ] || { event none-detected; exit 1; }

for n in "${!chosen[@]}"; do
  index=${chosen[$n]}
  pack=${packs[$index]}
  event detected "$index" "${labels[$n]}"
  "$pack/bin/compile" "$BUILD_DIR" "$CACHE_DIR" "$ENV_DIR" 3>&-
  code=$?
  [ "$code" = 0 ] || { event compile-failed "$index" "$code"; exit 1; }
  if [ -x "$pack/bin/release" ]; then
    said=$("$pack/bin/release" "$BUILD_DIR" 2>&1 3>&-)
    code=$?
    event release "$index" "$code" "$(printf '%s' "$said" | base64 -w0)"
    [ "$code" = 0 ] || exit 1
  fi
  [ -f "$pack/export" ] && import_export "$pack/export"
done

if [ -f "$BUILD_DIR/Procfile" ]; then
  event procfile "$(base64 -w0 <"$BUILD_DIR/Procfile")"
fi

# The slug: a tar of the app's top-level names (so members are `Procfile`,
# `_build/...`) without what .slugignore drops, gzipped as it is read by
# pigz on every core the build has (gzip -1 alone took 0.35 s of the Elixir
# example's 0.45 s) or by gzip on a stack image without it.
excludes=()
[ -f "$SLUG_EXCLUDES" ] && mapfile -d '' -t excludes <"$SLUG_EXCLUDES"
gz=(gzip -1)
command -v pigz >/dev/null && gz=(pigz -1)
cd "$BUILD_DIR" || { event pack-failed 1; exit 1; }  # as it is now, after compile
# Top-level names starting with .shipway- go first: small files a replica
# reads from the slug's head without unpacking the rest (the Elixir
# buildpack's hot-upgrade artefact).
shopt -s dotglob nullglob
names=(.shipway-*)
for name in *; do [[ $name == .shipway-* ]] || names+=("$name"); done
shopt -u dotglob nullglob
event packing
if [ ${#names[@]} -eq 0 ]; then
  tar -cf - -T /dev/null | "${gz[@]}" >&3
else
  tar --create --file=- --numeric-owner --wildcards "${excludes[@]}" -- "${names[@]}" \
    | "${gz[@]}" >&3
fi
code=$?
[ "$code" = 0 ] || { event pack-failed "$code"; exit 1; }
event done
