"""Evol-Instruct elimination rule 2, done carefully: did the responder refuse?

The WizardLM paper (section 3.3) drops an evolution when the answer "contains 'sorry' and is relatively
short (i.e., less than 80 words)". Matching words anywhere misfires both ways: "환율 위험은 완전히 피할 수
없습니다" (exchange-rate risk cannot be fully avoided) is an answer, and "답변을 드리기 어렵습니다" is a
refusal without any "sorry" in it. So this module reads the answer sentence by sentence:

* a **refusal form** is a sentence in which the *assistant* declines: first-person inability tied to an
  act of answering ("I can't help with that", "도와드릴 수 없습니다"), an apology joined to such inability,
  or an impersonal refusal of the request ("This request cannot be fulfilled", "요청하신 내용은 ...
  어렵습니다"). Inability said about the world ("you cannot withdraw before 59½", "피할 수 없습니다",
  "예측할 수 없습니다" about markets) is not a refusal form;
* a refusal form that turns into content in the same sentence ("I can't give personalised advice, but
  here is how NPV works: ...") or is followed by a sentence that starts delivering general content
  ("In general, ..." / "일반적으로 ...") is a **disclaimer**, not a refusal;
* what the answer quotes or drafts is not the assistant speaking: text in quotes, code, "> " block quotes,
  lines of a written dialogue ("Agent: ...", "상담원: ..."), and whatever follows a lead-in such as "Here's a
  draft:" or "사과문 초안입니다." are content, whatever they say;
* a refusal is the assistant declining now, in its own voice: inability narrated in the past ("당일 처리가
  불가능했고", a letter telling what happened) or reported ("은행이 ... 처리할 수 없다는 내용입니다") is not;
* a reasoning model's "<think>...</think>" block is its deliberation, not the answer: only what follows is read;
* a limit on what this answer covers ("I won't go into the full history here; the key point is ...") declines
  a digression, not the request: followed by content it is a caveat;
* the answer **is a refusal** when a refusal form opens it (first two sentences) and it is short
  (< ``max_words`` words, the paper's condition), or when refusal sentences - with the apologies, offers
  of other help, redirections and justifications around them - make up most of the answer, at any length,
  or when a short answer does nothing but hand the question on to a professional ("I'd recommend
  consulting a licensed financial advisor ...", "세무사와 상담하시길 권해 드립니다"), perhaps with the referral's
  reason ("They can review your specific situation"): no refusal form, but the answer asked for is not
  there. A hedge followed by the answer ("As an AI I don't have preferences,
  but the fund most often recommended is ...") stays an answer.

Word counts for Korean: a Korean word (eojeol, the whitespace-separated unit) fuses a content word with its
particles or endings ("환율 위험은" = "the exchange-rate risk"; "없습니다" = "there is not"), so the same
message takes roughly five Korean eojeols for every eight English words. The paper's 80 is an English
threshold; to keep it meaning the same amount of text, a token containing Hangul counts as
``HANGUL_TOKEN_WEIGHT`` (1.6) words, any other token as 1. Mixed-script answers are counted token by token,
so the language argument does not change the length, only which refusal forms are looked for.
"""
from __future__ import annotations

import re
import unicodedata

__all__ = ["is_refusal", "REFUSAL_FORMS", "count_words", "HANGUL_TOKEN_WEIGHT", "OPENING_SENTENCES"]

# One Korean eojeol carries about 1.6 English words of message. Measured on the 19 answers of the held-out
# corpus (tests/data/refusals_heldout) that have an English counterpart with the same content, written
# independently: solving English words = Hangul tokens x w + other tokens gives a median w of 1.60 (mean
# 1.59; prose pairs 1.5-1.7, formula-heavy ones lower). The earlier 1.5 was a guess from a few sentence
# pairs ("I'm sorry, but I can't help with that request." = 9 words vs "죄송하지만 그 요청은 도와드릴 수
# 없습니다" = 6 eojeols). So a Korean answer of 50 eojeols is the paper's 80 words, and the held-out set's
# Korean refusals of 60-70 eojeols are long answers (their English counterparts run 110-125 words): they
# must be caught by their share of refusal text, not by the short-answer rule. Nothing in either corpus
# changes between weights 1.4 and 1.8.
HANGUL_TOKEN_WEIGHT = 1.6
# "Opens the answer": a refusal form in the first sentence or two ("Great question! Unfortunately, I can't
# ..." and "죄송합니다. 해당 요청은 ... 어렵습니다" both put it second).
OPENING_SENTENCES = 2
# Refusal sentences plus their entourage must cover more than this share of the text (by characters).
MOSTLY = 0.5

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")

# ---------------------------------------------------------------------------------------------------------
# English. Text is NFKC-normalised, lower-cased, with curly apostrophes made straight, before matching.
# ---------------------------------------------------------------------------------------------------------
# The assistant's own inability or unwillingness, in the first person. Only "i": "we cannot refund ..." is
# a bank speaking in a letter the assistant drafted, "you cannot ..." is a fact about the world.
# "wouldn't"/"shouldn't" are left out: "I wouldn't recommend margin trading" is advice, not a refusal.
_EN_NEG = (r"\bi\s*(?:can't|cannot|can\s+not|won't|will\s+not|"
           r"(?:am|'m)\s+(?:really\s+|just\s+|simply\s+)?(?:not\s+(?:able|going|allowed|permitted|comfortable|"
           r"in\s+a\s+position)|unable)|"
           r"(?:don't|do\s+not)\s+(?:feel\s+comfortable|think\s+(?:i\s+)?(?:can|should)|have\s+the\s+(?:ability|"
           r"capability|means)))")
