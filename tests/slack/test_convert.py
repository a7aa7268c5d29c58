"""What a shopper typed in Slack is what the assistant reads (Slack's markup undone)."""

from __future__ import annotations

from channels.slack.convert import plain_text


def test_slack_markup_reaches_the_assistant_as_the_shopper_typed_it() -> None:
    raw = ("<@UAPPBOT> order &lt;A-17&gt; &amp; <https://shop.example/o/17|my order> for <@UCOLLEAGUE> "
           "in <#C0123|purchasing>, <!here> <mailto:buyer@firm.example|buyer@firm.example>")
    assert plain_text(raw, "UAPPBOT", strip_leading_mention=True) == (
        "order <A-17> & my order for @UCOLLEAGUE in #purchasing, @here buyer@firm.example")
    assert plain_text("<@USOMEONE> hi", None, strip_leading_mention=True) == "hi"  # app id not known yet
