"""MCPClient: the tools of one MCP server as LLM functions, over one long-lived session.

Built on the official MCP Python SDK (extra ``mcp``), imported when the client is made.

* **One session per client.** The SDK's transports and ``ClientSession`` are anyio
  contexts that must be entered and left by the same task, so a client owns one
  background task per connection: it spawns the server (stdio) or opens the HTTP
  transport, initializes the session, and holds it until :meth:`MCPClient.close`.
  Tool calls run in the LLM service's call tasks and share that session.
* **Every call ends.** A result is reported through ``result_callback``; an
  ``is_error`` result, an MCP error response, a failed argument check, a lost
  connection or a failed reconnect becomes an error result the model can read.
* **Cancellation.** An interruption (or the call's deadline) cancels the call task;
  the SDK then sends ``notifications/cancelled`` for the request, so the server stops
  the tool.
* **Reconnect.** A call that finds the connection closed (the server died) drops it
  and reports the error; the next call connects again, retried with backoff and
  bounded by ``connect_timeout_secs``.
* **Clean close.** :meth:`register_tools` ties the client to the LLM service's
  ``cleanup`` (the end of its pipeline): the session is closed and a stdio server
  process is ended. ``close()`` may also be called directly; ``start()`` reopens.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any

from ...errors import (
    ConfigError,
    OutboundAddressError,
    ServiceConnectionError,
    ServiceError,
    ServiceProtocolError,
    ServiceTimeout,
    require_extra,
)
from .._backoff import Backoff, Deadline, retry_call
from .._function_schema import FunctionSchema
from .._functions import FunctionCallParams
from .._llm import LLMService
from .._ssrf import AllowPrivate, outbound_guard
from ..adapters import ToolsSchema
from ._convert import call_error_text, tool_result, tool_schema

__all__ = ["MCPClient"]

logger = logging.getLogger("flowcat.services.mcp")

_CLOSE_TIMEOUT_SECS = 4.0  # twice this stays inside the runtime's 10 s cleanup bound


def _sdk() -> Any:
    return require_extra("mcp", "MCP tools (flowcat.services.mcp)", "mcp")


def _is_connection_lost(exc: BaseException) -> bool:
    import anyio
    from mcp.shared.exceptions import MCPError
    from mcp.types import CONNECTION_CLOSED

    if isinstance(exc, BaseExceptionGroup):
        return any(_is_connection_lost(e) for e in exc.exceptions)
    if isinstance(exc, MCPError):
        return exc.code == CONNECTION_CLOSED
    return isinstance(exc, anyio.ClosedResourceError | anyio.BrokenResourceError | anyio.EndOfStream
                      | ConnectionError)


def _detail(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__


def _refusal(exc: BaseException | None, depth: int = 0) -> OutboundAddressError | None:
    """The SSRF guard's refusal somewhere in ``exc`` (groups, causes), if any."""
    if exc is None or depth > 8:
        return None
    if isinstance(exc, OutboundAddressError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _refusal(inner, depth + 1)
            if found is not None:
                return found
    return _refusal(exc.__cause__ or exc.__context__, depth + 1)


class _Connection:
    """One session and the task that owns it."""

    __slots__ = ("closing", "lost", "session", "task")

    def __init__(self) -> None:
        self.session: Any = None
        self.task: asyncio.Task[None] | None = None
        self.closing = asyncio.Event()
        self.lost = False


class MCPClient:
    """Tools of an MCP server, registered on an :class:`~flowcat.services.LLMService`.

    Args:
        server_params: ``mcp.StdioServerParameters`` (a server process on stdin/stdout),
            ``mcp.client.session_group.StreamableHttpParameters``, or the URL of a
            streamable-HTTP endpoint.
        tools_filter: Names of the tools to register (None: all).
        tools_output_filters: Per tool, a function applied to its result before the
            model sees it.
        tools_arguments: Per tool, arguments the client fills in on every call (they
            win over the model's); they are left out of the schema the model sees.
        cancel_on_interruption: Whether an interruption cancels a call in flight.
        timeout_secs: Bound on each tool call (None: the LLM service's default).
        connect_timeout_secs: Bound on connecting (all attempts) and on ``initialize``.
        retry: Backoff between connection attempts.
        name: For logs.
        allow_private: The SSRF guard for a streamable-HTTP server
            (:class:`~flowcat.services.OutboundGuard`): by default the URL must resolve to
            public addresses only and the connection is pinned to the vetted ones; ``True``
            allows any address, a list of networks allows those. Not used for stdio.
    """

    def __init__(
        self,
        server_params: Any,
        *,
        tools_filter: list[str] | None = None,
        tools_output_filters: Mapping[str, Callable[[Any], Any]] | None = None,
        tools_arguments: Mapping[str, Mapping[str, Any]] | None = None,
        cancel_on_interruption: bool = True,
        timeout_secs: float | None = None,
        connect_timeout_secs: float = 10.0,
        retry: Backoff | None = None,
        name: str | None = None,
        allow_private: AllowPrivate = False,
    ) -> None:
        mcp = _sdk()
        from mcp.client.session_group import StreamableHttpParameters

        if isinstance(server_params, str):
            server_params = StreamableHttpParameters(url=server_params)
        if not isinstance(server_params, mcp.StdioServerParameters | StreamableHttpParameters):
            raise ConfigError(
                "MCPClient: server_params must be mcp.StdioServerParameters, StreamableHttpParameters or a URL, "
                f"not {type(server_params).__name__}"
            )
        self._params = server_params
        self._guard = outbound_guard(allow_private)
        if isinstance(server_params, StreamableHttpParameters):
            self._guard.check_url(server_params.url)
        self._tools_filter = set(tools_filter) if tools_filter is not None else None
        self._output_filters = dict(tools_output_filters or {})
        self._fixed_args = {k: dict(v) for k, v in (tools_arguments or {}).items()}
        self.cancel_on_interruption = cancel_on_interruption
        self.timeout_secs = timeout_secs
        self.connect_timeout_secs = connect_timeout_secs
        self.retry = retry if retry is not None else Backoff(initial=0.1, max_delay=2.0)
        if name is None:  # the command, or the URL without its query (it may carry a key)
            if isinstance(server_params, StreamableHttpParameters):
                name = "mcp:" + server_params.url.split("?", 1)[0]
            else:
                name = "mcp:" + str(server_params.command)
        self.name = name
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()
        self._wanted = False  # start() was called and close() was not since
        self.connects = 0
        """Sessions opened so far (1 + reconnections)."""

    # ------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        """Whether a live session is held."""
        c = self._conn
        return c is not None and c.session is not None and not c.lost

    async def start(self) -> None:
        """Connect (idempotent): retried with backoff, bounded by ``connect_timeout_secs``.

        Raises:
            ServiceConnectionError: The server could not be reached or did not initialize.
            ServiceTimeout: Connecting took longer than ``connect_timeout_secs``.
        """
        self._wanted = True
        await self._session()

    async def close(self) -> None:
        """Close the session (and end a stdio server process). Safe to call at any time, repeatedly."""
        self._wanted = False
        async with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            await self._shutdown(conn)

    async def __aenter__(self) -> MCPClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _session(self) -> Any:
        """The live session, connecting first when there is none (bounded)."""
        async with self._lock:
            conn = self._conn
            if conn is not None and not conn.lost and conn.session is not None:
                return conn.session
            self._conn = None
            if conn is not None:
                await self._shutdown(conn)
            deadline = Deadline(self.connect_timeout_secs)

            async def attempt(_n: int) -> _Connection:
                return await self._connect(deadline)

            conn = await retry_call(attempt, backoff=self.retry, deadline=deadline, what=self.name)
            self._conn = conn
            self.connects += 1
            return conn.session

    async def _connect(self, deadline: Deadline) -> _Connection:
        conn = _Connection()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        conn.task = asyncio.create_task(self._own(conn, ready), name=f"{self.name}:session")
        try:
            left = deadline.remaining()
            async with asyncio.timeout(None if left is None else max(left, 0.001)):
                await asyncio.shield(ready)
        except TimeoutError:
            await self._shutdown(conn)
            raise ServiceTimeout(f"{self.name}: no session within {self.connect_timeout_secs:g} s") from None
        except BaseException:
            await self._shutdown(conn)
            raise
        return conn

    async def _own(self, conn: _Connection, ready: asyncio.Future[None]) -> None:
        """The task that opens, holds and closes one session (the SDK's contexts are task-bound)."""
        import anyio
        from mcp import ClientSession

        try:
            async with AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport(stack))
                session = await stack.enter_async_context(ClientSession(read, write))
                with anyio.fail_after(max(self.connect_timeout_secs, 0.001)):
                    await session.initialize()
                conn.session = session
                ready.set_result(None)
                await conn.closing.wait()
        except BaseException as exc:
            conn.lost = True
            if not ready.done():
                why = "closed while connecting" if conn.closing.is_set() else f"could not connect: {_detail(exc)}"
                refusal = _refusal(exc)  # not retried: the address will not change its range
                ready.set_exception(OutboundAddressError(f"{self.name}: {refusal}") if refusal is not None
                                    else ServiceConnectionError(f"{self.name}: {why}"))
                ready.exception()  # marked retrieved: the waiter may be gone already
            elif not conn.closing.is_set():
                logger.warning("%s: the session ended: %s", self.name, _detail(exc))
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
        finally:
            conn.lost = True

    def _transport(self, stack: AsyncExitStack) -> Any:
        from mcp import StdioServerParameters

        params = self._params
        if isinstance(params, StdioServerParameters):
            from mcp.client.stdio import stdio_client

            return stdio_client(params)
        import httpx2
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        timeout = httpx2.Timeout(params.timeout, read=params.sse_read_timeout)
        if self._guard.allow_all:
            http = create_mcp_http_client(headers=params.headers, timeout=timeout)
        else:  # the SDK's client, with a transport that connects only to vetted addresses
            http = httpx2.AsyncClient(headers=params.headers, timeout=timeout,
                                      transport=self._guard.httpx_transport())
        stack.push_async_callback(http.aclose)
        return streamable_http_client(params.url, http_client=http, terminate_on_close=params.terminate_on_close)

    async def _shutdown(self, conn: _Connection) -> None:
        conn.lost = True
        conn.closing.set()
        task = conn.task
        if task is None or task.done():
            return
        done, _ = await asyncio.wait((task,), timeout=_CLOSE_TIMEOUT_SECS)
        if not done:
            logger.warning("%s: the session did not close within %g s; cancelling it", self.name,
                           _CLOSE_TIMEOUT_SECS)
            task.cancel()
            await asyncio.wait((task,), timeout=_CLOSE_TIMEOUT_SECS)

    def _drop(self, session: Any) -> None:
        conn = self._conn
        if conn is not None and conn.session is session:
            conn.lost = True

    # ---------------------------------------------------------------- tools

    async def list_tools(self) -> list[FunctionSchema]:
        """Schemas of the server's tools (after ``tools_filter``), connecting first if needed."""
        session = await self._session()
        schemas: list[FunctionSchema] = []
        cursor: str | None = None
        while True:
            if cursor is None:
                listing = await session.list_tools()
            else:
                from mcp.types import PaginatedRequestParams

                listing = await session.list_tools(params=PaginatedRequestParams(cursor=cursor))
            for tool in listing.tools:
                if self._tools_filter is not None and tool.name not in self._tools_filter:
                    continue
                try:
                    schemas.append(tool_schema(tool, self._fixed_args.get(tool.name, {})))
                except (ServiceProtocolError, AttributeError) as exc:
                    logger.warning("%s: skipping tool %r: %s", self.name, tool.name, exc)
            cursor = listing.next_cursor
            if not cursor:
                return schemas

    async def get_tools_schema(self) -> ToolsSchema:
        """The server's tools (after ``tools_filter``) as a :class:`ToolsSchema`, registering nothing."""
        return ToolsSchema(await self.list_tools())

    async def register_tools(self, llm: LLMService) -> ToolsSchema:
        """Connect, list the tools and register a handler for each on ``llm``.

        The client is closed when ``llm`` is cleaned up (the end of its pipeline).

        Returns:
            The tools' schemas, to offer to the model (``LLMContext(messages, tools=...)``).
        """
        self._wanted = True
        schemas = await self.list_tools()
        for schema in schemas:
            llm.register_function(schema.name, self._handle, cancel_on_interruption=self.cancel_on_interruption,
                                  timeout_secs=self.timeout_secs)
        llm.add_cleanup(self.close)
        logger.info("%s: registered %d tool(s) on %s", self.name, len(schemas), llm.name)
        return ToolsSchema(schemas)

    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Call a tool and return what the model would read (an error text on failure)."""
        args = dict(arguments or {})
        fixed = self._fixed_args.get(name)
        if fixed:
            args.update(fixed)
        if not self._wanted:
            return call_error_text(name, "the MCP client is closed")
        try:
            session = await self._session()
        except ServiceError as exc:
            logger.warning("%s: %s not called: %s", self.name, name, exc)
            return call_error_text(name, "the MCP server is unreachable")
        try:
            result = await session.call_tool(name, args)
        except Exception as exc:
            conn = self._conn
            if _is_connection_lost(exc) or (conn is not None and conn.session is session and conn.lost):
                self._drop(session)
                logger.warning("%s: connection lost during %s", self.name, name)
                return call_error_text(name, "the connection to the MCP server was lost")
            logger.warning("%s: %s failed: %s", self.name, name, _detail(exc))
            return call_error_text(name, _detail(exc))
        if result.is_error:
            text = tool_result(result)
            return call_error_text(name, text if isinstance(text, str) else repr(text))
        value = tool_result(result)
        out = self._output_filters.get(name)
        if out is not None:
            try:
                value = out(value)
            except Exception as exc:
                logger.warning("%s: output filter of %s raised: %r", self.name, name, exc)
                return call_error_text(name, "its output could not be processed")
        return value

    async def _handle(self, params: FunctionCallParams) -> None:
        await params.result_callback(await self.call_tool(params.function_name, params.arguments))