# ... tied to an act of answering or helping, within a few words ("I won't be able to provide", "I'm not
# able to help you with"). Idioms that are not refusals are excluded: "I can't help but notice", "I can't
# help thinking", "I can't tell you how much ...", "I can't stress enough".
_EN_ACT = (r"(?:help(?!\s+but\b)(?!\s+\w+ing\b)|assist|provid|give|offer|share|disclose|reveal|creat|writ|"
           r"generat|produc|draft|compos|"
           # Changing a text is an act of writing done for the user: "I won't be able to rewrite this claim".
           r"re-?writ|edit|revis(?:e|ing)|modif|alter(?!nat)|falsif|fabricat|backdat|"
           r"answer|respond|reply|comply|fulfil|complet(?:e|ing)\s+(?:this|that|your)|"
           r"engag|participat|support\s+(?:this|that|your|such)|facilitat|encourag|condon|endors|promot|"
           r"discuss|go\s+into|access|brows|look\s+up|retriev|check\s+(?:real|live|current|today|your|the|that|this)|"
           # Perceiving what the user points at is an act the assistant would perform for them: "I can't see your
           # account", "I can't open the attachment" ("I can't see why ..." is an idiom and has no object).
           r"(?:see|view)\s+(?:your|attach|link|file|image|document|screen|photo|picture)|"
           # ... with an article before the medium ("I can't see the attached spreadsheet"), and hearing or
           # watching a recording is the same act for sound and video ("I can't listen to audio files").
           r"(?:see|view|hear|listen\s+to|watch|play)\s+(?:(?:the|that|this|these|those|any|an?)\s+)?(?:\w+\s+)?"
           r"(?:attach\w*|links?|urls?|files?|images?|documents?|screens?|screenshots?|photos?|pictures?|"
           r"spreadsheets?|pdfs?|audio|videos?|recordings?|voice\s+(?:notes?|messages?|memos?)|podcasts?|uploads?)\b|"
           r"(?:open|read)\s+(?:your|the|that|this|attach|link|file|image|document|article|screen)|"
           r"predict|forecast|guarantee\s+(?:which|what|that\s+(?:a|the|this)\s+(?:stock|price|fund))|"
           r"tell\s+you(?!\s+how\s+(?:much|many|often|important))|"
           r"recommend\s+(?:a\s+|any\s+)?(?:specific|particular|individual)|do\s+(?:that|this|so|it)\b|"
           r"make\s+(?:that|this)|be\s+of\s+(?:help|assistance)|accommodate|continue|proceed|process\s+(?:this|that|your))")
_EN_INABILITY = _EN_NEG + r"(?:\W+\w+(?:'\w+)?){0,5}?\W+" + _EN_ACT

# Acts of answering/helping in Korean (the stem before "할 수 없", "하기 어렵", "이 어렵", "하지 않"): 답변,
# 대답, 응답, 도와/도움, 제공, 안내, 알려, 처리, 작성, 생성, 추천, 조언, 진행, 수행, 지원, 공유, 협조, 관여,
# 논의, 언급, 공개, 접근, 조회, 검색, 확인, 예측, 판단, 단정, 말하, 설명, 대응, 응하.
_KO_ACT = (r"(?:답변|답|대답|응답|도와|도움|제공|안내|알려|처리|작성|생성|추천|조언|진행|수행|지원|공유|협조|관여|"
           r"논의|언급|공개|접근|조회|검색|확인|예측|판단|단정|말[하할해]|말씀|설명|대응|응[하할해]|알아보|찾아|"
           r"이어[가갈]|계속|"
           # Perceiving what the user sent is an act done for them ("첨부하신 이미지를 볼 수 없습니다"), as in
           # English "I can't see your attachment": a perceiving verb on a medium, with its object particle.
           r"(?:이미지|사진|그림|파일|첨부\S{0,4}|링크|url|문서|음성|녹음|영상|동영상|화면|스크린샷|캡처)(?:을|를)\s*"
           r"(?:보|볼|봐|열어\s*(?:보|볼|봐)|열|열어|읽|들|듣|재생)|"
           # The medium as topic with the assistant named as the one who cannot ("첨부하신 파일은 제가 볼 수 없어요",
           # "음성 파일은 제가 들을 수 없어요"): Korean fronts the object as topic; the first person keeps it about
           # the assistant ("이 영상은 볼 수 없습니다" alone may be about the video, e.g. a region lock).
           r"(?:이미지|사진|그림|파일|첨부\S{0,4}|링크|url|문서|음성|녹음|영상|동영상|화면|스크린샷|캡처)(?:은|는)\s*"
           r"(?:제가|저는|저로서는)\s*(?:보|볼|봐|열어\s*(?:보|볼|봐)|열|열어|읽|들|듣|재생))")
# Inability endings: "수 없", "기 어렵" (not "어렵지 않"), "기 곤란", "이/가 어렵", "이/가 불가", "지 못하",
# "지 않겠", "해 드리지 못". The act must come within a few characters of the ending.
_KO_UNABLE = (r"\S{0,6}\s*(?:수\s*(?:가|는|도)?\s*없|기\s*(?:가|는|도)?\s*(?:어렵(?!지\s*않)|어려[워운]|곤란|힘들|힘듭)|"
              r"(?:이|가|은|는)\s*(?:어렵(?!지\s*않)|어려[워운]|곤란|불가)|지\s*(?:못|않(?:겠|습니다|아요|습))|"
              r"해\s*(?:줄|줄\s*수)\s*없)")
# ... or the short negation before the act: "못 도와드려요", "못 알려 드립니다".
_KO_ACT_UNABLE = re.compile(_KO_ACT + _KO_UNABLE + r"|(?:^|\s)못\s*" + _KO_ACT)
# Topics that are the thing asked for ("정보는", "조언은", "답변은"): "실시간 정보는 제공할 수 없습니다".
_KO_ASKED_FOR = r"(?:정보|내용|자료|데이터|조언|답변|질문|요청|부분|사항|주제|의견|추천|전망|시세|번호|방법|작업)"

