"""``make bench``: codex-lb measured against a bare aiohttp pass-through."""
