"""An agent framework's tool loop against a real `swiftcli deploy`: LangChain's ChatOpenAI with a tool."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("langchain_openai")

MODEL = "smollm2-135m-instruct"


def test_langchain_tool_loop(deploy_server):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    calls: list[str] = []

    @tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        calls.append(city)
        return json.dumps({"city": city, "temperature_c": 18, "sky": "sunny"})

    llm = ChatOpenAI(model=MODEL, base_url=deploy_server.base_url, api_key="EMPTY", temperature=0, max_tokens=60,
                     max_retries=0, timeout=120)
    messages: list = [HumanMessage("What is the weather in Paris right now?")]
    # A small model needs the call forced (constrained decoding); the loop is the framework's own.
    ai = llm.bind_tools([get_weather], tool_choice="get_weather").invoke(messages)
    assert ai.tool_calls and ai.tool_calls[0]["name"] == "get_weather"
    assert isinstance(ai.tool_calls[0]["args"]["city"], str)
    messages.append(ai)
    for call in ai.tool_calls:
        result = get_weather.invoke(call)
        assert isinstance(result, ToolMessage) and result.tool_call_id == call["id"]
        messages.append(result)
    final = llm.bind_tools([get_weather], tool_choice="none").invoke(messages)
    assert isinstance(final.content, str) and final.content.strip()
    assert not final.tool_calls
    assert calls == [ai.tool_calls[0]["args"]["city"]]
    # Streaming through the framework assembles the same call.
    chunks = None
    for chunk in llm.bind_tools([get_weather], tool_choice="get_weather").stream(messages[:1]):
        chunks = chunk if chunks is None else chunks + chunk
    assert chunks.tool_calls[0]["name"] == "get_weather"
    assert chunks.tool_calls[0]["args"] == ai.tool_calls[0]["args"]