REFUSAL_FORMS: dict[str, list[tuple[str, re.Pattern[str]]]] = {
    "en": [
        # "I can't help with that", "I'm not able to provide ...", "I won't be able to assist", "I'm sorry,
        # but I cannot ..." (the apology needs no pattern of its own: the inability is what refuses).
        ("first-person inability to help/answer", re.compile(_EN_INABILITY)),
        # "I must decline", "I'll have to decline", "I respectfully decline", "I have to pass on this".
        # The object matters: "I'd decline the extended warranty" is advice, "I'll decline this one" is not.
        ("declines", re.compile(r"\bi(?:'ll|'m|'d|\s+(?:will|must|have|has|need|to|am|going|would|respectfully|"
                                r"politely|therefore|afraid|i)){0,5}\s+(?:respectfully\s+|politely\s+)?"
                                r"(?:decline(?=\s*(?:[.!,;)]|$|this|that|your|to\s+(?:answer|help|assist|provide|comment|"
                                r"respond|engage|participate|share|write|discuss|do|create|generate)))|"
                                r"pass\s+on\s+(?:this|that))")),
        # "As an AI language model, I cannot / I don't have ..." - the model speaking of its limits.
        ("as an AI ...", re.compile(r"\b(?:as\s+|i'm\s+(?:just\s+|only\s+)?|i\s+am\s+(?:just\s+|only\s+)?)an?\s+"
                                    r"(?:ai|artificial\s+intelligence|language\s+model|"
                                    r"ai\s+(?:language\s+model|assistant|model))\b.{0,80}?\b(?:can't|cannot|"
                                    r"can\s+not|don't|do\s+not|am\s+not|'m\s+not|unable|won't|not\s+able)\b")),
        # "I don't have access to real-time prices" / "I don't have live data" - cannot answer the request.
        ("no access to live data", re.compile(r"\bi\s+(?:don't|do\s+not)\s+have\s+(?:any\s+)?(?:access\s+to\s+)?"
                                              r"(?:real-time|real\s+time|live|current|up-to-date|browsing)")),
        # "I don't have access to your account information" / "I can't access your records": the user's own
        # data is what the request needs, so lacking it declines the request (as lacking live data does).
        ("no access to your data", re.compile(r"\bi\s+(?:don't|do\s+not|have\s+no|can't|cannot)\s+(?:have\s+)?"
                                              r"(?:any\s+)?access\s+(?:to\s+)?(?:your|the\s+user's|personal|"
                                              r"customer|individual|private|account|internal)\b")),
        # Impersonal refusals of the request: "That's not something I can help with", "This request cannot
        # be fulfilled", "It would be inappropriate for me to ...", "This goes against my guidelines".
        ("not something I can do", re.compile(r"(?:(?:'s|\bis|\bare)\s+not|\bisn't|\baren't)\s+(?:something|"
                                              r"a\s+request|a\s+task|anything)\s+(?:that\s+)?i(?:\s+can|\s+am\s+able|"
                                              r"'m\s+able|\s+will|\s+could)\b(?!\s+(?:recommend|suggest|endorse|advise))")),
        ("the request cannot be fulfilled", re.compile(r"\b(?:this|that|your|the)\s+(?:request|question|query|"
                                                       r"prompt|task)\s+(?:cannot|can't|can\s+not|won't|"
                                                       r"will\s+not)\s+be\s+(?:fulfill?ed|completed|answered|"
                                                       r"processed|assisted|accommodated|supported)")),
        ("inappropriate for me", re.compile(r"\b(?:inappropriate|not\s+appropriate|irresponsible|unethical|"
                                            r"not\s+ethical|wrong)\s+for\s+me\s+to\b")),
        ("against my guidelines", re.compile(r"\b(?:against|violates?|violating|(?:in\s+)?violation\s+of|"
                                             r"outside(?:\s+of)?|beyond)\s+"
                                             r"(?:my|openai's|the\s+usage|our\s+usage|my\s+usage)\s+"
                                             r"(?:\w+\s+)?(?:guidelines|policies|policy|programming|"
                                             r"principles|capabilities|scope)")),
        ("would rather not", re.compile(r"\bi(?:'d|\s+would)\s+(?:rather|prefer)\s+not\b")),
        # Lacking the capability is inability whatever the act: "I don't have the ability to make transactions",
        # "I have no way to check your credit score".
        ("no capability", re.compile(r"\bi\s+(?:(?:don't|do\s+not)\s+have\s+(?:the|any)|have\s+no)\s+(?:ability|"
                                     r"capability|capacity|way|means|tools?)\s+to\b")),
        # A stated limit of scope: "Sorry, I can only help with questions about banking." declines what is
        # outside it (a turn to content - "I can only give general information, but ..." - makes it a caveat).
        ("only within my scope", re.compile(r"\bi\s+(?:can|am\s+able\s+to|'m\s+able\s+to)\s+only\s+(?:help|assist|"
                                            r"answer|discuss|respond)|\bi\s+(?:can\s+)?only\s+(?:help|assist|answer|"
                                            r"discuss|respond)\s+(?:with|to|questions|about)")),
        # "I am programmed to avoid ...", "I'm designed not to ..." - the model citing its own constraints.
        ("programmed not to", re.compile(r"\bi(?:'m|\s+am)\s+(?:programmed|designed|built|trained|instructed)\s+"
                                         r"(?:to\s+(?:avoid|refrain|decline|not)|not\s+to)\b")),
        # Subject dropped at the start of a sentence: "Cannot provide copyrighted lyrics.", "Sorry, can't help
        # with that." ("Can't decide between ...?" and "Cannot be determined" have no act of answering.)
        ("no subject: can't help", re.compile(r"^\W*(?:(?:sorry|unfortunately)\W+)?(?:cannot|can't|can\s+not|"
                                              r"unable\s+to|not\s+able\s+to)\s+" + _EN_ACT)),
    ],
    # -----------------------------------------------------------------------------------------------------
    # Korean. Subjects are usually dropped, so the speaker shows in the verb: the humble giving verb 드리다
    # ("도와드리다", "말씀드리다", "답변을 드리다") is the assistant acting for the user; plain verbs ("제공할 수
    # 없습니다") need context that the assistant is the one declining (an apology, 저는/제가, "AI로서", or the
    # request itself as topic), because "이 상품은 원금 보장을 제공할 수 없습니다" is about a product.
    # -----------------------------------------------------------------------------------------------------
    "ko": [
        # "도와드릴 수 없습니다", "답변을 드리기 어렵습니다", "말씀드리기 곤란합니다", "안내해 드리지 못합니다".
        # "어렵지 않습니다" (it's not hard) is excluded.
        ("humble inability (드릴 수 없 / 드리기 어렵)",
         re.compile(r"드릴\s*수\s*(?:가|는|도)?\s*없|드리기\s*(?:가|는|도|에는)?\s*(?:어렵(?!지\s*않)|어려[워운]|곤란|힘들|힘듭)|"
                    r"드리지\s*(?:못|않겠)|드리기\s*(?:가\s*)?불가|"
                    # The same, nominalised: "작성해 드리는 것은 곤란합니다", "만들어 드리는 건 어렵습니다".
                    r"드리는\s*(?:것|건|게)\s*(?:은|는|이|가|도)?\s*(?:어렵(?!지\s*않)|어려[워운]|곤란|힘들|힘듭|불가)")),
        # The assistant's acts with inability, when the sentence shows the assistant is the one declining.
        # "제공할 수 없습니다", "죄송하지만 알려 드릴 수 없어요", "요청하신 작업은 처리할 수 없습니다": an act of
        # answering + inability, accepted only with context that the assistant declines (_ko_context_refusal).
        ("declining an act of answering (with 저/AI/요청/죄송 context)", _KO_ACT_UNABLE),
        # "AI 언어 모델로서 ... 할 수 없습니다", "인공지능이기 때문에 개인적인 의견은 없습니다".
        ("as an AI ...", re.compile(r"(?:ai|인공\s*지능|언어\s*모델|챗봇|어시스턴트)\s*(?:로서|으로서|이기\s*때문에|"
                                    r"이라서|라서|이므로|인\s*저는|의\s*입장에서|로서는)\S*\s.*?"
                                    r"(?:수\s*(?:가|는)?\s*없|못[하합해]|어렵(?!지\s*않)|없습니다|없어요|않습니다)")),
        # "제 역할(답변) 범위를 벗어납니다" - outside what the assistant does.
        # "제 역할 범위를 벗어납니다", "제가 답변드릴 수 있는 범위를 넘어서는 질문입니다".
        ("outside my scope", re.compile(r"(?:제|저의|저는|제가|답변|도움|역할|도와)\S*\s.{0,30}?범위(?:를|에서)?\s*"
                                        r"(?:벗어|넘어)")),
        # "(신용정보 조회는) 제가 할 수 없습니다": the first person with a bare "할 수 없" (the act is the topic).
        ("first person: 제가 할 수 없습니다", re.compile(r"(?:제가|저는|저로서는)\s*(?:\S+\s+){0,2}?(?:할|해\s*드릴)\s*"
                                                        r"수\s*(?:가|는)?\s*없")),
        # "그건 제가 할 수 있는 일이 아니에요", "제가 도와드릴 수 있는 부분이 아닙니다".
        ("not something I can do", re.compile(r"(?:제가|저는|저로서는)\s*(?:\S+\s+){0,3}?\S*(?:할|드릴)\s*수\s*있는\s*"
                                              r"(?:일|부분|것|영역|범위|내용)(?:이|은|는)?\s*아니")),
        # "정중히 거절하겠습니다", "답변을 삼가겠습니다", "응하기 어렵습니다" (응하다 = comply).
        # 삼가다 (refrain) in the first-person volitional ("삼가겠습니다", "삼가도록 하겠습니다", "삼갈게요") is the
        # assistant refraining from what was asked ("특정 종목의 매수 추천은 삼가겠습니다"), whatever the act;
        # advice to the user is another mood ("삼가세요", "삼가는 것이 좋습니다", "삼가야 합니다").
        ("declines / refrains", re.compile(r"거절(?:하겠|해야|할\s*수밖에|드립|합니다|할게)|"
                                           r"(?:답변|언급|대답|응답)(?:을|은)?\s*삼가|"
                                           r"삼가(?:겠|도록\s*하겠|려고\s*합니다|고자\s*합니다)|삼갈(?:게요|게|까\s*합니다)|"
                                           r"응(?:하기|할\s*수|해\s*드리기)\s*(?:가\s*)?(?:어렵|곤란|없)")),
    ],
}
# Context showing the assistant is the one declining: first person, the model itself, the request as topic,
# or "해당/이러한 ..." (impersonal refusal of "such content").
_KO_CONTEXT = re.compile(r"(?:^|[\s,(])(?:저는|제가|저로서는|저도|저에게|저희|ai|인공\s*지능|언어\s*모델|챗봇)|"
                         # The request noun must begin its word: "공문의" is 공문 + 의 (a document's), not 문의.
                         r"(?<![\uac00-\ud7a3])(?:요청|질문|문의|부탁|요구)(?:하신|주신|해\s*주신)?\s*(?:\S{1,6}?\s*)?(?:은|는|에는|에\s*대해서는|"
                         r"에\s*대해|에\s*대한|의|에|을|를)|"
                         r"(?:해당|이러한|그러한|그런|이런|관련)\s*(?:\S+\s+)?(?:내용|정보|요청|질문|주제|부분|행위|방법|자료|답변)")
