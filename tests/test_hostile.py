"""Untrusted files: `check`, `eval` and `lint` on corrupted or hostile workbooks.

Each runs as `python -m sheetgpt ...` in a subprocess under an address-space limit (4 GiB)
and a time limit (30 s). Bad input must end in exactly one line on stderr
(`sheetgpt: error: ...`), exit status 2, nothing on stdout and never a traceback or an
"internal error". `lint` may instead report the construct as a finding (exit 1, on stdout).
Nothing may be fetched: every URL in these files points at a local HTTP server that counts
requests (and the proxy variables point there too), and a DDE / CALL payload would create a
marker file.

Most files are the small test workbook (made by sheetgpt, so they get past the first check)
with one part changed.
"""
from __future__ import annotations

import http.server
import os
import re
import struct
import subprocess
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from helpers import read_parts, run_cli_bounded, sheet_parts, write_parts

TIME_LIMIT = 30.0
COMMANDS = ("check", "eval", "lint")


# --- a local server that must never be asked for anything ----------------------------------------

class _Counter(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"1")

    do_POST = do_CONNECT = do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


# --- zip bombs: one raw deflate stream of a repeated piece, written without inflating it ------------

def _gf2_times(mat: list[int], vec: int) -> int:
    s, i = 0, 0
    while vec:
        if vec & 1:
            s ^= mat[i]
        vec >>= 1
        i += 1
    return s


def _gf2_square(mat: list[int]) -> list[int]:
    return [_gf2_times(mat, mat[n]) for n in range(32)]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of A + B from the CRCs of A and B and the length of B (zlib's crc32_combine)."""
    if len2 == 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(31)]
    even = _gf2_square(odd)
    odd = _gf2_square(even)
    while True:
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def crc32_repeat(crc: int, length: int, n: int) -> int:
    """CRC-32 of n copies of a piece with this CRC and length."""
    out = 0
    while n:
        if n & 1:
            out = crc32_combine(out, crc, length)
        crc, length, n = crc32_combine(crc, crc, length), length * 2, n >> 1
    return out


@dataclass
class RawEntry:
    name: str
    pieces: tuple[bytes, bytes, int, bytes]  # first, middle (repeated n times), n, last: raw deflate
    crc: int
    size: int  # bytes it inflates to
    declared: int | None = None  # the size the headers claim (default: the true size)


def deflated(data: bytes) -> RawEntry:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return RawEntry("", (c.compress(data) + c.flush(), b"", 0, b""), zlib.crc32(data), len(data))


