"""The web chat page (`swiftcli app-ui`): a Gradio app over a local async engine or an OpenAI-compatible server.

Gradio is imported only when a page is built, so importing this package stays light.
"""

from swiftcli.webui.app import PageDefaults, build_app, serve
from swiftcli.webui.backends import (
    ApiChatBackend,
    ApiTarget,
    ChatBackend,
    ChatProgress,
    ChatSettings,
    EngineChatBackend,
    OpenAIChatBackend,
    connect_api,
)

__all__ = [
    "ApiChatBackend",
    "ChatBackend",
    "ChatProgress",
    "ChatSettings",
    "EngineChatBackend",
    "OpenAIChatBackend",
    "PageDefaults",
    "build_app",
    "ApiTarget",
    "connect_api",
    "serve",
]
