"""The layout's guard rails that import-linter does not cover: no module grows past a screenful of concerns."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hub", "devices", "firmware_sim")
MAX_LINES = 400
EXEMPT: dict[str, str] = {}  # "path": "why it may be longer" (declarative tables only)


def test_no_module_passes_400_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert len(sizes) > 40  # the scan found the tree
    too_long = {path: n for path, n in sizes.items() if n > MAX_LINES and path not in EXEMPT}
    assert not too_long, f"modules over {MAX_LINES} lines (split them by concern): {too_long}"
