"""Notebook cells and pasted code, for layer/harness.py (loaded from beside it).

A job's `mode` says how its code runs: "script" (the default: module code, then main(**args)),
"cell" (module code whose last expression statement is the result, as in a notebook), or "auto"
(a cell unless the code defines a top-level main()). Everything here runs in the script's own
process, around user code: nothing it returns is trusted by the service.
"""

import ast
import textwrap

# The short text rendering of a DataFrame or Series result: enough rows and columns for a
# reader to see its shape, small enough for a model's context.
DISPLAY_ROWS = 20
DISPLAY_COLUMNS = 20
# Any display (a table or a repr) is cut to this many characters.
DISPLAY_CHARS = 4000
CUT_MARKER = "... [cut]"


def dedent(source):
    """`textwrap.dedent(source)` when every line carries the same leading indentation (code
    pasted from a triple-quoted string); the source unchanged otherwise. Such code never
    compiles as it is (its first statement is indented), so nothing that compiles changes."""
    first = _first_code_line(source)
    if first[:1] not in (" ", "\t"):
        return source
    dedented = textwrap.dedent(source)
    # No common margin (another line starts at column 0): dedent would only have emptied the
    # whitespace-only lines, which can sit inside a string.
    return source if _first_code_line(dedented) == first else dedented


def _first_code_line(source):
    return next((line for line in source.splitlines() if line.strip()), "")


def is_cell(mode, tree):
    """Whether a job of `mode` with this parsed module runs as a cell."""
    if mode == "cell":
        return True
    return not any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "main"
        for node in tree.body
    )


def split(tree, filename):
    """(the module's code without its last expression statement, that expression's code or
    None), both compiled with `filename` so tracebacks show the cell's own lines."""
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    module = compile(tree, filename, "exec", dont_inherit=True)
    if last is None:
        return module, None
    return module, compile(last, filename, "eval", dont_inherit=True)


def encode(value, dumps):
    """(JSON text of a cell's value, its display or None). Strict JSON passes as it is; numpy
    values become their Python equivalents, DataFrames and Series their records (with a short
    text table as display), anything else its repr (as a string, and as display). The caller
    handles MemoryError."""
    strict = {"allow_nan": False, "ensure_ascii": False, "separators": (",", ":")}
    try:
        return dumps(value, **strict), None
    except (TypeError, ValueError, RecursionError):
        pass
    try:
        encoded = dumps(value, default=_plain, **strict)
    except (TypeError, ValueError, RecursionError):
        text = _safe_repr(value)
        return dumps(text, ensure_ascii=False), text
    return encoded, _cut(_display(value))


def _plain(value):
    """The JSON-able equivalent of a numpy or pandas value (json.dumps's `default`)."""
    kind = type(value)
    module = getattr(kind, "__module__", "") or ""
    if module.startswith("pandas"):
        return _records(value)
    if module.startswith("numpy"):
        # ndarray.tolist() and numpy scalars' item() give Python numbers, lists and strings.
        convert = getattr(value, "tolist", None)
        if callable(convert):
            return convert()
    raise TypeError(f"{kind.__name__} is not JSON")


def _records(value):
    """A DataFrame's (or Series') rows as a list of objects, with its index as columns unless
    it is the default 0..n-1; values through pandas' own JSON writer (NaN as null, dates as ISO
    8601 text)."""
    import json

    import pandas

    if isinstance(value, pandas.Series):
        value = value.to_frame(name=value.name if value.name is not None else "value")
    if not isinstance(value, pandas.DataFrame):
        raise TypeError(f"{type(value).__name__} is not JSON")
    default_index = isinstance(value.index, pandas.RangeIndex) and value.index.start == 0
    if not default_index or value.index.step != 1:
        value = value.reset_index()
    return json.loads(value.to_json(orient="records", date_format="iso", default_handler=str))


def _display(value):
    """The short text table of a DataFrame or Series; None for anything else converted (numpy
    values convert faithfully)."""
    render = getattr(value, "to_string", None)
    module = getattr(type(value), "__module__", "") or ""
    if not (module.startswith("pandas") and callable(render)):
        return None
    try:
        if hasattr(value, "columns"):
            return render(max_rows=DISPLAY_ROWS, max_cols=DISPLAY_COLUMNS)
        return render(max_rows=DISPLAY_ROWS)
    except Exception:  # noqa: BLE001 - a display is only a courtesy
        return None


def _safe_repr(value):
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a user-defined __repr__ may raise
        text = f"<unprintable {type(value).__name__}>"
    return _cut(text)


def _cut(text):
    if text is not None and len(text) > DISPLAY_CHARS:
        return text[:DISPLAY_CHARS] + CUT_MARKER
    return text
