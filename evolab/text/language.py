"""Which language a text is in: the one guess seeds, scorers, embeddings and the engine share."""
from __future__ import annotations

import re

_HANGUL = re.compile("[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")  # syllables, jamo, compatibility jamo (ㅋㅋ)


def detect_language(text: str) -> str:
    """"ko" when at least 20% of the letters are Hangul (Korean mixes in English terms freely), else "en"."""
    hangul = len(_HANGUL.findall(text))  # regex and map keep a 50 MB file quick; a Python loop was not
    if not hangul:
        return "en"
    letters = sum(map(str.isalpha, text))
    return "ko" if hangul / letters >= 0.2 else "en"
