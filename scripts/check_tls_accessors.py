#!/usr/bin/env python3
"""Checks that header code reaches ctxpool's thread_locals only through accessors.

A user's coroutine may inline any function of a public or detail header, and
clang may keep a thread_local's address from before a co_await to after the
coroutine resumed on another thread (detail/config.hpp, CTXPOOL_TLS_ACCESSOR).
So in every header below */include/, a variable declared `thread_local` may be
named only where it is declared and in the one accessor that returns it; the
accessor must be marked CTXPOOL_TLS_ACCESSOR. Source files (src/) hold no
coroutine and may name the variables directly.

    check_tls_accessors.py [ROOT]      exit status 1 and one line per misuse
"""
import pathlib
import re
import sys

# A declaration on one line: specifiers, `thread_local`, a type, the name, an
# initialiser (how every thread_local in the headers is written).
DECLARATION = re.compile(
    r"^[ \t]*(?:(?:static|inline|constinit|extern)\s+)*thread_local\s+[^;()\n]*?"
    r"\b([A-Za-z_]\w*)\s*(?:\{[^;\n]*\}|=[^;\n]*)?;", re.M)
ACCESSOR = re.compile(r"CTXPOOL_TLS_ACCESSOR[^{]*\{\s*CTXPOOL_TLS_FENCE\(\);\s*return\s+(\w+);\s*\}",
                      re.S)


def strip_comments(text: str) -> str:
    """The text with // comments blanked (line numbers kept)."""
    return re.sub(r"//[^\n]*", "", text)


def check(root: pathlib.Path) -> list[str]:
    headers = {h: strip_comments(h.read_text(encoding="utf-8"))
               for h in sorted(root.glob("*/include/**/*.hpp"))}
    problems = []
    # Where each thread_local is declared and where its accessor's body is.
    allowed = {}  # name -> (header, declaration line span, accessor span)
    for header, code in headers.items():
        accessors = {m.group(1): m.span() for m in ACCESSOR.finditer(code)}
        for m in DECLARATION.finditer(code):
            name = m.group(1)
            if name not in accessors:
                problems.append(f"{header.relative_to(root)}: thread_local '{name}' has no "
                                "CTXPOOL_TLS_ACCESSOR accessor")
                continue
            allowed[name] = (header, m.span(), accessors[name])
    for header, code in headers.items():
        for name, (home, declaration, accessor) in allowed.items():
            if headers[home][declaration[0]] in " \t" and header != home:
                continue  # a class member's name: only its own header can name it bare
            for use in re.finditer(rf"(?<![\w.>])(?:detail::)?{re.escape(name)}\b(?!\s*\()", code):
                if header == home and any(lo <= use.start() < hi for lo, hi in (declaration, accessor)):
                    continue
                line = code.count("\n", 0, use.start()) + 1
                problems.append(f"{header.relative_to(root)}:{line}: '{name}' named outside its accessor")
    return problems


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    problems = check(root)
    for problem in problems:
        print(problem)
    if problems:
        print("header code must use the accessor (see CTXPOOL_TLS_ACCESSOR in detail/config.hpp)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
