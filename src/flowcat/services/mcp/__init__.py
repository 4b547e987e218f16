"""MCP: the tools of Model Context Protocol servers as LLM functions (extra ``mcp``).

``MCPClient(server_params)`` connects to a server over stdio (``mcp.StdioServerParameters``)
or streamable HTTP (``StreamableHttpParameters`` or a URL), and ``await
client.register_tools(llm)`` registers a handler per tool on an
:class:`~flowcat.services.LLMService` and returns their ``ToolsSchema``. The official MCP SDK is
imported when a client is made; without it that raises
:class:`~flowcat.errors.MissingExtraError`. See ``docs/services.md`` ("MCP tools").
"""

from __future__ import annotations

from ._client import MCPClient as MCPClient

__all__ = ["MCPClient"]
