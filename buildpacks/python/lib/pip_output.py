"""pip's output as the pusher sees it: each line indented, except pip's
retries and its per-URL complaints about an index it cannot reach, which
become one line at the end naming the index and the error (a push whose
index is unreachable otherwise shows a page of retries for every package).

    pip install ... 2>&1 | python3 pip_output.py INDEX_URL...

Exits 0; the caller takes pip's own status from the pipe.
"""
import re
import sys

RETRY = re.compile(r"^WARNING: Retrying \(Retry\(.*?after connection broken by (.*): (\S+)$")
FETCH = re.compile(r"^Could not fetch URL (\S+?): (.*) - skipping$")
NOT_FOUND = re.compile(r"^ERROR: (Could not find a version that satisfies the requirement "
                       r".*\(from versions: none\)|No matching distribution found for .*)$")
LOOKING = re.compile(r"^Looking in indexes: (.*)$")
USERINFO = re.compile(r"(?<=://)[^/@\s]*@")
# The words that say why, from the innermost exception pip reports.
REASONS = [
    re.compile(r"(certificate verify failed: [^(')\"]+?)\s*\(_ssl"),
    re.compile(r"(Cannot connect to proxy)"),
    re.compile(r"Failed to establish a new connection: (\[Errno [^\]]+\] [^'\")]+)"),
    re.compile(r"(Read timed out)"),
    re.compile(r"(Connection to \S+ timed out[^'\")]*)"),
    re.compile(r"(Tunnel connection failed: [^'\")]+)"),
    re.compile(r"(\d{3} Client Error: [^'\")]+|\d{3} Server Error: [^'\")]+)"),
]


def mask(text: str) -> str:
    return USERINFO.sub("***@", text)


def reason(text: str) -> str:
    for pattern in REASONS:
        found = pattern.search(text)
        if found:
            return found.group(1).strip()
    return text.strip()[:200]


def index_of(url: str) -> str:
    """https://host/simple/flask/ -> https://host/simple/ (the project's page's index)."""
    return re.sub(r"[^/]+/?$", "", url)


def main(indexes: list[str]) -> None:
    error = failed_url = None
    unreachable = False
    for raw in sys.stdin:
        line = raw.rstrip("\n")
        retry, fetch = RETRY.match(line), FETCH.match(line)
        looking = LOOKING.match(line)
        if looking:
            indexes = [u.strip() for u in looking.group(1).split(",") if u.strip()]
        if retry:
            error = error or reason(retry.group(1))
            continue
        if fetch:
            failed_url, error = failed_url or fetch.group(1), reason(fetch.group(2))
            continue
        if NOT_FOUND.match(line) and error is not None:
            unreachable = True
            continue
        print("       " + mask(line), flush=True)
    if unreachable:
        where = index_of(failed_url) if failed_url else ", ".join(indexes)
        print(f"-----> pip could not reach the package index {mask(where)}: {mask(error or '')}",
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["https://pypi.org/simple"])
