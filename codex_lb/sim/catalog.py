"""The model catalog served at `GET /backend-api/codex/models`.

The Codex CLI 0.171 reads `{"models": [ModelInfo...]}` and throws the whole
answer away (falling back to built-in metadata, with a warning) when one
entry misses a field or names an enum value it does not know, so every entry
carries the full field set the CLI's own bundled catalog has, with values
taken from the sets that catalog uses. The CLI asks for the catalog only
when it logs in with ChatGPT (`requires_openai_auth = true`), not with an
`env_key` provider.

The instructions (`model_messages.instructions_template`, and the older
`base_instructions`) become the CLI's system prompt, its first developer
message; they name the emulator so a test can tell the catalog was taken.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from codex_lb.constants import PLAN_WEEKLY_CREDITS

CATALOG_INSTRUCTIONS: Final = (
    "You are Codex, running against the codex-lb emulator (sim catalog)."
)

_EFFORTS: Final = (
    ("low", "Fast responses with lighter reasoning"),
    ("medium", "Balanced speed and reasoning depth"),
    ("high", "Deeper reasoning for complex problems"),
)


def model_entry(slug: str, priority: int) -> dict[str, Any]:
    """One catalog entry for `slug`."""
    return {
        "slug": slug,
        "display_name": slug,
        "description": f"{slug} served by the codex-lb emulator.",
        "default_reasoning_level": "medium",
        "supported_reasoning_levels": [
            {"effort": effort, "description": text} for effort, text in _EFFORTS
        ],
        "default_reasoning_summary": "none",
        "shell_type": "shell_command",
        "visibility": "list",
        "minimal_client_version": "0.1.0",
        "supported_in_api": True,
        "available_in_plans": list(PLAN_WEEKLY_CREDITS),
        "availability_nux": None,
        "priority": priority,
        "upgrade": None,
        "base_instructions": CATALOG_INSTRUCTIONS,
        "model_messages": {
            "instructions_template": CATALOG_INSTRUCTIONS,
            "persistent_instructions": None,
            "tools": None,
            "approvals": None,
            "collaboration_modes": None,
            "auto_review": None,
            "multi_agent": None,
            "permissions": None,
            "token_budget": None,
            "guardian_v2": None,
            "confirmation_policies": None,
        },
        "comp_hash": "0",
        "prefer_websockets": False,
        "use_responses_lite": False,
        "supports_reasoning_summaries": True,
        "supports_reasoning_summary_parameter": True,
        "supports_reasoning_effort_updates": False,
        "support_verbosity": True,
        "default_verbosity": "low",
        "apply_patch_tool_type": "freeform",
        "web_search_tool_type": "text_and_image",
        "input_modalities": ["text"],
        "supports_image_detail_original": False,
        "truncation_policy": {"mode": "tokens", "limit": 10000},
        "supports_parallel_tool_calls": False,
        "tool_mode": None,
        "multi_agent_version": None,
        "multi_agent_reasoning_effort": None,
        "include_skills_usage_instructions": False,
        "include_apps_usage_instructions": False,
        "include_plugin_usage_instructions": False,
        "guardian": None,
        "node_repl_auto_review_required": False,
        "node_repl_disabled": False,
        "requires_sandboxed_review": False,
        "auto_review_model_override": None,
        "model_specialty": None,
        "context_window": 272000,
        "max_context_window": 272000,
        "auto_compact_token_limit": None,
        "experimental_supported_tools": [],
        "supports_search_tool": False,
        "supports_experimental_context": False,
        "default_service_tier": None,
        "service_tiers": [],
        "additional_speed_tiers": [],
    }


def model_catalog(models: Iterable[str]) -> dict[str, Any]:
    """The catalog answer for the served models, first listed first."""
    return {"models": [model_entry(slug, index) for index, slug in enumerate(models)]}
