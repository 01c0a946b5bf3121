"""Reads the corpus files written by bench/model/prepare-corpus.ts (twin of bench/data/corpus-file.ts).

One record per speech: "# <year>\\t<president>\\t<party>\\n<text>\\n\\n". Pure Python (lzma is built in),
so it runs on the GPU machine, which has no Node.js and no xz binary.
"""
import lzma
import re

_HEADER = re.compile(r"^# (\d+)\t([^\t]+)\t([^\t]+)$")


def parse_corpus(content):
    lines = content.split("\n")
    if len(lines) % 3 != 1 or lines[-1] != "":
        raise ValueError(f"a corpus file must be 3-line records ending in a blank line; got {len(lines)} lines")
    speeches = []
    for i in range(0, len(lines) - 1, 3):
        m = _HEADER.match(lines[i])
        if m is None or lines[i + 1] == "" or lines[i + 2] != "":
            raise ValueError(f"corpus record at line {i + 1} is malformed: {lines[i][:80]!r}")
        speeches.append({"year": int(m.group(1)), "president": m.group(2), "party": m.group(3), "text": lines[i + 1]})
    return speeches


def read_corpus(path):
    with open(path, "rb") as f:
        raw = f.read()
    if str(path).endswith(".xz"):
        raw = lzma.decompress(raw)
    return parse_corpus(raw.decode("utf-8"))
