"""One aiohttp session shared by the Slack Web API client and the file relay, opened at start-up
(inside the running loop) and closed at clean-up."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient


class SharedSession:
    """The Slack channel's HTTP session; the Web API client uses it once it is open."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self.client.session = self._session

    def get(self) -> aiohttp.ClientSession:
        """The open session; 503 for a request that arrives before start-up or after clean-up."""
        if self._session is None or self._session.closed:
            raise web.HTTPServiceUnavailable(text="the Slack channel is not running")
        return self._session

    async def close(self) -> None:
        self.client.session = None  # late sends (during shutdown) use a one-off session
        if self._session is not None:
            await self._session.close()
            self._session = None