_KO_APOLOGY = re.compile(r"죄송|미안|사과(?:드|를\s*드)|유감|양해|아쉽게도|안타깝게도|송구")
_EN_APOLOGY = re.compile(r"\b(?:sorry|apologi[sz]e|apologies|regret(?:fully)?|unfortunately|afraid)\b")

# Sentences that accompany a refusal: offers of other help, redirections, justifications, closings.
# They only count when the answer has a refusal form; on their own they are ordinary answer text.
_EN_SUPPORT = re.compile(
    r"\b(?:i'd|i\s+would|i'm|i\s+am)\s+(?:be\s+)?(?:happy|glad|more\s+than\s+happy)\s+to\b|"
    r"\bi\s+(?:can|could)\s+(?:help|assist|provide|offer|suggest|explain|point|share|give|walk|recommend)\b|"
    r"\b(?:is|are)\s+there\s+(?:anything|something)\s+else\b|\bcan\s+i\s+help\b|\blet\s+me\s+know\b|"
    r"\bfeel\s+free\b|\bif\s+you(?:'d|\s+would)?\s+(?:like|prefer|want|need|have|are)\b|\bwould\s+you\s+like\b|"
    # "If you're worried about ...": "you're" is "you are", a conditional turned to the user as "if you want" is.
    r"\bif\s+you're\b|"
    r"\binstead\b|\balternatively\b|\b(?:(?:consult|contact|reach\s+out|speak|talk)(?:s|ed|ing)?|call)\b|\bplease\b|"
    r"\b(?:illegal|unlawful|unethical|fraud\w*|harmful|dangerous|deceptive|misleading|violat\w*|criminal|crimes?|"
    r"penalt\w*|prosecut\w*|imprison\w*|harm|laws?|policy|policies|guidelines|safety|privacy|"
    r"confidential\w*|personal\s+data)\b|"
    r"\bi\s+(?:don't|do\s+not)\s+have\b|\bmy\s+(?:knowledge|training|purpose|goal|aim)\b|"
    r"\bi\s+understand\b|\bthank\s+you\b|\bhope\s+you\s+understand\b")
_KO_SUPPORT = re.compile(
    r"대신|다른\s*(?:질문|주제|도움|방법|요청|문의|궁금)|(?:도와|안내해|알려|설명해|제공해)\s*드릴\s*(?:수\s*있|게요)|"
    r"도움을\s*드릴\s*수\s*있|드리겠습니다|말씀해\s*주|물어(?:봐|보)|문의(?:하시|해\s*주|하세요|처)|상담(?:을|하|받|해)|"
    r"원하시면|원하신다면|필요하시면|필요하신|있으시면|있으신가요|궁금하신|기꺼이|불법|위법|처벌|범죄|사기|윤리|정책|"
    r"가이드라인|해를\s*끼|피해|악용|개인\s*정보|양해|이해해\s*주|이해\s*부탁|감사합니다|바랍니다|권장|권해|"
    # Sympathy for the user's situation ("걱정이 크시다는 점은 충분히 이해합니다"), as "I understand" in English.
    r"(?:충분히|잘)\s*이해(?:합니다|해요|됩니다)|"
    r"확인하시|참고하시|전문가|기관|공식|저는\s*\S+\s*(?:없|않)|실시간")
