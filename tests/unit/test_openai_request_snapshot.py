"""The system prompt and the JSON schema OpenAiEncounters sends, byte for byte, against a
recorded hash. The window cache is keyed by the exact request and the encounter bench figures
were measured with these words: a change to either must be deliberate (then update the hash
here, and rerun bench/encounters_eval.py), never a side effect of moving code."""

from __future__ import annotations

import hashlib
import json

import httpx
import openai
import pytest

from shared.encounters.openai import OpenAiEncounters
from shared.models import PageText

# Recorded from main before the split of shared/encounters/openai.py into a package.
SYSTEM_PROMPT_SHA256 = "65b5f4aa7e6a9516b23aa8e1c65b5b18d9d137d071a7774f407867732b342260"
# Windows read side by side (issue 24): the same rules, the hand-off's replaced by the context pages'.
CONTEXT_SYSTEM_PROMPT_SHA256 = "7237f47f869414932a0a6380fc0953b7adbe9ea870f8ded65f5ed6b360d1348c"
RESPONSE_FORMAT_SHA256 = "9bcca1a3ad61258ca891e01ff51214bb43136855a8a2ef449ce391f093aef584"


def _sent_request(mode: str) -> dict:
    sent: list[dict] = []
    answer = {"encounters": [], "unassigned_pages": [1], "open_encounter_continues": False}

    def endpoint(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": json.dumps(answer), "refusal": None}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    client = openai.OpenAI(api_key="sk-test", base_url="http://model.invalid/v1", max_retries=0,
                           http_client=httpx.Client(transport=httpx.MockTransport(endpoint)))
    OpenAiEncounters(client, "m", window_mode=mode).discover([PageText(page_number=1, text="Clinic visit note for today", engine="native")])
    assert len(sent) == 1
    return sent[0]


def _sha(value) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=False).encode()).hexdigest()


@pytest.mark.parametrize(("mode", "prompt_sha256"), [("sequential", SYSTEM_PROMPT_SHA256),
                                                      ("concurrent", CONTEXT_SYSTEM_PROMPT_SHA256)])
def test_the_system_prompt_and_the_schema_are_the_recorded_ones(mode, prompt_sha256):
    body = _sent_request(mode)
    system = body["messages"][0]
    assert system["role"] == "system"
    assert hashlib.sha256(system["content"].encode()).hexdigest() == prompt_sha256
    assert _sha(body["response_format"]) == RESPONSE_FORMAT_SHA256  # one schema for both


def test_a_concurrent_window_shows_the_page_before_as_context_not_to_be_assigned():
    from shared.encounters.openai.prompt import CONTEXT_SYSTEM_PROMPT, context_window_messages
    from shared.encounters.openai.windows import Document, context_before

    texts = {1: "Riverside Clinic note, page 1", 2: "Riverside Clinic note, page 2", 3: "",
             4: "Riverside Clinic, page 4"}
    doc = Document([PageText(page_number=n, text=t, engine="native") for n, t in texts.items()])

    context = context_before(doc, [4], 1)  # the last readable page before the window: the blank one is skipped
    system, user = context_window_messages([4], doc, context, 12_000)

    assert context == [2] and context_before(doc, [1, 2], 1) == []
    assert system["content"] == CONTEXT_SYSTEM_PROMPT and "<carried>" not in user["content"]
    shown, window = user["content"].split("Pages:")
    assert '<page number="2" context="true">\nRiverside Clinic note, page 2\n</page>' in shown
    assert '<page number="4">' in window and "context" not in window


def test_a_page_with_textract_layout_shows_the_model_its_title_header_and_page_number():
    from shared.encounters.openai.prompt import window_prompt
    from shared.encounters.openai.windows import Document
    from shared.models import LayoutBlock

    plain = PageText(page_number=1, text="Riverside Clinic\nPROGRESS NOTE\nSeen today.", engine="tesseract")
    laid_out = plain.model_copy(update={"page_number": 2, "engine": "textract", "layout": [
        LayoutBlock(kind="header", text="Riverside Clinic"), LayoutBlock(kind="title", text="PROGRESS NOTE"),
        LayoutBlock(kind="page_number", text="Page 1 of 2")]})

    prompt = window_prompt([1, 2], Document([plain, laid_out]), None, 12_000)

    first, second = prompt.split('<page number="2">')
    assert "<layout>" not in first  # a page read without LAYOUT: its prompt as before
    assert second.startswith("\n<layout>\nheader: Riverside Clinic\ntitle: PROGRESS NOTE\npage_number: Page 1 of 2\n</layout>\n")
