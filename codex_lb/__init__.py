"""codex-lb: one local endpoint in front of a pool of ChatGPT (Codex) accounts."""

__version__ = "0.1.0"
