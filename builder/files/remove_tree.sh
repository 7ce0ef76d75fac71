#!/bin/bash
# remove_tree.sh DIR...: remove build trees that a buildpack may have left
# with read-only directories, which `rm -rf` alone cannot empty. Those are
# made writable first: directories only, as files may be hard links into the
# cache whose inodes must stay as they are; one at a time, before find looks
# inside, so that it can enter the ones below. Exit 1 when a tree is left.
status=0
for dir in "$@"; do
  find "$dir" -type d ! -perm -u=rwx -exec chmod u+rwx {} \; 2>/dev/null
  rm -rf -- "$dir"
  [ ! -e "$dir" ] || status=1
done
exit "$status"
