"""Hostile inputs for an enrollment folder, and the table of what a user sees for each.

The suite runs :func:`make_bad_inputs` (tests/test_bad_inputs.py). The documented table is
written from the same fixture by

    python -m tests.bad_inputs --write docs/bad_inputs.md
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims to be ``width`` x ``height`` (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def make_bad_inputs(folder: Path) -> list[tuple[str, str, str]]:
    """Create the inputs in ``folder``; returns (file name, what it is, expected status)."""
    folder.mkdir(parents=True, exist_ok=True)
    face = Image.open(FIXTURES / "tony_blair_1.jpg").convert("RGB")
    good = (FIXTURES / "tony_blair_1.jpg").read_bytes()
    cases = []

    def add(name, what, status, data=None, image=None, **save):
        path = folder / name
        if data is not None:
            path.write_bytes(data)
        elif image is not None:
            image.save(path, **save)
        cases.append((name, what, status))
        return path

    add("zero_bytes.jpg", "zero-byte file", "unreadable", data=b"")
    add("truncated.jpg", "JPEG cut to a third of its bytes", "unreadable", data=good[: len(good) // 3])
    buf = io.BytesIO()
    face.save(buf, format="PNG")
    add("truncated.png", "PNG cut in half", "unreadable", data=buf.getvalue()[: len(buf.getvalue()) // 2])
    add("text_named.jpg", "a text file named .jpg", "unreadable", data=b"Enrollment notes: call back Tuesday.\n")
    add("document_named.jpg", "a PDF file named .jpg", "unreadable",
        data=b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
    add("unsupported.svg", "an SVG drawing (no raster decoder)", "unreadable",
        data=b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>')
    add("cmyk.jpg", "CMYK JPEG", "accepted", image=face.convert("CMYK"))
    add("sixteen_bit.png", "16-bit greyscale PNG", "accepted",
        image=Image.fromarray((np.asarray(face.convert("L"), dtype=np.uint16) * 257)))
    add("greyscale.png", "8-bit greyscale", "accepted", image=face.convert("L"))
    add("palette.png", "palette (256 colours)", "accepted", image=face.convert("P", palette=Image.ADAPTIVE))
    rgba = face.convert("RGBA")
    rgba.putalpha(200)
    add("alpha.png", "RGBA with transparency", "accepted", image=rgba)
    exif = Image.Exif()
    exif[0x0112] = 8  # displayed rotated 90 degrees counter-clockwise
    add("exif_rotated.jpg", "stored sideways, EXIF orientation 8", "accepted",
        image=face.transpose(Image.Transpose.ROTATE_270), exif=exif)
    frames = [face, face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    add("animated.gif", "animated GIF, 2 frames", "accepted", image=frames[0], save_all=True, append_images=frames[1:])
    add("tiny.png", "8x8 pixels", "no_face", image=face.resize((8, 8)))
    add("bomb.png", "PNG header claiming 100000x100000 pixels", "unreadable", data=_png_header_only(100000, 100000))
    # root reads files whatever their permissions, so there the file is simply scored
    locked = add("no_permission.jpg", "no read permission (mode 000)",
                 "accepted" if os.geteuid() == 0 else "unreadable", data=good)
    os.chmod(locked, 0)
    dangling = folder / "vanished.jpg"
    os.symlink(folder / "does-not-exist.jpg", dangling)
    cases.append(("vanished.jpg", "a link to a file that is gone (as if deleted mid-run)", "unreadable"))
    loop = folder / "loop"
    loop.mkdir()
    os.symlink(loop, loop / "again")
    cases.append(("loop/again", "a symbolic-link loop (folder linking to itself)", "not followed"))
    raw = os.fsencode(folder) + b"/caf\xe9_latin1.jpg"  # not valid UTF-8
    with open(raw, "wb") as fh:
        fh.write(good)
    cases.append((os.fsdecode(b"caf\xe9_latin1.jpg"), "file name that is not valid UTF-8", "accepted"))
    return cases


#: Headings of the sections this script writes (the rest of the file is kept as it is).
GENERATED = ("## Mistakes people make with the command: what they see",
             "## Folders, resume and calibration")  # (the second: the hand-kept table the first replaced)


def kept_sections(path: Path) -> str:
    """The hand-kept sections of ``path`` (from its first ``## `` heading on, less those this
    script writes), so that writing the tables again does not delete them."""
    if not path.exists():
        return ""
    text = path.read_text()
    at = text.find("\n## ")
    if at < 0:
        return ""
    sections = ["\n## " + part for part in text[at + 4:].split("\n## ")]
    return "".join(s for s in sections if not s.lstrip("\n").startswith(GENERATED))


def render_cases(seen: list[tuple[str, str, int, str]]) -> str:
    """The table of :data:`tests.field_cases.CASES`: what a user did, the exit code, what
    the command said (its first lines, the temporary folder cut from the paths)."""
    lines = ["", GENERATED[0], "",
             "Each row is a case of `tests/field_cases.py`, run as a user runs it by",
             "`tests/test_field_reliability.py` (the exit code, the words below, and never a Python",
             "traceback or a library's log line); this table is written from the same runs.", "",
             "| case | what the user did | exit | what the command says |", "|---|---|---|---|"]
    for name, what, code, said in seen:
        said = said.replace("|", "\\|")
        lines.append(f"| `{name}` | {what} | {code} | {said} |")
    return "\n".join(lines) + "\n"


def render(cases, records: dict[str, dict], root: Path | None = None) -> str:
    """The table; ``root`` (the fixture's temporary folder) is cut from the messages' paths, so
    the file does not change from one run to the next."""
    lines = [
        "# Bad inputs: what `facegate filter` reports",
        "",
        "Produced by `python -m tests.bad_inputs --write docs/bad_inputs.md` from the fixture that",
        "`tests/test_bad_inputs.py` runs; the test checks every status below. Statuses of real faces",
        "(`accepted`) come from the shipped weights on one LFW photo.",
        "",
        "| file | what it is | status | message / notes |",
        "|---|---|---|---|",
    ]
    for name, what, _expected in cases:
        rec = records.get(name)
        if rec is None:
            status, message = "not listed", "the walk does not follow symbolic links to folders"
        else:
            status = rec["status"]
            message = rec.get("error") or "; ".join(rec.get("notes") or []) or ", ".join(rec.get("reasons") or [])
            if root is not None:
                message = message.replace(f"{root}{os.sep}", "")
        if name == "no_permission.jpg" and os.geteuid() == 0:
            message = "this run was as root, which reads any file; another user gets unreadable: permission denied"
        shown = name.encode("utf-8", "backslashreplace").decode()
        lines.append(f"| `{shown}` | {what} | {status} | {message} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    import json
    import subprocess
    import sys
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", type=Path, required=True)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = make_bad_inputs(tmp / "src")
        manifest = tmp / "manifest.jsonl"
        subprocess.run([sys.executable, "-m", "facegate.cli", "filter", str(tmp / "src"), "--accepted",
                        str(tmp / "a"), "--rejected", str(tmp / "r"), "--manifest", str(manifest)], check=False)
        records = {r["file"]: r for r in map(json.loads, manifest.read_text().splitlines())}
        from tests.field_cases import CASES, run_case, what_the_user_sees

        seen = []
        for n, case in enumerate(CASES):
            if case.needs is not None and not case.needs.exists():
                continue
            folder = tmp / f"case{n}"
            folder.mkdir()
            run = run_case(case, folder)
            said = what_the_user_sees(run).replace(f"{folder}{os.sep}", "").replace(str(folder), ".")
            seen.append((case.name, case.what, run.code, said))
            if case.check is not None:
                case.check(folder, run)  # (also frees what a case holds: the other run's lock)
        args.write.write_text(render(cases, records, tmp / "src") + render_cases(seen) + kept_sections(args.write))
        os.chmod(tmp / "src" / "no_permission.jpg", 0o600)
        shutil.rmtree(tmp, ignore_errors=True)
    print(args.write)


if __name__ == "__main__":
    main()
