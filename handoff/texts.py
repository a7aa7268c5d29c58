"""What the handoff module says to shoppers, in their language, and the agents' default
canned replies."""

from __future__ import annotations

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

DEFAULT_CANNED = [
    {"title": "Looking into it", "text": "Thanks for waiting! I'm looking into your order now."},
    {"title": "Need order number", "text": "Could you tell me your order number, please?"},
    {"title": "Need a photo", "text": "Could you send a photo of the item and the packaging, please?"},
    {"title": "Refund on its way", "text": "Your refund has been approved; it reaches your original payment "
                                          "method within 1-3 working days."},
    {"title": "查询中", "text": "感谢您的耐心等待，我正在为您查询订单。"},
    {"title": "请提供订单号", "text": "请问您的订单号是多少？"},
    {"title": "请提供照片", "text": "麻烦您拍一下商品和包装的照片发给我们，谢谢！"},
    {"title": "退款已处理", "text": "您的退款已审核通过，1-3 个工作日内原路退回。"},
]


def shopper_text(key: str, language: str, **values: object) -> str:
    variants = SHOPPER_TEXTS[key]
    return variants.get(language, variants["en"]).format(**values)
