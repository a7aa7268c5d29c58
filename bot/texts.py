"""Texts the gateway itself says to shoppers (everything else comes from Rasa), per language."""

from __future__ import annotations

GATEWAY_TEXTS: dict[str, dict[str, str]] = {
    "holding": {
        "en": "Sorry, our assistant is taking longer than usual. Your message is saved and "
              "we will answer it here as soon as we can.",
        "zh": "抱歉，智能助手暂时响应较慢。您的消息已保存，我们会尽快在这里回复您。",
    },
    "empty_reply": {
        "en": "Sorry, something went wrong on our side while handling that. Please try again, "
              "or type \"human\" to reach a person.",
        "zh": "抱歉，处理您的消息时出了点问题。请再试一次，或输入“人工”联系客服。",
    },
}


def gateway_text(key: str, language: str | None) -> str:
    variants = GATEWAY_TEXTS[key]
    return variants.get(language or "en", variants["en"])
