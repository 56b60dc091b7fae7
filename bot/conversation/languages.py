"""The languages the bot speaks out of the box, each named in itself, and the alarm words
that work in each (all of them are also listed in ``config.example.toml``)."""

from __future__ import annotations

from collections.abc import Mapping

SOURCE_LANGUAGE = "en"  # the language every text is written in first

LANGUAGE_NAMES: Mapping[str, str] = {
    "en": "English",
    "es": "Español",
    "fr": "Français",
    "ar": "العربية",
    "ru": "Русский",
    "fa": "فارسی",
    "pt": "Português",
    "tr": "Türkçe",
}

# "SOS" works in every language; these are the local words people shout for help.
DEFAULT_SOS_WORDS: Mapping[str, tuple[str, ...]] = {
    "en": ("SOS", "mayday"),
    "es": ("SOS", "socorro", "auxilio"),
    "fr": ("SOS", "au secours", "à l'aide"),
    "ar": ("SOS", "النجدة", "نجدة", "ساعدوني"),
    "ru": ("SOS", "помогите", "спасите"),
    "fa": ("SOS", "کمک", "کمکم کنید"),
    "pt": ("SOS", "socorro", "me ajudem"),
    "tr": ("SOS", "imdat", "yardım edin"),
}
