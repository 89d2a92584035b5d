"""schemathesis hooks for tests/service/fuzz.rs: the rules on input files that JSON Schema
cannot state, so a request the document calls valid is one the service accepts.

docs/openapi.json states each input path's characters and shape; the service also counts a
path's length in UTF-8 bytes (1024 in all, 255 per name, where a schema counts characters) and
refuses a path given twice or used both as a file and as a directory. Generated requests that
break these are dropped: they would be refused with 400 INVALID_FILE_PATH, which the
positive_data_acceptance check would rightly call a valid request refused.
"""

import schemathesis


def _paths(body):
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, list):
        return []
    return [f["path"] for f in files if isinstance(f, dict) and isinstance(f.get("path"), str)]


def _within_byte_limits(path):
    encoded = path.encode("utf-8", "surrogatepass")
    return len(encoded) <= 1024 and all(len(name) <= 255 for name in encoded.split(b"/"))


def _no_clashes(paths):
    if len(set(paths)) < len(paths):
        return False
    given = set(paths)
    for path in paths:
        names = path.split("/")
        if any("/".join(names[:depth]) in given for depth in range(1, len(names))):
            return False
    return True


@schemathesis.hook
def filter_body(context, body):
    paths = _paths(body)
    return all(_within_byte_limits(path) for path in paths) and _no_clashes(paths)
