"""The explanation page (/ui): its form description (`form`) and its static files
(`static/`: one HTML page, a stylesheet and a vanilla script; no build step, no network)."""

from pathlib import Path

STATIC = Path(__file__).parent / "static"