def inflating(head: bytes, chunk: bytes, n: int, tail: bytes) -> RawEntry:
    """head + chunk * n + tail as one deflate stream: a full flush after each piece makes the
    compressed chunk the same every time, so it is compressed once and written n times."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    mid = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH) == mid
    last = c.compress(tail) + c.flush(zlib.Z_FINISH)
    crc = crc32_combine(zlib.crc32(head), crc32_repeat(zlib.crc32(chunk), len(chunk), n), len(chunk) * n)
    crc = crc32_combine(crc, zlib.crc32(tail), len(tail))
    return RawEntry("", (first, mid, n, last), crc, len(head) + len(chunk) * n + len(tail))


def write_raw_zip(path: Path, entries: list[RawEntry]) -> Path:
    """A zip of deflated entries, with ZIP64 size fields where a size needs them."""
    central = []
    with open(path, "wb") as f:
        for e in entries:
            first, mid, n, last = e.pieces
            declared = e.size if e.declared is None else e.declared
            csize = len(first) + len(mid) * n + len(last)
            zip64 = declared >= 0xFFFFFFFF or csize >= 0xFFFFFFFF
            name = e.name.encode()
            extra = struct.pack("<HHQQ", 1, 16, declared, csize) if zip64 else b""
            offset = f.tell()
            f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45 if zip64 else 20, 0, 8, 0, 0x21, e.crc,
                                0xFFFFFFFF if zip64 else csize, 0xFFFFFFFF if zip64 else declared, len(name),
                                len(extra)) + name + extra)
            f.write(first)
            for _ in range(n):
                f.write(mid)
            f.write(last)
            central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45 if zip64 else 20, 0, 8, 0, 0x21,
                                       e.crc, 0xFFFFFFFF if zip64 else csize, 0xFFFFFFFF if zip64 else declared,
                                       len(name), len(extra), 0, 0, 0, 0, offset) + name + extra)
        start = f.tell()
        f.write(b"".join(central))
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), f.tell() - start, start, 0))
    return path


def bomb_book(src: Path, dst: Path, part: str, gib: float, chunk: bytes, declared: int | None = None) -> Path:
    """src with one sheet part replaced by itself plus `gib` GiB of `chunk`s just before </sheetData>."""
    entries = []
    for name, data in read_parts(src).items():
        if name == part:
            i = data.rindex(b"</sheetData>")
            e = inflating(data[:i], chunk, int(gib * (1 << 30)) // len(chunk), data[i:])
            e.declared = declared
        else:
            e = deflated(data)
        e.name = name
        entries.append(e)
    return write_raw_zip(dst, entries)


def test_zip_writer_and_crc_arithmetic(tmp_path, small_book):
    """The bomb writer makes zips that Python's zipfile reads and verifies."""
    import zipfile

    a, b = os.urandom(1000), os.urandom(777)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
    assert crc32_repeat(zlib.crc32(b), len(b), 13) == zlib.crc32(b * 13)
    part = sheet_parts(small_book)["Guide"]
    path = bomb_book(small_book, tmp_path / "b.xlsx", part, 0.004, b" " * 4096)
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        assert z.getinfo(part).file_size == len(read_parts(small_book)[part]) + (int(0.004 * (1 << 30)) // 4096) * 4096
    r = run_cli_bounded("check", str(path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr


# --- the hostile files ------------------------------------------------------------------------------

def _with_part(src: Path, dst: Path, part: str, edit=None, add: dict[str, bytes] | None = None) -> Path:
    parts = read_parts(src)
    if edit is not None:
        old = parts[part].decode("utf-8")
        new = edit(old)
        assert new != old, f"edit changed nothing in {part}"
        parts[part] = new.encode("utf-8")
    parts.update(add or {})
    return write_parts(dst, parts)


def _guide_formula(src: Path, dst: Path, formula: str) -> Path:
    """src with one more row at the end of the Guide holding a plain formula ("{cell}" in it
    stands for the cell's own address)."""
    part = sheet_parts(src)["Guide"]

    def edit(xml: str) -> str:
        n = max(int(r) for r in re.findall(r'<row r="(\d+)"', xml)) + 2
        row = f'<row r="{n}"><c r="A{n}"><f>{escape(formula.replace("{cell}", f"A{n}"))}</f></c></row>'
        return xml.replace("</sheetData>", row + "</sheetData>", 1)
    return _with_part(src, dst, part, edit)


def _step_formula(src: Path, dst: Path, sheet: str, new_text) -> Path:
    """src with the first shared formula of `sheet` replaced by new_text(old text)."""
    part = sheet_parts(src)[sheet]

    def edit(xml: str) -> str:
        m = re.search(r'(<f t="shared" ref="[^"]*" si="\d+">)([^<]*)(</f>)', xml)
        return xml[:m.start(2)] + escape(new_text(m.group(2))) + xml[m.end(2):]
    return _with_part(src, dst, part, edit)


def _lol(levels: int = 9) -> str:
    ents = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "' + f"&lol{i - 1};" * 10 + '">' for i in range(1, levels + 1))
    return f"<!DOCTYPE lolz [{ents}]>"


def _after_decl(xml: str, text: str) -> str:
    i = xml.index("?>") + 2
    return xml[:i] + text + xml[i:]


def _build_cases(src: Path, d: Path, url: str, marker: Path) -> dict[str, Path]:
    parts = sheet_parts(src)
    data = src.read_bytes()
    c: dict[str, Path] = {}

    def path(name: str) -> Path:
        return d / f"{name}.xlsx"

    # -- the archive
    path("truncated").write_bytes(data[: len(data) // 2])
    path("truncated_end").write_bytes(data[:-10])
    path("not_a_zip").write_bytes(os.urandom(5000))
    path("empty").write_bytes(b"")
    raw = bytearray(data)  # a byte flipped inside the deflated data of a weight sheet: bad CRC or zlib error
    weight = parts["wte.weight"].encode()
    at = raw.index(weight) + len(weight) + 200
    raw[at] ^= 0xFF
    path("bad_crc").write_bytes(bytes(raw))
    # -- the XML
    _with_part(src, path("workbook_not_well_formed"), "xl/workbook.xml", lambda x: x.replace("</sheets>", "</sheet>", 1))
    _with_part(src, path("sheet_unclosed"), parts["wte.weight"],
               lambda x: x[: x.rindex("</sheetData>")])
    _with_part(src, path("sheet_mismatched_tag"), parts["wte.weight"], lambda x: x.replace("</row>", "</rowx>", 1))
    _with_part(src, path("sheet_garbage_between_rows"), parts["h0 gelu"],
               lambda x: x.replace("</row>", "</row><<>>&&garbage", 1))
    _with_part(src, path("billion_laughs_workbook"), "xl/workbook.xml",
               lambda x: _after_decl(x, _lol()).replace("<definedName ", "<definedName>&lol9;</definedName><definedName ", 1))
    _with_part(src, path("billion_laughs_sheet"), parts["Guide"],
               lambda x: _after_decl(x, _lol()).replace('<t xml:space="preserve">', '<t xml:space="preserve">&lol9;', 1))
    _with_part(src, path("billion_laughs_sheet_late_dtd"), parts["Guide"],
               lambda x: _after_decl(x, "<!--" + " " * 70_000 + "-->" + _lol()).replace(
                   '<t xml:space="preserve">', '<t xml:space="preserve">&lol9;', 1))
    sst = ('<?xml version="1.0"?>' + _lol() + '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
           '<si><t>&lol9;</t></si></sst>')
    _with_part(src, path("billion_laughs_shared_strings"), "", add={"xl/sharedStrings.xml": sst.encode()})
    xxe = f'<!DOCTYPE w [<!ENTITY xxe SYSTEM "{url}/xxe">]>'
    _with_part(src, path("external_entity_workbook"), "xl/workbook.xml",
               lambda x: _after_decl(x, xxe).replace("<definedName ", "<definedName>&xxe;</definedName><definedName ", 1))
    _with_part(src, path("external_entity_sheet"), parts["Guide"],
               lambda x: _after_decl(x, xxe).replace('<t xml:space="preserve">', '<t xml:space="preserve">&xxe;', 1))
    _with_part(src, path("rels_path_traversal"), "xl/_rels/workbook.xml.rels",
               lambda x: x.replace('Target="worksheets/sheet1.xml"', 'Target="../../../../../../etc/passwd"', 1))
    # -- zip bombs (a few MB of file each)
    guide = parts["Guide"]
    bomb_book(src, path("zip_bomb_over_the_cap"), guide, 20, b" " * (1 << 20))
    bomb_book(src, path("zip_bomb_whitespace"), guide, 6, b" " * (1 << 20))
    bomb_book(src, path("zip_bomb_zeros"), guide, 6, b"\0" * (1 << 20))
    bomb_book(src, path("zip_bomb_lying_size"), guide, 6, b" " * (1 << 20), declared=1 << 20)
    # -- sizes
    far = lambda ref: lambda x: x.replace(  # noqa: E731
        "</sheetData>", f'<row r="{ref[1]}"><c r="{ref[0]}{ref[1]}"><v>1</v></c></row></sheetData>', 1)
    _with_part(src, path("cell_at_XFD1048576"), guide, far(("XFD", 1048576)))
    _with_part(src, path("row_past_excel"), guide, far(("A", 1048577)))
    _with_part(src, path("column_past_excel"), guide, far(("XFE", 3)))
    p3 = read_parts(src)
    for sheet in ("Guide", "h0 gelu", "vocab"):
        p3[parts[sheet]] = far(("NQ", 1048576))(p3[parts[sheet]].decode()).encode()
    write_parts(path("three_sheets_just_under_the_cell_cap"), p3)
    # -- formulas
    _guide_formula(src, path("parentheses_3000_deep"), "(" * 3000 + "1" + ")" * 3000)
    _guide_formula(src, path("functions_3000_deep"), "SUM(" * 3000 + "1" + ")" * 3000)
    _guide_formula(src, path("unary_minus_30000_deep"), "-" * 30000 + "1")
    _guide_formula(src, path("percent_30000_deep"), "1" + "%" * 30000)
    _guide_formula(src, path("chain_of_30000_additions"), "+".join(["1"] * 30000))
    _guide_formula(src, path("formula_over_8192_chars"), "+".join(["1"] * 5000))
    _step_formula(src, path("circular_self"), "embed", lambda t: t.replace("'embed_tok'!", "'embed'!", 1))
    _guide_formula(src, path("circular_guide"), "{cell}+1")
    _step_formula(src, path("circular_two_sheets"), "embed_tok", lambda t: t + "+'embed'!B3*0")
    _guide_formula(src, path("external_ref_index"), "[1]Sheet1!A1")
    _guide_formula(src, path("external_ref_quoted_name"), "'[other.xlsx]S'!A1")
    _guide_formula(src, path("external_ref_path"), "'C:\\x\\[other.xlsx]S'!A1")
    _step_formula(src, path("external_ref_in_a_step"), "embed", lambda t: t.replace("'embed_tok'!", "[1]Sheet1!", 1))
    link = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?><externalLink xmlns="http://schemas.openxmlformats.'
            'org/spreadsheetml/2006/main"><externalBook xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/'
            'relationships" r:id="rId1"><sheetNames><sheetName val="Sheet1"/></sheetNames></externalBook></externalLink>')
    link_rels = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.'
                 'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
                 'openxmlformats.org/officeDocument/2006/relationships/externalLinkPath" '
                 f'Target="{url}/external.xlsx" TargetMode="External"/></Relationships>')
    _with_part(path("external_ref_index"), path("external_link_part"), "xl/_rels/workbook.xml.rels",
               lambda x: x.replace("</Relationships>", '<Relationship Id="rIdX" Type="http://schemas.openxmlformats.'
                                   'org/officeDocument/2006/relationships/externalLink" Target="externalLinks/'
                                   'externalLink1.xml"/></Relationships>'),
               add={"xl/externalLinks/externalLink1.xml": link.encode(),
                    "xl/externalLinks/_rels/externalLink1.xml.rels": link_rels.encode()})
    _guide_formula(src, path("webservice"), f'WEBSERVICE("{url}/webservice")')
    _guide_formula(src, path("filterxml_webservice"), f'FILTERXML(WEBSERVICE("{url}/filterxml"),"//a")')
    _guide_formula(src, path("hyperlink"), f'HYPERLINK("{url}/hyperlink","click")')
    _guide_formula(src, path("dde_command"), f"cmd|'/C touch {marker}'!A0")
    _guide_formula(src, path("call_function"), f'CALL("libc.so.6","system","JC","touch {marker}")')
    _with_part(src, path("defined_name_to_another_workbook"), "xl/workbook.xml",
               lambda x: re.sub(r'(<definedName name="tokens">)[^<]*', r"\1[1]tokens!$B$3:$B$5", x, count=1))
    return {p.stem: p for p in sorted(d.glob("*.xlsx"))}


# What each command must do. "refused": exit 2 and one stderr line. "flagged": lint's finding
# (exit 1, stdout naming a keyword). "failed": check's FAIL (exit 1: a formula it cannot
# compute shows #VALUE! and is named), or a refusal. Entries with a BUG are strict xfails.
REFUSED = {"check": "refused", "eval": "refused", "lint": "refused"}
FLAGGED = {"check": "failed", "eval": "refused", "lint": "flagged"}
CASES = {
    "truncated": REFUSED, "truncated_end": REFUSED, "not_a_zip": REFUSED, "empty": REFUSED, "bad_crc": REFUSED,
    "workbook_not_well_formed": REFUSED,
    "sheet_unclosed": REFUSED, "sheet_mismatched_tag": REFUSED, "sheet_garbage_between_rows": REFUSED,
    "billion_laughs_workbook": REFUSED, "billion_laughs_sheet": REFUSED, "billion_laughs_sheet_late_dtd": REFUSED,
    "billion_laughs_shared_strings": REFUSED, "external_entity_workbook": REFUSED, "external_entity_sheet": REFUSED,
    "rels_path_traversal": REFUSED,
    "zip_bomb_over_the_cap": REFUSED, "zip_bomb_whitespace": REFUSED, "zip_bomb_zeros": REFUSED,
    "zip_bomb_lying_size": REFUSED,
    "cell_at_XFD1048576": REFUSED, "row_past_excel": REFUSED, "three_sheets_just_under_the_cell_cap": REFUSED,
    "column_past_excel": REFUSED,
    "parentheses_3000_deep": FLAGGED, "functions_3000_deep": FLAGGED, "unary_minus_30000_deep": FLAGGED,
    "percent_30000_deep": FLAGGED, "chain_of_30000_additions": FLAGGED,
    "circular_self": FLAGGED, "circular_guide": FLAGGED, "circular_two_sheets": FLAGGED,
    "external_ref_index": FLAGGED, "external_ref_quoted_name": FLAGGED, "external_ref_path": FLAGGED,
    "external_ref_in_a_step": FLAGGED, "external_link_part": FLAGGED,
    "webservice": FLAGGED, "filterxml_webservice": FLAGGED, "hyperlink": FLAGGED, "dde_command": FLAGGED,
    "call_function": FLAGGED, "defined_name_to_another_workbook": FLAGGED,
    # past Excel's 8,192 characters, but nothing this engine cannot compute: check fails on the
    # portability finding, eval may compute it
    "formula_over_8192_chars": {"check": "failed", "eval": "bounded", "lint": "flagged"},
}
KEYWORDS = {  # what a lint finding must mention
    "parentheses_3000_deep": "nested", "functions_3000_deep": ("nested", "8,192"), "unary_minus_30000_deep": "",
    "percent_30000_deep": "", "chain_of_30000_additions": "8,192", "formula_over_8192_chars": "8,192",
    "circular_self": "circular",
    "circular_guide": "circular", "circular_two_sheets": "circular", "external_ref_index": "[1]",
    "external_ref_quoted_name": "other.xlsx", "external_ref_path": "other.xlsx", "external_ref_in_a_step": "[1]",
    "external_link_part": "[1]", "defined_name_to_another_workbook": "[1]", "webservice": "WEBSERVICE", "filterxml_webservice": "WEBSERVICE",
    "hyperlink": "HYPERLINK", "dde_command": "cmd", "call_function": "CALL",
}
BUGS: dict[tuple[str, str], str] = {}  # (case, command or "*") -> reason, for known bugs (strict xfail)


@dataclass
class Result:
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float


class Runner:
    """Runs each command on every case the first time a test asks for it (three processes at a
    time, each within its own time and memory limits), and keeps the results."""

    def __init__(self, cases: dict[str, Path], cwd: Path, env: dict[str, str]):
        self.cases, self.cwd, self.env = cases, cwd, env
        self.done: dict[tuple[str, str], Result] = {}

    def _one(self, case: str, command: str) -> Result:
        start = time.monotonic()
        try:
            r = run_cli_bounded(command, str(self.cases[case]), cwd=self.cwd, timeout=TIME_LIMIT, env=self.env)
            return Result(r.returncode, r.stdout, r.stderr, time.monotonic() - start)
        except subprocess.TimeoutExpired as e:
            return Result(None, str(e.stdout or ""), str(e.stderr or ""), time.monotonic() - start)

    def get(self, case: str, command: str) -> Result:
        if (case, command) not in self.done:
            batch = [c for c in CASES if _is_slow(c, command) == _is_slow(case, command)]
            with ThreadPoolExecutor(3) as pool:
                for c, r in zip(batch, pool.map(lambda c: self._one(c, command), batch)):
                    self.done[(c, command)] = r
        return self.done[(case, command)]


@pytest.fixture(scope="module")
def runner(small_book, server, tmp_path_factory) -> Runner:
    d = tmp_path_factory.mktemp("hostile")
    cases = _build_cases(small_book, d, server, d / "PWNED")
    assert set(cases) == set(CASES), set(cases) ^ set(CASES)
    env = {k: server for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")}
    env.update(no_proxy="", NO_PROXY="")
    return Runner(cases, d, env)


# Sheet parts are read by the same code for every command: lint on them runs in the slow run,
# like eval (which takes check's path, load_book, up to its first refusal).
SAME_READER = {"bad_crc", "sheet_unclosed", "sheet_mismatched_tag", "sheet_garbage_between_rows",
               "billion_laughs_sheet", "billion_laughs_sheet_late_dtd", "billion_laughs_shared_strings",
               "external_entity_sheet", "rels_path_traversal", "zip_bomb_over_the_cap", "zip_bomb_whitespace", "zip_bomb_zeros",
               "zip_bomb_lying_size", "cell_at_XFD1048576", "row_past_excel", "column_past_excel",
               "three_sheets_just_under_the_cell_cap"}


def _is_slow(case: str, command: str) -> bool:
    return command == "eval" or (command == "lint" and case in SAME_READER)


def _params():
    out = []
    for command in COMMANDS:
        for case in CASES:
            reason = BUGS.get((case, command)) or BUGS.get((case, "*"))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            if _is_slow(case, command):
                marks.append(pytest.mark.slow)
            out.append(pytest.param(case, command, marks=marks, id=f"{command}-{case}"))
    return out


@pytest.mark.parametrize("case, command", _params())
def test_hostile_input(runner, case, command):
    r = runner.get(case, command)
    assert r.returncode is not None, f"still running after {TIME_LIMIT:.0f} s"
    assert r.seconds < TIME_LIMIT
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-2000:]
    assert "internal error" not in r.stderr, r.stderr
    expected = CASES[case][command]
    if expected == "bounded" and r.returncode in (0, 1):
        return
    if expected == "failed" and r.returncode == 1:
        assert "FAIL" in r.stdout and r.stderr.strip() == "", (r.stdout[-500:], r.stderr[-500:])
        return
    if expected == "flagged" and r.returncode == 1:
        assert r.stderr.strip() == "", r.stderr
        keywords = KEYWORDS.get(case, "")
        keywords = (keywords,) if isinstance(keywords, str) else keywords
        assert any(k.lower() in r.stdout.lower() for k in keywords), r.stdout
        return
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-500:])
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sheetgpt: error: "), r.stderr[-2000:]
    assert r.stdout == "", r.stdout[-500:]


def test_nothing_was_fetched(runner):
    """No request reached the local server: not the external entities, the external link, the
    WEBSERVICE or HYPERLINK URLs, nor anything through the proxy variables."""
    for command in ("check", "lint"):
        runner.get("webservice", command)
    assert _Counter.hits == [], _Counter.hits


def test_nothing_was_executed(runner):
    runner.get("dde_command", "check")
    assert not (runner.cwd / "PWNED").exists(), "a DDE or CALL formula ran a command"


def test_the_server_would_have_counted(server):
    """The trap works: a plain request to it is seen."""
    import urllib.request

    before = len(_Counter.hits)
    with urllib.request.urlopen(f"{server}/sanity", timeout=5) as r:
        assert r.read() == b"1"
    assert _Counter.hits[before:] == ["/sanity"]
    del _Counter.hits[before:]


# --- claims that cost nothing when ignored -----------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_huge_dimension_claim_is_ignored(small_book, tmp_path, command):
    """<dimension ref="A1:XFD1048576"/> only claims a size; the cells are what counts: a quick
    normal result within the memory limit."""
    part = sheet_parts(small_book)["Guide"]

    def edit(xml: str) -> str:
        m = re.search(r"<worksheet\b[^>]*>(<sheetPr>.*?</sheetPr>|<sheetPr\b[^>]*/>)?", xml, re.S)
        return xml[:m.end()] + '<dimension ref="A1:XFD1048576"/>' + xml[m.end():]
    path = _with_part(small_book, tmp_path / "dim.xlsx", part, edit)
    start = time.monotonic()
    r = run_cli_bounded(command, str(path), cwd=tmp_path, timeout=TIME_LIMIT)
    assert time.monotonic() - start < 10
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_one_far_cell_within_the_cap(small_book, tmp_path, command):
    """A single cell at NQ1048576 (399.5M cells, just under the per-sheet cap): a legitimate if
    odd sheet. Whatever the outcome, it comes within the time and memory limits."""
    part = sheet_parts(small_book)["Guide"]
    path = _with_part(small_book, tmp_path / "far.xlsx", part, lambda x: x.replace(
        "</sheetData>", '<row r="1048576"><c r="NQ1048576"><v>1</v></c></row></sheetData>', 1))
    r = run_cli_bounded(command, str(path), cwd=tmp_path, timeout=TIME_LIMIT)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert r.returncode == 0 or (r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1), r.stderr


# --- a reader killed while its worker processes read --------------------------------------------------

def _session(sid: int) -> list[int]:
    from helpers import session_processes
    return session_processes(sid)


def test_killed_reader_leaves_no_worker_processes(tmp_path):
    """Two sheets of ~40 MB of XML each (read by worker processes above 64 MB), written as a
    small zip; the command is killed once its workers exist."""
    import sys

    from helpers import REPO_ROOT

    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    head = f'<?xml version="1.0"?><worksheet xmlns="{ns}" xmlns:r="{rel}"><sheetData>'.encode()
    row = b"<row>" + b"<c><v>1.5</v></c>" * 100 + b"</row>"
    entries = []
    for i in (1, 2):
        e = inflating(head, row, (40 << 20) // len(row), b"</sheetData></worksheet>")
        e.name = f"xl/worksheets/sheet{i}.xml"
        entries.append(e)
    book = ('<?xml version="1.0"?>' f'<workbook xmlns="{ns}" xmlns:r="{rel}"><sheets>'
            '<sheet name="A" sheetId="1" r:id="rId1"/><sheet name="B" sheetId="2" r:id="rId2"/></sheets></workbook>')
    rels = ('<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            + "".join(f'<Relationship Id="rId{i}" Type="{rel}/worksheet" Target="worksheets/sheet{i}.xml"/>'
                      for i in (1, 2)) + "</Relationships>")
    for name, text in (("xl/workbook.xml", book), ("xl/_rels/workbook.xml.rels", rels)):
        e = deflated(text.encode())
        e.name = name
        entries.append(e)
    path = write_raw_zip(tmp_path / "big.xlsx", entries)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    with open(tmp_path / "out", "wb") as out:
        p = subprocess.Popen([sys.executable, "-m", "sheetgpt", "lint", str(path)], cwd=tmp_path, env=env,
                             stdout=out, stderr=out, start_new_session=True)
        left = []
        try:
            deadline = time.monotonic() + 20
            while len(_session(p.pid)) < 3 and p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert p.poll() is None and len(_session(p.pid)) >= 3, "no worker processes to test"
            time.sleep(0.2)
            os.kill(p.pid, 9)
            p.wait(10)
            time.sleep(2)
            left = _session(p.pid)
        finally:
            for pid in _session(p.pid):  # what this test started and is still running
                os.kill(pid, 9)
    assert left == [], f"worker processes still running 2 s after the command was killed: {left}"


# --- a bomb the size cap lets through ------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("command", ["check"])
def test_zip_bomb_under_the_size_cap(small_book, tmp_path, command):
    part = sheet_parts(small_book)["Guide"]
    path = bomb_book(small_book, tmp_path / "bomb.xlsx", part, 15, b" " * ((1 << 20) - 11) + b"<row></row>")
    assert path.stat().st_size < 20 << 20
    start = time.monotonic()
    try:
        r = run_cli_bounded(command, str(path), cwd=tmp_path, timeout=TIME_LIMIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {TIME_LIMIT:.0f} s")
    assert time.monotonic() - start < TIME_LIMIT
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (r.returncode, r.stderr)
