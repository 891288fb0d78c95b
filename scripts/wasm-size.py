#!/usr/bin/env python3
"""What the wasm's code is made of: bytes of function bodies summed by crate, from the name
section of cargo's output (before wasm-bindgen and wasm-opt strip the names).

    scripts/wasm-size.py [$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/onestep_sr.wasm] [N]

`<crate>` rows are trait impls on that crate's types (`<T as Trait>` methods). A rough
twiggy-like view with no tool to install: legacy-mangled symbols only (what rustc emits by
default); anything else is counted as `?`.
"""
import collections
import os
import re
import sys


def leb(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def crate(name):
    m = re.match(r"_ZN(\d+)", name)
    if not m:
        return "?"
    start = len(m.group(0))
    first = name[start:start + int(m.group(1))]
    if first.startswith("_$LT$"):
        inner = re.search(r"\$LT\$(\w+?)\.\.", first)
        return f"<{inner.group(1)}>" if inner else first[:30]
    return first


def main():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/onestep-sr/target"))
    path = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else f"{target}/wasm32-unknown-unknown/release/onestep_sr.wasm"
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    b = open(path, "rb").read()
    i, imported, code, names, sections = 8, 0, None, {}, collections.Counter()
    while i < len(b):
        sid = b[i]
        n, i = leb(b, i + 1)
        start, end = i, i + n
        i = end
        sections[sid] += n
        if sid == 2:  # imports: function indices start after the imported functions
            j = start
            count, j = leb(b, j)
            for _ in range(count):
                for _ in range(2):
                    ln, j = leb(b, j)
                    j += ln
                kind = b[j]
                j += 1
                if kind == 0:
                    _, j = leb(b, j)
                    imported += 1
                elif kind in (1, 2):
                    if kind == 1:
                        j += 1
                    flags, j = leb(b, j)
                    _, j = leb(b, j)
                    if flags & 1:
                        _, j = leb(b, j)
                elif kind == 3:
                    j += 2
                else:
                    _, j = leb(b, j)
        elif sid == 10:
            code = (start, end)
        elif sid == 0:
            ln, j = leb(b, start)
            if b[j:j + ln] == b"name":
                j += ln
                while j < end:
                    sub = b[j]
                    size, j = leb(b, j + 1)
                    if sub == 1:
                        count, k = leb(b, j)
                        for _ in range(count):
                            idx, k = leb(b, k)
                            ln, k = leb(b, k)
                            names[idx] = b[k:k + ln].decode("utf8", "replace")
                            k += ln
                    j += size
    if code is None:
        sys.exit(f"{path}: no code section")
    by = collections.Counter()
    j = code[0]
    count, j = leb(b, j)
    for f in range(count):
        size, j = leb(b, j)
        by[crate(names.get(imported + f, "?"))] += size
        j += size
    total = sum(by.values())
    print(f"{path}: {len(b) / 1e6:.2f} MB, code {total / 1e6:.2f} MB in {count} functions, names {sections[0] / 1e6:.2f} MB, data {sections[11] / 1e6:.2f} MB")
    for name, size in by.most_common(top):
        print(f"{size / 1e6:8.2f} MB {100 * size / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
