# Sourced by the compile scripts: export the app's config vars from ENV_DIR,
# except those that would change how the build itself runs.
export_env_dir() {
  local env_dir=$1 file name
  [ -d "$env_dir" ] || return 0
  for file in "$env_dir"/*; do
    [ -f "$file" ] || continue
    name=$(basename "$file")
    case "$name" in
      PATH|HOME|GIT_DIR|CPATH|CPPATH|LD_PRELOAD|LD_LIBRARY_PATH|LIBRARY_PATH|BUILD_DIR|CACHE_DIR|ENV_DIR|MIX_HOME|HEX_HOME) continue ;;
    esac
    [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    export "$name=$(cat "$file")"
  done
}

# The OTP app named in a mix project (mix.exs `app: :name`): the release's name.
mix_app() { grep -oE 'app:\s*:[a-z0-9_]+' "$1/mix.exs" | head -1 | sed -E 's/app:\s*://'; }

step() { echo "-----> $*"; }
say() { echo "       $*"; }
