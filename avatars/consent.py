"""The consent agreement shown to end users, in English and Simplified Chinese.

Each language's document is hashed on its own: changing any text of either makes a new hash,
and a consent records the hash (and the text) of the language version that was shown.
"""

from __future__ import annotations

import hashlib
import json
import re

AGREEMENT_VERSION = "2026-12-02"

ENGLISH = "en"
SIMPLIFIED_CHINESE = "zh-Hans"
LANGUAGES = (ENGLISH, SIMPLIFIED_CHINESE)
DEFAULT_LANGUAGE = ENGLISH

# Separate items: each is consented to on its own (PIPL separate consent for sensitive data).
# The keys are the same in every language; only titles and texts are translated.
AGREEMENT_ITEMS = [
    {
        "key": "face_processing",
        "title": "Processing your face photos to make your avatar",
        "text": (
            "We process the front photo and the photos you upload only to make your personal "
            "avatar that renders your portraits. The photos are encrypted while stored and "
            "deleted as soon as the last part of the avatar that needs them is made: right "
            "after the photo checks for an instant avatar, after training for an avatar with "
            "its own small model of your face (a LoRA), and within 24 hours at the latest, "
            "whether or not making it succeeded."
        ),
    },
    {
        "key": "identity_check",
        "title": "Checking the photos show you, and keeping one face embedding",
        "text": (
            "We compare every photo with your front photo to make sure all show the same person, "
            "and we keep one face embedding (a list of numbers describing your face, the average "
            "of your photos) encrypted inside your avatar, to score how much each portrait looks "
            "like you. It is deleted together with your avatar."
        ),
    },
    {
        "key": "identity_embedding",
        "title": "Keeping an identity embedding for your instant avatar",
        "text": (
            "From the checked photos we compute one identity embedding (a list of numbers that "
            "describes your face) and keep it encrypted inside your avatar, so that your "
            "portraits can be made seconds after upload, before or without training. It is "
            "used only to render your own portraits, is included when you export your data, "
            "and is deleted together with your avatar."
        ),
    },
]

PROMISES = [
    "Your photos are never used to train anything other than your own avatar.",
    "Your photos are deleted as soon as your avatar no longer needs them (within 24 hours at "
    "the latest).",
    "Your avatar is deleted 30 days after you last use it, or at once when you ask.",
    "Only you can see your photos, avatar and portraits.",
]

AGE_CONFIRMATION = (
    "I am 18 or older, or my parent or guardian has agreed to this on my behalf where the law "
    "requires it (in China, under 14)."
)

# Simplified Chinese. Terms follow the Personal Information Protection Law of the PRC
# (《中华人民共和国个人信息保护法》): 单独同意 (separate consent), 不满十四周岁 (under 14),
# 父母或者其他监护人 (parents or other guardians).
AGREEMENT_ITEMS_ZH_HANS = [
    {
        "key": "face_processing",
        "title": "处理您的人脸照片，用于制作您的数字分身",
        "text": (
            "我们处理您上传的正面照及其他照片，仅用于制作为您生成写真的个人数字分身。照片在存储"
            "期间加密，并在数字分身中最后一个需要照片的部分制作完成后即予删除：即时分身在照片核验"
            "后立即删除；带有专属面部小模型（LoRA）的分身在训练完成后删除；无论制作成功与否，"
            "最迟在24小时内删除。"
        ),
    },
    {
        "key": "identity_check",
        "title": "核验照片均为您本人，并保留一份人脸特征向量",
        "text": (
            "我们会将每张照片与您的正面照进行比对，确认所有照片均为同一人；并在您的数字分身中加密"
            "保存一份人脸特征向量（一组描述您面部特征的数值，由您各张照片的特征取平均得出），用于"
            "评估每张写真与您的相似程度。该特征向量随您的数字分身一并删除。"
        ),
    },
    {
        "key": "identity_embedding",
        "title": "为即时分身保留一份身份特征向量",
        "text": (
            "我们根据核验通过的照片计算一份身份特征向量（一组描述您面部特征的数值），并加密保存在"
            "您的数字分身中，使您在上传后几秒内、无需等待训练即可生成写真。该向量仅用于生成您本人"
            "的写真，在您导出个人信息时一并提供，并随您的数字分身一并删除。"
        ),
    },
]

PROMISES_ZH_HANS = [
    "您的照片绝不会用于训练您本人数字分身以外的任何模型。",
    "您的数字分身不再需要照片时，照片即予删除（最迟在24小时内）。",
    "您的数字分身将在您最后一次使用30天后删除，或在您提出要求时立即删除。",
    "只有您本人能查看您的照片、数字分身和写真。",
]

AGE_CONFIRMATION_ZH_HANS = (
    "本人已年满十八周岁；或者在法律要求的情形下（在中国，指不满十四周岁），"
    "本人的父母或者其他监护人已代本人同意上述内容。"
)

AGE_CHOICES = ("adult", "guardian_consent")

_TEXTS = {
    ENGLISH: (AGREEMENT_ITEMS, PROMISES, AGE_CONFIRMATION),
    SIMPLIFIED_CHINESE: (AGREEMENT_ITEMS_ZH_HANS, PROMISES_ZH_HANS, AGE_CONFIRMATION_ZH_HANS),
}

# Accept-Language ranges that mean Simplified Chinese (compared in lower case): the bare
# language, the script subtag and the regions that write it.
_SIMPLIFIED = re.compile(r"zh(-hans(-[a-z0-9]{1,8})*|-cn|-sg|-my)?")
_RANGE = re.compile(
    r"\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]{1,5}))?\s*"
)


def language_for(accept_language: str) -> str:
    """The agreement language for an Accept-Language header (RFC 9110 ranges with q-values):
    of the ranges we offer (zh, zh-CN, zh-Hans... for Simplified Chinese; en, en-*, * for
    English) the one with the highest weight, the first listed on a tie; English when none is
    offered (zh-TW, fr...). Never fails, whatever the header holds."""
    best_q = 0.0
    best = DEFAULT_LANGUAGE
    for part in accept_language[:1000].split(","):
        match = _RANGE.fullmatch(part)
        if match is None:
            continue
        tag, quality = match.group(1).lower(), match.group(2)
        if _SIMPLIFIED.fullmatch(tag):
            offered = SIMPLIFIED_CHINESE
        elif tag == "*" or tag == "en" or tag.startswith("en-"):
            offered = ENGLISH
        else:
            continue
        try:
            q = float(quality) if quality is not None else 1.0
        except ValueError:
            continue
        if 0.0 < q <= 1.0 and q > best_q:
            best_q, best = q, offered
    return best


def agreement_document(language: str = DEFAULT_LANGUAGE) -> dict:
    """The document of one language, exactly what is hashed (the language itself is not part
    of it, so the English hash stays what it was before the translation was added)."""
    items, promises, age_confirmation = _TEXTS[language]
    return {
        "version": AGREEMENT_VERSION,
        "items": items,
        "promises": promises,
        "age_confirmation": age_confirmation,
    }


def agreement_hash(document: dict | None = None) -> str:
    canonical = json.dumps(document or agreement_document(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def current_hashes() -> dict[str, str]:
    """The hash of each language's current version, by hash: what a consent may be given to."""
    return {agreement_hash(agreement_document(language)): language for language in LANGUAGES}


def agreement_text(document: dict | None = None) -> str:
    document = document or agreement_document()
    parts = [f"{item['title']}\n{item['text']}" for item in document["items"]]
    parts.append("\n".join(document["promises"]))
    parts.append(document["age_confirmation"])
    return "\n\n".join(parts)
