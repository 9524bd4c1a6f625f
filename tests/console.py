"""A browser's session on the admin (real login form, CSRF token and session cookie), and the
QR codes the agent draws on its console, read back with a real decoder (zbarimg)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import requests

# segno's compact terminal drawing: each character is two modules, (top, bottom), 1 = light.
_BLOCKS = {"█": (1, 1), "▀": (1, 0), "▄": (0, 1), " ": (0, 0)}


def admin_session(base_url: str, ca: Path, username: str, password: str) -> requests.Session:
    """A session logged in through /admin/login/ the way a browser does it."""
    session = requests.Session()
    login = f"{base_url}/admin/login/"
    # verify= per call: REQUESTS_CA_BUNDLE in the environment would override a session's.
    page = session.get(login, verify=str(ca), timeout=30)
    assert page.status_code == 200, page.status_code
    answer = session.post(login, verify=str(ca), timeout=30, headers={"Referer": login}, data={
        "username": username, "password": password, "next": "/admin/",
        "csrfmiddlewaretoken": session.cookies["csrftoken"]})
    assert answer.status_code == 200 and "sessionid" in session.cookies, answer.text[:300]
    return session


def qr_blocks(text: str) -> list[list[str]]:
    """Every QR code drawn in ``text``: runs of lines made only of block characters."""
    blocks, current = [], []
    for line in text.split("\n"):
        if line and set(line) <= set(_BLOCKS) and "█" in line:
            current.append(line)
        else:
            if len(current) > 10:
                blocks.append(current)
            current = []
    if len(current) > 10:
        blocks.append(current)
    return blocks


def decode_qr(lines: list[str], workdir: Path) -> str:
    """What a QR scanner reads from the drawing: ``lines`` as a greyscale image for zbarimg."""
    zbarimg = shutil.which("zbarimg")
    assert zbarimg, "zbarimg (zbar-tools) is required: run scripts/install-test-deps.sh"
    rows = [[_BLOCKS[c][half] for c in line] for line in lines for half in (0, 1)]
    width, margin, scale = max(map(len, rows)) + 8, 4, 6
    rows = [[1] * margin + r + [1] * (width - margin - len(r)) for r in rows]
    rows = [[1] * width] * margin + rows + [[1] * width] * margin
    image = b"".join(bytes(255 * v for v in row for _ in range(scale)) * scale for row in rows)
    path = workdir / "qr.pgm"
    path.write_bytes(f"P5 {width * scale} {len(rows) * scale} 255\n".encode() + image)
    done = subprocess.run([zbarimg, "--raw", "-q", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, f"no QR code found: {done.stderr}"
    return done.stdout.strip()
