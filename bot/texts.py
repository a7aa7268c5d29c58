"""Texts the gateway itself says to shoppers (everything else comes from Rasa), in both
languages. Error frames and HTTP errors a shopper's client may show carry them too, in the
conversation's language (`error_body`)."""

from __future__ import annotations

from typing import Any

from bot.i18n import pick

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
    "kept_waiting": {
        "en": "Please wait for an answer to your earlier messages: we have this one too and will answer it right after them.",
        "zh": "请稍候，我们正在回复您之前的消息；这条消息也已收到，随后就会回复。",
    },
}

# Errors a shopper's client shows, by the code in the error frame or HTTP body.
ERROR_TEXTS: dict[str, dict[str, str]] = {
    "invalid_json": {"en": "That message could not be read. Please send it again.",
                     "zh": "无法读取这条消息，请重新发送。"},
    "invalid_frame": {"en": "That message could not be read. Please send it again.",
                      "zh": "无法读取这条消息，请重新发送。"},
    "binary_not_supported": {"en": "That message could not be read. Please send it again.",
                             "zh": "无法读取这条消息，请重新发送。"},
    "hello_required": {"en": "The chat is still connecting. Please send your message again in a moment.",
                       "zh": "聊天仍在连接中，请稍后重新发送。"},
    "empty_text": {"en": "Please type a message first.", "zh": "请先输入内容。"},
    "text_too_long": {"en": "That message is too long ({length} characters; up to {limit}). Please shorten it "
                            "or send it in parts.",
                      "zh": "消息太长（{length} 字，最多 {limit} 字），请删减或分几条发送。"},
    "rate_limited": {"en": "You are sending messages very fast. Please wait a moment, then send again.",
                     "zh": "您发送得太快了，请稍等片刻再发送。"},
    "queue_full": {"en": "Please wait for an answer to your earlier messages, then write again.",
                   "zh": "请先等待我们回复您之前的消息，然后再发送。"},
    "invalid_attachment": {"en": "That file is not part of this conversation. Please attach it again "
                                 "(up to 5 files per message).",
                           "zh": "该文件不属于本次对话，请重新上传（每条消息最多 5 个文件）。"},
    "invalid_customer": {"en": "We could not confirm your account, so I'll help you without it.",
                         "zh": "无法验证您的账户，我会在不登录的情况下为您服务。"},
    "unauthorized": {"en": "Your chat session has expired. Please reload the page.",
                     "zh": "聊天会话已过期，请刷新页面。"},
    "too_large": {"en": "That file is too big: files up to 5 MB, please.",
                  "zh": "文件太大：请上传 5 MB 以内的文件。"},
    "unsupported_type": {"en": "I can take photos (JPEG, PNG, WebP, GIF) or PDF files only.",
                         "zh": "仅支持照片（JPEG、PNG、WebP、GIF）或 PDF 文件。"},
    "invalid_upload": {"en": "The upload did not work. Please choose the file again.",
                       "zh": "上传失败，请重新选择文件。"},
    "upload_quota": {"en": "You have sent as many files as one conversation can take. Please describe the rest "
                           "in words, or ask for a person.",
                     "zh": "本次对话上传的文件已达上限。请用文字描述其余内容，或联系人工客服。"},
    "upload_rate": {"en": "That is a lot of files at once. Please wait a minute, then send the rest.",
                    "zh": "一次上传的文件太多了，请稍等一分钟再发送其余的。"},
}


def gateway_text(key: str, language: str | None) -> str:
    return pick(GATEWAY_TEXTS[key], language)


def error_text(code: str, language: str | None, **values: Any) -> str:
    """The shopper-facing explanation of an error code, in `language`."""
    texts = ERROR_TEXTS.get(code)
    if texts is None:
        return pick({"en": "Something went wrong. Please try again.", "zh": "出现错误，请重试。"}, language)
    return pick(texts, language).format(**values)


def error_body(code: str, language: str | None, **values: Any) -> dict[str, Any]:
    """`{"error": code, "message": ..., "language": ...}` for an error frame or HTTP answer."""
    return {"error": code, "message": error_text(code, language, **values), "language": language or "en"}