# A referral to a professional: "I'd recommend consulting a licensed financial advisor", "세무사와 상담하시길
# 권해 드립니다". A short answer made of nothing else (with apologies and offers around it) declines the
# question by handing it on - the answer the user asked for is not there. One beside content is advice.
_EN_REFERRAL = re.compile(
    r"\b(?:consult|speak|talk|seek|reach\s+out|contact|check\s+with|ask|see|work\s+with|meet\s+with|hire|get)\w*\b"
    r"(?:\W+\w+){0,8}?\W+(?:advis[eo]rs?|professionals?|accountants?|cpas?|attorneys?|lawyers?|planners?|experts?|"
    r"specialists?|doctors?|physicians?|pharmacists?|counsel(?:l?ors?)?|tax\s+preparers?|enrolled\s+agents?|"
    r"fiduciar(?:y|ies)|therapists?)\b")
_KO_REFERRAL = re.compile(
    r"(?:전문가|자문사|설계사|세무사|회계사|변호사|법무사|노무사|상담사|전문의|의사|약사|전문\s*기관|법률구조|금융감독원|"
    r"자문)\S*\s.{0,40}?(?:상담|문의|자문|확인|도움|진료|조언|의논|검토)")
# Why the question is handed on: the answer turns on the user's own situation, which the professional can look
# at ("They can review your specific situation and give you advice tailored to it.", "개인 상황에 따라 세금이
# 크게 달라질 수 있습니다."). Beside a referral such a sentence gives the user nothing to act on - it is the
# referral's reason, not an answer - as long as it states no figure (a number, a rate, a threshold is content).
_EN_REFERRAL_REASON = re.compile(
    r"\byour\s+(?:own\s+|specific\s+|particular\s+|individual\s+|personal\s+|unique\s+|full\s+|exact\s+|"
    r"overall\s+)*(?:situation|circumstances|case|needs|facts|finances|goals)\b|\btailored\b|"
    r"\bevery(?:one's|\s+person's)?\s+(?:situation|case)\s+is\s+different\b")
_KO_REFERRAL_REASON = re.compile(
    r"(?:개인|본인|고객님|각자|개별|개개인)\S*\s*(?:의\s*)?(?:상황|사정|여건|형편|조건)|(?:상황|사정|여건|형편)(?:에|마다)\s*따라|"
    r"사람마다|경우마다")


def _referral_reason(low: str) -> bool:
    return bool(_EN_REFERRAL_REASON.search(low) or _KO_REFERRAL_REASON.search(low)) and not re.search(r"\d", low)


# The sentence right after a refusal form starts delivering general content: the refusal was a caveat.
_EN_CONTENT_START = re.compile(
    r"^(?:[-*•\d.)\s]*)(?:in\s+general|generally|typically|usually|historically|broadly|as\s+a\s+(?:general\s+)?rule|"
    r"here(?:'s|\s+is|\s+are)|below|the\s+(?:general|usual|typical|standard|short|basic)\b|that\s+said|"
    r"with\s+that\s+(?:said|in\s+mind)|what\s+i\s+can\s+(?:say|tell|share)|a\s+(?:common|general|typical|good)\b|"
    r"most\s+(?:experts|advisors|advisers|planners|people|investors)|for\s+(?:context|reference|example)|"
    r"some\s+general|common\s+(?:approaches|options|strategies))")
_KO_CONTENT_START = re.compile(
    r"^(?:[-*•\d.)\s]*)(?:다만\s*,?\s*)?(?:하지만\s*,?\s*)?(?:그래도\s*,?\s*)?"
    r"(?:일반적으로|일반적인|보통|대체로|통상|흔히|참고로|아래|다음은|다음과|대략|과거|역사적으로|기본적으로|원칙적으로|"
    r"대표적인|몇\s*가지|한\s*가지)")
# A limit on what this answer covers - "I won't go into the full history here; the key point is ...", "I can't
# cover every case in this answer" - declines a digression, not the request: "here" / "in this answer" places
# the limit inside an answer that is going on. When the answer does go on with content, it is a caveat.
_EN_SCOPE = re.compile(r"^[^.;:,!?]*?\b(?:here|in\s+this\s+(?:answer|reply|response|summary|overview|post))\b")
# A turn inside the refusal sentence: "I can't ..., but <content>" / "... 드리기 어렵지만, <content>".
_EN_TURN = re.compile(r"[,;:]?\s*\b(?:but|however|though|although|yet|that\s+said|so)\b[,]?\s*(.*)$|:\s*(.+)$")
# The connective must end the word ("어렵지만,", "없으나 "): "벗어나는" is not a turn.
# Causal connectives too ("확인할 수 없어서 2024년 평균으로 말씀드리면 ..."): what follows decides.
_KO_TURN = re.compile(r"^\S{0,4}?(?:지만|으나|우나|는데|은데|운데|습니다만|만|되|어서|아서|해서|으므로|므로|으니|니까)"
                      r"(?=[\s,])\s*,?\s*(.*)$|:\s*(.+)$")
# "It depends": "I can't give you a single number, because it depends on your state." is an answer when content
# follows, a refusal when only a redirection does.
_DEPENDS = re.compile(r"\b(?:it|that|this|the\s+answer)\s+(?:depends|varies|differs)\b|\bvar(?:y|ies)\s+(?:by|with|from|"
                      r"across)\b|(?:에\s*따라|마다)\s*(?:달라|다르|차이)")
# ... unless what follows the turn is itself an offer or a redirection ("but I can help you with ...").
_EN_OFFER = re.compile(r"^(?:i\s+(?:can|could|would|'d|am|'m|will|'ll)|if\s+you|you\s+(?:can|could|may|might|should|"
                       r"will)\s+(?:try|consult|contact|check|ask|reach|look|visit|want|find|speak|talk)|please|"
                       r"feel\s+free|let\s+me|is\s+there|would\s+you|i'd|perhaps|maybe|consider|it's\s+best|"
                       r"it\s+is\s+best|for\s+(?:that|this|accurate|personal|specific)|we\s+can)")
_KO_OFFER = re.compile(r"^(?:대신|다른|전문가|필요하시면|원하시면|궁금하신|혹시)|(?:도와|안내해|알려|설명해|제공해|말씀)\s*드릴\s*"
                       r"(?:수\s*있|게요)|드리겠|말씀해\s*주|문의(?:하시|해\s*주|하세요)|상담(?:하시|을\s*받|받으)|"
                       r"있으시면|(?:확인|참고)하시기\s*바랍")


