"""`python -m scripts.dashboards` (`make dashboards`): write the JSON files."""

from __future__ import annotations

import sys

from . import DASHBOARD_DIR, rendered_files


def main() -> None:
    DASHBOARD_DIR.mkdir(parents=True, exist_ok=True)
    files = rendered_files()
    for name, text in files.items():
        (DASHBOARD_DIR / name).write_text(text)
    print(f"wrote {len(files)} dashboards to {DASHBOARD_DIR}", file=sys.stderr)


if __name__ == "__main__":
    main()
