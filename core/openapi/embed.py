#!/usr/bin/python3
"""embed.py INPUT OUTPUT SYMBOL [--json]: writes a C file defining
`const char SYMBOL[]` holding INPUT's text.  With --json the text must parse as
JSON (the build fails naming the file and the position otherwise) and is
stored compacted."""
import json
import sys


def main(argv):
    if len(argv) not in (4, 5) or (len(argv) == 5 and argv[4] != "--json"):
        sys.exit("usage: embed.py INPUT OUTPUT SYMBOL [--json]")
    src, out, sym = argv[1:4]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    if len(argv) == 5:
        try:
            text = json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
        except json.JSONDecodeError as e:
            sys.exit("%s:%d:%d: not JSON: %s" % (src, e.lineno, e.colno, e.msg))
    data = text.encode("utf-8")
    # Octal escapes: they end after three digits, where \x would swallow
    # any hex digit that follows.
    def lit(chunk):
        return '"' + "".join("\\%03o" % b if b < 32 or b > 126 or b in (34, 63, 92) else chr(b)
                             for b in chunk) + '"'
    body = [lit(data[i:i + 64]) for i in range(0, len(data), 64)] or ['""']
    lines = ["/* Generated from %s by embed.py; edit that file instead. */" % src.split("/")[-1],
             '__attribute__((visibility("hidden"))) const char %s[%d] =' % (sym, len(data) + 1)]
    lines += ["    " + b for b in body]
    lines[-1] += ";"
    with open(out, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv)
