"""Stock buildpack details multi-buildpack builds rely on: each buildpack's
`export` file reaches the ones after it, `STACK` is set, and bin/release's
default_process_types merge with the Procfile (the Procfile wins)."""
from __future__ import annotations

from pathlib import Path

import pytest

from controller.errors import BuildFailed
from tests.builder.helpers import make_app, slug_file

# The first buildpack installs a tool under BUILD_DIR and says where it is
# in its export file (in its own folder, as Heroku's multi-buildpack reads
# it); it also sets variables the driver itself uses, which must not leak
# into the driver.
FIRST = {
    "bp/first/bin/detect": "#!/bin/sh\necho First\n",
    "bp/first/bin/compile": """#!/bin/bash
set -e
here=$(cd "${0%/*}/.." && pwd)
mkdir -p "$1/.first/bin"
printf '#!/bin/sh\\necho "tool of first, greeting $FIRST_GREETING"\\n' > "$1/.first/bin/first-tool"
chmod +x "$1/.first/bin/first-tool"
cat > "$here/export" <<EOF
export PATH="$1/.first/bin:\\$PATH"
export FIRST_GREETING="hello from first"
export mark=clobbered index=7 packs=none
EOF
""",
    "bp/first/bin/release": "#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n"
                            "  web: first-web\\n  worker: first-worker\\n'\n",
}
SECOND = {
    "bp/second/bin/detect": "#!/bin/sh\necho Second\n",
    "bp/second/bin/compile": """#!/bin/bash
set -eu
echo "-----> second sees FIRST_GREETING=$FIRST_GREETING STACK=$STACK"
first-tool > "$1/from-first.txt"
echo "$STACK" > "$1/stack.txt"
""",
}


def test_export_of_one_buildpack_reaches_the_next(tmp_path: Path, run_build) -> None:
    files = {".buildpacks": "./bp/first\n./bp/second\n", **FIRST, **SECOND,
             "Procfile": "web: my-web\n"}
    repo, sha = make_app(tmp_path, files)
    result, out = run_build(repo, sha)
    assert "-----> second sees FIRST_GREETING=hello from first STACK=shipway-bookworm" \
        in out.lines, out.text
    assert slug_file(result.slug_path, "from-first.txt") == \
        "tool of first, greeting hello from first\n"
    assert slug_file(result.slug_path, "stack.txt").strip() == "shipway-bookworm"
    # bin/release's defaults merged with the Procfile; the Procfile wins
    assert result.process_types == {"web": "my-web", "worker": "first-worker"}
    assert result.buildpacks == ["./bp/first", "./bp/second"]


def test_a_failing_export_fails_the_build(tmp_path: Path, run_build) -> None:
    first = dict(FIRST)
    first["bp/first/bin/compile"] = ("#!/bin/sh\necho 'echo broken export >&2; false' "
                                     "> \"${0%/*}/../export\"\n")
    repo, sha = make_app(tmp_path, {".buildpacks": "./bp/first\n./bp/second\n", **first,
                                    **SECOND})
    with pytest.raises(BuildFailed, match="first: compile failed"):
        run_build(repo, sha)
