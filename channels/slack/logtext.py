"""Every log message of the Slack channel, in one place, and the channel's logger.

Log calls pass one of these constants as the message and put details in `extra`; shopper
text only ever goes in the `text` extra (dropped above DEBUG, see bot/log.py).
"""

from __future__ import annotations

import logging

log = logging.getLogger("gateway.slack")


class LogText:
    """The messages `gateway.slack` writes, so operators can grep for them and docs can cite them."""

    ENABLED = "Slack channel enabled"
    IDENTITY = "Slack app identified (auth.test)"
    IDENTITY_FAILED = "auth.test failed; check SLACK_BOT_TOKEN (the app retries on the next event)"
    SIGNATURE_REJECTED = "Slack request refused: bad or stale signature"
    RETRY_RECEIVED = "Slack redelivered an event (X-Slack-Retry-Num)"
    ACCEPTED = "Slack message accepted"
    ACCEPT_FAILED = "Slack message could not be handed to the conversation service"
    REPLAYING = "replaying Slack deliveries kept before the last stop"
    REPLAY_BAD_RECORD = "a kept Slack delivery could not be read; dropped"
    RATE_LIMITED = "Slack rate-limited a call (429); waiting Retry-After, then sending the same message again"
    RATE_LIMIT_GAVE_UP = "Slack kept rate-limiting a call; giving up on this message"
    CHOICE_UPDATE_FAILED = "could not replace the buttons of a clicked Slack message"
    FILE_SERVED = "Slack file relayed"
    FILE_REFUSED = "Slack file request refused"
    FILE_LOOKUP_FAILED = "files.info failed for a Slack file link"
    FILE_UPSTREAM_FAILED = "Slack did not hand out the file (is the files:read scope granted?)"
    SOCKET_CONNECTING = "connecting to Slack in Socket Mode"
    SOCKET_CONNECTED = "Socket Mode connection established"
    SOCKET_CLOSED = "Socket Mode connection closed"
    BUTTON_PAYLOAD_TOO_LONG = "button payload longer than Slack allows; the button sends its title instead"
