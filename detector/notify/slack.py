"""`slack`: an incoming webhook (`POST {"text": …}`, answered `ok`), with the status page link."""

from __future__ import annotations

from detector.notify.config import Channel
from detector.notify.http import Context, request
from detector.notify.text import detail, headline
from detector.store.outbox import Delivery

_MARK = {
    "incident.opened": ":red_circle:",
    "incident.updated": ":large_orange_circle:",
    "incident.resolved": ":large_green_circle:",
    "component.updated": ":information_source:",
    "maintenance.started": ":large_blue_circle:",
    "maintenance.ended": ":large_green_circle:",
    "episode.started": ":warning:",
}


def slack_text(event: str, body: dict[str, object], audience: str, link: str) -> str:
    lines = [f"{_MARK.get(event, '')} *{_escape(headline(event, body))}*"]
    more = detail(body, "oncall" if audience == "oncall" else "public")
    if more:
        lines.append(_escape(more))
    if link:
        lines.append(f"<{link}|Status page>")
    return "\n".join(lines)


def _escape(text: str) -> str:
    """Slack's three control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Slack:
    def __init__(self, channel: Channel, context: Context) -> None:
        self.channel = channel
        self.context = context

    async def send(self, delivery: Delivery) -> None:
        link = self.channel.link or self.context.link
        text = slack_text(delivery.event, dict(delivery.body), self.channel.audience or "", link)
        await request(
            self.context.session,
            "POST",
            self.channel.url,
            body={"text": text},
            timeout=self.channel.timeout,
        )
