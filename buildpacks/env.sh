# Sourced by the buildpacks' scripts. Bash builtins where a command would do:
# every process started in a build container costs 5-10 ms on a Docker host
# whose root file system is FUSE, and a warm build is short.

# Export the app's config vars from ENV_DIR, except those that would change
# how the build itself runs.
export_env_dir() {
  local env_dir=$1 file name
  [ -d "$env_dir" ] || return 0
  for file in "$env_dir"/*; do
    [ -f "$file" ] || continue
    name=${file##*/}
    case "$name" in
      PATH|HOME|GIT_DIR|CPATH|CPPATH|LD_PRELOAD|LD_LIBRARY_PATH|LIBRARY_PATH|BUILD_DIR|CACHE_DIR|ENV_DIR|MIX_HOME|HEX_HOME) continue ;;
    esac
    [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    export "$name=$(<"$file")"
  done
}

# The OTP app named in a mix project (mix.exs `app: :name`): the release's name.
mix_app() {
  local text
  text=$(<"$1/mix.exs") || return 0
  [[ $text =~ app:[[:space:]]*:([a-z0-9_]+) ]] && echo "${BASH_REMATCH[1]}"
  return 0
}

step() { echo "-----> $*"; }
say() { echo "       $*"; }