# ---------------------------------------------------------------------------------------------------------
def count_words(text: str | None) -> float:
    """Words in the paper's sense, fair across scripts: whitespace tokens that hold a letter or digit; a
    token with Hangul counts HANGUL_TOKEN_WEIGHT (one eojeol ~ 1.6 English words), any other token 1."""
    total = 0.0
    for tok in unicodedata.normalize("NFKC", text or "").split():
        if not any(ch.isalnum() for ch in tok):
            continue  # "-", "—", "*", "|": layout, not words
        total += HANGUL_TOKEN_WEIGHT if _HANGUL.search(tok) else 1.0
    return total


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"[\u2018\u2019\u201b\u02bc\u02bb`\u00b4\u2032]", "'", text)  # I can’t -> I can't
    text = re.sub(r"[\u201c\u201d\u201e\u201f\u00ab\u00bb\u2033]", '"', text)
    return text.replace("\u200b", "").replace("\ufeff", "")


def _mask_quoted(text: str) -> str:
    """Blank out what the answer quotes or codes (a drafted letter in quotes, a customer's words, a code
    block, a '>' block quote): that is content, not the assistant speaking. Characters become '_' (spaces
    and length kept), so the quoted text still counts for length and share but matches nothing."""
    def blank(m: re.Match[str]) -> str:
        return re.sub(r"\S", "_", m.group(0))
    text = re.sub(r"```.*?(?:```|$)", blank, text, flags=re.S)
    text = re.sub(r"(?m)^\s*>.*$", blank, text)
    # Lines of a dialogue the assistant wrote ("Agent: I'm sorry, but I can't ...", "상담원: ... 어렵습니다").
    text = re.sub(r"(?im)^[ \t]*[*_]*(?:" + _ROLE_LABELS + r")[*_]*[ \t]*:.*$", blank, text)
    text = re.sub(r'"[^"\n]{1,600}"', blank, text)
    text = re.sub(r"[「『][^」』]{1,600}[」』]", blank, text)
    # '...' quotes, not apostrophes: the opening quote is not preceded by a letter, the closing one is not
    # followed by a letter, and an apostrophe inside a word (can't) may occur within.
    # A Korean particle may stick to the closing quote ("'I'm sorry ...'을 옮기면"): an apostrophe is never
    # followed by Hangul, so a quote followed by Hangul still closes.
    text = re.sub(r"(?<![\w])'(?:[^'\n]|(?<=\w)'(?=\w)){1,300}?'(?!(?![\uac00-\ud7a3])\w)", blank, text)
    return text


# Speaker labels of a drafted dialogue or script (not the assistant speaking for itself).
_ROLE_LABELS = (r"agent|representative|rep|customer|client|advisor|adviser|banker|teller|loan\s+officer|officer|manager|"
                r"caller|employee|staff|clerk|cashier|landlord|tenant|interviewer|candidate|상담원|상담사|직원|고객|"
                r"은행원|매니저|담당자|손님|점원|팀장|과장|대리|집주인|세입자|면접관|지원자")
# A lead-in that announces drafted text: what follows is the draft (a letter, a reply, a translation), not the
# assistant speaking. English needs a drafting noun ("Here's a draft:", "Translation:", "You could say:").
_EN_LEAD_IN = re.compile(r"(?:\b(?:draft|template|script|translation|translated|example|sample|reply|response|message|"
                         r"e-?mail|letter|note|text|version|wording|post|tweet|caption|announcement|notice|story|"
                         r"dialogue|conversation|lines?|phrases?|statement)\b|\byou\s+(?:could|can|might|may)\s+"
                         r"(?:say|write|send|reply|use|respond)\b)[^:]{0,60}$")
_KO_LEAD_IN_WORDS = (r"(?:예시|예문|초안|문구|멘트|답장|번역문?|스크립트|템플릿|양식|메시지|문자|이메일|메일|편지|공지|안내문|"
                     r"사과문|거절문|대본|대화)")
_KO_LEAD_IN = re.compile(_KO_LEAD_IN_WORDS + r"[^:]{0,30}$")
_KO_LEAD_IN_SENTENCE = re.compile(_KO_LEAD_IN_WORDS + r"(?:입니다|이에요|예요|이다)[.!]?$|"
                                  r"(?:다음|아래)(?:과|와)\s*같(?:습니다|아요)[.!]?$|"
                                  r"이렇게\s*(?:써|쓰|보내|말해|말씀해|답해)\s*보세요[.!]?$")


def _lead_in_end(low: str) -> int | None:
    """Where drafted text starts in this sentence: after "Here's a draft:" / "답장 예시:" (the index after the
    colon), len(low) for a whole lead-in sentence ("사과문 초안입니다."), or None."""
    for m in re.finditer(r":", low):
        prefix = low[: m.start()]
        if _EN_LEAD_IN.search(prefix) or _KO_LEAD_IN.search(prefix):
            return m.end()
    if _KO_LEAD_IN_SENTENCE.search(low.strip()):
        return len(low)
    return None


# Abbreviations whose dot does not end a sentence.
# Dotted initialisms of any length ("U.S.C.", "U.K.", "e.g.") are one word, as "U.S." always was here.
_ABBREV = re.compile(r"\b(?:[a-z](?:\.[a-z])+|etc|vs|mr|mrs|ms|dr|no|approx|incl|st|jr|sr|inc|ltd|co|fig)\.", re.I)


def _sentences(text: str) -> list[str]:
    """Sentences (and list items / lines) in order, blank ones dropped."""
    text = _ABBREV.sub(lambda m: m.group(0)[:-1] + "\u2024", text)  # protect the dot
    parts: list[str] = []
    for line in text.split("\n"):
        # End of sentence: . ! ? 。 (and runs like "?!" or "..."), then whitespace. Decimal points and "3.5%"
        # are safe because a space must follow.
        parts.extend(re.split(r"(?<=[.!?。？！…])[\"')\]]?\s+", line))
    out = []
    for p in parts:
        p = p.replace("\u2024", ".").strip()
        if any(ch.isalnum() for ch in p):
            out.append(p)
    return out


def _has_hangul(text: str) -> bool:
    return bool(_HANGUL.search(text))


def _languages(language: str, text: str) -> list[str]:
    """English forms always (models often refuse in English whatever the prompt's language); the requested
    language's forms; Korean forms whenever the text has Hangul."""
    langs = ["en"]
    if language in REFUSAL_FORMS and language not in langs:
        langs.append(language)
    if "ko" not in langs and _has_hangul(text):
        langs.append("ko")
    return langs


