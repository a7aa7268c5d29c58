"""What the handoff module says to shoppers, in their language, and the agents' default
canned replies."""

from __future__ import annotations

from typing import Any

SHOPPER_TEXTS: dict[str, dict[str, str]] = {
    "queued": {
        "en": "A person from our team will take over this conversation. You are number {position} "
              "in the queue; the expected wait is about {minutes} minute(s). You can keep writing here: "
              "everything you send is passed on.",
        "zh": "已为您转接人工客服。您目前排在第 {position} 位，预计等待约 {minutes} 分钟。"
              "您可以继续在这里留言，所有消息都会转给客服。",
    },
    "offline_hours": {
        "en": "Our team is not working right now (hours: {hours}, {zone}). I have created ticket {ticket} "
              "with this conversation; a person will answer here by {due}. You can add details meanwhile.",
        "zh": "现在是非工作时间（客服时间：{hours}，{zone}）。已为您创建工单 {ticket}，"
              "客服将在 {due} 前在这里回复您。您可以继续补充信息。",
    },
    "offline_agents": {
        "en": "No one from our team is online at this moment. I have created ticket {ticket} with this "
              "conversation; a person will answer here by {due}. You can add details meanwhile.",
        "zh": "目前暂无客服在线。已为您创建工单 {ticket}，客服将在 {due} 前在这里回复您。您可以继续补充信息。",
    },
    "claimed": {
        "en": "You are now chatting with {agent} from our team.",
        "zh": "客服 {agent} 已接入，正在为您服务。",
    },
    "handed_back": {
        "en": "You are back with the assistant. Ask me anything, or say \"human\" to reach a person again.",
        "zh": "已为您切换回智能助手。有问题可以随时问我，输入“人工”可再次联系客服。",
    },
    "survey": {
        "en": "Your case is closed. How satisfied are you with the help you got? (1 = not at all, 5 = very)",
        "zh": "您的问题已处理完毕。请为本次服务打分（1 = 非常不满意，5 = 非常满意）。",
    },
    "survey_thanks": {
        "en": "Thank you for your feedback!",
        "zh": "感谢您的评价！",
    },
}

# The agents' default canned replies (CANNED_REPLIES_FILE replaces them): a text per
# language, with the variables of handoff/canned.py filled from the conversation.
DEFAULT_CANNED: list[dict[str, Any]] = [
    {"title": "Looking into it", "text": {
        "en": "{name}, thanks for waiting! I'm looking into order {order} now.",
        "zh": "{name}！感谢您的耐心等待，我正在为您查询订单 {order}。"}},
    {"title": "Need order number", "text": {
        "en": "{name}, could you tell me your order number, please?",
        "zh": "{name}！请问您的订单号是多少？"}},
    {"title": "Need a photo", "text": {
        "en": "Could you send a photo of the {item} and its packaging, please?",
        "zh": "麻烦您拍一下{item}和包装的照片发给我们，谢谢！"}},
    {"title": "Refund on its way", "text": {
        "en": "The refund for order {order} (case {case}) has been approved; it reaches your original payment "
              "method within 1-3 working days.",
        "zh": "订单 {order} 的退款（售后单 {case}）已审核通过，1-3 个工作日内原路退回。"}},
    {"title": "Replacement sent", "text": {
        "en": "A replacement {item} for order {order} is on its way; you will get the tracking number here.",
        "zh": "订单 {order} 的{item}已为您补发，物流单号会在这里发给您。"}},
    {"title": "Checking with the expert", "text": {
        "en": "{name}, I'm sorry about your skin. I've passed case {case} to our skincare expert, who will "
              "reply here shortly. If it gets worse, please stop using the product and see a doctor.",
        "zh": "{name}！很抱歉给您的皮肤带来不适。售后单 {case} 已转给护肤专家，稍后会在这里回复您。"
              "如症状加重，请停止使用并及时就医。"}},
]


def shopper_text(key: str, language: str, **values: object) -> str:
    variants = SHOPPER_TEXTS[key]
    return variants.get(language, variants["en"]).format(**values)
