"""Slack and Discord notices with fields: apprise's own plugins, taught to carry them.

apprise's Slack plugin sends one legacy attachment (title, text, colour) and no fields;
its Discord plugin makes embed fields only by parsing `# Heading` sections out of a
Markdown body, and drops a last section of one character: `commonmark_sections` wants two
characters of section text unless more text follows, and apprise strips the body's
trailing whitespace before the plugin sees it, so "# 💬 Commented\\n1" ends up empty.

So the counts go as data, not as Markdown. Each class below subclasses apprise's plugin
and adds the notice's fields to the payload that plugin built, just before it is posted;
everything else (URL forms, modes, colours, retries, its HTTP client) stays apprise's.
`register()` puts them in apprise's plugin registry under the plugins' own schemas
(`slack://`, `discord://` and the pasted https webhook URLs), so the usual URLs get fields.
"""

from __future__ import annotations

from typing import Any

from apprise import manager_plugins
from apprise.plugins import discord, slack

from codexd.notify.endpoints import Field
from codexd.present.shown import md_text

# apprise's plugin classes are partly typed; they are used here as what they are to mypy: Any.
_Slack: Any = slack.NotifySlack
_Discord: Any = discord.NotifyDiscord
_registry: Any = manager_plugins.NotificationManager

DISCORD_NAME_MAX, DISCORD_VALUE_MAX, DISCORD_FIELDS_MAX = 256, 1024, 25
SLACK_VALUE_MAX, SLACK_BLOCK_FIELDS_MAX = 2000, 10


def slack_fields(fields: tuple[Field, ...]) -> list[dict[str, Any]]:
    """A legacy attachment's `fields`, as the seed's webhook payload has them."""
    return [{"title": f.name, "value": f.value[:SLACK_VALUE_MAX], "short": f.short} for f in fields]


def slack_block(fields: tuple[Field, ...]) -> dict[str, Any]:
    """The same fields as one Block Kit section (`?blocks=yes`)."""
    cells = [{"type": "mrkdwn", "text": f"*{f.name}*\n{f.value}"[:SLACK_VALUE_MAX]} for f in fields]
    return {"type": "section", "fields": cells[:SLACK_BLOCK_FIELDS_MAX]}


def discord_fields(fields: tuple[Field, ...]) -> list[dict[str, Any]]:
    """Embed fields, whose values Discord renders as Markdown: escaped, and never empty (refused)."""
    return [
        {
            "name": f.name[:DISCORD_NAME_MAX],
            "value": md_text(f.value)[:DISCORD_VALUE_MAX] or "-",
            "inline": f.short,
        }
        for f in fields[:DISCORD_FIELDS_MAX]
    ]


def add_slack_fields(payload: dict[str, Any], fields: tuple[Field, ...]) -> None:
    """Into the attachment apprise built: after its blocks, or as the legacy `fields`."""
    attachments = payload.get("attachments")
    if not fields or not isinstance(attachments, list) or not attachments:
        return
    first = attachments[0]
    if not isinstance(first, dict):
        return
    blocks = first.get("blocks")
    if isinstance(blocks, list):
        blocks.insert(min(len(blocks), 2), slack_block(fields))  # after the title and text
    elif "color" in first:
        first["fields"] = slack_fields(fields)


def add_discord_fields(payload: dict[str, Any], fields: tuple[Field, ...]) -> None:
    embeds = payload.get("embeds")
    if fields and isinstance(embeds, list) and embeds and isinstance(embeds[0], dict):
        embeds[0]["fields"] = discord_fields(fields)


def add_discord_lines(payload: dict[str, Any], fields: tuple[Field, ...]) -> None:
    embeds = payload.get("embeds")
    if not fields or not isinstance(embeds, list) or not embeds or not isinstance(embeds[0], dict):
        return
    lines = "\n".join(f"**{md_text(f.name)}:** {md_text(f.value)}" for f in fields[:DISCORD_FIELDS_MAX])
    text = embeds[0].get("description")
    embeds[0]["description"] = f"{text}\n{lines}" if isinstance(text, str) and text else lines


class SlackWithFields(_Slack):  # type: ignore[misc]
    """apprise's Slack plugin; its attachment also carries `notice_fields`."""

    notice_fields: tuple[Field, ...] = ()

    def _send(self, url: str, payload: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        add_slack_fields(payload, self.notice_fields)
        return super()._send(url, payload, *args, **kwargs)


class DiscordWithFields(_Discord):  # type: ignore[misc]
    """apprise's Discord plugin; its embed carries `notice_fields` (with `?format=markdown`)."""

    notice_fields: tuple[Field, ...] = ()

    def _send(self, payload: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if self.fields:
            add_discord_fields(payload, self.notice_fields)
        else:  # `?fields=no`: an embed without fields, so the counts go into its text
            add_discord_lines(payload, self.notice_fields)
        return super()._send(payload, *args, **kwargs)


FIELD_PLUGINS = (SlackWithFields, DiscordWithFields)
_registered: list[bool] = []


def register() -> None:
    """Once per process: our classes answer apprise's Slack and Discord schemas."""
    if not _registered:
        for plugin in FIELD_PLUGINS:
            _registry().add(plugin, force=True)  # a singleton: apprise's registry
        _registered.append(True)
