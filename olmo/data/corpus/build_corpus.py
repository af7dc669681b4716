"""Build `pydocs.jsonl.gz`, the bundled demo corpus, from documentation inside CPython itself.

Documents (one JSON object per line, `{"id", "text"}`):
- every topic of `pydoc_data.topics.topics` (the language reference text `help()` shows), and
- for each module in `MODULES`: its docstring plus the docstrings of its public classes, methods
  and functions, laid out like `help()` (signatures omitted where a default's repr is an address or a local path).

Deterministic for a given CPython version: fixed module list, definition order, sorted topics,
gzip header without name or mtime. Regenerate (the committed file was built with CPython 3.11):

    python -m olmo.data.corpus.build_corpus [OUTPUT]
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import io
import json
import sys
import warnings
from pathlib import Path
from types import ModuleType

# Pure-Python stdlib modules with substantial docstrings; importing them has no side effects.
_MODULE_NAMES = """
abc argparse ast asyncio.base_events asyncio.events asyncio.futures asyncio.locks asyncio.queues
asyncio.streams asyncio.subprocess asyncio.tasks base64 bdb binascii bisect bz2 calendar cmd code
codecs codeop collections collections.abc colorsys compileall concurrent.futures
concurrent.futures.process concurrent.futures.thread configparser contextlib contextvars copy
copyreg csv dataclasses datetime decimal difflib dis doctest email email.charset email.generator
email.header email.message email.parser email.policy email.utils enum filecmp fileinput fnmatch
fractions ftplib functools gc getopt getpass gettext glob graphlib gzip hashlib heapq hmac
html html.parser http http.client http.cookiejar http.cookies http.server imaplib importlib
importlib.abc importlib.metadata importlib.resources importlib.util inspect io ipaddress itertools
json json.decoder json.encoder keyword linecache locale logging logging.config logging.handlers
lzma mailbox math mimetypes modulefinder multiprocessing multiprocessing.connection
multiprocessing.managers multiprocessing.pool multiprocessing.process multiprocessing.queues
multiprocessing.shared_memory multiprocessing.synchronize netrc numbers operator optparse os
os.path pathlib pdb pickle pickletools pkgutil platform plistlib poplib pprint profile pstats
py_compile pyclbr pydoc queue quopri random re reprlib rlcompleter runpy sched secrets selectors
shelve shlex shutil signal site smtplib socket socketserver sqlite3 ssl stat statistics string
stringprep struct subprocess symtable sys sysconfig tabnanny tarfile tempfile textwrap threading
time timeit token tokenize tomllib trace traceback tracemalloc types typing unittest
unittest.case unittest.mock urllib.error urllib.parse urllib.request urllib.robotparser uuid
warnings wave weakref xml.dom.minidom xml.etree.ElementTree xml.sax xml.sax.handler
xml.sax.saxutils xmlrpc.client xmlrpc.server zipapp zipfile zipimport zlib zoneinfo
"""
MODULES = _MODULE_NAMES.split()


def topic_documents() -> list[dict[str, str]]:
    """The language-reference topics shipped for `help()`, sorted by name."""
    from pydoc_data.topics import topics

    return [{"id": f"topic/{k}", "text": topics[k].strip()} for k in sorted(topics)]


# Defaults like `executable=sys.executable` would leak this machine's paths into the corpus.
_LOCAL = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, str(Path.home())}


def _signature(obj: object) -> str:
    """`(a, b=1)`, or "" when unavailable or when a default's repr is machine-specific."""
    try:
        sig = str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return "" if " at 0x" in sig or any(p in sig for p in _LOCAL) else sig


def _own_members(owner: object, module_name: str) -> list[tuple[str, object]]:
    """Public classes/functions defined in `module_name`, in definition order."""
    out = []
    for name, obj in vars(owner).items():
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if getattr(obj, "__module__", None) == module_name:
            out.append((name, obj))
    return out


def module_text(mod: ModuleType) -> str:
    """help()-like text: module docstring, then each class (with methods) and function."""
    parts = [f"Module {mod.__name__}"]
    if doc := inspect.getdoc(mod):
        parts.append(doc)
    for name, obj in _own_members(mod, mod.__name__):
        doc = inspect.getdoc(obj)
        if inspect.isclass(obj):
            parts.append(f"class {name}{_signature(obj)}" + (f"\n{doc}" if doc else ""))
            for mname, meth in _own_members(obj, mod.__name__):
                if mdoc := inspect.getdoc(meth):
                    body = "\n".join("    " + line for line in mdoc.splitlines())
                    parts.append(f"    {name}.{mname}{_signature(meth)}\n{body}")
        elif doc:
            parts.append(f"def {name}{_signature(obj)}\n{doc}")
    return "\n\n".join(p.rstrip() for p in parts)


def module_documents() -> list[dict[str, str]]:
    """One document per module in `MODULES` that imports and has any docstring text."""
    docs = []
    for name in MODULES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mod = importlib.import_module(name)
        except ImportError:  # optional C extension missing in this build (e.g. no _ssl)
            continue
        text = module_text(mod)
        if "\n" in text:  # more than the bare "Module x" header
            docs.append({"id": f"module/{name}", "text": text})
    return docs


def build(output: Path) -> tuple[int, int]:
    """Write the corpus to `output` (gzip without name/mtime); returns (documents, text chars)."""
    docs = topic_documents() + module_documents()
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        for doc in docs:
            gz.write(json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n")
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(output)
    return len(docs), sum(len(d["text"]) for d in docs)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("pydocs.jsonl.gz")
    n, chars = build(out)
    print(f"{out}: {n} documents, {chars / 1e6:.2f} M characters (Python {sys.version.split()[0]})")