def _ko_context_refusal(low: str, prev_apology: bool) -> re.Match[str] | None:
    """Korean act-of-answering + inability, with context that the assistant is declining."""
    m = next((m for m in _KO_ACT_UNABLE.finditer(low) if not _KO_NOT_NOW.search(low[m.end():])), None)
    if not m:
        return None
    before = low[: m.start()]
    if prev_apology or _KO_APOLOGY.search(low) or _KO_CONTEXT.search(before + m.group(0)):
        return m
    # No context word, but no other subject either: "제공할 수 없습니다", "실시간 시세 정보는 제공할 수
    # 없습니다" (the topic is what is asked for). An explicit other subject or topic ("이 상품은", "시장은",
    # "은행이") makes it a statement about that thing, not a refusal.
    # A topic with no object after it, before a verb of giving ("계좌 정보나 거래 내역은 제공할 수 없습니다"), is
    # the thing given, moved to the front: Korean puts the giver's object between topic and verb ("이 상품은
    # 원금 보장을 제공할 수 없습니다"), so a giving verb left without one has its object in the topic.
    tokens = re.findall(r"[\uac00-\ud7a3]+", before)
    giving = bool(_KO_GIVING.search(m.group(0)))

    def asked_for(k: int) -> bool:
        t = tokens[k]
        if re.search(_KO_ASKED_FOR + r"(?:은|는)$", t):
            return True
        return (giving and bool(re.search(r"[^으에로서게께](?:은|는)$", t))
                and not any(re.search(r"(?:을|를)$", u) for u in tokens[k + 1:]))

    # Recommending, said plainly ("그 전략은 추천하기 어렵습니다" = "I wouldn't recommend that strategy"), is advice
    # against the thing, as "I wouldn't recommend" is in English; declining to recommend names the kind of
    # recommendation withheld ("특정 종목을 추천하기는 어렵지만"), as English "recommend a specific ..." does, or is
    # said humbly ("추천해 드리기 어렵습니다") or with the context above.
    if m.group(0).startswith("추천") and not re.search(r"특정|개별|구체적|어떤|어느|직접", before):
        return None
    if all(asked_for(k) for k, t in enumerate(tokens) if re.search(r"(?:은|는|이|가|께서)$", t)):
        return m
    return None


# Verbs of giving something to the user (information, a recommendation): their object is what was asked for.
_KO_GIVING = re.compile(r"제공|공유|공개|알려|안내|추천|전달|조언")
# What follows a Korean refusal form's ending in the same word, when it is not the assistant declining now:
# a past tense narrates an event ("당일 처리가 불가능했고", "처리할 수 없었습니다" - a letter, a story), and a
# quotative reports someone else ("은행이 송금을 처리할 수 없다는 내용입니다", "처리할 수 없다고 합니다").
# A refusal is the assistant declining, in the present, in its own voice.
_KO_NOT_NOW = re.compile(r"^\S*?(?:었|았|였|했|웠|렸)|"
                         r"^\S*?(?:다는|라는)\s+(?:내용|말|뜻|의미|얘기|이야기|취지|통보|입장|답변|회신|결정|사실|안내)|"
                         r"^\S*?(?:다고|라고|답니다|대요|다네요|다더)(?:\s+(?:합니|했|하|해|되어|돼|적혀|나와|밝|안내|통보|"
                         r"답|회신|설명|말했|전했)|[.!,]|$)")


def _refusal_match(low: str, langs: list[str], prev_apology: bool) -> tuple[str, re.Match[str]] | None:
    """The first refusal form in a (lower-cased, normalised) sentence: (form name, match)."""
    for lang in langs:
        for name, pat in REFUSAL_FORMS.get(lang, []):
            if pat is _KO_ACT_UNABLE:
                m = _ko_context_refusal(low, prev_apology)
            else:  # the first occurrence that is not narrated (past) or reported (Korean quotative)
                m = next((m for m in pat.finditer(low)
                          if lang != "ko" or not _KO_NOT_NOW.search(low[m.end():])), None)
            if m:
                return name, m
    return None


def _turns_to_content(low: str, end: int, korean: bool) -> bool:
    """After the refusal form, does the same sentence turn ("but", "지만") to something other than an offer?"""
    rest = low[end:]
    m = (_KO_TURN if korean else _EN_TURN).search(rest)
    if not m:
        return False
    cont = (m.group(1) or m.group(2) or "").strip(" ,.")
    if len(cont) < 8:
        return False
    if _KO_CONTENT_START.match(cont) or _EN_CONTENT_START.match(cont):
        return True  # "..., but in general ..." / "..., 일반적으로 ..."
    # Not a turn to content: an apology, another refusal form, or more first-person inability whatever its verb
    # ("I can't access your Gmail, so I'm unable to summarise your emails": a refusal's consequence).
    if (_EN_APOLOGY.search(cont) or _KO_APOLOGY.search(cont) or _refusal_match(cont, ["en", "ko"], False)
            or re.match(_EN_NEG, cont)):
        return False  # "도와드릴 수 없어서 죄송합니다", "I don't have live data, so I can't tell you ..."
    return not (_KO_OFFER.search(cont) if korean else _EN_OFFER.match(cont))


def _scope_goes_on(rest: str) -> bool:
    """After a scoping limit ("... here"), does the same sentence go on ("; the key point is ...") with
    something other than an offer, an apology or another refusal?"""
    m = re.search(r"[;:\u2014]|\s[-\u2013]\s", rest)
    cont = rest[m.end():].strip(" ,.") if m else ""
    return len(cont) >= 8 and not (_EN_OFFER.match(cont) or _EN_APOLOGY.search(cont) or _EN_SUPPORT.search(cont)
                                   or _refusal_match(cont, ["en"], False))


def _classify(sentences: list[str], langs: list[str]) -> list[tuple[str, str]]:
    """Label each sentence: refusal, disclaimer, apology, support or content (with the form's name)."""
    labels: list[tuple[str, str]] = []
    prev_apology = False
    drafted = False
    lows = [s.lower() for s in sentences]
    for i, low in enumerate(lows):
        if drafted:  # after "Here's a draft:" the text is the draft, whatever it says
            labels.append(("content", "drafted"))
            continue
        cut = _lead_in_end(low)
        if cut is not None:
            drafted = True
            low = low[:cut]
        apology = bool(_EN_APOLOGY.search(low) or _KO_APOLOGY.search(low))
        hit = _refusal_match(low, langs, prev_apology)
        if hit:
            name, m = hit
            korean = _has_hangul(low[m.start():m.end()])
            nxt = lows[i + 1] if i + 1 < len(lows) else ""
            content_next = bool(nxt) and bool(_KO_CONTENT_START.match(nxt) or _EN_CONTENT_START.match(nxt)) and not (
                _KO_OFFER.search(nxt) or _EN_OFFER.match(re.sub(r"^\W*(?:that\s+said|however)\W*", "", nxt)))
            depends = bool(_DEPENDS.search(low)) and bool(nxt) and not (
                _EN_SUPPORT.search(nxt) or _KO_SUPPORT.search(nxt) or _EN_APOLOGY.search(nxt) or _KO_APOLOGY.search(nxt)
                or _refusal_match(nxt, langs, False))
            scoped = (not korean and bool(_EN_SCOPE.search(low[m.end():])) and (
                _scope_goes_on(low[m.end():]) or bool(nxt) and not (
                    _EN_SUPPORT.search(nxt) or _EN_APOLOGY.search(nxt) or _refusal_match(nxt, langs, False))))
            if _turns_to_content(low, m.end(), korean) or content_next or depends or scoped:
                labels.append(("disclaimer", name))
            else:
                labels.append(("refusal", name))
        elif apology:
            labels.append(("apology", ""))
        elif _EN_SUPPORT.search(low) or _KO_SUPPORT.search(low):
            labels.append(("support", ""))
        else:
            labels.append(("content", ""))
        prev_apology = apology
    return labels


def _snippet(sentence: str, limit: int = 60) -> str:
    s = re.sub(r"\s+", " ", sentence).strip()
    return s if len(s) <= limit else s[: limit - 3].rstrip() + "..."


def _words_label(words: float, korean: bool) -> str:
    n = int(words) if words == int(words) else round(words, 1)
    return f"{n:g} words" + (f" (Hangul tokens x{HANGUL_TOKEN_WEIGHT:g})" if korean else "")


def is_refusal(text: str | None, language: str = "en", *, max_words: int = 80) -> tuple[bool, str]:
    """The refusal rule (Evol-Instruct elimination rule 2): (True, why) when the answer refuses.

    A refusal is a refusal form opening the answer (first two sentences) in a short answer (< max_words
    words, Hangul tokens weighted HANGUL_TOKEN_WEIGHT), refusal sentences (with their apologies, offers,
    redirections and justifications) making up most of the answer at any length, or a short answer that
    only refers the user to a professional. Never raises."""
    try:
        return _is_refusal(text, language, max_words)
    except Exception as exc:  # a rule must not crash a run; say why instead
        return False, f"not checked ({type(exc).__name__})"


# A reasoning model's deliberation ("<think>The user asks for ... I should refuse.</think>") is not the answer:
# the user sees what follows it. Reading it would bury a refusal under the reasoning (no longer the opening
# sentence, no longer most of the text) or find one in reasoning that goes on to answer. So the answer is read
# without it: closed blocks go, and so does everything up to a "</think>" whose opening tag the template
# dropped. An unclosed "<think>" leaves no answer at all (the model stopped while thinking).
_THINK = re.compile(r"<think>.*?</think>|\A.*?</think>", re.S | re.I)
_THINK_UNCLOSED = re.compile(r"<think>.*\Z", re.S | re.I)


def _without_reasoning(text: str) -> str:
    return _THINK_UNCLOSED.sub("", _THINK.sub("", text))


def _is_refusal(text: str | None, language: str, max_words: int) -> tuple[bool, str]:
    if not isinstance(text, str) or not text.strip():
        return False, "empty answer"
    if not _without_reasoning(text).strip():
        return False, "only reasoning, no answer"
    norm = _normalise(_without_reasoning(text))
    words = count_words(norm)
    korean = _has_hangul(norm)
    masked = _mask_quoted(norm)
    sentences = _sentences(masked)
    if not sentences:
        return False, "no sentences"
    langs = _languages((language or "en").lower()[:2], masked)
    labels = _classify(sentences, langs)
    kinds = [k for k, _ in labels]
    first_refusal = next((i for i, k in enumerate(kinds) if k == "refusal"), None)
    wl = _words_label(words, korean)
    # 1. A refusal form opens a short answer.
    if first_refusal is not None and first_refusal < OPENING_SENTENCES and words < max_words:
        return True, f"opens with a refusal: {_snippet(sentences[first_refusal])!r} ({wl})"
    # 2. Refusal sentences and their entourage make up most of the answer.
    if first_refusal is not None:
        size = [len(re.sub(r"\s", "", s)) for s in sentences]  # characters; quoted text (masked) counts too
        total = sum(size) or 1
        block = sum(n for n, k in zip(size, kinds) if k in ("refusal", "apology", "support"))
        share = block / total
        if share > MOSTLY:
            n = sum(k == "refusal" for k in kinds)
            return True, (f"mostly refusal: {_snippet(sentences[first_refusal])!r} ({n} refusal and "
                          f"{sum(k in ('apology', 'support') for k in kinds)} supporting of {len(kinds)} "
                          f"sentences, {share:.0%} of the text; {wl})")
        where = "opens" if first_refusal < OPENING_SENTENCES else f"sentence {first_refusal + 1}"
        return False, (f"refusal form ({where}) in a long answer: {_snippet(sentences[first_refusal])!r} "
                       f"({wl}, {share:.0%} refusal)")
    # 3. A short answer that only hands the question on to a professional (nothing but referrals, apologies
    #    and offers of other help): the request is declined without a refusal form. A justification or a fact
    #    beside the referral ("Insider trading is illegal; talk to a securities lawyer") is an answer; the
    #    referral's own reason after it ("They can review your specific situation.") is not (_referral_reason).
    lows = [s.lower() for s in sentences]
    referrals = [i for i, low in enumerate(lows) if kinds[i] == "support"
                 and (_EN_REFERRAL.search(low) or _KO_REFERRAL.search(low))]
    if referrals and words < max_words and all(
            i in referrals or kinds[i] == "apology" or _EN_OFFER.match(low) or _KO_OFFER.search(low)
            or (i > referrals[0] and kinds[i] in ("content", "support") and _referral_reason(low))
            for i, low in enumerate(lows)):
        return True, f"only a referral: {_snippet(sentences[referrals[0]])!r} ({wl})"
    if "disclaimer" in kinds:
        i = kinds.index("disclaimer")
        return False, f"a caveat, then an answer: {_snippet(sentences[i])!r} ({wl})"
    return False, "no refusal form"
